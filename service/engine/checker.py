"""HealthChecker: the concurrent and sequential strategies, deadlines and fallback.

Every adapter is probed under ``trio.move_on_at`` with the earliest of three
deadlines: its own timeout, what remains of its model's budget, and what
remains of the whole run. Whatever an adapter does — raise, hang, trickle a
body, swallow a cancellation — it produces one :class:`ProbeResult` for itself
and nothing else: every exception is caught inside the adapter's own task, so
a nursery never sees one and siblings are never cancelled.

Cancellation from *outside* (a client that went away, a shutdown) is never
swallowed: it cancels every probe of the run, and the call raises
``trio.Cancelled`` with no task left behind.

Cost controls, all off by default (see :class:`CheckerSettings`):

* ``min_interval``: an adapter whose last verdict is younger than this is not
  probed again; the run reports that verdict, marked ``cached`` with its age
  (:mod:`service.engine.cache` says exactly what is remembered).
* ``max_concurrent_probes`` and per-provider caps: probes queue for a slot
  (:mod:`service.engine.limits`); the queueing happens inside the probe's deadline,
  so a probe that cannot get a slot in time ends as a ``timeout`` whose
  failure is ``resource`` (our capacity, not the provider, ran out), which
  the re-check pass may retry and ``min_interval`` never remembers.
* ``adaptive_concurrency``: per-provider limits that halve when a provider
  pushes back and grow back as it answers (:mod:`service.engine.limits`); a 429 or
  503 with ``Retry-After`` also holds that adapter's verdict until then
  (:meth:`service.engine.cache.RecentResults.hold`), so nothing is sent meanwhile.
* ``max_probe_tokens_per_hour``: every probe sent is counted, with the tokens
  it was billed (:mod:`service.engine.cost`); past the budget, adapters whose
  probe is paid send their free probe, or with none are not probed (results
  marked ``budget_fallback``).

``transient`` failure kinds (``rate_limited``, ``timeout``) make a result
``degraded`` instead of ``unhealthy``/``timeout``: the provider is busy, not
down. Passive adapters are judged by reported traffic (:mod:`service.engine.passive`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Unpack

import trio

from adapters.base import Adapter, FailureKind, ProbeOutcome, redact
from adapters.redaction import RawSecrets, prepare_secrets

from ..config.values import check_seconds
from .cache import RecentResults
from .cost import ProbeCosts, billed_tokens
from .limits import ProbeSlots, Signal, SlotWait
from .passive import PassiveHealth, ReportedRequest
from .report import (
    HealthReport,
    ModelHealthReport,
    ModelReport,
    ProbeResult,
    ProbeStatus,
)
from .settings import CheckerSettings
from .telemetry import Tracing

__all__ = ["HealthChecker", "ResultCallback", "RunCallback", "ShardDelivery", "ShardDispatch", "ShardItem"]

logger = logging.getLogger("router_health.checker")

#: Called with each result as soon as it exists (streaming, metrics).
ResultCallback = Callable[[ProbeResult], None]
#: Called with each finished run's report and its strategy ("concurrent"/"sequential").
RunCallback = Callable[[HealthReport, str], None]

#: One probe a worker process sends: (index, model, provider, free twin?, fallback?).
ShardItem = tuple[int, str, str, bool, bool]
#: Called by a shard dispatcher with (index, raw result, whether it held a probe slot).
ShardDelivery = Callable[[int, ProbeResult, bool], None]


class ShardDispatch(Protocol):
    """Worker processes the concurrent pass sends its probes to (:mod:`service.engine.shards`)."""

    def worker_of(self, model: str, adapter: Adapter) -> int | None:
        """The worker that probes ``adapter`` of ``model`` (None: this process does)."""
        ...

    async def probe(
        self,
        worker: int,
        run_id: str,
        items: list[ShardItem],
        model_remaining: float,
        run_remaining: float,
        deliver: ShardDelivery,
        written: Callable[[], None],
    ) -> None:
        """Probe ``items`` in ``worker``, ``deliver``-ing each raw result as it arrives.

        Calls ``written`` once the batch is written whole (its probes may go
        out from then on). Returns when every item was delivered; raises
        :class:`ShardError` if the worker fails; when cancelled, the
        worker's probes are cancelled too.
        """
        ...


# Exceptions that are not an adapter's business to report: they must reach
# the caller (cancellation, Ctrl-C, interpreter exit).
_PROPAGATE = (trio.Cancelled, KeyboardInterrupt, SystemExit, GeneratorExit)

# A worker's result cut by its (earlier) deadline, said again in our words.
_CUT = (FailureKind.DEADLINE, FailureKind.RESOURCE)


class ShardError(Exception):
    """A worker process failed (exited, or broke the protocol): its batch is probed here."""


# A failure the concurrent pass itself may have caused (too many probes at
# once), so a one-by-one re-check is a fair second opinion.
_RECHECKABLE = (FailureKind.TIMEOUT, FailureKind.RESOURCE)

def _must_propagate(exc: BaseException) -> bool:
    if isinstance(exc, _PROPAGATE):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(_PROPAGATE) is not None
    return False


def _adapter_timeout(adapter: Adapter, default: float) -> float:
    value = getattr(adapter, "timeout", None)
    return float(value) if isinstance(value, int | float) and value > 0 else default


def _describe(exc: BaseException, secrets: Sequence[Any]) -> str:
    detail = str(exc) or type(exc).__name__
    return redact(f"{type(exc).__name__}: {detail}", secrets)


@dataclass(slots=True, frozen=True)
class _Dispatched:
    """A probe sent to a worker: ``adapter`` is the key of what is remembered, ``sent`` went out."""

    model: str
    adapter: Adapter
    sent: Adapter
    budget_fallback: bool


@dataclass(slots=True)
class _Budget:
    """The deadlines (trio clock) one probe runs under."""

    model_deadline: float
    run_deadline: float


def _cut_short(
    own_timeout: float, start: float, budget: _Budget, *, queued: bool
) -> tuple[FailureKind, str]:
    """The failure kind and error of a probe started at ``start`` that a deadline ended.

    The earliest of its own timeout, its model's budget and the run's deadline
    names it. ``queued``: it never got a probe slot, so our own capacity ran
    out, not the provider's patience.
    """
    deadline = min(start + own_timeout, budget.model_deadline, budget.run_deadline)
    if deadline == start + own_timeout:
        limit, failure = f"adapter timeout {own_timeout:g} s", FailureKind.TIMEOUT
    elif deadline == budget.run_deadline:
        limit, failure = "the run's deadline", FailureKind.DEADLINE
    else:
        limit, failure = "the model's budget", FailureKind.DEADLINE
    if queued:
        return FailureKind.RESOURCE, (
            f"no probe slot free within {deadline - start:.2f} s ({limit}); "
            "queued behind max_concurrent_probes / the provider's max_concurrent"
        )
    return failure, f"no answer within {deadline - start:.2f} s ({limit})"


class _Run:
    """Book-keeping for one run: results as they arrive, in config order at the end."""

    def __init__(
        self,
        plan: Mapping[str, Sequence[Adapter]],
        on_result: ResultCallback | None,
        *,
        use_cache: bool = True,
        known_secrets: Sequence[Any] = (),
        listeners: Sequence[ResultCallback] = (),
    ) -> None:
        self.plan = plan
        self.results: dict[str, dict[str, ProbeResult]] = {model: {} for model in plan}
        self.on_result = on_result
        self.listeners = listeners
        self.use_cache = use_cache
        self.id = uuid.uuid4().hex[:12]
        #: Why part of the run was not probed as planned (a worker process failed).
        self.fallback_reason: str | None = None
        # Every key we know, to redact from any text about this run: an
        # adapter's error may quote another's key (a shared gateway, user
        # code), including the key of an adapter this selection left out.
        # Prepared once: a failing probe's text is redacted with all of them.
        self.secrets: RawSecrets = prepare_secrets(
            [
                *known_secrets,
                *(getattr(a, "api_key", None) for adapters in plan.values() for a in adapters),
            ]
        )

    def record(self, result: ProbeResult) -> None:
        self.results[result.model][result.provider] = result
        if self.on_result is not None:
            self.on_result(result)
        for listener in self.listeners:
            listener(result)

    def missing(self) -> list[tuple[str, Adapter]]:
        return [
            (model, adapter)
            for model, adapters in self.plan.items()
            for adapter in adapters
            if adapter.provider not in self.results[model]
        ]

    def model_reports(self) -> dict[str, ModelReport]:
        return {
            model: ModelReport(
                model, {a.provider: self.results[model][a.provider] for a in adapters}
            )
            for model, adapters in self.plan.items()
        }


class HealthChecker:
    """Checks adapters concurrently (one Trio task each) or one at a time.

    The public methods carry the v1 API's names and signatures. Each accepts a
    ``timeout`` in seconds; ``None`` means the configured default.
    """

    def __init__(
        self,
        settings: CheckerSettings | None = None,
        *,
        probe_limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        self.settings = settings = settings or CheckerSettings()
        #: Keys redacted from every run's text, whatever the run selects; the
        #: manager adds each adapter's key here (see :meth:`add_secrets`).
        self.known_secrets: list[Any] = []
        # Caps probes in flight across every run of this checker; waiting for
        # a slot counts against the probe's deadline like any other delay.
        # ``probe_limiter`` (e.g. one shared by the whole process) wins over
        # ``settings.max_concurrent_probes``.
        self.slots = ProbeSlots(
            max_concurrent_probes=settings.max_concurrent_probes,
            provider_caps=settings.provider_max_concurrent,
            global_limiter=probe_limiter,
            adaptive=settings.adaptive_concurrency,
            adaptive_ceiling=settings.adaptive_ceiling,
        )
        self.recent = RecentResults(settings.min_interval, settings.adapter_min_interval)
        #: Verdicts of passive adapters from reported traffic (:mod:`service.engine.passive`).
        self.passive = PassiveHealth()
        #: Called with every result of every run and ``probe_one`` (metrics, the
        #: live stream), and with every finished run. They must not block or raise.
        self.result_listeners: list[ResultCallback] = []
        self.run_listeners: list[RunCallback] = []
        #: Probes sent and not yet answered, across every run (a gauge).
        self.in_flight = 0
        #: Probes sent and tokens billed, and the hourly token budget
        #: (:mod:`service.engine.cost`): counted here, where probes are sent.
        self.cost = ProbeCosts(settings.max_probe_tokens_per_hour)
        #: Spans for runs and probes, off until given a tracer (:mod:`service.engine.telemetry`).
        self.tracing = Tracing()
        #: Worker processes the concurrent pass is sharded over, set by the
        #: AdapterManager of a large fleet (:mod:`service.engine.shards`); never
        #: with an embedder's own ``probe_limiter`` (a cap only this process sees).
        self.shards: ShardDispatch | None = None
        self.shardable = probe_limiter is None

    def __repr__(self) -> str:
        return f"HealthChecker({self.slots!r}, {self.recent!r})"

    @property
    def probe_limiter(self) -> trio.CapacityLimiter | None:
        """The global cap on probes in flight (None: unlimited)."""
        return self.slots.global_limiter

    def add_secrets(self, secrets: Iterable[Any]) -> None:
        """Redact these (``Secret`` or str) from every run's text from now on."""
        self.known_secrets.extend(s for s in secrets if s)

    def observe(
        self, model: str, provider: str, *, ok: bool, **request: Unpack[ReportedRequest]
    ) -> bool:
        """Report one request the router sent (see :mod:`service.engine.passive`).

        Returns False (and keeps nothing) when that adapter is not passive.
        ``error`` is redacted of every known key before it is kept.
        """
        return self.passive.observe(
            model, provider, ok=ok, secrets=self.known_secrets, **request
        )

    # -- the v1 API ------------------------------------------------------------

    async def check_all_models_with_timeout(
        self,
        model_names: Sequence[str],
        model_adapters: Mapping[str, Sequence[Adapter]],
        timeout: float | None = None,
        *,
        use_concurrent: bool = True,
        on_result: ResultCallback | None = None,
        use_cache: bool = True,
    ) -> HealthReport:
        """Check every named model's adapters, concurrently unless told otherwise.

        ``use_cache=False`` probes every adapter even if ``min_interval``
        would serve a recent result (a measurement must measure).
        """
        plan = _plan(model_names, model_adapters)
        return await self.run(
            plan,
            timeout=timeout,
            concurrent=use_concurrent,
            on_result=on_result,
            use_cache=use_cache,
        )

    async def check_all_models_sequential(
        self,
        model_names: Sequence[str],
        model_adapters: Mapping[str, Sequence[Adapter]],
        timeout: float | None = None,
        *,
        on_result: ResultCallback | None = None,
        use_cache: bool = True,
    ) -> HealthReport:
        """The same checks one adapter at a time, under the same deadlines."""
        plan = _plan(model_names, model_adapters)
        return await self.run(
            plan, timeout=timeout, concurrent=False, on_result=on_result, use_cache=use_cache
        )

    async def check_model_health_with_timeout(
        self,
        model_name: str,
        adapters: Sequence[Adapter],
        timeout: float | None = None,
        *,
        use_concurrent: bool = True,
        on_result: ResultCallback | None = None,
    ) -> ModelHealthReport:
        """One model; ``timeout`` (default ``model_timeout``) is that model's whole budget."""
        return await self._check_one_model(
            model_name, adapters, timeout, concurrent=use_concurrent, on_result=on_result
        )

    async def check_model_health_sequential(
        self,
        model_name: str,
        adapters: Sequence[Adapter],
        timeout: float | None = None,
        *,
        on_result: ResultCallback | None = None,
    ) -> ModelHealthReport:
        return await self._check_one_model(
            model_name, adapters, timeout, concurrent=False, on_result=on_result
        )

    async def probe_one(
        self,
        model: str,
        adapter: Adapter,
        timeout: float | None = None,
        *,
        use_cache: bool = True,
        on_result: ResultCallback | None = None,
    ) -> ProbeResult:
        """One adapter's result, through the same path as a run's probes.

        ``min_interval`` results, probe slots, redaction and the adapter's
        own timeout all apply; ``timeout`` (None: only the adapter's own)
        caps it further. Raises ``trio.Cancelled`` if cancelled from outside.
        """
        if timeout is not None:
            check_seconds("timeout", timeout)
        run = _Run(
            {model: [adapter]},
            on_result,
            use_cache=use_cache,
            known_secrets=self.known_secrets,
            listeners=self.result_listeners,
        )
        deadline = math.inf if timeout is None else trio.current_time() + timeout
        await self._probe_and_record(run, model, adapter, _Budget(deadline, deadline))
        return run.results[model][adapter.provider]

    # The v1 API names its sequential methods with a leading underscore.
    _check_all_models_sequential = check_all_models_sequential
    _check_model_health_sequential = check_model_health_sequential

    # -- the engine ------------------------------------------------------------

    async def _check_one_model(
        self,
        model_name: str,
        adapters: Sequence[Adapter],
        timeout: float | None,
        *,
        concurrent: bool,
        on_result: ResultCallback | None,
    ) -> ModelHealthReport:
        budget = self.settings.model_timeout if timeout is None else timeout
        report = await self.run(
            {model_name: list(adapters)},
            timeout=budget,
            concurrent=concurrent,
            model_timeout=budget,
            on_result=on_result,
        )
        return report.model_report(model_name)

    async def run(
        self,
        plan: Mapping[str, Sequence[Adapter]],
        *,
        timeout: float | None = None,
        concurrent: bool = True,
        model_timeout: float | None = None,
        on_result: ResultCallback | None = None,
        use_cache: bool = True,
    ) -> HealthReport:
        """Check every adapter of ``plan`` (model -> adapters) within ``timeout``.

        Returns within ``timeout`` plus scheduling noise, whatever the
        adapters do; adapters without a verdict by then are ``timeout``
        results. Raises ``trio.Cancelled`` if cancelled from outside.
        With ``use_cache`` (the default), adapters with a result younger than
        their ``min_interval`` are not probed: that result is reported.
        """
        settings = self.settings
        timeout = settings.timeout if timeout is None else float(timeout)
        model_timeout = settings.model_timeout if model_timeout is None else model_timeout
        check_seconds("timeout", timeout)
        with self.tracing.run(
            plan, concurrent=concurrent, timeout=timeout, model_timeout=model_timeout
        ) as span:
            report = await self._run(plan, timeout, model_timeout, concurrent, on_result, use_cache)
            span.finish(report)
        return report

    async def _run(
        self,
        plan: Mapping[str, Sequence[Adapter]],
        timeout: float,
        model_timeout: float,
        concurrent: bool,
        on_result: ResultCallback | None,
        use_cache: bool,
    ) -> HealthReport:
        settings = self.settings
        run = _Run(
            plan,
            on_result,
            use_cache=use_cache,
            known_secrets=self.known_secrets,
            listeners=self.result_listeners,
        )
        timestamp = time.time()
        start = trio.current_time()
        run_deadline = start + timeout
        fallback_reason: str | None = None

        if concurrent:
            try:
                await self._concurrent_pass(run, start + model_timeout, run_deadline)
            except* Exception as group:
                # Only our own machinery can get here (adapters' errors are
                # caught in their tasks): finish the job one by one.
                if not settings.fallback_sequential:
                    raise
                described = _describe_group(group, run.secrets)
                fallback_reason = f"concurrent run failed ({described}); finished sequentially"
                logger.warning(
                    "Concurrent health check failed, falling back to sequential: %s",
                    described,
                    extra={"run_id": run.id},
                )
                await self._sequential_pass(
                    run, run.missing(), model_timeout, run_deadline, fallback=True
                )
            if fallback_reason is None:
                fallback_reason = run.fallback_reason
            if settings.recheck_timeouts:
                rechecked = await self._recheck_pass(run, start + model_timeout, run_deadline)
                if rechecked and fallback_reason is None:
                    fallback_reason = (
                        f"{rechecked} adapter(s) that timed out concurrently were re-checked one by one"
                    )
        else:
            await self._sequential_pass(run, run.missing(), model_timeout, run_deadline)

        # Anything still without a verdict never got a chance to start.
        for model, adapter in run.missing():
            run.record(_not_started(model, adapter))

        report = HealthReport(
            models=run.model_reports(),
            timestamp=timestamp,
            execution_time=trio.current_time() - start,
            concurrent=concurrent,
            timeout=timeout,
            fallback=fallback_reason is not None,
            fallback_reason=fallback_reason,
            run_id=run.id,
        )
        logger.info(
            "Health status: %s", report.status.value, extra={"run_id": run.id}
        )
        for listener in self.run_listeners:
            listener(report, "concurrent" if concurrent else "sequential")
        return report

    async def _concurrent_pass(
        self, run: _Run, model_deadline: float, run_deadline: float
    ) -> None:
        budget = _Budget(model_deadline=min(model_deadline, run_deadline), run_deadline=run_deadline)
        plan: Mapping[str, Sequence[Adapter]] = run.plan
        batches: dict[int, list[_Dispatched]] = {}
        shards = self.shards if self.shardable else None
        if shards is not None:
            plan, batches = self._split(run, shards)

        async def check_model(adapters: Sequence[Adapter], model: str) -> None:
            async with trio.open_nursery() as nursery:
                for adapter in adapters:
                    nursery.start_soon(self._probe_and_record, run, model, adapter, budget)

        async with trio.open_nursery() as nursery:
            if shards is not None and batches:
                nursery.start_soon(self._sharded_pass, run, shards, batches, budget)
            for model, adapters in plan.items():
                nursery.start_soon(check_model, adapters, model)

    def _split(
        self, run: _Run, shards: ShardDispatch
    ) -> tuple[dict[str, list[Adapter]], dict[int, list[_Dispatched]]]:
        """What this process probes itself, and what goes to each worker.

        Every sharded adapter first goes through what a local probe does
        before sending anything (reported traffic, a Retry-After hold,
        ``min_interval``, the token budget): only probes to send leave.
        """
        local: dict[str, list[Adapter]] = {}
        batches: dict[int, list[_Dispatched]] = {}
        for model, adapters in run.plan.items():
            for adapter in adapters:
                worker = shards.worker_of(model, adapter)
                if worker is None:
                    local.setdefault(model, []).append(adapter)
                    continue
                answered = self._answered_without_probe(run, model, adapter, run.use_cache)
                if answered is not None:
                    run.record(answered)
                    continue
                sent, budget_fallback = self._probe_to_send(run, model, adapter)
                if sent is None:
                    run.record(self.cost.withheld(model, adapter))
                    continue
                batches.setdefault(worker, []).append(
                    _Dispatched(model, adapter, sent, budget_fallback)
                )
        return local, batches

    async def _sharded_pass(
        self,
        run: _Run,
        shards: ShardDispatch,
        batches: Mapping[int, Sequence[_Dispatched]],
        budget: _Budget,
    ) -> None:
        """Probes sent to worker processes, one batch each; the deadline stays ours.

        Budgets go as seconds remaining (the processes' clocks differ), a
        little short so that a worker's own timeout results arrive before
        our deadline; whatever has not arrived by then is a timeout here,
        as a local probe's would be. A worker that fails fails only its own
        batch: the other workers go on, and what it left unanswered is
        probed here, concurrently, within the same deadline.
        """
        start = trio.current_time()
        pending: dict[int, _Dispatched] = {}
        info = logger.isEnabledFor(logging.INFO)
        items: dict[int, list[ShardItem]] = {}
        for worker, dispatched in batches.items():
            for entry in dispatched:
                index = len(pending)
                pending[index] = entry
                items.setdefault(worker, []).append(
                    (index, entry.model, entry.adapter.provider, entry.sent is not entry.adapter, False)
                )
                if info:
                    logger.info(
                        "Checking adapter: %s - %s",
                        entry.adapter.adapter_name,
                        entry.adapter.provider,
                        extra={"run_id": run.id, "model": entry.model, "provider": entry.adapter.provider},
                    )
        # Keys the workers were not given (added since they started): the
        # workers redacted with all the others at the source.
        redacted = getattr(shards, "redacted", None)
        extra_secrets = (
            run.secrets
            if redacted is None
            else prepare_secrets([raw for raw in run.secrets if raw not in redacted])
        )

        def deliver(index: int, raw: ProbeResult, granted: bool) -> None:
            entry = pending.pop(index, None)
            if entry is None:
                return  # late, or not ours
            self.in_flight -= 1
            run.record(self._shard_result(run, entry, raw, granted, start, budget, extra_secrets))

        margin = _shard_margin(budget.model_deadline - start)
        self.in_flight += len(pending)
        # Batches written whole to their worker: only their items may have gone out.
        written: set[int] = set()
        failed: list[str] = []

        async def probe_in(worker: int, batch: list[ShardItem]) -> None:
            try:
                await shards.probe(
                    worker,
                    run.id,
                    batch,
                    max(budget.model_deadline - start - margin, 0.0),
                    max(budget.run_deadline - start - margin, 0.0),
                    deliver,
                    lambda: written.add(worker),
                )
            except ShardError as exc:
                failed.append(_describe(exc, run.secrets))
                logger.warning(
                    "%s: probing its adapters here for this run", failed[-1], extra={"run_id": run.id}
                )
                left = [entry for item in batch if (entry := pending.pop(item[0], None)) is not None]
                self.in_flight -= len(left)
                async with trio.open_nursery() as nursery:
                    for entry in left:
                        nursery.start_soon(self._probe_dispatched, run, entry, budget)

        try:
            with trio.move_on_at(budget.model_deadline):
                async with trio.open_nursery() as nursery:
                    for worker, batch in items.items():
                        nursery.start_soon(probe_in, worker, batch)
        except BaseException:
            for worker, batch in items.items():  # went out, may be billed
                if worker in written:
                    for item in batch:
                        if (gone := pending.get(item[0])) is not None:
                            self.cost.record(
                                gone.model, gone.sent, None, budget_fallback=gone.budget_fallback
                            )
            raise
        finally:
            self.in_flight -= len(pending)
            if failed:
                run.fallback_reason = (
                    f"{len(failed)} worker process(es) failed ({'; '.join(failed[:3])}); "
                    "their adapters were probed in the main process"
                )
        end = trio.current_time()
        for entry in list(pending.values()):
            own_timeout = _adapter_timeout(entry.adapter, self.settings.adapter_timeout)
            failure, error = _cut_short(own_timeout, start, budget, queued=False)
            raw = ProbeResult(
                model=entry.model,
                provider=entry.adapter.provider,
                adapter=entry.adapter.adapter_name,
                status=ProbeStatus.TIMEOUT,
                latency_ms=(end - start) * 1000.0,
                checked_at=time.time(),
                error=error,
                failure=failure,
            )
            run.record(self._shard_result(run, entry, raw, True, None, budget, ()))
        pending.clear()

    async def _probe_dispatched(self, run: _Run, entry: _Dispatched, budget: _Budget) -> None:
        """A probe a failed worker left unanswered, probed here (its checks were done)."""
        with self.tracing.probe(entry.model, entry.adapter.provider, entry.adapter.adapter_name) as span:
            result = await self._probe_sent(
                entry.model, entry.adapter, entry.sent, entry.budget_fallback, budget, fallback=True, run=run
            )
            span.record(result)
        run.record(result)

    def _shard_result(
        self,
        run: _Run,
        entry: _Dispatched,
        raw: ProbeResult,
        granted: bool,
        start: float | None,
        budget: _Budget,
        extra_secrets: Sequence[str],
    ) -> ProbeResult:
        """A worker's raw result, finished here as :meth:`_probe` finishes a local one."""
        if start is not None and raw.status is ProbeStatus.TIMEOUT and raw.failure in _CUT:
            raw = self._recut(entry, raw, start, budget)
        elif raw.error and extra_secrets:
            # The workers redacted with every key they were given; not these.
            scrubbed = redact(raw.error, extra_secrets)
            if scrubbed != raw.error:
                raw = dataclasses.replace(raw, error=scrubbed)
        _log_verdict(None, run, entry.model, entry.adapter, raw)
        return self._settle(
            entry.model,
            entry.adapter,
            entry.sent,
            self._transient(raw),
            entry.budget_fallback,
            granted_at=None,
            granted=granted,
        )

    def _recut(self, entry: _Dispatched, raw: ProbeResult, start: float, budget: _Budget) -> ProbeResult:
        """A worker's deadline result in our words: its deadlines were a little early."""
        own_timeout = _adapter_timeout(entry.adapter, self.settings.adapter_timeout)
        failure, error = _cut_short(
            own_timeout, start, budget, queued=raw.failure is FailureKind.RESOURCE
        )
        return dataclasses.replace(raw, error=error, failure=failure)

    async def _sequential_pass(
        self,
        run: _Run,
        todo: Sequence[tuple[str, Adapter]],
        model_timeout: float,
        run_deadline: float,
        *,
        fallback: bool = False,
    ) -> None:
        model_deadlines: dict[str, float] = {}
        for model, adapter in todo:
            if model not in model_deadlines:  # a model's budget starts when its first probe does
                model_deadlines[model] = trio.current_time() + model_timeout
            budget = _Budget(
                model_deadline=min(model_deadlines[model], run_deadline), run_deadline=run_deadline
            )
            await self._probe_and_record(run, model, adapter, budget, fallback=fallback)

    async def _recheck_pass(self, run: _Run, model_deadline: float, run_deadline: float) -> int:
        todo = [
            (model, adapter)
            for model, adapters in run.plan.items()
            for adapter in adapters
            if run.results[model][adapter.provider].failure in _RECHECKABLE
            and not run.results[model][adapter.provider].cached
            # a verdict from traffic or a Retry-After hold was never a probe
            and run.results[model][adapter.provider].source is None
        ]
        count = 0
        budget = _Budget(model_deadline=min(model_deadline, run_deadline), run_deadline=run_deadline)
        for model, adapter in todo:
            if trio.current_time() >= budget.model_deadline:
                continue  # keep the first verdict: there is no budget for a second
            logger.warning(
                "Re-checking %s - %s sequentially after a concurrent %s",
                adapter.adapter_name,
                adapter.provider,
                run.results[model][adapter.provider].failure,
                extra={"run_id": run.id},
            )
            # A second opinion, so never the remembered first one.
            await self._probe_and_record(
                run, model, adapter, budget, fallback=True, use_cache=False
            )
            count += 1
        return count

    async def _probe_and_record(
        self,
        run: _Run,
        model: str,
        adapter: Adapter,
        budget: _Budget,
        *,
        fallback: bool = False,
        use_cache: bool | None = None,
    ) -> None:
        use_cache = run.use_cache if use_cache is None else use_cache
        answered = self._answered_without_probe(run, model, adapter, use_cache)
        if answered is not None:
            run.record(answered)
            return
        with self.tracing.probe(model, adapter.provider, adapter.adapter_name) as span:
            result = await self._probe(model, adapter, budget, fallback=fallback, run=run)
            span.record(result)
        run.record(result)

    def _answered_without_probe(
        self, run: _Run, model: str, adapter: Adapter, use_cache: bool
    ) -> ProbeResult | None:
        """The result that needs no probe (reported traffic, a hold, ``min_interval``), if any."""
        # Reported traffic first: it is fresher than anything remembered and
        # sends nothing, so it cannot break a Retry-After either.
        if (derived := self.passive.verdict(model, adapter)) is not None:
            return self._transient(derived)
        # A Retry-After is the provider's request, not our cache: it holds
        # even for callers that asked for a fresh probe.
        if (held := self.recent.held(model, adapter)) is not None:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s - %s: not probed, honouring Retry-After",
                    adapter.adapter_name,
                    adapter.provider,
                    extra={"run_id": run.id, "model": model, "provider": adapter.provider},
                )
            return held
        if use_cache and (cached := self.recent.fresh(model, adapter)) is not None:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s - %s: serving a result %.3f s old (min_interval)",
                    adapter.adapter_name,
                    adapter.provider,
                    cached.cached_age,
                    extra={"run_id": run.id, "model": model, "provider": adapter.provider},
                )
            return cached
        return None

    def _probe_to_send(self, run: _Run, model: str, adapter: Adapter) -> tuple[Adapter | None, bool]:
        """The adapter to probe with (None: nothing may be sent), and whether the budget chose it."""
        # Past [checks] max_probe_tokens_per_hour a paid adapter sends its free
        # probe instead, or nothing if it has none; ``adapter`` stays the key
        # of everything remembered.
        sent, budget_fallback = self.cost.probe_for(model, adapter)
        if sent is None and logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s - %s: not probed, the probe token budget is reached",
                adapter.adapter_name,
                adapter.provider,
                extra={"run_id": run.id, "model": model, "provider": adapter.provider},
            )
        return sent, budget_fallback

    async def _probe(
        self, model: str, adapter: Adapter, budget: _Budget, *, fallback: bool, run: _Run
    ) -> ProbeResult:
        sent, budget_fallback = self._probe_to_send(run, model, adapter)
        if sent is None:
            return self.cost.withheld(model, adapter, fallback=fallback)
        return await self._probe_sent(
            model, adapter, sent, budget_fallback, budget, fallback=fallback, run=run
        )

    async def _probe_sent(
        self,
        model: str,
        adapter: Adapter,
        sent: Adapter,
        budget_fallback: bool,
        budget: _Budget,
        *,
        fallback: bool,
        run: _Run,
    ) -> ProbeResult:
        wait = SlotWait()
        try:
            result = self._transient(
                await self._probe_once(model, sent, budget, wait, fallback=fallback, run=run)
            )
        except BaseException:
            if wait.granted_at is not None:  # cancelled after it went out: it may be billed
                self.cost.record(model, sent, None, budget_fallback=budget_fallback)
            raise
        return self._settle(
            model,
            adapter,
            sent,
            result,
            budget_fallback,
            granted_at=wait.granted_at,
            fed_back=wait.fed_back,
        )

    def _settle(
        self,
        model: str,
        adapter: Adapter,
        sent: Adapter,
        result: ProbeResult,
        budget_fallback: bool,
        *,
        granted_at: float | None,
        granted: bool | None = None,
        fed_back: bool = False,
    ) -> ProbeResult:
        """Count, remember and hold a probe's result (``adapter`` is the key, ``sent`` went out)."""
        if budget_fallback:
            result = dataclasses.replace(result, budget_fallback=True)
        self.cost.record(model, sent, result, budget_fallback=budget_fallback)
        if granted is None:
            granted = granted_at is not None
        if granted:  # one that never got a slot says nothing of the provider
            self.recent.remember(model, adapter, result)
            if granted_at is not None and not fed_back:  # probed here: the slots here learn
                self.slots.feedback(
                    adapter.provider,
                    _signal(result),
                    granted_at,
                    local=result.failure is FailureKind.RESOURCE,
                )
            if result.retry_after is not None and _pushed_back(result):
                self.recent.hold(model, adapter, result, result.retry_after)
        return result

    def worker_run(self, run_id: str) -> _Run:
        """A worker process's book-keeping for its part of the parent's run ``run_id``."""
        run = _Run({}, None, known_secrets=self.known_secrets)
        run.id = run_id
        return run

    async def probe_in_worker(
        self, model: str, adapter: Adapter, model_deadline: float, run_deadline: float, run: _Run
    ) -> tuple[ProbeResult, bool]:
        """One probe of a worker process: the raw result, and whether it held a slot.

        The parent did everything before (cache, holds, budget) and does
        everything after (transient, counting, remembering, logging); the
        slots' feedback stays here, where the slots are.
        """
        wait = SlotWait()
        budget = _Budget(min(model_deadline, run_deadline), run_deadline)
        result = await self._probe_once(model, adapter, budget, wait, fallback=False, run=run)
        if wait.granted_at is not None and not wait.fed_back:
            self.slots.feedback(
                adapter.provider,
                _signal(result),
                wait.granted_at,
                local=result.failure is FailureKind.RESOURCE,
            )
        return result, wait.granted_at is not None

    def _transient(self, result: ProbeResult) -> ProbeResult:
        """``result`` as degraded if its failure is one of its adapter's transient kinds."""
        if result.usable or result.failure is None:
            return result
        if result.failure not in self.settings.transient_for(result.model, result.provider):
            return result
        return dataclasses.replace(result, status=ProbeStatus.DEGRADED)

    async def _probe_once(
        self,
        model: str,
        adapter: Adapter,
        budget: _Budget,
        wait: SlotWait,
        *,
        fallback: bool,
        run: _Run,
    ) -> ProbeResult:
        start = trio.current_time()
        own_timeout = _adapter_timeout(adapter, self.settings.adapter_timeout)
        deadline = min(start + own_timeout, budget.model_deadline, budget.run_deadline)
        if deadline <= start:
            return _not_started(model, adapter, fallback=fallback)
        # Log fields and messages are made only for the levels that are on:
        # at a thousand probes a run, building them for nothing shows.
        extra = None
        if logger.isEnabledFor(logging.INFO):
            extra = {"run_id": run.id, "model": model, "provider": adapter.provider}
            logger.info(
                "Checking adapter: %s - %s", adapter.adapter_name, adapter.provider, extra=extra
            )

        outcome: ProbeOutcome | None = None
        self.in_flight += 1
        try:
            with trio.move_on_at(deadline) as scope:
                outcome = await self._call(adapter, wait, run.secrets, deadline)
        finally:
            self.in_flight -= 1
        end = trio.current_time()
        latency_ms = (end - start) * 1000.0
        queued_ms: float | None = None
        if self.slots.active:
            queued_ms = ((end if wait.granted_at is None else wait.granted_at) - start) * 1000.0

        if outcome is None or scope.cancel_called:
            # The deadline passed: whatever the adapter produced after that
            # (an error made of its cancellation, a late answer) came too late.
            failure, error = _cut_short(
                own_timeout, start, budget, queued=wait.granted_at is None
            )
            result = ProbeResult(
                model=model,
                provider=adapter.provider,
                adapter=adapter.adapter_name,
                status=ProbeStatus.TIMEOUT,
                latency_ms=latency_ms,
                checked_at=time.time(),
                error=error,
                failure=failure,
                fallback=fallback,
                queued_ms=queued_ms,
            )
            _log_verdict(extra, run, model, adapter, result)
            return result

        unsupported = outcome.failure is FailureKind.UNSUPPORTED
        # An outcome reached before anything went out (no credentials) is not a
        # probe sent: no latency, and the cost accounting leaves it out.
        nothing_sent = unsupported or outcome.sent is False
        result = ProbeResult(
            model=model,
            provider=adapter.provider,
            adapter=adapter.adapter_name,
            status=ProbeStatus.HEALTHY if outcome.healthy else ProbeStatus.UNHEALTHY,
            latency_ms=None if nothing_sent else latency_ms,  # nothing was sent to time
            checked_at=time.time(),
            http_status=outcome.http_status,
            error=outcome.error,
            failure=outcome.failure,
            retry_after=outcome.retry_after,
            fallback=fallback,
            queued_ms=queued_ms,
            tokens=outcome.tokens,
            listed_models=outcome.listed,
        )
        _log_verdict(extra, run, model, adapter, result)
        return result

    async def _call(
        self, adapter: Adapter, wait: SlotWait, secrets: Sequence[Any], deadline: float
    ) -> ProbeOutcome:
        """Run one ``check_health()``, turning anything it raises into an outcome."""
        try:
            if not self.slots.active:
                wait.granted_at = trio.current_time()
                outcome: Any = await adapter.check_health()
            else:
                async with self.slots.slot(adapter.provider, wait):
                    outcome = await adapter.check_health()
                    if isinstance(outcome, ProbeOutcome) and trio.current_time() < deadline:
                        # Before the slot is given back: a refusal that lowers the
                        # limit must bind the probe that gets this slot next, or
                        # that probe's own refusal counts as a new episode and
                        # halves the limit again.
                        self.slots.feedback(
                            adapter.provider,
                            _signal_of(outcome.failure, outcome.http_status, outcome.healthy),
                            wait.granted_at,
                            local=outcome.failure is FailureKind.RESOURCE,
                        )
                        wait.fed_back = True
        except Exception as exc:
            return ProbeOutcome.fail(FailureKind.EXCEPTION, _describe(exc, secrets))
        except BaseException as exc:
            if _must_propagate(exc):
                raise
            # A bare BaseException subclass from user code is still only
            # this adapter's problem.
            return ProbeOutcome.fail(FailureKind.EXCEPTION, _describe(exc, secrets))
        if not isinstance(outcome, ProbeOutcome):
            return ProbeOutcome.fail(
                FailureKind.EXCEPTION,
                f"check_health() returned {type(outcome).__name__}, expected ProbeOutcome",
            )
        checked: ProbeOutcome = outcome
        retry_after = checked.retry_after
        if retry_after is not None and not (
            isinstance(retry_after, int | float)
            and not isinstance(retry_after, bool)
            and math.isfinite(retry_after)
            and retry_after >= 0
        ):
            # A custom adapter's odd value must not reach a hold, JSON or a stream.
            checked = dataclasses.replace(checked, retry_after=None)
        if checked.tokens is not None and billed_tokens(checked.tokens) is None:
            checked = dataclasses.replace(checked, tokens=None)  # nor the cost accounting
        if checked.error:
            # A custom adapter's own message may quote a key it was given.
            scrubbed = redact(checked.error, secrets)
            if scrubbed != checked.error:
                checked = dataclasses.replace(checked, error=scrubbed)
        return checked


def _log_verdict(
    extra: dict[str, Any] | None, run: _Run, model: str, adapter: Adapter, result: ProbeResult
) -> None:
    """The line a probe's verdict gets (before ``transient``), at its level if that is on."""
    if result.status is ProbeStatus.TIMEOUT:
        if logger.isEnabledFor(logging.WARNING):
            logger.warning(
                "%s - %s health check timed out: %s",
                adapter.adapter_name,
                adapter.provider,
                result.error,
                extra=_verdict_fields(extra, run, model, adapter, result),
            )
    elif result.failure is FailureKind.UNSUPPORTED:
        # Known when the config loaded, the same every run: no warning each time.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s - %s: %s",
                adapter.adapter_name,
                adapter.provider,
                result.error,
                extra=_verdict_fields(extra, run, model, adapter, result),
            )
    elif result.status is ProbeStatus.HEALTHY:
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "%s health check successful",
                adapter.adapter_name,
                extra=_verdict_fields(extra, run, model, adapter, result),
            )
    elif logger.isEnabledFor(logging.WARNING):
        logger.warning(
            "%s - %s health check failed: %s",
            adapter.adapter_name,
            adapter.provider,
            result.error,
            extra=_verdict_fields(extra, run, model, adapter, result),
        )


def _shard_margin(remaining: float) -> float:
    """How much earlier than ours a worker's deadline is: time for its results to travel."""
    return min(0.05 + 0.01 * remaining, 0.5)


def _verdict_fields(
    extra: dict[str, Any] | None, run: _Run, model: str, adapter: Adapter, result: ProbeResult
) -> dict[str, Any]:
    """A probe's log fields (``extra``, made here if INFO was off) plus its verdict."""
    if extra is None:
        extra = {"run_id": run.id, "model": model, "provider": adapter.provider}
    return {
        **extra,
        "status": result.status.value,
        "latency_ms": None if result.latency_ms is None else round(result.latency_ms, 1),
        "failure": None if result.failure is None else result.failure.value,
    }


def _pushed_back(result: ProbeResult) -> bool:
    """The provider said it is overloaded (429, or 503 as some gateways do)."""
    return result.failure is FailureKind.RATE_LIMITED or result.http_status == 503


def _signal(result: ProbeResult) -> Signal:
    """What a probe that held a slot says about its provider's load."""
    return _signal_of(result.failure, result.http_status, result.healthy)


def _signal_of(failure: FailureKind | None, http_status: int | None, healthy: bool) -> Signal:
    if failure is FailureKind.RATE_LIMITED or http_status == 503:  # as _pushed_back
        return Signal.REFUSED
    if failure in (FailureKind.TIMEOUT, FailureKind.RESOURCE):
        return Signal.CONGESTED
    if http_status is not None or healthy:
        return Signal.ANSWERED
    return Signal.NEUTRAL  # refused, raised, cut by the run's budget: not about load


def _plan(
    model_names: Sequence[str], model_adapters: Mapping[str, Sequence[Adapter]]
) -> dict[str, list[Adapter]]:
    if isinstance(model_names, str):
        raise TypeError("model_names must be a sequence of names, not a single string")
    unknown = [name for name in model_names if name not in model_adapters]
    if unknown:
        raise KeyError(f"no adapters for model(s) {', '.join(map(repr, unknown))}")
    return {name: list(model_adapters[name]) for name in dict.fromkeys(model_names)}


def _describe_group(group: BaseExceptionGroup[Exception], secrets: Sequence[Any] = ()) -> str:
    leaves: list[str] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    walk(group)
    text = "; ".join(leaves[:3]) + (f" (+{len(leaves) - 3} more)" if len(leaves) > 3 else "")
    return redact(text, secrets)


def _not_started(model: str, adapter: Adapter, *, fallback: bool = False) -> ProbeResult:
    return ProbeResult.not_started(model, adapter.provider, adapter.adapter_name, fallback=fallback)
