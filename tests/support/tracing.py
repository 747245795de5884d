"""Spans kept in memory (the SDK's ``InMemorySpanExporter``), and a way to wait for them.

Needs the ``otel`` extra (in the dev extra); a module using this skips without it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import trio
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from service.engine.telemetry import PROBE_SPAN, RUN_SPAN


class _Ended(SpanProcessor):
    """Wakes the waiters whenever a span ends (spans end in the Trio thread)."""

    def __init__(self) -> None:
        self.changed = trio.Event()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self.changed.set()
        self.changed = trio.Event()


class Spans:
    """A tracer whose spans are kept here once they end."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self._ended = _Ended()
        self.provider.add_span_processor(self._ended)
        self.tracer: Tracer = self.provider.get_tracer("tests")

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.name == name]

    def runs(self) -> list[ReadableSpan]:
        return self.named(RUN_SPAN)

    def probes(self) -> list[ReadableSpan]:
        return self.named(PROBE_SPAN)

    async def wait_until(self, predicate: Callable[[list[ReadableSpan]], bool]) -> None:
        """Return once ``predicate(finished spans)`` holds (guard it with ``fail_after``)."""
        while not predicate(self.finished()):
            await self._ended.changed.wait()

    def clear(self) -> None:
        self.exporter.clear()


def everything_in(spans: Sequence[ReadableSpan]) -> str:
    """Every span whole (name, attributes, events, links, status, resource) as one text."""
    return "\n".join(json.dumps(json.loads(span.to_json()), ensure_ascii=False) for span in spans)


def attribute(span: ReadableSpan, name: str) -> object:
    assert span.attributes is not None
    return span.attributes.get(name)


def by_provider(spans: Sequence[ReadableSpan]) -> dict[object, ReadableSpan]:
    return {attribute(span, "router_health.provider"): span for span in spans}
