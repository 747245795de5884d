"""HealthChecker semantics, on Trio's MockClock with in-memory adapters.

The clock only moves when every task is blocked (autojump), so times here are
exact and the tests are deterministic however loaded the machine is.
"""

from __future__ import annotations

import logging
import threading

import pytest
import trio
import trio.testing

from adapters import FailureKind, ProbeOutcome, SyncCallableAdapter
from service import CheckerSettings, HealthChecker, HealthStatus, ProbeResult, ProbeStatus
from service.engine.report import overall_status
from tests.support.fakes import Probe, adapter, after, hang


def statuses(report: object) -> dict[tuple[str, str], str]:
    return {(r.model, r.provider): r.status.value for r in report.results()}  # type: ignore[attr-defined]


async def test_concurrent_wall_time_is_the_slowest_adapter(autojump_clock: trio.testing.MockClock) -> None:
    plan = {"gpt-4": [adapter("a", after(0.1)), adapter("b", after(0.3))], "claude": [adapter("c", after(0.2))]}
    report = await HealthChecker().run(plan)
    assert report.execution_time == pytest.approx(0.3)
    assert report.status is HealthStatus.HEALTHY
    assert report.concurrent is True


async def test_sequential_wall_time_is_the_sum(autojump_clock: trio.testing.MockClock) -> None:
    plan = {"gpt-4": [adapter("a", after(0.1)), adapter("b", after(0.3))], "claude": [adapter("c", after(0.2))]}
    report = await HealthChecker().run(plan, concurrent=False)
    assert report.execution_time == pytest.approx(0.6)
    assert report.concurrent is False


async def test_hanging_adapter_times_out_without_touching_siblings(autojump_clock: trio.testing.MockClock) -> None:
    checker = HealthChecker(CheckerSettings(adapter_timeout=1.0, recheck_timeouts=False))
    plan = {"gpt-4": [adapter("ok", after(0.3)), adapter("stuck", hang), adapter("bad", after(0.2, False))]}
    start = trio.current_time()
    report = await checker.run(plan)
    assert trio.current_time() - start == pytest.approx(1.0)
    results = report.models["gpt-4"].results
    assert results["ok"].status is ProbeStatus.HEALTHY
    assert results["ok"].latency_ms == pytest.approx(300)
    assert results["stuck"].status is ProbeStatus.TIMEOUT
    assert results["stuck"].failure is FailureKind.TIMEOUT
    assert "adapter timeout 1 s" in (results["stuck"].error or "")
    assert results["bad"].status is ProbeStatus.UNHEALTHY
    assert report.models["gpt-4"].status is HealthStatus.DEGRADED


class NotAnException(BaseException):
    """User code raising a bare BaseException subclass."""


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("boom"),
        OSError(24, "Too many open files"),
        ExceptionGroup("several", [ValueError("a"), KeyError("b")]),
        NotAnException("not an Exception"),
    ],
    ids=["runtime", "oserror", "group", "base-exception"],
)
async def test_raising_adapter_is_contained(error: BaseException) -> None:
    async def raises() -> bool:
        raise error

    plan = {"m": [adapter("raises", raises), adapter("fine", after(0.01))]}
    report = await HealthChecker().run(plan)
    results = report.models["m"].results
    assert results["raises"].status is ProbeStatus.UNHEALTHY
    assert results["raises"].failure is FailureKind.EXCEPTION
    assert type(error).__name__ in (results["raises"].error or "")
    assert results["fine"].status is ProbeStatus.HEALTHY


async def test_adapter_returning_garbage_is_unhealthy() -> None:
    class Garbage:
        provider = "garbage"
        adapter_name = "GarbageAdapter"

        async def check_health(self) -> ProbeOutcome:
            return "yes"  # type: ignore[return-value]

    report = await HealthChecker().run({"m": [Garbage()]})
    result = report.models["m"].results["garbage"]
    assert result.status is ProbeStatus.UNHEALTHY
    assert "returned str" in (result.error or "")


async def test_adapter_that_swallows_cancellation_still_times_out(autojump_clock: trio.testing.MockClock) -> None:
    async def stubborn() -> bool:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            raise RuntimeError("I do not like being cancelled") from None
        return True

    checker = HealthChecker(CheckerSettings(adapter_timeout=0.5, recheck_timeouts=False))
    report = await checker.run({"m": [adapter("stubborn", stubborn)]})
    assert report.models["m"].results["stubborn"].status is ProbeStatus.TIMEOUT


async def test_outside_cancellation_propagates_and_leaves_nothing_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    running = 0
    finished_normally = 0

    async def tracked() -> bool:
        nonlocal running, finished_normally
        running += 1
        try:
            await trio.sleep(5)
            finished_normally += 1
            return True
        finally:
            running -= 1

    plan = {f"m{i}": [adapter(f"p{j}", tracked) for j in range(3)] for i in range(4)}
    with trio.move_on_after(1) as scope:
        await HealthChecker().run(plan)
    assert scope.cancelled_caught  # the Cancelled reached our scope: nothing swallowed it
    assert running == 0
    assert finished_normally == 0


async def test_model_budget_caps_its_providers(autojump_clock: trio.testing.MockClock) -> None:
    checker = HealthChecker(CheckerSettings(adapter_timeout=8, model_timeout=2, recheck_timeouts=False))
    plan = {"slow-model": [adapter("slow", after(3))], "fast-model": [adapter("fast", after(1))]}
    report = await checker.run(plan)
    slow = report.models["slow-model"].results["slow"]
    assert slow.status is ProbeStatus.TIMEOUT
    assert slow.failure is FailureKind.DEADLINE
    assert "model's budget" in (slow.error or "")
    assert report.models["fast-model"].results["fast"].healthy
    assert report.execution_time == pytest.approx(2.0)


async def test_run_deadline_returns_a_partial_report(autojump_clock: trio.testing.MockClock) -> None:
    plan = {"m": [adapter("quick", after(0.5)), adapter("slow", after(5))]}
    report = await HealthChecker().run(plan, timeout=1.0)
    assert report.execution_time == pytest.approx(1.0)
    results = report.models["m"].results
    assert results["quick"].healthy
    assert results["slow"].status is ProbeStatus.TIMEOUT
    assert "run's deadline" in (results["slow"].error or "")
    assert report.timeout == 1.0


@pytest.mark.parametrize(("recheck", "expected_time"), [(False, 1.0), (True, 1.5)])
async def test_timed_out_adapters_are_rechecked_one_by_one_when_enabled(
    autojump_clock: trio.testing.MockClock, recheck: bool, expected_time: float
) -> None:
    checker = HealthChecker(CheckerSettings(adapter_timeout=1.0, recheck_timeouts=recheck))
    plan = {"m": [adapter(f"p{i}", after(0.3)) for i in range(14)] + [adapter("stuck", hang)]}
    report = await checker.run(plan, timeout=1.5)
    assert report.execution_time == pytest.approx(expected_time)
    stuck = report.models["m"].results["stuck"]
    assert stuck.status is ProbeStatus.TIMEOUT
    assert stuck.fallback is recheck
    assert report.fallback is recheck
    assert sum(r.healthy for r in report.results()) == 14


async def test_recheck_can_turn_a_concurrent_timeout_healthy(autojump_clock: trio.testing.MockClock) -> None:
    calls = 0

    async def slow_first_time() -> bool:
        nonlocal calls
        calls += 1
        await trio.sleep(2 if calls == 1 else 0.1)  # e.g. rate-limited while everything ran at once
        return True

    checker = HealthChecker(CheckerSettings(adapter_timeout=1.0))
    report = await checker.run({"m": [adapter("flaky", slow_first_time)]}, timeout=5)
    result = report.models["m"].results["flaky"]
    assert result.healthy and result.fallback
    assert "re-checked" in (report.fallback_reason or "")


async def test_no_recheck_once_the_model_budget_is_spent_keeps_the_first_verdict(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The concurrent pass spends the model's whole budget (adapter timeout ==
    # model timeout): there is nothing left for a second opinion, so the real
    # timeout (with its latency) stands, and no re-check is claimed.
    stuck = Probe(gate=trio.Event())  # never set: hangs until its deadline
    checker = HealthChecker(
        CheckerSettings(adapter_timeout=1.0, model_timeout=1.0, timeout=10, recheck_timeouts=True)
    )
    report = await checker.run({"m": [adapter("stuck", stuck), adapter("ok", after(0.2))]})
    result = report.models["m"].results["stuck"]
    assert (result.status, result.failure) == (ProbeStatus.TIMEOUT, FailureKind.TIMEOUT)
    assert result.latency_ms == pytest.approx(1000)
    assert "adapter timeout 1 s" in (result.error or "")
    assert result.fallback is False
    assert stuck.calls == 1
    assert (report.fallback, report.fallback_reason) == (False, None)
    assert report.execution_time == pytest.approx(1.0)


async def test_recheck_pass_stops_at_the_model_budget_adapter_by_adapter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 1 s concurrently, then 0.5 s of budget left: the first timed-out adapter
    # is re-checked until the model's budget ends; the second keeps its first verdict.
    first, second = Probe(gate=trio.Event()), Probe(gate=trio.Event())
    checker = HealthChecker(
        CheckerSettings(adapter_timeout=1.0, model_timeout=1.5, timeout=10, recheck_timeouts=True)
    )
    report = await checker.run({"m": [adapter("first", first), adapter("second", second)]})
    results = report.models["m"].results
    assert (first.calls, second.calls) == (2, 1)
    assert results["first"].fallback is True
    assert results["first"].failure is FailureKind.DEADLINE
    assert results["first"].latency_ms == pytest.approx(500)
    assert (results["second"].failure, results["second"].fallback) == (FailureKind.TIMEOUT, False)
    assert results["second"].latency_ms == pytest.approx(1000)
    assert report.fallback_reason == (
        "1 adapter(s) that timed out concurrently were re-checked one by one"
    )
    assert report.execution_time == pytest.approx(1.5)


async def test_whole_run_failure_falls_back_to_sequential(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken_pass(self: HealthChecker, run: object, model_deadline: float, run_deadline: float) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(HealthChecker, "_concurrent_pass", broken_pass)
    plan = {"m": [adapter("a", after(0.01)), adapter("b", after(0.01, False))]}
    with caplog.at_level(logging.WARNING):
        report = await HealthChecker().run(plan)
    assert report.fallback
    assert "Too many open files" in (report.fallback_reason or "")
    assert statuses(report) == {("m", "a"): "healthy", ("m", "b"): "unhealthy"}
    assert all(r.fallback for r in report.results())
    assert "falling back to sequential" in caplog.text


async def test_whole_run_failure_raises_when_fallback_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken_pass(self: HealthChecker, run: object, model_deadline: float, run_deadline: float) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(HealthChecker, "_concurrent_pass", broken_pass)
    checker = HealthChecker(CheckerSettings(fallback_sequential=False))
    with pytest.RaisesGroup(OSError):
        await checker.run({"m": [adapter("a", after(0.01))]})


async def test_sequential_and_concurrent_agree(autojump_clock: trio.testing.MockClock) -> None:
    plan = {
        "gpt-4": [adapter("a", after(0.2)), adapter("b", after(0.1, False)), adapter("c", hang)],
        "claude": [adapter("d", after(0.3)), adapter("e", after(0.3, ProbeOutcome.fail(FailureKind.AUTH, "401")))],
    }
    checker = HealthChecker(CheckerSettings(adapter_timeout=1, recheck_timeouts=False))
    concurrent = await checker.check_all_models_with_timeout(list(plan), plan, timeout=30)
    sequential = await checker.check_all_models_sequential(list(plan), plan, timeout=30)
    assert statuses(concurrent) == statuses(sequential)
    assert concurrent.execution_time < sequential.execution_time


async def test_sequential_reports_adapters_it_never_reached(autojump_clock: trio.testing.MockClock) -> None:
    plan = {"m": [adapter(f"p{i}", after(1)) for i in range(5)]}
    report = await HealthChecker().check_all_models_sequential(["m"], plan, timeout=2.5)
    by_status = [r.failure for r in report.models["m"].results.values()]
    assert by_status[:2] == [None, None]
    assert by_status[2] is FailureKind.DEADLINE
    assert by_status[3:] == [FailureKind.NOT_STARTED, FailureKind.NOT_STARTED]
    assert report.execution_time == pytest.approx(2.5)


async def test_original_method_names_and_aliases_work(autojump_clock: trio.testing.MockClock) -> None:
    checker = HealthChecker()
    adapters = [adapter("a", after(0.1)), adapter("b", after(0.2))]
    plan = {"gpt-4": adapters}
    one = await checker.check_model_health_with_timeout(model_name="gpt-4", adapters=adapters, timeout=10.0)
    assert one.to_dict(details=False)["status"] == "healthy"
    assert one.execution_time == pytest.approx(0.2)
    for method in (checker.check_model_health_sequential, checker._check_model_health_sequential):
        report = await method(model_name="gpt-4", adapters=adapters)
        assert report.execution_time == pytest.approx(0.3)
        assert report.timeout == checker.settings.model_timeout
    for method in (checker.check_all_models_sequential, checker._check_all_models_sequential):
        report = await method(model_names=["gpt-4"], model_adapters=plan)
        assert report.concurrent is False
        assert report.timeout == checker.settings.timeout


async def test_blocking_sync_adapter_cannot_freeze_the_loop_or_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    release = threading.Event()

    def blocks() -> bool:
        release.wait(60)  # a stuck SDK call
        return True

    try:
        checker = HealthChecker(CheckerSettings(adapter_timeout=1.0, recheck_timeouts=False))
        sync = SyncCallableAdapter("legacy", blocks, limiter=trio.CapacityLimiter(2))
        report = await checker.run({"m": [sync, adapter("async", after(0.5))]})
        results = report.models["m"].results
        assert results["legacy"].status is ProbeStatus.TIMEOUT
        assert results["async"].healthy
        assert report.execution_time == pytest.approx(1.0)
    finally:
        release.set()


async def test_sync_adapter_result_is_used() -> None:
    sync = SyncCallableAdapter("legacy", lambda: False, limiter=trio.CapacityLimiter(1))
    report = await HealthChecker().run({"m": [sync]})
    assert report.models["m"].results["legacy"].status is ProbeStatus.UNHEALTHY


async def test_log_lines_keep_their_classic_wording_and_never_show_keys(caplog: pytest.LogCaptureFixture) -> None:
    async def leaky() -> bool:
        raise RuntimeError("upstream said: invalid key sk-live-0123456789abcdef")

    plan = {"m": [adapter("openai", after(0.01)), adapter("volc", leaky)]}
    with caplog.at_level(logging.INFO, logger="router_health"):
        report = await HealthChecker().run(plan)
    assert "Checking adapter: OpenaiAdapter - openai" in caplog.text
    assert "OpenaiAdapter health check successful" in caplog.text
    assert "Health status: degraded" in caplog.text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("VolcAdapter - volc health check failed" in r.getMessage() for r in warnings)
    assert "sk-live-0123456789abcdef" not in caplog.text
    assert "sk-live-0123456789abcdef" not in str(report.to_dict())


async def test_on_result_sees_every_result_as_it_arrives(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[tuple[str, float]] = []

    def on_result(result: ProbeResult) -> None:
        seen.append((result.provider, trio.current_time()))

    start = trio.current_time()
    plan = {"m": [adapter("slow", after(0.3)), adapter("fast", after(0.1))]}
    await HealthChecker().run(plan, on_result=on_result)
    assert [(name, round(t - start, 3)) for name, t in seen] == [("fast", 0.1), ("slow", 0.3)]


async def test_results_keep_config_order() -> None:
    plan = {"m": [adapter("z", after(0.02)), adapter("a", after(0.01))], "b": [adapter("x", after(0))]}
    report = await HealthChecker().run(plan)
    assert list(report.models) == ["m", "b"]
    assert list(report.models["m"].results) == ["z", "a"]


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
async def test_invalid_timeout_is_a_clear_error(bad: float) -> None:
    with pytest.raises(ValueError, match="timeout must be a finite number"):
        await HealthChecker().run({"m": [adapter("a", after(0))]}, timeout=bad)


async def test_unknown_model_name_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="no adapters for model"):
        await HealthChecker().check_all_models_with_timeout(["nope"], {"m": []})


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="adapter_timeout"):
        CheckerSettings(adapter_timeout=-1)


def test_status_rules() -> None:
    healthy, degraded, unhealthy = HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY
    assert overall_status([healthy, healthy]) is healthy
    assert overall_status([healthy, unhealthy]) is degraded
    assert overall_status([degraded, degraded]) is degraded
    assert overall_status([unhealthy, unhealthy]) is unhealthy
