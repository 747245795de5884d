"""Regressions for defects found in review: each test failed before its fix."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from adapters import CallableAdapter
from service import CheckerSettings, ConfigError, HealthChecker, ProbeStatus, parse_config
from service.api.singleflight import SingleFlight

AZURE_LIKE_KEY = "0123456789abcdef0123456789abcdef"  # no prefix a pattern could catch


def config_with(provider: dict[str, object], env: dict[str, str] | None = None) -> str:
    document = {"models": [{"name": "m", "providers": [{"name": "p", "type": "azure", **provider}]}]}
    with pytest.raises(ConfigError) as info:
        parse_config(document, env=env or {})
    return str(info.value)


def test_a_key_with_a_stray_newline_is_rejected_without_showing_it() -> None:
    message = config_with(
        {"base_url": "https://r.openai.azure.com", "api_key_env": "AZ_KEY"},
        env={"AZ_KEY": AZURE_LIKE_KEY[:16] + "\r" + AZURE_LIKE_KEY[16:]},
    )
    assert "control characters" in message
    assert AZURE_LIKE_KEY[:16] not in message


def test_a_trailing_newline_from_a_secret_file_is_forgiven() -> None:
    document = {"models": [{"name": "m", "providers": [
        {"name": "p", "type": "azure", "base_url": "https://r.openai.azure.com", "api_key_env": "AZ_KEY"}]}]}
    config = parse_config(document, env={"AZ_KEY": AZURE_LIKE_KEY + "\n"})
    key = config.models[0].providers[0].api_key
    assert key is not None and key.reveal() == AZURE_LIKE_KEY


def test_a_key_pasted_into_api_key_env_is_not_echoed() -> None:
    message = config_with({"base_url": "https://r.openai.azure.com", "api_key_env": "sk-proj-" + AZURE_LIKE_KEY})
    assert "looks like a key" in message
    assert AZURE_LIKE_KEY not in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://", "has no host name"),
        ("https://example.com:99999/v1", "has a bad port"),
        ("http://exa mple.com/v1", "spaces"),
        ("https://[::1/v1", "is not a valid URL"),
        ("https://example.com/v1?key=abc", "must not have a query"),
    ],
)
def test_malformed_base_urls_are_config_errors(url: str, expected: str) -> None:
    assert expected in config_with({"base_url": url, "api_key": "k" * 20})


async def test_an_answer_after_the_deadline_is_a_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async def late() -> bool:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            return True  # swallows its cancellation and claims health anyway
        return True

    checker = HealthChecker(CheckerSettings(adapter_timeout=0.5, recheck_timeouts=False))
    report = await checker.run({"m": [CallableAdapter("late", late)]})
    assert report.models["m"].results["late"].status is ProbeStatus.TIMEOUT


async def test_wait_idle_returns_when_overlapping_runs_finish(nursery: trio.Nursery) -> None:
    flights: SingleFlight[str, int] = SingleFlight("test")
    release_a, release_b = trio.Event(), trio.Event()

    async def work(event: trio.Event) -> int:
        await event.wait()
        return 1

    nursery.start_soon(lambda: flights.run("a", lambda: work(release_a), nursery=nursery))
    await trio.testing.wait_all_tasks_blocked()
    idle = trio.Event()

    async def waiter() -> None:
        await flights.wait_idle()
        idle.set()

    nursery.start_soon(waiter)
    await trio.testing.wait_all_tasks_blocked()
    nursery.start_soon(lambda: flights.run("b", lambda: work(release_b), nursery=nursery))
    await trio.testing.wait_all_tasks_blocked()
    release_a.set()
    release_b.set()
    with trio.fail_after(5):
        await idle.wait()
    assert flights.statistics().runs_in_flight == 0


async def test_a_key_quoted_by_another_adapter_is_redacted_in_a_partial_selection() -> None:
    from service import AdapterManager

    document = {
        "models": [
            {"name": "a-model", "providers": [{"name": "a", "type": "ollama", "tags": ["ta"]}]},
            {"name": "b-model", "providers": [
                {"name": "b", "type": "azure", "base_url": "https://r.openai.azure.com", "api_key": AZURE_LIKE_KEY}]},
        ]
    }
    manager = AdapterManager.from_config(parse_config(document, env={}))

    async def quotes_b() -> bool:
        raise RuntimeError(f"gateway says: bad key {AZURE_LIKE_KEY}")

    manager.register_adapter("a-model", CallableAdapter("gateway", quotes_b))
    report = await manager.health_checker.run(manager.select(models=["a-model"]), timeout=5)
    error = report.models["a-model"].results["gateway"].error or ""
    assert AZURE_LIKE_KEY not in error and "***" in error


def test_cached_verdicts_from_another_trio_run_are_not_served() -> None:
    calls = 0

    async def check() -> bool:
        nonlocal calls
        calls += 1
        return True

    checker = HealthChecker(CheckerSettings(min_interval=3600))
    plan = {"m": [CallableAdapter("p", check)]}
    for _ in range(2):  # each trio.run has its own clock origin
        trio.run(checker.run, plan, clock=trio.testing.MockClock(autojump_threshold=0))
    assert calls == 2


def test_dump_toml_writes_non_bmp_text_that_loads_back(tmp_path: object) -> None:
    import tomllib
    from pathlib import Path

    from service.config import dump_toml, load_config

    # The TOML itself round-trips any text (a control character is escaped)...
    odd = {"models": [{"name": "chat-😀\x7f", "providers": [{"name": "p", "type": "ollama"}]}]}
    assert tomllib.loads(dump_toml(odd)) == odd
    # ...and a config written with non-BMP text loads back (names refuse
    # control characters since issue 13, so that one is left out here).
    document = {"models": [{"name": "chat-😀", "providers": [{"name": "p", "type": "ollama"}]}]}
    path = Path(str(tmp_path)) / "c.toml"
    path.write_text(dump_toml(document), encoding="utf-8")
    assert load_config(path, env={}).models[0].name == "chat-😀"


# -- second review pass (issue 6/7 change) ---------------------------------------------------


def test_a_huge_integer_in_the_config_is_a_message_not_a_traceback() -> None:
    from service import ConfigError, parse_config

    huge = 10**400
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"checks": {"interval": 10, "timeout": huge, "latency_slo_ms": huge, "jitter": huge},
             "models": [{"name": "m", "providers": [
                 {"name": "p", "type": "ollama", "base_url": "http://127.0.0.1:9"}]}]},
            source="c.toml", env={},
        )
    lines = str(info.value).splitlines()
    assert len(lines) == 3 and all("must be" in line for line in lines), lines


async def test_odd_retry_after_from_a_custom_adapter_is_dropped_not_a_500() -> None:
    from adapters import CallableAdapter, FailureKind
    from adapters.base import ProbeOutcome
    from service import HealthChecker

    outcomes = [
        ProbeOutcome(False, 429, "HTTP 429", FailureKind.RATE_LIMITED, retry_after=value)
        for value in ("5", float("nan"), float("inf"), -1.0, True)
    ]

    def make(outcome: ProbeOutcome) -> CallableAdapter:
        async def check() -> ProbeOutcome:
            return outcome
        return CallableAdapter(f"p{id(outcome)}", check)

    checker = HealthChecker()
    report = await checker.run({"m": [make(o) for o in outcomes]}, timeout=5)
    for result in report.results():
        assert result.retry_after is None and result.failure is FailureKind.RATE_LIMITED
    import json

    json.dumps(report.to_dict(), allow_nan=False)  # valid JSON: no NaN reached it

    # Over HTTP: every route that reports these adapters answers JSON, never a 500.
    from tests.support.app import make_app, serving

    app, _ = make_app({"m": [make(o) for o in outcomes]})
    async with serving(app) as client:
        for path in ("/v1/health/", "/v1/health/models/m", "/v1/health/models",
                     "/v1/health/?format=health+json"):
            response = await client.get(path)
            text = await response.get_data(as_text=True)
            assert response.status_code == 503, (path, response.status_code, text)
            # Standard JSON: no NaN or Infinity reached the answer.
            json.loads(text, parse_constant=lambda name, path=path: pytest.fail(f"{path}: {name}"))


async def test_repeated_passive_verdicts_do_not_count_twice_in_the_state(
    autojump_clock: Any,
) -> None:
    from adapters import CallableAdapter
    from service import HealthChecker, PassivePolicy
    from service.config import CheckSchedule
    from service.engine.report import ProbeStatus
    from service.live.state import HealthState

    async def never() -> bool:
        raise AssertionError("a passive adapter with traffic is not probed")

    adapter = CallableAdapter("p", never)
    checker = HealthChecker()
    checker.passive.watch("m", adapter, PassivePolicy(window=60))
    state = HealthState(lambda model, provider: CheckSchedule(interval=5, unhealthy_threshold=3))
    checker.observe("m", "p", ok=True, latency_ms=10)
    state.record(await checker.probe_one("m", adapter))
    for _ in range(4):  # one burst of failures...
        checker.observe("m", "p", ok=False, http_status=500)
    for _ in range(3):  # ...checked three times with nothing new reported
        state.record(await checker.probe_one("m", adapter))
        await trio.sleep(5)
    current = state.get("m", "p")
    assert current is not None and current.reported is ProbeStatus.HEALTHY and current.streak == 1
    assert len(state.history("m", "p")) == 2
    with pytest.raises(ValueError, match="latency_ms must be a finite number"):
        checker.observe("m", "p", ok=True, latency_ms=10**400)
