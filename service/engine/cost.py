"""What probes cost: probes sent (free or paid) and tokens billed, and the hourly token budget.

The checker records every probe it actually sends (:attr:`ProbeResult.sent`),
never a result served from ``min_interval``, a Retry-After hold, the router's
own traffic or a peer: each probe is counted once, however often its result
is served. Per adapter (model, provider) :class:`ProbeCosts` keeps the counts
since start and over the last hour; the fleet's last hour is also what
``[checks] max_probe_tokens_per_hour`` is measured against.

A probe is *paid* when its adapter sends its mode's cheapest real call
(``probe = "completion"``, read from the adapter's ``probe`` attribute); an
adapter without that attribute (code of your own) is paid when it reports
billed tokens. Tokens come from the answer's ``usage`` (``ProbeOutcome.tokens``)
and are only ever counted for paid probes. Modes billed per request (images,
speech, transcription, rerank) report no usage: their paid probes count as
paid probes with 0 tokens, so they never fill the budget themselves.

The budget is a sliding one-hour window of the Trio clock (so ``MockClock``
tests can move it). Once the tokens billed in that window reach the budget, no
paid probe goes out, whatever its mode (:meth:`ProbeCosts.probe_for`): an
adapter with a free probe sends that instead; one without is not probed, and
its last verdict is served, marked ``budget_fallback`` and aged like a
``min_interval`` result, or, if it has none, a ``not_started`` result that says
the budget withheld it (no news about the provider: the live state and the up
gauge ignore it). So once the budget is reached, tokens only leave the window,
and ``room_in_s`` is when enough of them have left. Probes already in flight
when the budget is reached still count, so it can be passed by at most what
they are billed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import enum
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

import trio

from adapters.base import Adapter, FailureKind

from .cache import says_about_provider
from .report import ProbeResult

__all__ = [
    "FREE_PROBE",
    "PAID_PROBE",
    "WINDOW_SECONDS",
    "AdapterCost",
    "BudgetState",
    "CostCounts",
    "ProbeCosts",
    "ProbeKind",
    "billed_tokens",
    "free_twin",
    "has_free_probe",
]

logger = logging.getLogger("router_health.cost")

#: The ``probe`` values of an adapter's free and paid requests.
FREE_PROBE: Final = "models"
PAID_PROBE: Final = "completion"
#: How far back "the last hour" and the budget look (seconds of the Trio clock).
WINDOW_SECONDS: Final = 3600.0
#: Counts within this many seconds share one step of a window (bounded memory:
#: at most an hour's worth of steps whatever the probe rate). The fleet's steps
#: are short so the budget slides almost exactly; an adapter's are a minute.
_FLEET_STEP: Final = 1.0
_ADAPTER_STEP: Final = 60.0

Key = tuple[str, str]

#: Failures of adapters that never send a request: nothing to count.
_NOTHING_SENT: Final = frozenset({FailureKind.UNSUPPORTED, FailureKind.NOT_OPEN})


class ProbeKind(enum.StrEnum):
    """Whether a probe is billed: the provider's list/metadata call, or a real call."""

    FREE = "free"
    PAID = "paid"


class _ChoosesProbe(Protocol):
    """An adapter that sends the request its ``probe`` attribute names (``HttpAdapter``)."""

    probe: str


def free_twin(adapter: Adapter) -> Adapter:
    """``adapter`` sending its free probe: a shallow copy with ``probe = "models"``.

    A copy rather than a second adapter built from the config: it shares the
    original's connection (a paid adapter does not cost a second socket), key
    and options, and adapters read ``probe`` when they build each request. It
    is made for each probe, so it always carries the connection bound now.
    """
    twin = copy.copy(adapter)
    cast(_ChoosesProbe, twin).probe = FREE_PROBE
    return twin


def has_free_probe(adapter: Adapter) -> bool:
    """Whether ``adapter`` has a free probe to fall back to.

    An HTTP type that cannot list models (``lists_models`` false) has one only
    with a ``probe_path``; without, its paid probe is all it can send.
    """
    return bool(getattr(adapter, "lists_models", True) or getattr(adapter, "probe_path", None))


def billed_tokens(value: object) -> int | None:
    """``value`` if it can be a count of billed tokens (an int >= 0), else None.

    Adapters of your own may report anything; an odd value must not reach the
    budget, a metric or the JSON.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _declared_probe(adapter: Adapter) -> str | None:
    probe = getattr(adapter, "probe", None)
    return probe if isinstance(probe, str) else None


@dataclass(frozen=True, slots=True)
class CostCounts:
    """Probes sent and tokens billed over some span (since start, or the last hour)."""

    free_probes: int = 0
    paid_probes: int = 0
    tokens: int = 0
    #: Of ``free_probes``: sent instead of a paid probe because the budget was reached.
    budget_fallbacks: int = 0

    @property
    def probes(self) -> int:
        return self.free_probes + self.paid_probes

    def __add__(self, other: CostCounts) -> CostCounts:
        return CostCounts(
            self.free_probes + other.free_probes,
            self.paid_probes + other.paid_probes,
            self.tokens + other.tokens,
            self.budget_fallbacks + other.budget_fallbacks,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "probes": self.probes,
            "free_probes": self.free_probes,
            "paid_probes": self.paid_probes,
            "tokens": self.tokens,
            "budget_fallbacks": self.budget_fallbacks,
        }


@dataclass(frozen=True, slots=True)
class AdapterCost:
    """One adapter's counts: since start and over the last hour."""

    model: str
    provider: str
    total: CostCounts
    last_hour: CostCounts

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "provider": self.provider,
            "total": self.total.to_dict(),
            "last_hour": self.last_hour.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class BudgetState:
    """``[checks] max_probe_tokens_per_hour`` as of now."""

    max_tokens_per_hour: int
    tokens_last_hour: int
    exhausted: bool
    #: Unix time the budget was reached (None while it has room).
    exhausted_since: float | None
    #: Seconds until the window has room again (None while it has room).
    room_in_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_tokens_per_hour": self.max_tokens_per_hour,
            "tokens_last_hour": self.tokens_last_hour,
            "exhausted": self.exhausted,
            "exhausted_since": None
            if self.exhausted_since is None
            else round(self.exhausted_since, 3),
            "room_in_s": None if self.room_in_s is None else round(self.room_in_s, 3),
        }


@dataclass(slots=True)
class _Step:
    """Counts of the probes recorded from ``first`` to ``last`` (Trio clock)."""

    first: float
    last: float
    free: int = 0
    paid: int = 0
    tokens: int = 0
    fallbacks: int = 0


class _Window:
    """Counts over the last hour, in steps of at most ``step`` seconds.

    A step leaves the window an hour after its *last* probe: counts leave at
    most ``step`` seconds late, never early, so the budget never under-counts.
    """

    def __init__(self, step: float) -> None:
        self.step = step
        self._steps: deque[_Step] = deque()

    def add(self, now: float, kind: ProbeKind, tokens: int, *, fallback: bool) -> None:
        if self._steps and now - self._steps[-1].first < self.step:
            current = self._steps[-1]
            current.last = max(current.last, now)
        else:
            current = _Step(now, now)
            self._steps.append(current)
        if kind is ProbeKind.PAID:
            current.paid += 1
        else:
            current.free += 1
        current.tokens += tokens
        current.fallbacks += fallback

    def _expire(self, now: float) -> None:
        while self._steps and self._steps[0].last + WINDOW_SECONDS <= now:
            self._steps.popleft()

    def counts(self, now: float) -> CostCounts:
        self._expire(now)
        steps = self._steps
        return CostCounts(
            free_probes=sum(s.free for s in steps),
            paid_probes=sum(s.paid for s in steps),
            tokens=sum(s.tokens for s in steps),
            budget_fallbacks=sum(s.fallbacks for s in steps),
        )

    def tokens(self, now: float) -> int:
        self._expire(now)
        return sum(s.tokens for s in self._steps)

    def room_at(self, now: float, limit: int) -> float:
        """The Trio time the tokens in the window drop below ``limit`` (now if they are)."""
        used = self.tokens(now)
        for step in self._steps:
            if used < limit:
                break
            used -= step.tokens
            now = step.last + WINDOW_SECONDS
        return now


@dataclass(frozen=True, slots=True)
class _Verdict:
    """The last verdict a paid probe earned: served while the budget withholds the next one."""

    adapter: Adapter  # the adapter object probed: a replaced adapter's verdict is not served
    result: ProbeResult
    at: float  # Trio clock when it was recorded
    run: object  # the trio.run it was recorded in: another run's clock is not comparable


class _AdapterBook:
    """One adapter's counts since start, its last hour, and its last paid probe."""

    __slots__ = ("last_paid", "total", "verdict", "window")

    def __init__(self) -> None:
        self.total = CostCounts()
        self.window = _Window(_ADAPTER_STEP)
        #: Whether its last probe was paid (what decides for adapters of your own).
        self.last_paid = False
        self.verdict: _Verdict | None = None


def _trio_token() -> object:
    try:
        return trio.lowlevel.current_trio_token()
    except RuntimeError:  # not in Trio
        return None


class ProbeCosts:
    """Probes sent and tokens billed per adapter, and the hourly token budget.

    ``max_tokens_per_hour`` None means no budget: only the accounting (the
    checker passes its validated ``CheckerSettings`` value). The windows run
    on the Trio clock; read from outside Trio (a scrape from another thread),
    they are as of the last probe recorded.
    """

    def __init__(self, max_tokens_per_hour: int | None = None) -> None:
        self.max_tokens_per_hour = max_tokens_per_hour
        self._books: dict[Key, _AdapterBook] = {}
        self._fleet = _Window(_FLEET_STEP)
        #: Unix time the budget was reached; None while it has room.
        self.exhausted_since: float | None = None
        self._last_seen = 0.0  # the Trio clock when last read inside Trio

    def __repr__(self) -> str:
        return f"ProbeCosts(adapters={len(self._books)}, budget={self.max_tokens_per_hour})"

    def _now(self) -> float:
        with contextlib.suppress(RuntimeError):  # not in Trio: as of the last probe
            self._last_seen = trio.current_time()
        return self._last_seen

    # -- the budget ------------------------------------------------------------------

    def probe_for(self, model: str, adapter: Adapter) -> tuple[Adapter | None, bool]:
        """The adapter to probe with now (None: none), and whether the budget changed it.

        ``adapter`` itself unless its probe is paid and the budget is reached:
        then its free twin (:func:`free_twin`), or None when it has no free
        probe (:func:`has_free_probe`; code of your own whose last probe was
        billed): nothing may be sent, :meth:`withheld` is its result.
        """
        if self.max_tokens_per_hour is None:
            return adapter, False
        declared = _declared_probe(adapter)
        if declared is None:
            book = self._books.get((model, adapter.provider))
            paid = book is not None and book.last_paid
        else:
            paid = declared == PAID_PROBE
        if not paid or self._has_room(self._now()):
            return adapter, False
        if declared is not None and has_free_probe(adapter):
            return free_twin(adapter), True
        return None, True

    def withheld(self, model: str, adapter: Adapter, *, fallback: bool = False) -> ProbeResult:
        """The result of a probe the budget withheld (``probe_for`` gave None).

        Its last paid probe's verdict, marked ``budget_fallback`` and aged like
        a ``min_interval`` result (``cached_age``); with none, a ``not_started``
        result saying why, which the live state does not take as a verdict.
        """
        book = self._books.get((model, adapter.provider))
        verdict = None if book is None else book.verdict
        now = self._now()
        if verdict is not None and verdict.adapter is adapter and verdict.run is _trio_token():
            return dataclasses.replace(
                verdict.result, cached_age=max(now - verdict.at, 0.0), budget_fallback=True
            )
        room = self._fleet.room_at(now, self.max_tokens_per_hour or 0) - now
        return dataclasses.replace(
            ProbeResult.not_started(
                model, adapter.provider, adapter.adapter_name, fallback=fallback
            ),
            error=(
                f"not probed: the probe token budget (max_probe_tokens_per_hour = "
                f"{self.max_tokens_per_hour}) is reached and this adapter has no free probe "
                f"to send instead; paid probes resume in {room:.0f} s"
            ),
            budget_fallback=True,
        )

    def _has_room(self, now: float) -> bool:
        """Whether paid probes may go out; logs each change (not each probe)."""
        limit = self.max_tokens_per_hour
        if limit is None:
            return True
        used = self._fleet.tokens(now)
        exhausted = used >= limit
        if exhausted and self.exhausted_since is None:
            self.exhausted_since = time.time()
            logger.warning(
                "Probe token budget reached: %d tokens billed in the last hour "
                "([checks] max_probe_tokens_per_hour = %d); paid probes send the free probe "
                "(adapters without one are not probed) until the window has room",
                used,
                limit,
            )
        elif not exhausted and self.exhausted_since is not None:
            self.exhausted_since = None
            logger.info(
                "Probe token budget has room again: %d of %d tokens billed in the last hour; "
                "paid probes resume",
                used,
                limit,
            )
        return not exhausted

    def budget(self) -> BudgetState | None:
        """The budget as of now (None when none is configured)."""
        limit = self.max_tokens_per_hour
        if limit is None:
            return None
        now = self._now()
        room = self._has_room(now)
        return BudgetState(
            max_tokens_per_hour=limit,
            tokens_last_hour=self._fleet.tokens(now),
            exhausted=not room,
            exhausted_since=self.exhausted_since,
            room_in_s=None if room else self._fleet.room_at(now, limit) - now,
        )

    # -- the accounting ----------------------------------------------------------------

    def record(
        self, model: str, adapter: Adapter, result: ProbeResult | None, *, budget_fallback: bool
    ) -> None:
        """Count the probe behind ``result``, if one was sent (``adapter`` is the one probed).

        ``result`` None: the probe was cancelled after it went out (a caller
        hung up); it counts, with no tokens (none are known).
        """
        if result is not None and (not result.sent or result.failure in _NOTHING_SENT):
            return
        declared = _declared_probe(adapter)
        tokens = None if result is None else billed_tokens(result.tokens)
        if declared is not None:
            kind = ProbeKind.PAID if declared == PAID_PROBE else ProbeKind.FREE
        else:
            kind = ProbeKind.PAID if tokens else ProbeKind.FREE
        billed = (tokens or 0) if kind is ProbeKind.PAID else 0  # a free probe is never billed
        now = self._now()
        book = self._books.get((model, adapter.provider))
        if book is None:
            book = self._books[(model, adapter.provider)] = _AdapterBook()
        paid = kind is ProbeKind.PAID
        book.last_paid = paid
        if (
            paid
            and result is not None
            and result.cached_age is None
            and says_about_provider(result)
        ):
            book.verdict = _Verdict(adapter, result, now, _trio_token())
        book.total += CostCounts(int(not paid), int(paid), billed, int(budget_fallback))
        book.window.add(now, kind, billed, fallback=budget_fallback)
        self._fleet.add(now, kind, billed, fallback=budget_fallback)
        if billed:
            self._has_room(now)  # say so when this probe reached the budget

    # -- reading -------------------------------------------------------------------

    def adapters(self) -> list[AdapterCost]:
        """Every adapter that sent a probe, in the order each first did."""
        now = self._now()
        return [
            AdapterCost(model, provider, book.total, book.window.counts(now))
            for (model, provider), book in self._books.items()
        ]

    def total(self) -> CostCounts:
        """The whole fleet since start (no clock needed)."""
        return sum((book.total for book in self._books.values()), CostCounts())

    def last_hour(self) -> CostCounts:
        return self._fleet.counts(self._now())

    def to_dict(self) -> dict[str, Any]:
        """The ``cost`` object of ``/v1/health/performance``."""
        budget = self.budget()
        return {
            "adapters": [cost.to_dict() for cost in self.adapters()],
            "total": self.total().to_dict(),
            "last_hour": self.last_hour().to_dict(),
            "budget": None if budget is None else budget.to_dict(),
        }
