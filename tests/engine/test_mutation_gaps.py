"""HealthChecker and probe-limit details a mutation-testing pass (issue 13) found untested.

Each test pins a rule of :mod:`service.engine.checker` or
:mod:`service.engine.limits` that a mutant broke without any other test of
those modules noticing: which timeout or budget a probe runs under and what
its error then says, what reaches the callbacks and the report, which keys are
redacted, how odd values from custom adapters are cleaned, and the adaptive
limits' edges. On Trio's MockClock wherever time matters.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

import pytest
import trio
import trio.testing

from adapters import CallableAdapter, FailureKind, ProbeOutcome, Secret
from service import HealthChecker, ProbeResult, ProbeStatus
from service.engine.limits import AdaptiveLimit, ProbeSlots, Signal
from tests.support.fakes import Probe, adapter, after, hang, settings

KEY = "rhtestkey-Nq4Wd7Lc2Xp9Bv6T"


class Custom:
    """A hand-written adapter: ``check_health`` returns (or raises) whatever it is given."""

    def __init__(self, provider: str, outcome: Any = None, *, timeout: Any = None,
                 api_key: Secret | None = None) -> None:
        self.provider = provider
        self.adapter_name = f"{provider.title()}Adapter"
        self.timeout = timeout
        self.api_key = api_key
        self.outcome = outcome if outcome is not None else ProbeOutcome.ok(200)
        self.calls = 0

    async def check_health(self) -> Any:
        self.calls += 1
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def only(report: Any, model: str = "m") -> ProbeResult:
    [result] = report.models[model].results.values()
    assert isinstance(result, ProbeResult)
    return result


# -- timeouts and budgets: which one applies, and what the error says -----------------------


async def test_an_adapters_own_timeout_wins_over_the_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    await trio.sleep(100)  # errors measure from the probe's start, not from zero
    checker = HealthChecker(settings(adapter_timeout=30))
    result = only(await checker.run({"m": [CallableAdapter("p", hang, timeout=0.5)]}))
    assert result.failure is FailureKind.TIMEOUT
    assert result.error == "no answer within 0.50 s (adapter timeout 0.5 s)"
    assert result.latency_ms == pytest.approx(500)


async def test_an_adapter_timeout_of_zero_means_the_default() -> None:
    result = only(await HealthChecker(settings()).run({"m": [Custom("p", timeout=0)]}))
    assert result.status is ProbeStatus.HEALTHY


@pytest.mark.parametrize(
    ("run_timeout", "model_timeout", "error"),
    [
        (60, 1, "no answer within 1.00 s (the model's budget)"),
        (2, 60, "no answer within 2.00 s (the run's deadline)"),
    ],
    ids=["model-budget", "run-deadline"],
)
async def test_a_probe_cut_by_a_budget_says_which_one(
    autojump_clock: trio.testing.MockClock, run_timeout: float, model_timeout: float, error: str
) -> None:
    await trio.sleep(100)
    checker = HealthChecker(settings(adapter_timeout=30))
    report = await checker.run(
        {"m": [adapter("p", hang)]}, timeout=run_timeout, model_timeout=model_timeout
    )
    result = only(report)
    assert (result.failure, result.error) == (FailureKind.DEADLINE, error)


async def test_a_probe_starved_of_a_slot_says_so_and_a_queued_one_reports_its_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    await trio.sleep(100)
    checker = HealthChecker(settings(adapter_timeout=10, provider_max_concurrent={"p": 1}))
    # One slot for provider p, listed under two models: one probe waits for the other.
    queued = await checker.run({"m1": [adapter("p", after(2))], "m2": [adapter("p", after(2))]})
    assert sorted(r.queued_ms or 0.0 for r in queued.results()) == [0.0, pytest.approx(2000)]
    starved = await checker.run({"m1": [adapter("p", hang)], "m2": [adapter("p", hang)]})
    errors = {r.failure: r.error for r in starved.results()}
    assert errors[FailureKind.RESOURCE] == (
        "no probe slot free within 10.00 s (adapter timeout 10 s); "
        "queued behind max_concurrent_probes / the provider's max_concurrent"
    )


async def test_the_v1_methods_pass_their_timeout_model_and_callback_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    checker = HealthChecker(settings(adapter_timeout=30))
    plan = {"m": [adapter("p", hang)]}
    seen: list[str] = []
    all_models = await checker.check_all_models_with_timeout(["m"], plan, timeout=7)
    assert all_models.timeout == 7
    await checker.check_all_models_sequential(["m"], plan, timeout=1, on_result=lambda r: seen.append("all"))
    concurrent = await checker.check_model_health_with_timeout(
        "m", plan["m"], 2, on_result=lambda r: seen.append("one")
    )
    sequential = await checker.check_model_health_sequential(
        "m", plan["m"], 2, on_result=lambda r: seen.append("one")
    )
    for one in (concurrent, sequential):
        result = one.model.results["p"]
        assert one.model.name == "m"
        assert result.failure is FailureKind.DEADLINE
        assert result.latency_ms == pytest.approx(2000)
    assert (concurrent.concurrent, sequential.concurrent) == (True, False)
    assert seen == ["all", "one", "one"]


async def test_probe_one_honours_its_timeout_and_names_a_bad_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    checker = HealthChecker(settings(adapter_timeout=30))
    result = await checker.probe_one("m", adapter("p", hang), timeout=1)
    assert result.failure is FailureKind.DEADLINE
    assert result.latency_ms == pytest.approx(1000)
    with pytest.raises(ValueError, match=r"^timeout must be"):
        await checker.probe_one("m", adapter("p", hang), timeout=0)


async def test_run_honours_its_model_timeout(autojump_clock: trio.testing.MockClock) -> None:
    checker = HealthChecker(settings(adapter_timeout=30, model_timeout=60))
    result = only(await checker.run({"m": [adapter("p", hang)]}, model_timeout=1))
    assert result.failure is FailureKind.DEADLINE
    assert result.latency_ms == pytest.approx(1000)


async def test_a_fallback_probe_without_budget_left_is_marked_fallback(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def slow_broken_pass(self: HealthChecker, run: object, model_deadline: float,
                               run_deadline: float) -> None:
        await trio.sleep(100)  # past the run's deadline, then the machinery fails
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(HealthChecker, "_concurrent_pass", slow_broken_pass)
    result = only(await HealthChecker(settings()).run({"m": [adapter("p", hang)]}, timeout=10))
    assert result.failure is FailureKind.NOT_STARTED and result.fallback is True
    assert result.adapter == "PAdapter"


async def test_an_adapter_that_never_started_is_named_and_not_a_fallback(
    autojump_clock: trio.testing.MockClock,
) -> None:
    plan = {"m": [adapter("a", after(2)), adapter("b", after(1))]}
    report = await HealthChecker(settings()).run(plan, concurrent=False, timeout=1.5)
    never = report.models["m"].results["b"]
    assert never.failure is FailureKind.NOT_STARTED
    assert (never.adapter, never.fallback) == ("BAdapter", False)


# -- what a run reports, and to whom -------------------------------------------------------


async def test_a_report_carries_its_run_id_time_and_names(
    autojump_clock: trio.testing.MockClock,
) -> None:
    before = time.time()
    plan = {"m": [adapter("p", after(0)), adapter("q", hang)]}  # an answer and a timeout
    report = await HealthChecker(settings(adapter_timeout=1)).run(plan)
    assert re.fullmatch(r"[0-9a-f]{12}", report.run_id)
    assert before <= report.timestamp <= time.time()
    assert report.models["m"].name == "m"
    for result in report.results():
        assert result.adapter == f"{result.provider.title()}Adapter"
        assert isinstance(result.checked_at, float) and result.checked_at >= before


async def test_listeners_get_every_result_and_each_run_with_its_strategy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    checker = HealthChecker(settings())
    results: list[str] = []
    runs: list[str] = []
    checker.result_listeners.append(lambda r: results.append(r.provider))
    checker.run_listeners.append(lambda report, strategy: runs.append(strategy))
    plan = {"m": [adapter("p", after(0))]}
    await checker.run(plan)
    await checker.run(plan, concurrent=False)
    own: list[str] = []
    await checker.probe_one("m", adapter("q", after(0)), on_result=lambda r: own.append(r.provider))
    assert results == ["p", "p", "q"] and own == ["q"]
    assert runs == ["concurrent", "sequential"]


async def test_sequential_runs_and_their_results_are_no_fallback() -> None:
    report = await HealthChecker(settings()).run({"m": [adapter("p", after(0))]}, concurrent=False)
    assert not report.fallback and not any(r.fallback for r in report.results())


async def test_in_flight_counts_probes_sent_and_not_answered() -> None:
    checker = HealthChecker(settings())
    assert checker.in_flight == 0
    gate = trio.Event()
    plan = {"m": [adapter("a", Probe(gate=gate)), adapter("b", Probe(gate=gate))]}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(checker.run, plan)
        await trio.testing.wait_all_tasks_blocked()
        assert checker.in_flight == 2
        gate.set()
    assert checker.in_flight == 0


async def test_a_probe_cancelled_after_it_went_out_is_counted_for_its_model() -> None:
    checker = HealthChecker(settings())
    probe = Probe(gate=trio.Event())  # never answers
    async with trio.open_nursery() as nursery:
        nursery.start_soon(checker.run, {"m": [adapter("p", probe)]})
        await probe.entered.wait()
        nursery.cancel_scope.cancel()  # the caller hangs up
    assert [(c.model, c.provider, c.total.free_probes) for c in checker.cost.adapters()] == [
        ("m", "p", 1)
    ]


async def test_a_wildcards_listed_models_reach_its_result() -> None:
    lister = Custom("p", ProbeOutcome.ok(200, listed=("gpt-4o", "gpt-4o-mini")))
    result = only(await HealthChecker(settings()).run({"m": [lister]}))
    assert result.listed_models == ("gpt-4o", "gpt-4o-mini")


async def test_the_recheck_reason_counts_every_adapter_rechecked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    checker = HealthChecker(settings(adapter_timeout=1, recheck_timeouts=True))
    report = await checker.run({"m": [adapter("a", hang), adapter("b", hang)]})
    assert report.fallback_reason == (
        "2 adapter(s) that timed out concurrently were re-checked one by one"
    )


async def test_the_v1_methods_serve_recent_results_unless_told_not_to() -> None:
    checker = HealthChecker(settings(min_interval=60))
    probe = Probe()
    plan = {"m": [adapter("p", probe)]}
    await checker.check_all_models_with_timeout(["m"], plan)
    await checker.check_all_models_with_timeout(["m"], plan)
    await checker.check_all_models_sequential(["m"], plan)
    await checker.probe_one("m", plan["m"][0])
    assert probe.calls == 1  # min_interval served the rest
    await checker.check_all_models_with_timeout(["m"], plan, use_cache=False)
    await checker.check_all_models_sequential(["m"], plan, use_cache=False)
    await checker.probe_one("m", plan["m"][0], use_cache=False)
    assert probe.calls == 4


# -- errors: their text, and the keys redacted from it -------------------------------------


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (RuntimeError("boom"), "RuntimeError: boom"),
        (RuntimeError(), "RuntimeError: RuntimeError"),
        (RuntimeError(f"bad key {KEY}"), "RuntimeError: bad key ***"),
    ],
    ids=["message", "no-message", "known-key"],
)
async def test_an_exception_is_described_by_its_type_and_message(
    error: Exception, shown: str
) -> None:
    checker = HealthChecker(settings())
    checker.add_secrets([Secret(KEY)])
    for probe in (checker.run({"m": [Custom("p", error)]}),
                  checker.run({"m": [Custom("p", error)]}, concurrent=False)):
        result = only(await probe)
        assert (result.failure, result.error) == (FailureKind.EXCEPTION, shown)
    single = await checker.probe_one("m", Custom("p", error))
    assert single.error == shown


async def test_a_base_exception_group_from_an_adapter_is_only_its_failure() -> None:
    class Odd(BaseException):
        pass

    group = BaseExceptionGroup("odd", [Odd("not an Exception")])
    result = only(await HealthChecker(settings()).run({"m": [Custom("p", group)]}))
    assert result.failure is FailureKind.EXCEPTION


async def test_an_adapters_error_is_redacted_of_keys_other_adapters_in_the_run_hold() -> None:
    holder = Custom("holder", api_key=Secret(KEY))
    quoting = Custom("quoting", ProbeOutcome.fail(FailureKind.HTTP_STATUS, f"upstream quoted {KEY}"))
    report = await HealthChecker(settings()).run({"m": [holder, quoting]})
    assert report.models["m"].results["quoting"].error == "upstream quoted ***"


async def test_a_fallback_reason_lists_three_failures_counts_the_rest_and_hides_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures: list[Exception] = []

    async def broken_pass(self: HealthChecker, run: object, model_deadline: float,
                          run_deadline: float) -> None:
        raise ExceptionGroup("machinery", failures)

    monkeypatch.setattr(HealthChecker, "_concurrent_pass", broken_pass)
    checker = HealthChecker(settings())
    checker.add_secrets([KEY])
    plan = {"m": [adapter("p", after(0))]}
    failures[:] = [OSError(f"key {KEY}"), ValueError(), KeyError("k"), RuntimeError("d")]
    report = await checker.run(plan)
    assert report.fallback_reason == (
        "concurrent run failed (OSError: key ***; ValueError; KeyError: 'k' (+1 more)); "
        "finished sequentially"
    )
    failures[:] = [OSError("a"), ValueError("b"), KeyError("c")]
    report = await checker.run(plan)
    assert report.fallback_reason == (
        "concurrent run failed (OSError: a; ValueError: b; KeyError: 'c'); finished sequentially"
    )


async def test_a_wrong_return_type_is_an_exception_failure() -> None:
    result = only(await HealthChecker(settings()).run({"m": [Custom("p", "yes")]}))
    assert result.failure is FailureKind.EXCEPTION
    assert result.error == "check_health() returned str, expected ProbeOutcome"


@pytest.mark.parametrize(
    ("retry_after", "kept"),
    [
        (30.0, 30.0), (0, 0.0), (0.5, 0.5),
        (-1, None), (math.inf, None), (math.nan, None), (True, None), ("5", None),
    ],
    ids=["seconds", "zero", "half", "negative", "inf", "nan", "bool", "str"],
)
async def test_an_odd_retry_after_from_a_custom_adapter_is_dropped(
    retry_after: Any, kept: float | None
) -> None:
    outcome = ProbeOutcome(False, http_status=429, error="slow down",
                           failure=FailureKind.RATE_LIMITED, retry_after=retry_after)
    result = only(await HealthChecker(settings()).run({"m": [Custom("p", outcome)]}))
    assert result.retry_after == kept


async def test_plan_errors_say_what_is_wrong() -> None:
    plan = {"m": [adapter("p", after(0))]}
    checker = HealthChecker(settings())
    with pytest.raises(TypeError) as not_a_list:
        await checker.check_all_models_with_timeout("m", plan)
    assert str(not_a_list.value) == "model_names must be a sequence of names, not a single string"
    with pytest.raises(KeyError) as unknown:
        await checker.check_all_models_with_timeout(["a", "b"], plan)
    assert unknown.value.args == ("no adapters for model(s) 'a', 'b'",)


# -- transient kinds, Retry-After holds and adaptive feedback ------------------------------


async def test_transient_kinds_are_looked_up_per_model_and_provider() -> None:
    checker = HealthChecker(settings(adapter_transient={("m", "busy"): frozenset({"rate_limited"})}))
    refusal = ProbeOutcome.fail(FailureKind.RATE_LIMITED, "HTTP 429", http_status=429)
    report = await checker.run({"m": [Custom("busy", refusal), Custom("other", refusal)]})
    results = report.models["m"].results
    assert results["busy"].status is ProbeStatus.DEGRADED
    assert results["other"].status is ProbeStatus.UNHEALTHY


async def test_a_503_with_retry_after_holds_the_adapter() -> None:
    overloaded = Custom("p", ProbeOutcome.fail(
        FailureKind.HTTP_STATUS, "HTTP 503", http_status=503, retry_after=30))
    checker = HealthChecker(settings())
    await checker.probe_one("m", overloaded)
    held = await checker.probe_one("m", overloaded, use_cache=False)  # a hold is no cache
    assert overloaded.calls == 1 and held.http_status == 503


async def test_unhealthy_answers_count_as_answers_for_the_adaptive_limit() -> None:
    checker = HealthChecker(settings(adaptive_concurrency=True))
    failing = Custom("p", ProbeOutcome.fail(FailureKind.HTTP_STATUS, "HTTP 500", http_status=500))
    limit = checker.slots.adaptive_limit("p")
    assert limit is not None and limit.limit == 4
    for _ in range(4):
        await checker.probe_one("m", failing)
    assert limit.limit == 8  # slow start doubled: four answers at a limit of four


# -- the limits themselves -----------------------------------------------------------------


async def test_slow_start_doubles_after_exactly_a_full_round() -> None:
    limit = AdaptiveLimit(trio.CapacityLimiter(32), ceiling=32, name="provider 'p'")
    granted = trio.current_time()
    for _ in range(3):
        limit.feedback(Signal.ANSWERED, granted)
    assert limit.limit == 4
    limit.feedback(Signal.ANSWERED, granted)
    assert limit.limit == 8


async def test_a_refusal_lowers_the_good_level_below_the_refused_limit() -> None:
    limit = AdaptiveLimit(trio.CapacityLimiter(8), ceiling=8, name="provider 'p'", initial=8)
    granted = trio.current_time()
    for _ in range(8):
        limit.feedback(Signal.ANSWERED, granted)
    assert limit.good == 8
    limit.feedback(Signal.REFUSED, trio.current_time())
    assert (limit.bad, limit.good) == (8, 7)


async def test_a_floor_equal_to_the_ceiling_and_a_ceiling_of_one_are_allowed() -> None:
    fixed = AdaptiveLimit(trio.CapacityLimiter(2), ceiling=2, name="p", floor=2)
    assert fixed.limit == 2
    slots = ProbeSlots(adaptive=True, adaptive_ceiling=1)
    assert slots.provider_limiter("p") is not None
    with pytest.raises(ValueError, match="adaptive_ceiling must be >= 1, got 0"):
        ProbeSlots(adaptive=True, adaptive_ceiling=0)


async def test_slots_and_limits_describe_themselves() -> None:
    assert repr(ProbeSlots()) == "ProbeSlots(global=unlimited, provider_caps={}, adaptive=False)"
    slots = ProbeSlots(max_concurrent_probes=4, provider_caps={"p": 2}, adaptive=True)
    assert repr(slots) == "ProbeSlots(global=4, provider_caps={'p': 2}, adaptive=True)"
    # Adaptive limits default to a ceiling of 32 and start at 4.
    assert repr(ProbeSlots(adaptive=True).adaptive_limit("q")) == (
        "AdaptiveLimit(\"provider 'q'\", limit=4, ceiling=32)"
    )
