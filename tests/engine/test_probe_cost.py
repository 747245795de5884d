"""What probes cost (service.engine.cost): probes and tokens counted, and the hourly token budget.

Checker-level tests run on Trio's MockClock with in-memory adapters: the hour
slides by jumping the clock, never by sleeping. The free twin is checked over
loopback against the simulator (no billed call reaches it), and the
``check`` command is run as a real process.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from adapters import Adapter, FailureKind, ProbeOutcome
from service import AdapterManager, ConfigError, HealthChecker, HealthReport, parse_config
from service.cli import cost_summary
from service.config import dump_toml
from service.engine.cache import says_about_provider
from service.engine.cost import (
    WINDOW_SECONDS,
    CostCounts,
    ProbeCosts,
    free_twin,
    has_free_probe,
)
from service.engine.report import ProbeResult
from service.testing.simulator import SimProvider, Simulator
from service.testing.simulator.fleets import demo_providers
from service.testing.simulator.vertex import service_account_info
from tests.support.cli import run_cli
from tests.support.fakes import Probe, adapter, settings

MODEL = "m"

# -- helpers -------------------------------------------------------------------------------


class Metered:
    """An adapter that sends the request its ``probe`` names, as HTTP adapters do.

    ``"completion"`` answers billed ``tokens``; any other probe is free. Every
    call is appended to ``sent``, which a free twin (a shallow copy) shares.
    """

    adapter_name = "MeteredAdapter"

    def __init__(self, provider: str, tokens: int | None, probe: str = "completion") -> None:
        self.provider = provider
        self.probe = probe
        self.tokens = tokens
        self.sent: list[str] = []
        self.gate: trio.Event | None = None  # when set: every call waits for it

    async def check_health(self) -> ProbeOutcome:
        self.sent.append(self.probe)
        if self.gate is not None:
            await self.gate.wait()
        return ProbeOutcome.ok(200, tokens=self.tokens if self.probe == "completion" else None)


def result_of(report: HealthReport, provider: str) -> ProbeResult:
    return report.models[MODEL].results[provider]


def total(checker: HealthChecker, provider: str) -> CostCounts:
    [cost] = [c for c in checker.cost.adapters() if c.provider == provider]
    return cost.total


def budget_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "router_health.cost"]


# -- the accounting ----------------------------------------------------------------------------


async def test_paid_probes_count_their_tokens_and_free_probes_count_none(
    autojump_clock: trio.testing.MockClock,
) -> None:
    paid, free = Metered("paid", tokens=7), Metered("free", tokens=7, probe="models")
    checker = HealthChecker(settings())
    for _ in range(3):
        await checker.run({MODEL: [paid, free]})
    assert total(checker, "paid") == CostCounts(free_probes=0, paid_probes=3, tokens=21)
    assert total(checker, "free") == CostCounts(free_probes=3, paid_probes=0, tokens=0)
    assert checker.cost.total() == CostCounts(free_probes=3, paid_probes=3, tokens=21)


async def test_tokens_a_free_probe_reports_are_never_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Lying(Metered):
        async def check_health(self) -> ProbeOutcome:
            return ProbeOutcome.ok(200, tokens=50)  # whatever its probe

    checker = HealthChecker(settings())
    await checker.run({MODEL: [Lying("free", tokens=50, probe="models")]})
    assert total(checker, "free") == CostCounts(free_probes=1, tokens=0)


async def test_code_of_your_own_is_paid_when_it_reports_billed_tokens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def billed() -> ProbeOutcome:
        return ProbeOutcome.ok(tokens=12)

    async def odd() -> ProbeOutcome:
        return ProbeOutcome.ok(tokens=-3)  # not a count: dropped, not billed

    checker = HealthChecker(settings())
    report = await checker.run(
        {MODEL: [adapter("billed", billed), adapter("odd", odd), adapter("plain", Probe([True]))]}
    )
    assert total(checker, "billed") == CostCounts(paid_probes=1, tokens=12)
    assert total(checker, "odd") == CostCounts(free_probes=1)
    assert total(checker, "plain") == CostCounts(free_probes=1)
    assert result_of(report, "billed").to_dict()["tokens"] == 12
    assert "tokens" not in result_of(report, "odd").to_dict()


async def test_results_served_from_min_interval_are_counted_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    paid = Metered("paid", tokens=5)
    checker = HealthChecker(settings(min_interval=60.0))
    reports = [await checker.run({MODEL: [paid]}) for _ in range(3)]
    assert paid.sent == ["completion"]
    assert [result_of(r, "paid").cached for r in reports] == [False, True, True]
    assert result_of(reports[2], "paid").tokens == 5  # what the probe behind it was billed
    assert total(checker, "paid") == CostCounts(paid_probes=1, tokens=5)
    assert checker.cost.last_hour() == CostCounts(paid_probes=1, tokens=5)


async def test_adapters_that_send_nothing_are_not_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def unsupported() -> ProbeOutcome:  # what type = "unsupported" answers, with no I/O
        return ProbeOutcome.fail(FailureKind.UNSUPPORTED, "unknown LiteLLM prefix")

    async def not_open() -> ProbeOutcome:
        return ProbeOutcome.fail(FailureKind.NOT_OPEN, "HTTP client not open")

    checker = HealthChecker(settings())
    await checker.run({MODEL: [adapter("unsupported", unsupported), adapter("closed", not_open)]})
    assert checker.cost.adapters() == [] and checker.cost.total() == CostCounts()


async def test_probe_one_counts_like_a_run(autojump_clock: trio.testing.MockClock) -> None:
    checker = HealthChecker(settings())
    await checker.probe_one(MODEL, Metered("paid", tokens=4))
    assert total(checker, "paid") == CostCounts(paid_probes=1, tokens=4)


async def test_a_probe_cancelled_after_it_went_out_counts_without_tokens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    paid = Metered("paid", tokens=9)
    paid.gate = trio.Event()  # never set: the probe hangs until cancelled
    checker = HealthChecker(settings())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(checker.run, {MODEL: [paid]})
        await trio.testing.wait_all_tasks_blocked()
        assert paid.sent == ["completion"]
        nursery.cancel_scope.cancel()  # the caller hangs up
    assert total(checker, "paid") == CostCounts(paid_probes=1, tokens=0)


async def test_the_last_hour_forgets_what_the_total_keeps(
    autojump_clock: trio.testing.MockClock,
) -> None:
    checker = HealthChecker(settings())
    await checker.run({MODEL: [Metered("paid", tokens=3)]})
    await trio.sleep(WINDOW_SECONDS / 2)
    await checker.run({MODEL: [Metered("paid", tokens=3)]})
    [cost] = checker.cost.adapters()
    assert cost.last_hour == cost.total == CostCounts(paid_probes=2, tokens=6)
    await trio.sleep(WINDOW_SECONDS / 2 + 60)  # an adapter's window moves in one-minute steps
    [cost] = checker.cost.adapters()
    assert cost.total == CostCounts(paid_probes=2, tokens=6)
    assert cost.last_hour == CostCounts(paid_probes=1, tokens=3)
    assert checker.cost.last_hour() == CostCounts(paid_probes=1, tokens=3)


# -- the budget ------------------------------------------------------------------------------


async def test_past_the_budget_paid_adapters_send_the_free_probe_and_say_so(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "router_health.cost")
    paid = Metered("paid", tokens=6)
    checker = HealthChecker(settings(max_probe_tokens_per_hour=10))
    reports = [await checker.run({MODEL: [paid]}) for _ in range(4)]

    # 6, then 12 tokens: the second paid probe passed the budget, so the rest are free.
    assert paid.sent == ["completion", "completion", "models", "models"]
    flags = [result_of(r, "paid").budget_fallback for r in reports]
    assert flags == [False, False, True, True]
    assert result_of(reports[2], "paid").to_dict()["budget_fallback"] is True
    assert "budget_fallback" not in result_of(reports[0], "paid").to_dict()
    assert result_of(reports[3], "paid").healthy  # the free probe's verdict
    assert total(checker, "paid") == CostCounts(
        free_probes=2, paid_probes=2, tokens=12, budget_fallbacks=2
    )
    [reached] = budget_lines(caplog)  # once, when crossed; not once per probe
    assert "budget reached: 12 tokens" in reached and "max_probe_tokens_per_hour = 10" in reached


async def test_when_the_hour_slides_past_the_spent_tokens_paid_probes_resume(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "router_health.cost")
    paid = Metered("paid", tokens=10)
    checker = HealthChecker(settings(max_probe_tokens_per_hour=10))
    start = trio.current_time()
    await checker.run({MODEL: [paid]})
    await trio.sleep(WINDOW_SECONDS - 1)
    still_spent = await checker.run({MODEL: [paid]})
    budget = checker.cost.budget()
    assert budget is not None and budget.exhausted
    assert budget.room_in_s == pytest.approx(start + WINDOW_SECONDS - trio.current_time())
    await trio.sleep(1)
    resumed = await checker.run({MODEL: [paid]})

    assert paid.sent == ["completion", "models", "completion"]
    assert result_of(still_spent, "paid").budget_fallback
    assert not result_of(resumed, "paid").budget_fallback
    # One line per change: reached, room again, and reached again by the resumed probe.
    reached, room, again = budget_lines(caplog)
    assert "budget reached" in reached and "budget reached" in again
    assert "room again: 0 of 10 tokens" in room
    assert checker.cost.last_hour().tokens == 10  # the resumed probe's


async def test_probes_in_flight_when_the_budget_is_reached_still_count(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = trio.Event()
    fleet: list[Adapter] = []
    for name in ("a", "b", "c"):
        metered = Metered(name, tokens=6)
        metered.gate = gate
        fleet.append(metered)
    checker = HealthChecker(settings(max_probe_tokens_per_hour=10))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(checker.run, {MODEL: fleet})
        await trio.testing.wait_all_tasks_blocked()  # all three sent before any answered
        gate.set()
    assert checker.cost.total() == CostCounts(paid_probes=3, tokens=18)
    budget = checker.cost.budget()
    assert budget is not None and budget.tokens_last_hour == 18 and budget.exhausted


class Unlisted(Metered):
    """An HTTP type with no model list and no ``probe_path`` (perplexity): no free probe."""

    lists_models = False
    probe_path = None


async def test_the_budget_leaves_free_adapters_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    free, plain = Metered("free", tokens=None, probe="models"), Probe([True])
    checker = HealthChecker(settings(max_probe_tokens_per_hour=10))
    for _ in range(2):
        report = await checker.run({MODEL: [free, adapter("own", plain), Metered("paid", 20)]})
    assert free.sent == ["models", "models"] and not result_of(report, "free").budget_fallback
    assert plain.calls == 2 and not result_of(report, "own").budget_fallback


async def test_past_the_budget_an_adapter_without_a_free_probe_serves_its_last_verdict(
    autojump_clock: trio.testing.MockClock,
) -> None:
    unlisted = Unlisted("unlisted", tokens=20)
    checker = HealthChecker(settings(max_probe_tokens_per_hour=10))
    await checker.run({MODEL: [unlisted]})
    await trio.sleep(30)
    report = await checker.run({MODEL: [unlisted]})

    assert unlisted.sent == ["completion"]  # no second paid probe past the budget
    served = result_of(report, "unlisted")
    assert served.healthy and served.budget_fallback and served.tokens == 20
    assert served.cached_age == pytest.approx(30) and not served.sent
    assert served.to_dict()["age_s"] == pytest.approx(30)
    assert total(checker, "unlisted") == CostCounts(paid_probes=1, tokens=20)


async def test_code_of_your_own_that_bills_tokens_is_withheld_past_the_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    async def billed() -> ProbeOutcome:
        nonlocal calls
        calls += 1
        return ProbeOutcome.ok(tokens=20)

    checker = HealthChecker(settings(max_probe_tokens_per_hour=10))
    own = adapter("own", billed)
    reports = [await checker.run({MODEL: [own]}) for _ in range(3)]
    assert calls == 1
    assert [result_of(r, "own").budget_fallback for r in reports] == [False, True, True]
    assert total(checker, "own") == CostCounts(paid_probes=1, tokens=20)


async def test_with_no_verdict_yet_a_withheld_probe_is_a_budget_outcome_not_a_verdict(
    autojump_clock: trio.testing.MockClock,
) -> None:
    checker = HealthChecker(settings(max_probe_tokens_per_hour=10))
    await checker.run({MODEL: [Metered("paid", tokens=20)]})  # the budget is reached
    unlisted = Unlisted("unlisted", tokens=20)
    report = await checker.run({MODEL: [unlisted]})

    assert unlisted.sent == []
    withheld = result_of(report, "unlisted")
    assert withheld.failure is FailureKind.NOT_STARTED and withheld.budget_fallback
    assert not withheld.sent and not withheld.cached
    # Like the run's own budget running out: no news about the provider, so the
    # live state and the up gauge leave it alone.
    assert not says_about_provider(withheld)
    assert withheld.error is not None
    assert "max_probe_tokens_per_hour = 10" in withheld.error
    assert "no free probe" in withheld.error and "resume in 3600 s" in withheld.error
    assert checker.cost.adapters()[-1].provider == "paid"  # nothing counted for it


async def test_a_replaced_adapter_is_not_served_the_verdict_of_the_one_it_replaced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    checker = HealthChecker(settings(max_probe_tokens_per_hour=10))
    await checker.run({MODEL: [Unlisted("unlisted", tokens=20)]})
    report = await checker.run({MODEL: [Unlisted("unlisted", tokens=20)]})  # a reload
    assert result_of(report, "unlisted").failure is FailureKind.NOT_STARTED


async def test_a_type_without_a_free_probe_no_longer_keeps_the_budget_spent_for_ever(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The review's case: perplexity (no free probe, 2 tokens a probe) beside a
    # reasoning model with a paid probe (8 tokens), a budget of 3, a run a minute.
    perplexity, o3 = Unlisted("perplexity", tokens=2), Metered("o3", tokens=8)
    plan: dict[str, list[Adapter]] = {MODEL: [perplexity, o3]}
    checker = HealthChecker(settings(max_probe_tokens_per_hour=3))
    start = trio.current_time()
    for _ in range(8):
        report = await checker.run(plan, concurrent=False)  # perplexity first: 2, then 10
        await trio.sleep(60)

    assert perplexity.sent == ["completion"]  # only before the budget was reached
    assert o3.sent == ["completion", *["models"] * 7]
    assert result_of(report, "perplexity").budget_fallback
    assert result_of(report, "perplexity").cached_age == pytest.approx(7 * 60)
    budget = checker.cost.budget()
    assert budget is not None and budget.exhausted and budget.tokens_last_hour == 10
    # The first run's tokens leave the window an hour after it: that is when, exactly.
    assert budget.room_in_s is not None
    assert budget.room_in_s == pytest.approx(start + WINDOW_SECONDS - trio.current_time())
    await trio.sleep(budget.room_in_s)
    resumed = await checker.run(plan, concurrent=False)
    assert not result_of(resumed, "perplexity").budget_fallback
    assert not result_of(resumed, "o3").budget_fallback
    assert (perplexity.sent[-1], o3.sent[-1]) == ("completion", "completion")


async def test_the_budget_state_says_since_when_it_is_exhausted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    checker = HealthChecker(settings(max_probe_tokens_per_hour=5))
    assert checker.cost.to_dict()["budget"] == {
        "max_tokens_per_hour": 5,
        "tokens_last_hour": 0,
        "exhausted": False,
        "exhausted_since": None,
        "room_in_s": None,
    }
    await checker.run({MODEL: [Metered("paid", tokens=5)]})
    budget = checker.cost.to_dict()["budget"]
    assert budget["exhausted"] is True and budget["tokens_last_hour"] == 5
    assert isinstance(budget["exhausted_since"], float)
    assert budget["room_in_s"] == pytest.approx(WINDOW_SECONDS)
    assert HealthChecker(settings()).cost.to_dict()["budget"] is None


def test_the_cost_object_lists_each_adapter_with_its_total_and_last_hour() -> None:
    async def main() -> HealthChecker:
        checker = HealthChecker(settings())
        fleet: list[Adapter] = [Metered("paid", tokens=2), Metered("free", None, "models")]
        await checker.run({MODEL: fleet}, concurrent=False)  # so "paid" is first
        return checker

    checker = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    cost = checker.cost.to_dict()  # outside Trio (a scrape from a thread): as of the last probe
    counts = {"probes": 1, "free_probes": 0, "paid_probes": 1, "tokens": 2, "budget_fallbacks": 0}
    assert cost["adapters"][0] == {
        "model": MODEL, "provider": "paid", "total": counts, "last_hour": counts,
    }
    assert [a["provider"] for a in cost["adapters"]] == ["paid", "free"]
    assert cost["total"] == cost["last_hour"] == {
        "probes": 2, "free_probes": 1, "paid_probes": 1, "tokens": 2, "budget_fallbacks": 0,
    }


def test_costs_without_a_budget_never_fall_back() -> None:
    async def main() -> None:
        costs = ProbeCosts()
        paid = Metered("paid", tokens=1_000_000)
        assert costs.probe_for(MODEL, paid) == (paid, False)

    trio.run(main)


# -- what is not a probe sent ---------------------------------------------------------------


@pytest.fixture
def no_cloud_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither Google's application default credentials nor AWS's default chain find any."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-google-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in (
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_cloud_credentials")
@pytest.mark.parametrize(
    "provider",
    [
        {"type": "vertex-ai", "model": "gemini-2.0-flash", "project": "rh-sim"},
        {"type": "bedrock", "model": "anthropic.claude-3-haiku-20240307-v1:0",
         "region": "us-east-1"},
    ],
    ids=["vertex-ai", "bedrock"],
)
async def test_a_failed_credential_lookup_is_not_a_probe_sent(provider: dict[str, str]) -> None:
    entry = {"name": "cloud", "base_url": "http://127.0.0.1:9", **provider}
    config = parse_config({"models": [{"name": MODEL, "providers": [entry]}]}, env={})
    async with AdapterManager.from_config(config) as manager:
        checker = manager.health_checker
        report = await checker.run(manager.model_adapters)
    result = result_of(report, "cloud")
    assert result.failure is FailureKind.AUTH, result.error
    assert result.latency_ms is None and not result.sent  # nothing went out to time
    assert cost_summary(checker.cost) == "probes: 0 sent (0 free, 0 paid), 0 tokens billed"


async def test_a_vertex_paid_probe_with_no_project_is_not_a_probe_sent(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    sim = Simulator([SimProvider("gcp", "vertex-ai", None, ["gemini-2.0-flash"])])
    await nursery.start(sim.serve)
    credentials = tmp_path / "service-account.json"
    info = service_account_info(f"{sim.root_url}/gcp/token")
    del info["project_id"]  # the credentials name no project, nor does the config
    credentials.write_text(json.dumps(info))
    entry = {
        "name": "gcp", "type": "vertex-ai", "base_url": sim.base_url("gcp"),
        "model": "gemini-2.0-flash", "credentials_file": str(credentials), "probe": "completion",
    }
    config = parse_config({"models": [{"name": MODEL, "providers": [entry]}]}, env={})
    async with AdapterManager.from_config(config) as manager:
        checker = manager.health_checker
        report = await checker.run(manager.model_adapters)
    result = result_of(report, "gcp")
    assert result.error is not None and "no Google Cloud project" in result.error
    assert sim.stats("gcp").completion_probes == 0
    assert result.latency_ms is None and checker.cost.total() == CostCounts()


# -- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "checks.max_probe_tokens_per_hour: must be at least 1 (tokens paid probes may be "
            "billed per sliding hour; leave it out for no budget), got 0"),
        (-5, "checks.max_probe_tokens_per_hour: must be at least 1"),
        (1.5, "checks.max_probe_tokens_per_hour: must be an integer, got 1.5"),
        (True, "checks.max_probe_tokens_per_hour: must be an integer, got True"),
        ("1000", "checks.max_probe_tokens_per_hour: must be an integer, got '1000'"),
    ],
)
def test_a_bad_budget_is_a_precise_config_error(value: object, message: str) -> None:
    document = {
        "checks": {"max_probe_tokens_per_hour": value},
        "models": [{"name": MODEL, "providers": [
            {"name": "p", "type": "ollama", "base_url": "http://127.0.0.1:9", "model": "x"}
        ]}],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(document, env={})
    assert message in str(info.value)


def test_the_budget_reaches_the_checker_from_the_config() -> None:
    document = {
        "checks": {"max_probe_tokens_per_hour": 2500},
        "models": [{"name": MODEL, "providers": [
            {"name": "p", "type": "ollama", "base_url": "http://127.0.0.1:9", "model": "x"}
        ]}],
    }
    manager = AdapterManager.from_config(parse_config(document, env={}))
    assert manager.health_checker.cost.max_tokens_per_hour == 2500


# -- over the wire -------------------------------------------------------------------------------


#: Providers with no free probe (no model list): past the budget they keep the paid one.
NO_FREE_PROBE = ("perplexity",)


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    # Every wire format of the demo (all answering), native Cohere and two registry kinds.
    return [
        *demo_providers()[:6],
        SimProvider("cohere", "cohere", "sk-sim-cohere", ["command-r"]),
        SimProvider("mistral", "mistral", "sk-sim-mistral", ["mistral-small-latest"]),
        SimProvider("groq", "groq", "sk-sim-groq", ["llama-3.1-8b-instant"]),
        SimProvider("perplexity", "perplexity", "sk-sim-perplexity", ["sonar"]),
    ]


async def test_a_free_twin_sends_no_billed_call_for_any_adapter_type(sim: Simulator) -> None:
    entries = [{**entry, "probe": "completion"} for entry in sim.provider_entries()]
    config = parse_config({"models": [{"name": MODEL, "providers": entries}]}, env={})
    async with AdapterManager.from_config(config) as manager:
        for paid in manager.get_model_adapters(MODEL):
            if paid.provider in NO_FREE_PROBE:
                assert not has_free_probe(paid)
                continue
            twin = free_twin(paid)
            outcome = await twin.check_health()
            stats = sim.stats(paid.provider)
            assert outcome.healthy, (paid.provider, outcome)
            assert (stats.list_probes, stats.completion_probes) == (1, 0), paid.provider
            assert getattr(paid, "probe", None) == "completion"  # the original is untouched
            await paid.check_health()
            assert sim.stats(paid.provider).completion_probes == 1, paid.provider


async def test_end_to_end_a_small_budget_turns_billed_probes_into_free_ones(
    sim: Simulator,
) -> None:
    entries = [{**entry, "probe": "completion"} for entry in sim.provider_entries()]
    config = parse_config(
        {
            "checks": {"max_probe_tokens_per_hour": 1, "recheck_timeouts": False},
            "models": [{"name": MODEL, "providers": entries}],
        },
        env={},
    )
    async with AdapterManager.from_config(config) as manager:
        checker = manager.health_checker
        first = await checker.run(manager.model_adapters)
        second = await checker.run(manager.model_adapters)
    names = [entry["name"] for entry in entries if entry["name"] not in NO_FREE_PROBE]
    # Every adapter answers its paid probe with a `usage`: what we count is what was billed.
    assert all((first.models[MODEL].results[n].tokens or 0) > 0 for n in names), first.to_dict()
    billed = checker.cost.total().tokens
    assert billed == sum(sim.stats(entry["name"]).billed_tokens for entry in entries) > 0
    assert not any(first.models[MODEL].results[n].budget_fallback for n in names)
    assert all(second.models[MODEL].results[n].budget_fallback for n in names)
    assert all(second.models[MODEL].results[n].healthy for n in names)
    assert {n: sim.stats(n).completion_probes for n in names} == dict.fromkeys(names, 1)
    # With no free probe to send instead, perplexity was not probed again: its
    # first verdict is served, with its age.
    assert sim.stats("perplexity").completion_probes == 1
    served = second.models[MODEL].results["perplexity"]
    assert served.budget_fallback and served.cached and served.healthy
    assert checker.cost.total() == CostCounts(
        free_probes=len(names),
        paid_probes=len(names) + 1,
        tokens=billed,
        budget_fallbacks=len(names),
    )


async def test_past_the_budget_modes_billed_per_request_send_no_paid_probe(
    nursery: trio.Nursery,
) -> None:
    # Images, speech, transcription and rerank answers carry no usage: 0 tokens,
    # but paid calls all the same, which the budget exists to stop.
    sim = Simulator([
        SimProvider("oai", "openai", "sk-sim-oai", ["gpt-4o-mini", "dall-e-3", "tts-1", "whisper-1"]),
        SimProvider("co", "cohere", "sk-sim-co", ["rerank-v3.5"]),
        SimProvider(
            "glm", "zhipu", "sk-sim-glm", ["cogview-3"], model_modes={"cogview-3": "image_generation"}
        ),
    ])
    await nursery.start(sim.serve)
    oai, co, glm = sim.provider_entries()
    per_request = {
        "img": {**oai, "model": "dall-e-3", "mode": "image_generation", "allow_image_probe": True},
        "tts": {**oai, "model": "tts-1", "mode": "audio_speech"},
        "stt": {**oai, "model": "whisper-1", "mode": "audio_transcription"},
        "rerank": {**co, "model": "rerank-v3.5", "mode": "rerank"},
        # zhipu lists no models: no free probe to send instead
        "glm-img": {**glm, "model": "cogview-3", "mode": "image_generation",
                    "allow_image_probe": True},
    }
    entries = [
        {**oai, "name": "chat", "model": "gpt-4o-mini", "probe": "completion"},
        *({**entry, "name": name, "probe": "completion"} for name, entry in per_request.items()),
    ]
    config = parse_config(
        {
            "checks": {"max_probe_tokens_per_hour": 1, "recheck_timeouts": False},
            "models": [{"name": MODEL, "providers": entries}],
        },
        env={},
    )
    async with AdapterManager.from_config(config) as manager:
        checker = manager.health_checker
        first = await checker.run(manager.model_adapters)
        paid_after_first = {name: sim.stats(name).completion_probes for name in ("oai", "co", "glm")}
        second = await checker.run(manager.model_adapters)

    assert all(first.models[MODEL].results[n].healthy for n in per_request), first.to_dict()
    assert all(first.models[MODEL].results[n].tokens is None for n in per_request)
    assert {name: sim.stats(name).completion_probes for name in ("oai", "co", "glm")} == (
        paid_after_first
    )
    assert all(second.models[MODEL].results[n].budget_fallback for n in per_request)
    [cost] = [c for c in checker.cost.adapters() if c.provider == "glm-img"]
    assert cost.total == CostCounts(paid_probes=1)  # a paid probe, billed 0 tokens


async def test_check_prints_what_its_probes_cost(sim: Simulator, tmp_path: Path) -> None:
    # One model per provider; perplexity (no free probe) and openai send the paid probe.
    paid = {"perplexity", "openai"}
    models = [
        {"name": e["name"], "providers": [{**e, "probe": "completion"} if e["name"] in paid else e]}
        for e in sim.provider_entries()
    ]
    config = tmp_path / "c.toml"
    config.write_text(dump_toml({"models": models}), encoding="utf-8")
    done = await run_cli("check", "--config", str(config))
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 0, done.stderr
    billed = sim.total_stats().billed_tokens
    assert billed > 0
    assert f"probes: 10 sent (8 free, 2 paid), {billed} tokens billed" in lines


def test_the_summary_line_names_the_budget_when_it_was_reached() -> None:
    async def main() -> str:
        checker = HealthChecker(settings(max_probe_tokens_per_hour=3))
        paid = Metered("paid", tokens=4)
        for _ in range(2):
            await checker.run({MODEL: [paid, Metered("free", None, "models")]})
        return cost_summary(checker.cost)

    line = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert line == (
        "probes: 4 sent (3 free, 1 paid), 4 tokens billed; 1 paid probe sent as a free one "
        "(max_probe_tokens_per_hour = 3 reached)"
    )


def test_a_free_twin_is_a_shallow_copy_sending_the_free_probe() -> None:
    paid = Metered("paid", tokens=1)
    twin = free_twin(paid)
    assert twin is not paid and isinstance(twin, Metered)
    assert (twin.probe, paid.probe) == ("models", "completion")
    assert twin.sent is paid.sent  # shared state: for an HTTP adapter, its connection
