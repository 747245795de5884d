"""What probes cost, as /metrics and GET /v1/health/performance show it.

The exposition is read back through ``prometheus_client``'s parser, never
matched as text. Checks are real (a ``HealthChecker`` over in-memory adapters
that bill tokens like a paid probe) on Trio's MockClock where time matters.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from adapters import Adapter, ProbeOutcome
from service import HealthChecker, ProbeStatus
from service.api.metrics import Metrics
from service.config import CheckSchedule
from service.live.state import HealthState
from tests.support.app import get_json, make_app, serving
from tests.support.fakes import settings

MODEL = "m"
COUNTS = ("probes", "free_probes", "paid_probes", "tokens", "budget_fallbacks")


class Metered:
    """Sends the request its ``probe`` names, as HTTP adapters do: "completion" bills ``tokens``."""

    adapter_name = "MeteredAdapter"

    def __init__(self, provider: str, tokens: int | None, probe: str = "completion") -> None:
        self.provider = provider
        self.probe = probe
        self.tokens = tokens

    async def check_health(self) -> ProbeOutcome:
        return ProbeOutcome.ok(200, tokens=self.tokens if self.probe == "completion" else None)


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition: (name, labels) -> value."""
    body, _ = metrics.render(None)
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def fleet() -> list[Adapter]:
    return [Metered("paid", tokens=7), Metered("free", tokens=None, probe="models")]


# -- /metrics -------------------------------------------------------------------------------


async def test_metrics_count_probes_sent_by_kind_and_the_tokens_billed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    checker = HealthChecker(settings())
    metrics = Metrics(checker)
    for _ in range(3):
        await checker.run({MODEL: fleet()})
    requests = "router_health_probe_requests_total"
    assert sample(metrics, requests, model=MODEL, provider="paid", probe="paid") == 3
    assert sample(metrics, requests, model=MODEL, provider="paid", probe="free") == 0
    assert sample(metrics, requests, model=MODEL, provider="free", probe="free") == 3
    assert sample(metrics, requests, model=MODEL, provider="free", probe="paid") == 0
    tokens = "router_health_probe_tokens_total"
    assert sample(metrics, tokens, model=MODEL, provider="paid") == 21
    assert sample(metrics, tokens, model=MODEL, provider="free") == 0
    assert sample(metrics, "router_health_probe_tokens_last_hour") == 21
    # No budget configured: no budget gauges.
    assert sample(metrics, "router_health_probe_token_budget") is None
    assert sample(metrics, "router_health_probe_budget_exhausted") is None


async def test_results_served_without_a_probe_add_no_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    checker = HealthChecker(settings(min_interval=60.0))
    metrics = Metrics(checker)
    metrics.attach()
    plan: dict[str, list[Adapter]] = {MODEL: [Metered("paid", tokens=5)]}
    for _ in range(3):
        await checker.run(plan)
    labels = {"model": MODEL, "provider": "paid"}
    assert sample(metrics, "router_health_probe_requests_total", **labels, probe="paid") == 1
    assert sample(metrics, "router_health_probe_tokens_total", **labels) == 5
    assert sample(metrics, "router_health_probes_skipped_total", **labels, reason="cached") == 2


async def test_the_budget_gauges_follow_the_budget_and_count_the_fallbacks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    checker = HealthChecker(settings(max_probe_tokens_per_hour=10))
    metrics = Metrics(checker)
    assert sample(metrics, "router_health_probe_token_budget") == 10
    assert sample(metrics, "router_health_probe_budget_exhausted") == 0
    plan: dict[str, list[Adapter]] = {MODEL: [Metered("paid", tokens=6)]}
    for _ in range(3):  # 6, 12 tokens, then the free probe
        await checker.run(plan)
    labels = {"model": MODEL, "provider": "paid"}
    assert sample(metrics, "router_health_probe_budget_exhausted") == 1
    assert sample(metrics, "router_health_probe_budget_fallbacks_total", **labels) == 1
    assert sample(metrics, "router_health_probe_requests_total", **labels, probe="paid") == 2
    assert sample(metrics, "router_health_probe_requests_total", **labels, probe="free") == 1
    await trio.sleep(3600)
    assert sample(metrics, "router_health_probe_budget_exhausted") == 0
    assert sample(metrics, "router_health_probe_tokens_last_hour") == 0
    assert sample(metrics, "router_health_probe_tokens_total", **labels) == 12


async def test_a_probe_the_budget_withholds_moves_neither_the_up_gauge_nor_the_state(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Unlisted(Metered):  # no model list, no probe_path: no free probe (perplexity)
        lists_models = False
        probe_path = None

    checker = HealthChecker(settings(max_probe_tokens_per_hour=10))
    health = HealthState(lambda model, provider: CheckSchedule())
    metrics = Metrics(checker, health)
    metrics.attach()
    checker.result_listeners.append(health.record)
    await checker.run({MODEL: [Unlisted("unlisted", tokens=20)]})  # healthy; the budget is spent
    labels = {"model": MODEL, "provider": "unlisted"}
    assert sample(metrics, "router_health_adapter_up", **labels) == 1
    replaced = Unlisted("unlisted", tokens=20)  # a reload: the old verdict is not its own
    report = await checker.run({MODEL: [replaced]})
    withheld = report.models[MODEL].results["unlisted"]
    assert withheld.budget_fallback and withheld.status is ProbeStatus.TIMEOUT
    assert sample(metrics, "router_health_adapter_up", **labels) == 1
    state = health.get(MODEL, "unlisted")
    assert state is not None and state.reported is ProbeStatus.HEALTHY
    assert sample(metrics, "router_health_probe_requests_total", **labels, probe="paid") == 1


# -- the app ---------------------------------------------------------------------------------


def counts(**values: int) -> dict[str, int]:
    return {key: values.get(key, 0) for key in COUNTS}


async def test_performance_reports_what_probes_cost_per_adapter_and_the_budget() -> None:
    app, _ = make_app({MODEL: fleet()}, checks={"max_probe_tokens_per_hour": 100})
    async with serving(app) as client:
        status, body = await get_json(client, "/v1/health/performance?timeout=5")
    assert status == 200
    cost: dict[str, Any] = body["cost"]
    assert set(cost) == {"adapters", "total", "last_hour", "budget"}
    # Two runs (concurrent, then sequential), each probing both adapters once.
    by_provider = {entry["provider"]: entry for entry in cost["adapters"]}
    assert by_provider["paid"] == {
        "model": MODEL,
        "provider": "paid",
        "total": counts(probes=2, paid_probes=2, tokens=14),
        "last_hour": counts(probes=2, paid_probes=2, tokens=14),
    }
    assert by_provider["free"]["total"] == counts(probes=2, free_probes=2)
    assert cost["total"] == cost["last_hour"] == counts(
        probes=4, free_probes=2, paid_probes=2, tokens=14
    )
    assert cost["budget"] == {
        "max_tokens_per_hour": 100,
        "tokens_last_hour": 14,
        "exhausted": False,
        "exhausted_since": None,
        "room_in_s": None,
    }


async def test_performance_says_since_when_the_budget_is_exhausted_and_results_say_so() -> None:
    app, _ = make_app({MODEL: fleet()}, checks={"max_probe_tokens_per_hour": 7})
    async with serving(app) as client:
        _, measured = await get_json(client, "/v1/health/performance?timeout=5")
        _, checked = await get_json(client, "/v1/health/")
    budget = measured["cost"]["budget"]
    assert budget["exhausted"] is True and budget["tokens_last_hour"] == 7
    assert isinstance(budget["exhausted_since"], float)
    assert 0 < budget["room_in_s"] <= 3600
    # The concurrent run spent the budget: the sequential run's paid probe was the free one.
    assert measured["cost"]["total"]["budget_fallbacks"] == 1
    assert checked["details"][MODEL]["paid"]["budget_fallback"] is True
    assert "budget_fallback" not in checked["details"][MODEL]["free"]


async def test_performance_without_a_budget_has_a_null_budget() -> None:
    app, _ = make_app({MODEL: fleet()})
    async with serving(app) as client:
        _, body = await get_json(client, "/v1/health/performance?timeout=5")
    assert body["cost"]["budget"] is None


async def test_the_app_exposes_the_cost_metrics() -> None:
    app, _ = make_app({MODEL: fleet()}, checks={"max_probe_tokens_per_hour": 1000})
    async with serving(app) as client:
        await client.get("/v1/health/")
        response = await client.get("/metrics")
        text = await response.get_data(as_text=True)
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    paid = (("model", MODEL), ("probe", "paid"), ("provider", "paid"))
    assert values[("router_health_probe_requests_total", paid)] == 1
    assert values[("router_health_probe_tokens_total", (("model", MODEL), ("provider", "paid")))] == 7
    assert values[("router_health_probe_token_budget", ())] == 1000
    assert values[("router_health_probe_budget_exhausted", ())] == 0
