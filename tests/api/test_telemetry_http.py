"""Trace context over real HTTP: a caller's ``traceparent`` parents the run its request starts.

The service is served by hypercorn on 127.0.0.1 with the simulator upstream;
its checker traces into the SDK's in-memory exporter.
"""

from __future__ import annotations

import pytest
import trio

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")

from service.engine.telemetry import PROBE_SPAN, RUN_SPAN
from tests.support.served import GUARD, PROVIDERS, running_service
from tests.support.tracing import Spans, attribute

TRACE_ID = 0x5B8EFFF798038103D269B633813FC60C
CALLER_SPAN_ID = 0xEEE19B7EC3C1B174
TRACEPARENT = f"00-{TRACE_ID:032x}-{CALLER_SPAN_ID:016x}-01"


async def test_a_run_a_traced_request_starts_is_a_child_of_the_callers_span() -> None:
    spans = Spans()
    async with running_service(server={"anonymous_min_interval": 0}) as service:
        service.manager.health_checker.tracing.use(spans.tracer)
        answer = await service.client.get(
            "/v1/health/", headers={"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
        )
        assert answer.status_code == 200

    [run] = spans.runs()
    assert run.context.trace_id == TRACE_ID
    assert run.parent is not None
    assert run.parent.span_id == CALLER_SPAN_ID
    assert run.parent.is_remote
    assert run.context.trace_state.get("vendor") == "1"
    assert attribute(run, "router_health.run.adapters") == len(PROVIDERS)
    probes = spans.probes()
    assert len(probes) == len(PROVIDERS)
    for probe in probes:
        assert probe.context.trace_id == TRACE_ID
        assert probe.parent is not None
        assert probe.parent.span_id == run.context.span_id


async def test_a_request_without_trace_context_starts_a_new_trace() -> None:
    spans = Spans()
    async with running_service(server={"anonymous_min_interval": 0}) as service:
        service.manager.health_checker.tracing.use(spans.tracer)
        traced = await service.client.get("/v1/health/", headers={"traceparent": TRACEPARENT})
        untraced = await service.client.get("/v1/health/models/gpt-4")
        assert traced.status_code == untraced.status_code == 200

    first, second = spans.runs()
    assert first.context.trace_id == TRACE_ID
    assert second.parent is None
    assert second.context.trace_id != TRACE_ID  # nothing of the first request stayed current
    assert attribute(second, "router_health.run.adapters") == 2  # gpt-4's two providers


async def test_a_malformed_traceparent_is_ignored() -> None:
    spans = Spans()
    async with running_service(server={"anonymous_min_interval": 0}) as service:
        service.manager.health_checker.tracing.use(spans.tracer)
        answer = await service.client.get("/v1/health/", headers={"traceparent": "00-nonsense"})
        assert answer.status_code == 200
    [run] = spans.runs()
    assert run.parent is None


async def test_background_probes_are_roots_of_their_own() -> None:
    spans = Spans()
    async with running_service(checks={"interval": 0.05}) as service:
        service.manager.health_checker.tracing.use(spans.tracer)
        with trio.fail_after(GUARD):
            await spans.wait_until(
                lambda finished: {attribute(span, "router_health.provider") for span in finished}
                == set(PROVIDERS)
            )
    assert spans.named(RUN_SPAN) == []
    probes = spans.named(PROBE_SPAN)
    assert len(probes) >= len(PROVIDERS)
    for probe in probes:
        assert probe.parent is None
