"""In-memory adapters and probes: no sockets, no upstream.

Where time matters the tests run them on Trio's MockClock; where requests
must overlap, :class:`Probe` holds every call on a ``trio.Event`` gate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from adapters import CallableAdapter, FailureKind, ProbeOutcome
from service import CheckerSettings, ProbeResult, ProbeStatus
from service.config import CheckSchedule
from service.live.state import HealthState

Check = Callable[[], Awaitable[bool | ProbeOutcome]]


class Probe:
    """An adapter's behaviour plus a call counter; ``gate`` holds every call until set."""

    def __init__(self, outcomes: Sequence[bool] = (True,), gate: trio.Event | None = None) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.gate = gate
        self.entered = trio.Event()
        self.cancelled = trio.Event()

    async def __call__(self) -> bool:
        outcome = self.outcomes[self.calls % len(self.outcomes)]
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            try:
                await self.gate.wait()
            except trio.Cancelled:
                self.cancelled.set()
                raise
        return outcome


def adapter(provider: str, probe: Check) -> CallableAdapter:
    """``probe`` as the adapter of ``provider`` (named ``<Provider>Adapter``)."""
    return CallableAdapter(provider, probe, adapter_name=f"{provider.title()}Adapter")


def ok(provider: str) -> CallableAdapter:
    return adapter(provider, Probe([True]))


def down(provider: str) -> CallableAdapter:
    return adapter(provider, Probe([False]))


async def healthy() -> bool:
    """A check that answers healthy at once."""
    return True


async def hang() -> bool:
    """A check that never answers: only a deadline or a cancellation ends it."""
    await trio.sleep_forever()
    raise AssertionError("unreachable")


def after(seconds: float, outcome: bool | ProbeOutcome = True) -> Check:
    """A check that answers ``outcome`` after ``seconds`` (of the Trio clock)."""

    async def check() -> bool | ProbeOutcome:
        await trio.sleep(seconds)
        return outcome

    return check


def settings(**changes: Any) -> CheckerSettings:
    """Generous budgets, no re-check pass; ``changes`` on top."""
    base: dict[str, Any] = {"timeout": 60, "model_timeout": 60, "adapter_timeout": 30,
                            "recheck_timeouts": False}
    return CheckerSettings(**{**base, **changes})


def probe_result(
    status: ProbeStatus = ProbeStatus.HEALTHY,
    *,
    model: str = "gpt-4",
    provider: str = "openai",
    failure: FailureKind | None = None,
    **changes: Any,
) -> ProbeResult:
    """A ``ProbeResult`` as a checker would report it; any field can be changed."""
    fields: dict[str, Any] = {
        "model": model,
        "provider": provider,
        "adapter": "OpenaiAdapter",
        "status": status,
        "latency_ms": 12.0,
        "checked_at": 1_700_000_000.0,
        "failure": failure,
    }
    return ProbeResult(**{**fields, **changes})


def reported_for(results: list[ProbeResult], schedule: CheckSchedule) -> list[ProbeStatus]:
    """The status gpt-4/openai reports after each of ``results``, recorded in turn on ``schedule``."""
    state = HealthState(lambda model, provider: schedule)
    seen = []
    for each in results:
        state.record(each)
        current = state.get("gpt-4", "openai")
        assert current is not None
        seen.append(current.reported)
    return seen
