"""Routable sets (service/live/route.py): order, latency EWMA, weights, panic, ETag, events.

Pure functions over hand-made candidates and a HealthState fed by hand; the
route over HTTP is tests/api/test_route.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from adapters import FailureKind
from service.config import CheckSchedule
from service.engine.report import ProbeStatus
from service.live.route import (
    Candidate,
    RoutableSet,
    RouteEvents,
    etag_matches,
    recent_latency,
    routable_set,
    set_from_state,
    weights,
)
from service.live.state import HealthState, HistoryEntry
from tests.support.fakes import ok, probe_result

H, D, U, T, X = (
    ProbeStatus.HEALTHY,
    ProbeStatus.DEGRADED,
    ProbeStatus.UNHEALTHY,
    ProbeStatus.TIMEOUT,
    ProbeStatus.UNSUPPORTED,
)


def candidate(
    provider: str, status: ProbeStatus = H, latency: float | None = 100.0, failure: str | None = None
) -> Candidate:
    return Candidate(provider, status, latency, 1.0, failure)


def build(*candidates: Candidate, threshold: float = 50.0) -> RoutableSet:
    return routable_set("gpt-4", candidates, panic_threshold=threshold)


def units(routable: RoutableSet) -> list[int]:
    return [round(d.weight * 100) for d in routable.deployments]


def entry(status: ProbeStatus, latency: float | None, failure: str | None = None) -> HistoryEntry:
    return HistoryEntry(1_700_000_000.0, status, latency, failure)


# -- order and membership ------------------------------------------------------------------


def test_healthy_deployments_come_first_fastest_first_then_degraded_and_the_down_are_excluded() -> None:
    routable = build(
        candidate("slow", H, 300.0),
        candidate("limited", D, 50.0, "rate_limited"),
        candidate("down", U, 20.0, "http_status"),
        candidate("fast", H, 100.0),
        candidate("hung", T, None, "timeout"),
        candidate("unknown", X, None, "unsupported"),
        candidate("unmeasured", H, None),
        threshold=0,
    )
    assert routable.providers == ("fast", "slow", "unmeasured", "limited")
    assert [d.status for d in routable.deployments] == [H, H, H, D]
    assert [e.to_dict() for e in routable.excluded] == [
        {"provider": "down", "status": "unhealthy", "failure": "http_status"},
        {"provider": "hung", "status": "timeout", "failure": "timeout"},
        {"provider": "unknown", "status": "unsupported", "failure": "unsupported"},
    ]
    assert (routable.healthy, routable.total, routable.panic) == (3, 7, False)


def test_equal_latencies_keep_the_config_order() -> None:
    routable = build(candidate("b"), candidate("a"), candidate("c"))
    assert routable.providers == ("b", "a", "c")
    assert units(routable) == [34, 33, 33]


def test_latencies_whose_shares_round_alike_keep_the_config_order() -> None:
    # 1/101 : 1/100 is 49.75 : 50.25 hundredths, both 0.50: noise must not swap them.
    routable = build(candidate("a", H, 101.0), candidate("b", H, 100.0))
    assert routable.providers == ("a", "b") and units(routable) == [50, 50]
    routable = build(candidate("a", H, 103.0), candidate("b", H, 100.0))
    assert routable.providers == ("b", "a") and units(routable) == [51, 49]


def test_degraded_deployments_keep_the_config_order_whatever_their_latency() -> None:
    routable = build(candidate("a", D, 300.0), candidate("b", D, 10.0), threshold=0)
    assert routable.providers == ("a", "b")


# -- recent latency --------------------------------------------------------------------------


def test_recent_latency_is_an_ewma_of_the_clean_answers_oldest_first() -> None:
    history = [entry(H, 100.0), entry(H, 200.0), entry(D, 300.0)]
    # 100 -> 100 + 0.3 * (200 - 100) = 130 -> 130 + 0.3 * (300 - 130) = 181
    assert recent_latency(history) == pytest.approx(181.0)


def test_failures_and_timeouts_do_not_count_in_the_recent_latency() -> None:
    history = [
        entry(H, 100.0),
        entry(T, 5000.0, "timeout"),
        entry(D, 3.0, "rate_limited"),
        entry(U, 40.0, "http_status"),
        entry(H, None),
        entry(H, float("nan")),
    ]
    assert recent_latency(history) == 100.0
    assert recent_latency([entry(T, 5000.0, "timeout")]) is None
    assert recent_latency([]) is None


# -- weights -----------------------------------------------------------------------------------


def test_healthy_weights_are_inversely_proportional_to_latency() -> None:
    routable = build(candidate("a", H, 100.0), candidate("b", H, 300.0))
    assert [d.weight for d in routable.deployments] == [0.75, 0.25]


def test_degraded_deployments_share_a_fixed_tenth_beside_healthy_ones() -> None:
    routable = build(
        candidate("a", H, 100.0), candidate("b", H, 300.0),
        candidate("c", D, 10.0), candidate("d", D, 20.0),
    )
    # Healthy: 0.9 split 3:1 (67.5, 22.5); degraded: 0.1 split evenly.
    assert units(routable) == [68, 22, 5, 5]


def test_without_healthy_deployments_the_degraded_share_everything_evenly() -> None:
    routable = build(candidate("a", D), candidate("b", D), threshold=0)
    assert units(routable) == [50, 50]


def test_weights_are_whole_hundredths_adding_up_to_one() -> None:
    for shares in ([1, 1, 1], [0.1, 0.2, 0.7], [1 / 7] * 7, [5, 3, 1, 1e-9], [1.0] * 100):
        result = weights(shares)
        assert sum(round(w * 100) for w in result) == 100
        assert all(round(w * 100) == w * 100 or abs(round(w * 100) - w * 100) < 1e-9
                   for w in result)


def test_a_returned_deployment_never_gets_a_weight_of_zero() -> None:
    routable = build(candidate("fast", H, 1.0), candidate("slow", H, 5000.0))
    assert units(routable) == [99, 1]
    assert weights([1.0] * 101).count(0.0) == 1  # past 100 there are not enough hundredths
    assert weights([1.0, 1e-12, 1e-12]) == [0.98, 0.01, 0.01]


def test_a_zero_latency_does_not_take_every_share() -> None:
    routable = build(candidate("a", H, 0.0), candidate("b", H, 1.0))
    assert units(routable) == [50, 50]


# -- panic --------------------------------------------------------------------------------------


def test_below_the_threshold_every_deployment_is_returned_evenly_weighted() -> None:
    routable = build(
        candidate("down", U, None, "http_status"),
        candidate("unknown", X, None, "unsupported"),
        candidate("slow", D, 400.0),
        candidate("ok", H, 100.0),
        threshold=50,
    )
    assert routable.panic
    assert routable.providers == ("ok", "slow", "unknown", "down")
    assert units(routable) == [25, 25, 25, 25]
    assert routable.excluded == ()
    assert routable.to_dict("background")["deployments"][3] == {
        "provider": "down", "status": "unhealthy", "weight": 0.25, "latency_ms": None,
        "age_s": 1.0,
    }


def test_exactly_the_threshold_healthy_is_not_panic() -> None:
    half = [candidate("a", H), candidate("b", U, failure="http_status")]
    assert not build(*half, threshold=50).panic
    assert build(*half, threshold=50.1).panic
    assert not build(candidate("a", H), threshold=100).panic
    assert build(candidate("a", H), candidate("b", D), threshold=100).panic


def test_a_threshold_of_zero_never_panics_even_with_nothing_healthy() -> None:
    routable = build(candidate("a", U, failure="http_status"), threshold=0)
    assert not routable.panic
    assert routable.deployments == ()
    assert routable.to_dict("live")["deployments"] == []


def test_with_nothing_healthy_the_default_threshold_returns_everything() -> None:
    routable = build(candidate("a", T, None, "timeout"), candidate("b", U, None, "http_status"))
    assert routable.panic and routable.providers == ("a", "b")
    assert (routable.healthy, routable.total) == (0, 2)


# -- the ETag -----------------------------------------------------------------------------------


def test_latency_and_age_alone_leave_the_etag_as_it_is() -> None:
    before = build(candidate("a", H, 100.0), candidate("b", H, 300.0))
    after = build(
        Candidate("a", H, 101.0, 9.0, None), Candidate("b", H, 302.0, 8.0, None)
    )
    assert [d.weight for d in after.deployments] == [0.75, 0.25]
    assert after.etag == before.etag
    assert before.etag.startswith('"') and before.etag.endswith('"') and len(before.etag) == 34


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param([candidate("b", H, 100.0), candidate("a", H, 300.0)], id="order"),
        pytest.param([candidate("a", H, 100.0), candidate("b", H, 200.0)], id="weights"),
        pytest.param([candidate("a", H, 100.0), candidate("b", D, 300.0)], id="status"),
        pytest.param([candidate("a", H, 100.0)], id="membership"),
    ],
)
def test_order_weights_status_or_membership_change_the_etag(changed: list[Candidate]) -> None:
    before = build(candidate("a", H, 100.0), candidate("b", H, 300.0))
    assert build(*changed).etag != before.etag


def test_panic_and_the_model_are_part_of_the_etag() -> None:
    down = [candidate("a", U, failure="http_status"), candidate("b", D)]
    assert build(*down, threshold=0).etag != build(*down, threshold=100).etag
    one = [candidate("a")]
    assert routable_set("gpt-4", one, panic_threshold=50).etag != routable_set(
        "gpt-4o", one, panic_threshold=50
    ).etag
    assert routable_set("模型/ü", one, panic_threshold=50).etag.isascii()


# -- If-None-Match ------------------------------------------------------------------------------

ETAG = '"0123abcd"'


@pytest.mark.parametrize(
    "field",
    [
        ['"0123abcd"'],
        ['W/"0123abcd"'],
        ['"x", "0123abcd"'],
        ['"x" ,\t W/"0123abcd" , '],
        [', ,"0123abcd"'],
        ['"x"', '"0123abcd"'],  # two field lines are one list
        ["*"],
        ["  *  "],
        ['"a,b", "0123abcd"'],  # a comma inside a tag is part of the tag
    ],
)
def test_if_none_match_matches_per_rfc_9110(field: list[str]) -> None:
    assert etag_matches(field, ETAG)


@pytest.mark.parametrize(
    "field",
    [
        [],
        [""],
        ['"other"'],
        ['"0123ABCD"'],  # opaque tags compare exactly
        ["0123abcd"],  # not quoted: malformed, ignored
        ['w/"0123abcd"'],  # the weak prefix is case-sensitive
        ['"0123abcd'],  # unterminated
        ['"0123abcd" "x"'],  # no comma between
        ['"0123abcd", *'],  # * only stands alone
        ['"x"junk, "0123abcd"'],  # one bad element spoils the field
        ['"0123 abcd"'],  # no spaces inside a tag
        ['W/ "0123abcd"'],
    ],
)
def test_a_field_that_does_not_match_or_is_malformed_is_no_match(field: list[str]) -> None:
    assert not etag_matches(field, ETAG)


def test_a_tag_with_a_comma_is_not_split() -> None:
    assert not etag_matches(['"0123", "abcd"'], '"0123,abcd"')
    assert etag_matches(['"0123,abcd"'], '"0123,abcd"')


# -- from the live state ------------------------------------------------------------------------


def state_with(schedule: CheckSchedule | None = None) -> HealthState:
    return HealthState(lambda model, provider: schedule or CheckSchedule(interval=10))


async def test_a_set_from_the_state_needs_every_provider_and_reads_its_history() -> None:
    health = state_with()
    health.record(probe_result(H, provider="openai", latency_ms=300.0))
    assert set_from_state(health, "gpt-4", ["openai", "azure"], panic_threshold=50) is None
    health.record(probe_result(H, provider="azure", latency_ms=200.0))
    routable = set_from_state(health, "gpt-4", ["openai", "azure"], panic_threshold=50)
    assert routable is not None and routable.providers == ("azure", "openai")
    for latency in (100.0, 100.0):  # openai's EWMA: 300 -> 240 -> 198
        health.record(probe_result(H, provider="openai", latency_ms=latency))
    routable = set_from_state(health, "gpt-4", ["openai", "azure"], panic_threshold=50)
    assert routable is not None and routable.providers == ("openai", "azure")
    assert routable.deployments[0].latency_ms == pytest.approx(198.0)


async def test_a_set_from_the_state_uses_the_reported_status_after_hysteresis() -> None:
    health = state_with(CheckSchedule(interval=10, unhealthy_threshold=2))
    health.record(probe_result(H, provider="openai"))
    health.record(probe_result(U, provider="openai", failure=FailureKind.HTTP_STATUS))
    routable = set_from_state(health, "gpt-4", ["openai"], panic_threshold=50)
    assert routable is not None and routable.providers == ("openai",)  # one blip: still healthy
    health.record(probe_result(U, provider="openai", failure=FailureKind.HTTP_STATUS))
    routable = set_from_state(health, "gpt-4", ["openai"], panic_threshold=0)
    assert routable is not None and routable.providers == ()
    assert routable.excluded[0].failure == "http_status"


# -- route events -------------------------------------------------------------------------------


class Hub:
    """What RouteEvents uses of an EventHub: whether anyone listens, and publish_route."""

    def __init__(self, subscribers: int = 1) -> None:
        self.subscribers = subscribers
        self.published: list[tuple[bool, tuple[str, ...]]] = []

    def publish_route(self, routable: RoutableSet) -> None:
        self.published.append((routable.panic, routable.providers))


def watched(hub: Hub, threshold: float = 50) -> tuple[HealthState, RouteEvents]:
    health = state_with()
    plan: dict[str, Sequence[Any]] = {"gpt-4": [ok("openai"), ok("azure")]}
    events = RouteEvents(health, plan, hub, panic_threshold=threshold)
    health.record_listeners.append(events.recorded)
    return health, events


def record(health: HealthState, provider: str, status: ProbeStatus, latency: float) -> None:
    failure = FailureKind.HTTP_STATUS if status is U else None
    health.record(probe_result(status, provider=provider, latency_ms=latency, failure=failure))


async def test_a_route_event_comes_when_the_order_or_panic_changes_not_on_every_result() -> None:
    hub = Hub()
    health, _ = watched(hub)
    record(health, "openai", H, 100.0)  # azure has no result yet: no set
    assert hub.published == []
    record(health, "azure", H, 200.0)
    assert hub.published == [(False, ("openai", "azure"))]
    record(health, "azure", H, 190.0)  # faster, still second: nothing to say
    record(health, "openai", H, 110.0)
    assert len(hub.published) == 1
    for _ in range(3):  # azure gets fast enough to lead
        record(health, "azure", H, 10.0)
    assert hub.published[-1] == (False, ("azure", "openai"))
    record(health, "openai", U, 5.0)  # 1 of 2 healthy: not below 50 %
    assert hub.published[-1:] == [(False, ("azure",))]
    record(health, "azure", U, 5.0)  # none healthy: panic, everything back
    assert hub.published[-1] == (True, ("openai", "azure"))
    record(health, "azure", U, 5.0)
    assert len(hub.published) == 4


async def test_nothing_is_computed_while_nobody_listens_and_a_new_listener_gets_the_set() -> None:
    hub = Hub(subscribers=0)
    health, events = watched(hub)
    record(health, "openai", H, 100.0)
    record(health, "azure", H, 200.0)
    assert hub.published == [] and "published=0" in repr(events)
    hub.subscribers = 1
    record(health, "openai", H, 100.0)
    assert hub.published == [(False, ("openai", "azure"))]


async def test_results_of_a_model_not_routed_are_ignored() -> None:
    hub = Hub()
    health, _ = watched(hub)
    health.record(probe_result(H, model="other", provider="openai"))
    assert hub.published == []
