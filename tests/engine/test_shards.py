"""Sharded worker processes: the same report as one process, the same deadlines, no leftovers.

Each test runs a small fleet against the simulator over loopback with
``shard_threshold = 4`` and ``workers = 2``, so the sharded path is the one
taken, and compares it with what one process does where that is the point.
Nothing waits for time to pass: the simulator says when requests arrive or
end (``wait_until``), process exits are polled under a bound.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from adapters.base import Secret
from service import AdapterManager, CheckerSettings, ConfigError, HealthChecker, parse_config
from service.engine.report import HealthReport, ProbeResult
from service.engine.shards import ShardPool, encode
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support import eventually
from tests.support.fakes import ok
from tests.support.served import GUARD, deadline_bound

#: Keys that match no provider-key pattern: only knowing them redacts them.
KEYS = {f"ok{i}": f"rhshard-key-ok{i}-5c1e9a{i}" for i in range(4)}
KEYS.update(
    {
        name: f"rhshard-key-{name}-77b3d0"
        for name in ("status", "unauth", "echo", "hang", "reset", "badjson", "gossip")
    }
)
FAILURE_MODES = {
    "status": Behavior(latency=0.0, mode="status", status=503),
    "unauth": Behavior(latency=0.0, mode="unauthorized"),
    "echo": Behavior(latency=0.0, mode="echo_key"),
    "hang": Behavior(latency=0.0, mode="hang"),
    "reset": Behavior(latency=0.0, mode="reset"),
    "badjson": Behavior(latency=0.0, mode="malformed_json"),
    # Quotes every other adapter's key: most live in another worker, which
    # does not know them, so only the parent can redact them.
    "gossip": Behavior(
        latency=0.0,
        mode="body",
        status=500,
        body=" ".join(key for name, key in KEYS.items() if name != "gossip"),
    ),
}
HEALTHY = {f"ok{i}": KEYS[f"ok{i}"] for i in range(4)}
#: Seconds a process has to be gone once it should be (polled, not slept).
EXIT_BOUND = 15.0


def fleet(names: Mapping[str, str] = KEYS) -> list[SimProvider]:
    return [
        SimProvider(name, "openai", key, ["gpt-4o-mini"], FAILURE_MODES.get(name, Behavior(latency=0.0)))
        for name, key in names.items()
    ]


def document(sim: Simulator, **checks: Any) -> dict[str, Any]:
    """One model per provider (plus two sharing one), every entry an HTTP adapter."""
    entries = sim.provider_entries()
    for entry in entries:
        if entry["name"] == "hang":
            entry["timeout"] = 1
    models = [
        {"name": f"model-{entry['name']}", "providers": [entry]} for entry in entries[2:]
    ] + [{"name": "model-pair", "providers": entries[:2]}]
    return {
        "checks": {"timeout": 20, "model_timeout": 20, "workers": 2, "shard_threshold": 4, **checks},
        "models": models,
    }


@asynccontextmanager
async def simulator(providers: list[SimProvider]) -> AsyncIterator[Simulator]:
    async with trio.open_nursery() as nursery:
        sim = Simulator(providers)
        await nursery.start(sim.serve)
        yield sim
        nursery.cancel_scope.cancel()


def comparable(report: HealthReport) -> dict[str, Any]:
    """The report without what differs from one run to the next (times, the run id)."""
    data: dict[str, Any] = {"status": report.status.value, "fallback": report.fallback}
    for model, model_report in report.models.items():
        data[model] = {"status": model_report.status.value, **{
            provider: {
                key: value
                for key, value in result.to_dict().items()
                if key not in ("latency_ms", "checked_at", "queued_ms")
            }
            for provider, result in model_report.results.items()
        }}
    return data


def results_of(report: HealthReport) -> dict[str, ProbeResult]:
    return {p: r for mr in report.models.values() for p, r in mr.results.items()}


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


async def wait_gone(pids: list[int]) -> None:
    await eventually(lambda: all(process_gone(pid) for pid in pids), within=EXIT_BOUND)


async def test_sharded_verdicts_and_report_match_one_process_and_no_worker_outlives_the_manager() -> None:
    async with simulator(fleet()) as sim:
        one = parse_config(document(sim, workers=1))
        sharded = parse_config(document(sim))
        async with AdapterManager(one) as manager:
            assert manager.shard_pids() == []
            expected = await manager.health_checker.run(manager.select())
        seen: list[ProbeResult] = []
        async with AdapterManager(sharded) as manager:
            pids = manager.shard_pids()
            assert len(pids) == 2
            manager.health_checker.result_listeners.append(seen.append)
            with trio.fail_after(GUARD + 10):
                report = await manager.health_checker.run(manager.select())
            assert manager.health_checker.in_flight == 0
        await wait_gone(pids)
        assert manager.shard_pids() == []
    assert comparable(report) == comparable(expected)
    assert report.concurrent and report.run_id != expected.run_id
    assert report.fallback_reason == expected.fallback_reason  # the re-check pass: local, as before
    # Listeners see every result (the re-checked one twice, as in one process).
    assert {(r.model, r.provider) for r in seen} == {
        (m, p) for m, mr in report.models.items() for p in mr.results
    }
    assert len(seen) == len(results_of(report)) + 1
    results = results_of(report)
    assert results["hang"].failure is not None and results["hang"].failure.value == "timeout"
    assert results["unauth"].http_status == 401 and results["status"].http_status == 503
    text = repr(comparable(report))
    assert not [name for name, key in KEYS.items() if key in text]


async def test_a_fleet_below_the_threshold_or_with_workers_off_starts_no_process() -> None:
    async with simulator(fleet()) as sim:
        for checks in ({"shard_threshold": 100}, {"workers": 1}, {"workers": 0}):
            async with AdapterManager(parse_config(document(sim, **checks))) as manager:
                assert manager.shard_pids() == []
                assert manager.health_checker.shards is None
        # An embedder's own probe limiter is a cap only this process sees: no sharding.
        config = parse_config(document(sim))
        checker = HealthChecker(
            CheckerSettings.from_config(config.checks), probe_limiter=trio.CapacityLimiter(8)
        )
        async with AdapterManager(config, checker=checker) as manager:
            assert manager.shard_pids() == []


async def test_the_run_deadline_is_the_only_deadline_and_gives_a_partial_report() -> None:
    names = {f"stuck{i}": f"rhshard-key-stuck{i}-d41d8c" for i in range(6)}
    names.update({f"ok{i}": KEYS[f"ok{i}"] for i in range(2)})
    providers = fleet(names)
    for provider in providers[:6]:
        provider.behavior = Behavior(latency=0.0, mode="hang")
    async with simulator(providers) as sim:
        config = parse_config(document(sim, adapter_timeout=60, recheck_timeouts=False))
        async with AdapterManager(config) as manager:
            assert len(manager.shard_pids()) == 2
            timeout = 1.5
            start = trio.current_time()
            with trio.fail_after(GUARD + 10):
                report = await manager.health_checker.run(manager.select(), timeout=timeout)
            assert trio.current_time() - start < deadline_bound(timeout)
            # Every probe a worker made is over: its sockets are closed.
            with trio.fail_after(GUARD):
                await sim.wait_idle()
    results = {p: r for mr in report.models.values() for p, r in mr.results.items()}
    assert set(results) == set(names)
    for name in names:
        result = results[name]
        if name.startswith("stuck"):
            assert result.status.value == "timeout"
            assert result.failure is not None and result.failure.value == "deadline"
            # In the run's own terms, as a local probe says it (not the worker's earlier cut).
            assert result.error is not None
            assert result.error.startswith("no answer within 1.4") or result.error.startswith(
                "no answer within 1.5"
            ), result.error
            assert result.error.endswith(" s (the run's deadline)")
        else:
            assert result.status.value == "healthy"
    assert not report.fallback


async def test_cancelling_a_run_cancels_every_probe_in_every_worker() -> None:
    names = {f"stuck{i}": f"rhshard-key-stuck{i}-a9f0e1" for i in range(6)}
    providers = fleet(names)
    for provider in providers:
        provider.behavior = Behavior(latency=0.0, mode="hang")
    async with simulator(providers) as sim:
        config = parse_config(document(sim, adapter_timeout=60))
        async with AdapterManager(config) as manager:
            checker = manager.health_checker
            finished: list[HealthReport] = []

            async def run() -> None:
                finished.append(await checker.run(manager.select(), timeout=60))

            with trio.fail_after(GUARD + 10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(run)
                    await sim.wait_until(lambda: sim.total_stats().in_flight == len(names))
                    nursery.cancel_scope.cancel()
                await sim.wait_idle()
            assert finished == []  # the run raised Cancelled, as a local one does
            assert sim.total_stats().disconnected == len(names)
            assert checker.in_flight == 0
            # The workers are still there for the next run.
            assert len(manager.shard_pids()) == 2


async def test_min_interval_holds_passive_entries_and_listeners_behave_as_in_one_process() -> None:
    names = {f"ok{i}": KEYS[f"ok{i}"] for i in range(4)}
    names["busy"] = "rhshard-key-busy-3e4f5a"
    names["quiet"] = "rhshard-key-quiet-6b7c8d"
    providers = fleet(names)
    providers[4].behavior = Behavior(latency=0.0, mode="rate_limited", retry_after=60)
    async with simulator(providers) as sim:
        doc = document(sim, min_interval=60)
        for model in doc["models"]:
            for entry in model["providers"]:
                if entry["name"] == "quiet":
                    entry["probe"] = "passive"
        async with AdapterManager(parse_config(doc)) as manager:
            assert len(manager.shard_pids()) == 2
            checker = manager.health_checker
            seen: list[ProbeResult] = []
            checker.result_listeners.append(seen.append)
            manager.observe("model-quiet", "quiet", ok=True, latency_ms=12.0)
            with trio.fail_after(GUARD + 10):
                first = await checker.run(manager.select())
                requests = sim.total_stats().requests
                second = await checker.run(manager.select())
                fresh = await checker.run(manager.select(), use_cache=False)
            assert sim.total_stats().requests == requests + 4  # the held one is not asked again
    by_run = [{p: r for mr in rep.models.values() for p, r in mr.results.items()} for rep in (first, second, fresh)]
    assert by_run[0]["busy"].failure is not None and by_run[0]["busy"].failure.value == "rate_limited"
    assert by_run[0]["quiet"].source == "passive" and by_run[1]["quiet"].source == "passive"
    for name in names:
        if name != "quiet":
            assert by_run[1][name].cached  # min_interval
    assert not by_run[2]["ok0"].cached
    assert by_run[2]["busy"].cached  # the Retry-After hold, even for a fresh run
    assert len(seen) == 3 * len(names)


async def test_a_worker_killed_mid_run_falls_back_and_is_started_again_next_run() -> None:
    names = {f"slow{i}": f"rhshard-key-slow{i}-0f1e2d" for i in range(4)}
    providers = fleet(names)
    for provider in providers:
        provider.behavior = Behavior(latency=0.0, mode="hang")
    async with simulator(providers) as sim:
        config = parse_config(document(sim, adapter_timeout=60, recheck_timeouts=False))
        async with AdapterManager(config) as manager:
            checker = manager.health_checker
            pool = manager._shards
            assert pool is not None
            victim, survivor = manager.shard_pids()
            theirs = {
                adapter.provider
                for model, adapters in manager.model_adapters.items()
                for adapter in adapters
                if pool.worker_of(model, adapter) == 0
            }
            reports: list[HealthReport] = []

            async def run() -> None:
                reports.append(await checker.run(manager.select()))

            with trio.fail_after(GUARD + 20):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(run)
                    await sim.wait_until(lambda: sim.total_stats().in_flight == len(names))
                    for provider in providers:
                        sim.set_behavior(provider.name, mode="ok")
                    os.kill(victim, signal.SIGKILL)
                    # Only the dead worker's adapters are probed again, here.
                    await sim.wait_until(
                        lambda: all(sim.stats(name).completed >= 1 for name in theirs)
                    )
                    # The survivor's probes were never cut: they still hang.
                    assert all(
                        sim.stats(name).disconnected == 0 for name in names if name not in theirs
                    )
                    nursery.cancel_scope.cancel()
            assert reports == []
            await wait_gone([victim])
            with trio.fail_after(GUARD + 20):
                # Its worker restarts in the background: this run probes its share here.
                again = await checker.run(manager.select())
            assert not again.fallback and again.status.value == "healthy"
            await eventually(lambda: len(manager.shard_pids()) == 2, within=EXIT_BOUND)
            pids = manager.shard_pids()
            assert survivor in pids and victim not in pids
            with trio.fail_after(GUARD + 20):
                third = await checker.run(manager.select(), use_cache=False)
            assert not third.fallback and third.status.value == "healthy"
        await wait_gone(pids)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"many"', 'checks.workers: must be "auto"'),
        ("-1", "checks.workers: must be"),
        ("2.5", "checks.workers: must be"),
        ("true", "checks.workers: must be"),
        ("0", None),
        ('"auto"', None),
    ],
)
def test_workers_is_auto_or_a_whole_number(value: str, message: str | None) -> None:
    import tomllib

    doc = tomllib.loads(f"[checks]\nworkers = {value}\n")
    doc["models"] = [
        {"name": "m", "providers": [
            {"name": "p", "type": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m",
             "api_key": "rhshard-key-config-9a8b7c"}
        ]}
    ]
    if message is None:
        checks = parse_config(doc).checks
        assert checks.workers == (None if value == '"auto"' else int(value))
        settings = CheckerSettings.from_config(checks)
        assert settings.workers == (os.cpu_count() or 1 if checks.workers is None else 0)
    else:
        with pytest.raises(ConfigError, match=message):
            parse_config(doc)


@pytest.mark.parametrize("value", [0, -3, "10"])
def test_shard_threshold_is_a_whole_number_of_at_least_one(value: object) -> None:
    with pytest.raises(ConfigError, match=r"checks\.shard_threshold: must be"):
        parse_config({"checks": {"shard_threshold": value}})
    with pytest.raises(ValueError, match="shard_threshold must be an integer >= 1"):
        CheckerSettings(shard_threshold=0)


async def test_keys_reach_a_worker_only_through_its_pipe() -> None:
    async with simulator(fleet()) as sim:
        config = parse_config(document(sim))
        with pytest.raises(TypeError, match="cannot be pickled"):
            encode(config)  # an ordinary frame refuses a Secret
        assert isinstance(config.models[0].providers[0].api_key, Secret)
        async with AdapterManager(config) as manager:
            pool = manager._shards
            assert isinstance(pool, ShardPool)
            for pid in manager.shard_pids():
                for name in ("cmdline", "environ"):
                    text = await trio.Path(f"/proc/{pid}/{name}").read_bytes()
                    assert not [k for k in KEYS.values() if k.encode() in text], name


async def test_workers_that_cannot_start_leave_one_warning_and_a_working_manager(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("service.engine.shards.sys.executable", "/bin/false")
    async with (
        simulator(fleet(HEALTHY)) as sim,
        AdapterManager(parse_config(document(sim))) as manager,
    ):
        assert manager.shard_pids() == []
        assert manager.health_checker.shards is None
        with trio.fail_after(GUARD + 10):
            report = await manager.health_checker.run(manager.select())
    assert results_of(report)["ok0"].status.value == "healthy"
    warnings = [r for r in caplog.records if "worker processes" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    assert "did not start" in warnings[0].getMessage()


async def test_workers_failing_again_and_again_turn_sharding_off_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from service.engine.shards import MAX_FAILURES

    async with (
        simulator(fleet(HEALTHY)) as sim,
        AdapterManager(parse_config(document(sim))) as manager,
    ):
        pool = manager._shards
        assert pool is not None
        pids = manager.shard_pids()
        monkeypatch.setattr("service.engine.shards.sys.executable", "/bin/false")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        await wait_gone(pids)
        # ...and the pool has seen them go (their output ended): a run started
        # before that would send its batches into the dead pipes and fall back.
        await eventually(lambda: manager.shard_pids() == [], within=EXIT_BOUND)
        reports: list[HealthReport] = []
        with trio.fail_after(GUARD + 30):
            for _ in range(MAX_FAILURES + 1):
                reports.append(await manager.health_checker.run(manager.select(), use_cache=False))
                # Restarts run in the background, between runs, and each failed one counts.
                await eventually(
                    lambda: all(w.restart_done.is_set() for w in pool.workers), within=EXIT_BOUND
                )
                if pool.disabled:
                    break
        assert pool.disabled
        assert manager.shard_pids() == []
    for report in reports:  # every run judged every adapter, here, without a fallback
        assert results_of(report)["ok0"].status.value == "healthy"
        assert not report.fallback
    off = [r for r in caplog.records if "sharding is off" in r.getMessage()]
    assert len(off) == 1 and off[0].levelname == "WARNING"


async def test_overlapping_runs_share_the_workers_and_registered_adapters_stay_here() -> None:
    async with (
        simulator(fleet(HEALTHY)) as sim,
        AdapterManager(parse_config(document(sim))) as manager,
    ):
        own = ok("mine")
        manager.register_adapter("model-ok2", own)
        pool = manager._shards
        assert pool is not None and pool.worker_of("model-ok2", own) is None
        checker = manager.health_checker
        reports: list[HealthReport] = []

        async def run() -> None:
            reports.append(await checker.run(manager.select(), use_cache=False))

        with trio.fail_after(GUARD + 10):
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(run)
        assert len({report.run_id for report in reports}) == 3
        for report in reports:
            results = results_of(report)
            assert set(results) == {*HEALTHY, "mine"}
            assert all(r.status.value == "healthy" for r in results.values())
            assert not report.fallback
        assert sim.total_stats().requests == 3 * len(HEALTHY)
        assert checker.in_flight == 0


def test_capped_providers_stay_in_one_worker_and_the_global_cap_is_split() -> None:
    from service.engine.shards import assign, shard_candidates, shard_config

    entries = [
        {"name": "capped" if i % 3 == 0 else f"free{i}", "type": "openai",
         "base_url": "http://127.0.0.1:9/v1", "model": f"m{i}", "api_key": f"rhshard-key-{i:02d}-cafe"}
        for i in range(12)
    ]
    for entry in entries:
        if entry["name"] == "capped":
            entry["max_concurrent"] = 2
    config = parse_config({
        "checks": {"max_concurrent_probes": 5},
        "models": [{"name": f"model-{i}", "providers": [entry]} for i, entry in enumerate(entries)],
    })
    manager = AdapterManager(config)
    settings = manager.health_checker.settings
    candidates = shard_candidates(config, manager.model_adapters)
    chosen = assign(candidates, 3, settings)
    capped = {w for (_, entry, _), w in zip(candidates, chosen, strict=True) if entry.name == "capped"}
    assert len(capped) == 1  # the cap of 2 is one limit, in one process
    assert sorted(chosen.count(w) for w in range(3)) == [4, 4, 4]  # counts balanced
    share = [c for c, w in zip(candidates, chosen, strict=True) if w == next(iter(capped))]
    worker_checks = shard_config(config, share, settings, 3).checks
    assert worker_checks.max_concurrent_probes == 2  # ceil(5 / 3)
    assert dict(worker_checks.provider_max_concurrent) == {"capped": 2}
    assert worker_checks.workers == 0  # a worker never shards again
