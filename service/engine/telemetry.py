"""Traces of check runs and probes (OpenTelemetry), or nothing at all.

Each :class:`~service.engine.checker.HealthChecker` holds a :class:`Tracing`,
off until it is given a tracer: :func:`open_tracing` builds one from
``[telemetry]`` (an SDK tracer provider of its own, exporting over
OTLP/HTTP in batches from the SDK's worker thread), or an embedder passes
its own (``checker.tracing.use(trace.get_tracer("router-health"))``). While
off, the checker's hooks cost a method call each and nothing here imports
OpenTelemetry, which comes with the ``otel`` extra.

The spans:

* ``router_health.run``: one check run (the selection's size, the strategy,
  its deadline; the verdict counts when it ends). Current while the run
  goes on, so its probes are its children: Trio copies the spawning task's
  contextvars into each nursery child.
* ``router_health.probe``: one probe sent (model, provider, adapter type,
  status, failure kind, latency, HTTP status); results served from
  ``min_interval``, a Retry-After hold or reported traffic are not probes
  and have no span. A probe outside a run (background checks) is a root.

Never a key: the attributes are names, numbers and enums, and the one text,
a failed probe's status description, is the result's error, which the checker
has already redacted (the same text the API answers with).

:meth:`Tracing.caller` attaches the trace context an HTTP request carries
(W3C ``traceparent``), so a run the request starts is a child of the
caller's span; the global propagator decides what is read
(``OTEL_PROPAGATORS``; tracecontext and baggage by default).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import trio

from ..config.telemetry import OTEL_MISSING, TelemetryConfig
from .report import HealthReport, ProbeResult, ProbeStatus

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

__all__ = ["PROBE_SPAN", "RUN_SPAN", "SpanScope", "Tracing", "TracingExport", "open_tracing"]

logger = logging.getLogger("router_health.telemetry")

RUN_SPAN: Final = "router_health.run"
PROBE_SPAN: Final = "router_health.probe"
#: The instrumentation scope the spans are reported under.
SCOPE: Final = "router_health"
#: Longest error text kept as a failed probe's status description.
MAX_DESCRIPTION: Final = 200
#: Seconds the exporter gets at shutdown to send what is left.
FLUSH_SECONDS: Final = 5.0
#: Verdicts a probe span is marked failed for (degraded is serving, unsupported unchecked).
_FAILED: Final = frozenset({ProbeStatus.UNHEALTHY, ProbeStatus.TIMEOUT})


class SpanScope:
    """A span while a ``with`` block runs; this base class is the one used while tracing is off.

    Every method does nothing, and one shared instance serves every call.
    """

    __slots__ = ()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def finish(self, report: HealthReport) -> None:
        """A run's span: what the run found."""

    def record(self, result: ProbeResult) -> None:
        """A probe's span: its verdict."""


_UNTRACED: Final = SpanScope()


class _Api:
    """The OpenTelemetry API, imported once tracing is first turned on."""

    def __init__(self) -> None:
        from opentelemetry import context, propagate, trace
        from opentelemetry.trace import Status, StatusCode

        self.attach = context.attach
        self.detach = context.detach
        self.extract = propagate.extract
        self.in_context = trace.set_span_in_context
        self.error = StatusCode.ERROR
        self.status = Status


class _Attached(SpanScope):
    """A trace context, current in this task's context (and its nursery children's) while open."""

    __slots__ = ("_api", "_context", "_token")

    def __init__(self, api: _Api, context: Context) -> None:
        self._api = api
        self._context = context
        self._token: object = None

    def __enter__(self) -> Self:
        self._token = self._api.attach(self._context)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._api.detach(self._token)  # type: ignore[arg-type]


class _Current(_Attached):
    """A span, current while open (made and entered in one ``with``); ended on leaving."""

    __slots__ = ("_span",)

    def __init__(self, api: _Api, span: Span) -> None:
        super().__init__(api, api.in_context(span))
        self._span = span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        super().__exit__(exc_type, exc, tb)
        if exc is not None:
            # Cancelled (the caller left, a shutdown) or our own bug: the type
            # says which; no message or stack, which are not ours to export.
            what = "cancelled" if _cancelled(exc) else type(exc).__name__
            self._span.set_attribute("router_health.interrupted", what)
            self._span.set_status(self._api.status(self._api.error, what))
        self._span.end()


def _cancelled(exc: BaseException) -> bool:
    """A cancellation, alone or as every leaf of a nursery's group."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return isinstance(exc, trio.Cancelled)


class _RunSpan(_Current):
    __slots__ = ()

    def finish(self, report: HealthReport) -> None:
        span = self._span
        if not span.is_recording():
            return
        counts = dict.fromkeys(ProbeStatus, 0)
        cached = 0
        for result in report.results():
            counts[result.status] += 1
            cached += result.cached
        attributes: dict[str, str | bool | int] = {
            "router_health.run.id": report.run_id,
            "router_health.run.status": report.status.value,
        }
        for status, count in counts.items():
            attributes[f"router_health.run.{status.value}"] = count
        attributes["router_health.run.cached"] = cached
        attributes["router_health.run.fallback"] = report.fallback
        if report.fallback_reason:
            attributes["router_health.run.fallback_reason"] = report.fallback_reason
        span.set_attributes(attributes)


class _ProbeSpan(_Current):
    __slots__ = ()

    def record(self, result: ProbeResult) -> None:
        span = self._span
        if not span.is_recording():
            return  # sampled out: nothing to describe
        attributes: dict[str, str | bool | int | float] = {
            "router_health.probe.status": result.status.value
        }
        if result.latency_ms is not None:
            attributes["router_health.probe.latency_ms"] = round(result.latency_ms, 3)
        if result.http_status is not None:
            attributes["http.response.status_code"] = result.http_status
        if result.failure is not None:
            attributes["router_health.probe.failure"] = result.failure.value
            attributes["error.type"] = result.failure.value
        if result.queued_ms is not None:
            attributes["router_health.probe.queued_ms"] = round(result.queued_ms, 3)
        if result.retry_after is not None:
            attributes["router_health.probe.retry_after_s"] = result.retry_after
        if result.tokens is not None:
            attributes["router_health.probe.tokens"] = result.tokens
        if result.fallback:
            attributes["router_health.probe.fallback"] = True
        if result.budget_fallback:
            attributes["router_health.probe.budget_fallback"] = True
        span.set_attributes(attributes)  # one lock, not one per attribute
        if result.status in _FAILED:
            # The result's error, redacted by the checker like everything it reports.
            text = result.error or (result.failure.value if result.failure else result.status.value)
            if len(text) > MAX_DESCRIPTION:
                text = text[: MAX_DESCRIPTION - 1] + "…"
            span.set_status(self._api.status(self._api.error, text))


class Tracing:
    """Spans for one checker's runs and probes while it has a tracer (see the module)."""

    __slots__ = ("_api", "_tracer")

    def __init__(self) -> None:
        self._tracer: Tracer | None = None
        self._api: _Api | None = None

    def __repr__(self) -> str:
        return f"Tracing(on={self.on})"

    @property
    def on(self) -> bool:
        return self._tracer is not None

    def use(self, tracer: Tracer | None) -> None:
        """Trace with ``tracer`` from now on; None turns tracing off."""
        if tracer is not None and self._api is None:
            self._api = _Api()
        self._tracer = tracer

    def run(
        self,
        plan: Mapping[str, Sequence[Any]],
        *,
        concurrent: bool,
        timeout: float,
        model_timeout: float,
    ) -> SpanScope:
        """The span of one run over ``plan`` (model -> adapters); finish it with the report."""
        tracer, api = self._tracer, self._api
        if tracer is None or api is None:
            return _UNTRACED
        span = tracer.start_span(
            RUN_SPAN,
            attributes={
                "router_health.run.strategy": "concurrent" if concurrent else "sequential",
                "router_health.run.models": len(plan),
                "router_health.run.adapters": sum(len(adapters) for adapters in plan.values()),
                "router_health.run.deadline_s": timeout,
                "router_health.run.model_budget_s": model_timeout,
            },
        )
        return _RunSpan(api, span)

    def probe(self, model: str, provider: str, adapter_name: str) -> SpanScope:
        """The span of one probe; record its result before it ends."""
        tracer, api = self._tracer, self._api
        if tracer is None or api is None:
            return _UNTRACED
        span = tracer.start_span(
            PROBE_SPAN,
            attributes={
                "router_health.model": model,
                "router_health.provider": provider,
                "router_health.adapter": adapter_name,
            },
        )
        return _ProbeSpan(api, span)

    def caller(self, headers: Iterable[tuple[bytes, bytes]]) -> SpanScope:
        """The trace context in an HTTP request's ``headers`` (ASGI's), current in the block."""
        api = self._api
        if self._tracer is None or api is None:
            return _UNTRACED
        carrier = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in headers
        }
        return _Attached(api, api.extract(carrier))  # the caller's, while the request is handled


class TracingExport:
    """A tracer provider of our own, exporting over OTLP/HTTP: :func:`open_tracing`."""

    def __init__(self, tracing: Tracing, provider: TracerProvider | None) -> None:
        self.tracing = tracing
        self.provider = provider

    async def aclose(self) -> None:
        """Stop tracing, send the spans still queued (at most :data:`FLUSH_SECONDS`)."""
        provider, self.provider = self.provider, None
        if provider is None:
            return
        self.tracing.use(None)
        # Shielded but bounded, like closing the HTTP clients: a collector that
        # does not answer must not hold a shutdown (the SDK's thread is a daemon).
        with trio.move_on_after(FLUSH_SECONDS, shield=True):
            await trio.to_thread.run_sync(provider.shutdown, abandon_on_cancel=True)


def open_tracing(config: TelemetryConfig, tracing: Tracing) -> TracingExport:
    """Turn ``tracing`` on as ``config`` says (nothing while it is off); close what it returns."""
    if not config.enabled:
        return TracingExport(tracing, None)
    try:
        provider = _provider(config)
    except ImportError:
        if config.enabled_by is not None and config.enabled_by.startswith("[telemetry]"):
            raise RuntimeError(OTEL_MISSING) from None
        logger.warning(
            "%s asks for traces, but %s; running without them", config.enabled_by, OTEL_MISSING
        )
        return TracingExport(tracing, None)
    tracing.use(provider.get_tracer(SCOPE, _version()))
    logger.info(
        "Tracing check runs and probes to %s as service %r (turned on by %s; sample ratio %g)",
        config.endpoint,
        config.service_name,
        config.enabled_by,
        config.sample_ratio,
    )
    return TracingExport(tracing, provider)


def _provider(config: TelemetryConfig) -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    attributes = {SERVICE_NAME: config.service_name}
    if (version := _version()) is not None:
        attributes[SERVICE_VERSION] = version
    provider = TracerProvider(
        # OTEL_RESOURCE_ATTRIBUTES adds to these (the SDK reads it).
        resource=Resource.create(attributes),
        # A caller's sampled trace is followed whatever the ratio; roots by the ratio.
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        # We shut it down with the manager, bounded; not again at exit.
        shutdown_on_exit=False,
    )
    headers = {name: value.reveal() for name, value in config.headers}
    exporter = OTLPSpanExporter(endpoint=config.endpoint, headers=headers or None)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _version() -> str | None:
    try:
        return metadata.version("router-health")
    except metadata.PackageNotFoundError:
        return None
