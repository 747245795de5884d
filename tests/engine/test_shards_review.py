"""Sharded worker processes: the review's findings (/tmp/rh/shards-review.md), one test each.

Real simulator over loopback, real worker processes; nothing waits for time
to pass (the simulator says when requests arrive or end); bounds are
asserted with :func:`deadline_bound`.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio

from service import AdapterManager, ConfigError, parse_config
from service.engine.report import HealthReport
from service.engine.shards import ShardPool, plan_shards, shard_candidates
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support import eventually
from tests.support.served import GUARD, deadline_bound

#: A model name long enough that one worker's batch frame (~500 items) is
#: larger than a pipe's buffer (64 KB): a worker that stops reading blocks it.
LONG = "x" * 200


@asynccontextmanager
async def simulator(providers: list[SimProvider]) -> AsyncIterator[Simulator]:
    async with trio.open_nursery() as nursery:
        sim = Simulator(providers)
        await nursery.start(sim.serve)
        yield sim
        nursery.cancel_scope.cancel()


def big_fleet(sim: Simulator, count: int, **checks: Any) -> dict[str, Any]:
    entry = sim.provider_entries()[0]
    return {
        "checks": {"workers": 2, "shard_threshold": 4, "recheck_timeouts": False, **checks},
        "models": [
            {"name": f"m{i}-{LONG}", "providers": [dict(entry, name=f"p{i}")]} for i in range(count)
        ],
    }


def worker_share(manager: AdapterManager, worker: int) -> set[str]:
    pool = manager._shards
    assert pool is not None
    return {
        adapter.provider
        for model, adapters in manager.model_adapters.items()
        for adapter in adapters
        if pool.worker_of(model, adapter) == worker
    }


def kinds(report: HealthReport) -> dict[str, tuple[str, str | None]]:
    return {
        provider: (result.status.value, None if result.failure is None else result.failure.value)
        for model_report in report.models.values()
        for provider, result in model_report.results.items()
    }


def stopped_worker(manager: AdapterManager) -> int:
    pool = manager._shards
    assert pool is not None
    pid = pool.workers[0].pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    return pid


async def test_f1_a_worker_that_stops_reading_does_not_hold_the_run_past_its_deadline() -> None:
    provider = SimProvider("fast", "openai", "rhshard-review-key-f1", ["gpt-4o-mini"], Behavior(latency=0.0))
    async with simulator([provider]) as sim:
        config = parse_config(big_fleet(sim, 1000, timeout=3, model_timeout=3))
        async with AdapterManager(config) as manager:
            stuck = worker_share(manager, 0)
            pid = stopped_worker(manager)
            try:
                with trio.fail_after(GUARD + 20):
                    report = await manager.health_checker.run(manager.select())
            finally:
                os.kill(pid, signal.SIGCONT)
    assert report.execution_time < deadline_bound(3.0)
    found = kinds(report)
    # The stuck worker's adapters time out at the run's deadline (not "not started"),
    # the other worker's answered.
    assert {found[name] for name in stuck} == {("timeout", "deadline")}
    assert {kind for name, kind in found.items() if name not in stuck} == {("healthy", None)}


async def test_f2_cancelling_a_run_with_a_stuck_worker_takes_effect_at_once() -> None:
    provider = SimProvider("fast", "openai", "rhshard-review-key-f2", ["gpt-4o-mini"], Behavior(latency=0.0))
    async with simulator([provider]) as sim:
        config = parse_config(big_fleet(sim, 1000, timeout=60, model_timeout=60))
        async with AdapterManager(config) as manager:
            others = len(worker_share(manager, 1))
            pid = stopped_worker(manager)
            try:
                with trio.fail_after(GUARD + 20):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(manager.health_checker.run, manager.select())
                        await sim.wait_until(lambda: sim.total_stats().completed >= others)
                        cancelled_at = trio.current_time()
                        nursery.cancel_scope.cancel()
                gave_up = trio.current_time() - cancelled_at
            finally:
                os.kill(pid, signal.SIGCONT)
    assert gave_up < deadline_bound(2.0)  # was SEND_TIMEOUT (10 s): the write was shielded


@pytest.mark.parametrize("workers", [1, 2])
async def test_f12_an_adapter_timeout_near_the_model_budget_is_a_timeout_as_in_one_process(
    workers: int,
) -> None:
    providers = [
        SimProvider(f"hang{i}", "openai", f"rhshard-review-key-hang{i}", ["gpt-4o-mini"], Behavior(mode="hang"))
        for i in range(4)
    ]
    async with simulator(providers) as sim:
        document = {
            "checks": {
                "workers": workers,
                "shard_threshold": 4,
                "timeout": 30,
                "model_timeout": 2,
                "adapter_timeout": 1.98,
                "recheck_timeouts": False,
            },
            "models": [{"name": "m", "providers": sim.provider_entries()}],
        }
        async with AdapterManager(parse_config(document)) as manager:
            assert (manager._shards is not None) == (workers == 2)
            with trio.fail_after(GUARD + 10):
                report = await manager.health_checker.run(manager.select())
    for result in report.models["m"].results.values():
        assert result.failure is not None and result.failure.value == "timeout"
        assert result.error == "no answer within 1.98 s (adapter timeout 1.98 s)"


def _fleet_config(names: list[str], **checks: Any) -> dict[str, Any]:
    return {
        "checks": {"workers": 4, "shard_threshold": 4, **checks},
        "models": [
            {
                "name": f"model-{i}",
                "providers": [
                    {"name": name, "type": "openai", "base_url": "http://127.0.0.1:9/v1",
                     "model": f"m{i}", "api_key": f"rhshard-review-key-{i:02d}"}
                ],
            }
            for i, name in enumerate(names)
        ],
    }


def test_f8_never_more_workers_than_groups_and_one_group_is_not_sharded() -> None:
    one_gateway = parse_config(_fleet_config(["gateway"] * 12, adaptive_concurrency=True))
    manager = AdapterManager(one_gateway)
    assert plan_shards(one_gateway, manager.model_adapters, manager.health_checker.settings) is None

    two = parse_config(_fleet_config(["a"] * 6 + ["b"] * 6, adaptive_concurrency=True))
    manager = AdapterManager(two)
    pool = plan_shards(two, manager.model_adapters, manager.health_checker.settings)
    assert isinstance(pool, ShardPool)
    assert pool.sizes == [6, 6]  # two workers, not four with two idle
    assert len(shard_candidates(two, manager.model_adapters)) == 12


def test_f5_workers_has_an_upper_bound_and_auto_follows_the_cpus_this_process_may_use() -> None:
    from service.config.checks import available_cpus, max_workers

    with pytest.raises(ConfigError, match=r"checks\.workers: at most \d+ on this machine"):
        parse_config(_fleet_config(["a"], workers=100000))
    assert parse_config(_fleet_config(["a"], workers=max_workers())).checks.workers == max_workers()
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
    manager = AdapterManager(parse_config(_fleet_config(["a"], workers="auto")))
    assert manager.health_checker.settings.workers == available_cpus()


def test_f11_a_worker_gets_none_of_the_servers_secret_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.engine.shards import ROOT_VARIABLE, _worker_env

    monkeypatch.setenv("RH_REVIEW_SERVER_TOKEN", "rhshard-review-server-token")
    monkeypatch.setenv("RH_REVIEW_OTHER", "kept")
    document = _fleet_config(["a"])
    document["server"] = {"auth_token_env": "RH_REVIEW_SERVER_TOKEN"}
    env = _worker_env(parse_config(document))
    assert "RH_REVIEW_SERVER_TOKEN" not in env
    assert env["RH_REVIEW_OTHER"] == "kept"
    assert ROOT_VARIABLE in env and env.get("PYTHONPATH") == os.environ.get("PYTHONPATH")


async def test_f11_a_start_failing_with_any_error_leaves_one_warning_and_probes_here(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object, **kwargs: object) -> object:
        raise ValueError("not an OSError")

    provider = SimProvider("fast", "openai", "rhshard-review-key-f11", ["gpt-4o-mini"], Behavior(latency=0.0))
    monkeypatch.setattr("service.engine.shards.trio.lowlevel.open_process", broken)
    async with (
        simulator([provider]) as sim,
        AdapterManager(parse_config(big_fleet(sim, 8))) as manager,
    ):
        assert manager.shard_pids() == [] and manager.health_checker.shards is None
        with trio.fail_after(GUARD + 10):
            report = await manager.health_checker.run(manager.select())
    assert report.status.value == "healthy"
    warnings = [r for r in caplog.records if "worker processes" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"


async def test_f6_a_failing_listener_cancels_the_runs_probes_in_its_worker_too() -> None:
    providers = [SimProvider("fast", "openai", "rhshard-review-key-fast", ["gpt-4o-mini"], Behavior(latency=0.0))]
    providers += [
        SimProvider(f"hang{i}", "openai", f"rhshard-review-key-hang{i}", ["gpt-4o-mini"], Behavior(mode="hang"))
        for i in range(7)
    ]
    async with simulator(providers) as sim:
        document = {
            "checks": {"workers": 2, "shard_threshold": 4, "timeout": 60, "model_timeout": 60,
                       "adapter_timeout": 60, "recheck_timeouts": False},
            "models": [{"name": f"m-{e['name']}", "providers": [e]} for e in sim.provider_entries()],
        }
        async with AdapterManager(parse_config(document)) as manager:
            fired: list[str] = []

            def failing(result: object) -> None:
                if not fired:
                    fired.append("once")
                    raise RuntimeError("a listener's bug")

            manager.health_checker.result_listeners.append(failing)
            hanging = [f"hang{i}" for i in range(7)]
            with trio.fail_after(GUARD + 20):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(manager.health_checker.run, manager.select())
                    # As in one process: every probe the run had sent is cancelled
                    # (the worker that delivered the failing result included).
                    await sim.wait_until(
                        lambda: all(sim.stats(name).disconnected >= 1 for name in hanging)
                    )
                    nursery.cancel_scope.cancel()


async def test_f10_one_worker_failing_every_run_turns_sharding_off_and_the_idle_workers_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from service.engine.shards import MAX_FAILURES

    from .test_shards import process_gone

    providers = [
        SimProvider(f"p{i}", "openai", f"rhshard-review-key-p{i}", ["gpt-4o-mini"], Behavior(latency=0.0))
        for i in range(6)
    ]
    async with simulator(providers) as sim:
        document = {
            "checks": {"workers": 2, "shard_threshold": 4, "timeout": 60, "model_timeout": 60,
                       "adapter_timeout": 60, "recheck_timeouts": False},
            "models": [{"name": f"m-{e['name']}", "providers": [e]} for e in sim.provider_entries()],
        }
        async with AdapterManager(parse_config(document)) as manager:
            pool = manager._shards
            assert pool is not None
            theirs = worker_share(manager, 0)
            survivor = pool.workers[1].pid
            assert survivor is not None
            with trio.fail_after(GUARD + 60):
                for _ in range(MAX_FAILURES):
                    await eventually(lambda: pool.workers[0].usable, within=GUARD + 20)
                    for name in theirs:
                        sim.set_behavior(name, mode="hang")
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(partial(manager.health_checker.run, manager.select(), use_cache=False))
                        await sim.wait_until(
                            lambda: sum(sim.stats(name).in_flight for name in theirs) == len(theirs)
                        )
                        for name in theirs:
                            sim.set_behavior(name, mode="ok")
                        victim = pool.workers[0].pid
                        assert victim is not None
                        os.kill(victim, signal.SIGKILL)
                    # The other worker's batches succeeded meanwhile: its successes
                    # do not reset worker 0's count.
                    if not pool.disabled:
                        await eventually(lambda: pool.workers[0].restart_done.is_set(), within=GUARD + 20)
            assert pool.disabled and manager.shard_pids() == []
            off = [r for r in caplog.records if "sharding is off" in r.getMessage()]
            assert len(off) == 1 and off[0].levelname == "WARNING"
            # No idle process left running until the service closes.
            await eventually(lambda: process_gone(survivor), within=GUARD + 20)
