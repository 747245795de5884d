"""Spans of check runs and probes: the tree, the attributes, no key anywhere, and the export.

Most tests trace into the SDK's in-memory exporter; the last ones export over
OTLP/HTTP to a receiver on 127.0.0.1 and decode what it got. Tracing off and
the extra missing: tests/engine/test_telemetry_off.py.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trio
import trio.testing

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.trace import StatusCode

from adapters.base import MIN_FRAGMENT
from service import AdapterManager, HealthChecker, parse_config
from service.engine.telemetry import PROBE_SPAN, RUN_SPAN
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support.configs import sim_config
from tests.support.fakes import adapter, after, hang, healthy, settings
from tests.support.tracing import Spans, attribute, by_provider, everything_in

#: The key of the provider whose error quotes it: in no redactor's list of shapes,
#: so only the checker's own redaction keeps it out of the spans.
KEY = "rhtest-otel-key-5be1d0c7a93f"
ADAPTER_TIMEOUT = 1.0


@pytest.fixture
def spans() -> Spans:
    return Spans()


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    now = Behavior(latency=0.0)
    return [
        SimProvider("up", "openai", "rhtest-otel-up-000000", ["gpt-4"], now),
        SimProvider("also-up", "anthropic", "rhtest-otel-anthropic-00", ["claude-3-haiku"], now),
        SimProvider("refused", "openai", KEY, ["gpt-4"], Behavior(latency=0.0, mode="echo_key")),
        SimProvider("stuck", "openai-compatible", None, ["gpt-4"], Behavior(mode="hang")),
    ]


def assert_no_key(text: str) -> None:
    assert KEY not in text
    # Nor what a cut would leave of it.
    for start in range(0, len(KEY) - 8, 4):
        assert KEY[start : start + 8] not in text, KEY[start : start + 8]
    assert len(KEY[:8]) >= MIN_FRAGMENT


# -- the tree and its attributes -------------------------------------------------------


async def test_a_run_is_a_root_span_with_a_child_per_probe_and_their_verdicts(
    sim: Simulator, spans: Spans
) -> None:
    config = sim_config(sim, "up", "also-up", "refused", "stuck", adapter_timeout=ADAPTER_TIMEOUT)
    async with AdapterManager.from_config(config) as manager:
        manager.health_checker.tracing.use(spans.tracer)
        report = await manager.health_checker.run(manager.model_adapters)

    [run] = spans.runs()
    probes = by_provider(spans.probes())
    assert run.parent is None
    assert set(probes) == {"up", "also-up", "refused", "stuck"}
    for probe in probes.values():
        assert probe.parent is not None
        assert probe.parent.span_id == run.context.span_id
        assert probe.context.trace_id == run.context.trace_id
        assert attribute(probe, "router_health.model") == "m"

    assert run.attributes == {
        "router_health.run.strategy": "concurrent",
        "router_health.run.models": 1,
        "router_health.run.adapters": 4,
        "router_health.run.deadline_s": config.checks.timeout,
        "router_health.run.model_budget_s": config.checks.model_timeout,
        "router_health.run.id": report.run_id,
        "router_health.run.status": "degraded",
        "router_health.run.healthy": 2,
        "router_health.run.degraded": 0,
        "router_health.run.unhealthy": 1,
        "router_health.run.timeout": 1,
        "router_health.run.unsupported": 0,
        "router_health.run.cached": 0,
        "router_health.run.fallback": False,
    }
    assert run.status.status_code is StatusCode.UNSET

    up = probes["up"]
    assert attribute(up, "router_health.adapter") == "OpenAIAdapter"
    assert attribute(up, "router_health.probe.status") == "healthy"
    assert attribute(up, "http.response.status_code") == 200
    assert attribute(up, "router_health.probe.failure") is None
    assert up.status.status_code is StatusCode.UNSET
    assert attribute(probes["also-up"], "router_health.adapter") == "AnthropicAdapter"

    refused = probes["refused"]
    assert attribute(refused, "router_health.probe.status") == "unhealthy"
    assert attribute(refused, "router_health.probe.failure") == "auth"
    assert attribute(refused, "error.type") == "auth"
    assert attribute(refused, "http.response.status_code") == 401
    assert refused.status.status_code is StatusCode.ERROR
    # The description is the result's error, as the API answers it: redacted.
    assert refused.status.description == report.models["m"].results["refused"].error

    stuck = probes["stuck"]
    assert attribute(stuck, "router_health.adapter") == "OpenAICompatibleAdapter"
    assert attribute(stuck, "router_health.probe.status") == "timeout"
    assert attribute(stuck, "router_health.probe.failure") == "timeout"
    assert attribute(stuck, "http.response.status_code") is None
    assert attribute(stuck, "router_health.probe.latency_ms") == pytest.approx(
        ADAPTER_TIMEOUT * 1000, abs=500
    )
    assert stuck.status.status_code is StatusCode.ERROR
    assert stuck.status.description == "no answer within 1.00 s (adapter timeout 1 s)"


async def test_no_key_is_in_any_span_even_when_the_upstream_quotes_it(
    sim: Simulator, spans: Spans
) -> None:
    config = sim_config(sim, "up", "refused", adapter_timeout=ADAPTER_TIMEOUT)
    async with AdapterManager.from_config(config) as manager:
        manager.health_checker.tracing.use(spans.tracer)
        report = await manager.health_checker.run(manager.model_adapters)
        await manager.health_checker.probe_one("m", manager.model_adapters["m"][1])
    assert sim.stats("refused").requests == 2  # the key went out, and came back quoted
    assert report.models["m"].results["refused"].error is not None
    finished = spans.finished()
    assert len(finished) == 4
    assert_no_key(everything_in(finished))
    for span in finished:  # and, one by one, what a backend would index
        assert span.attributes is not None
        for value in span.attributes.values():
            assert_no_key(str(value))
        for event in span.events:
            assert_no_key(str(dict(event.attributes or {})))
        assert_no_key(span.status.description or "")


async def test_a_run_under_a_current_span_is_its_child(
    autojump_clock: trio.testing.MockClock, spans: Spans
) -> None:
    checker = HealthChecker(settings())
    checker.tracing.use(spans.tracer)
    with spans.tracer.start_as_current_span("caller") as caller:
        await checker.run({"m": [adapter("a", after(0.1))]}, concurrent=False)
    [run] = spans.runs()
    [probe] = spans.probes()
    assert run.parent is not None
    assert run.parent.span_id == caller.get_span_context().span_id
    assert probe.parent is not None
    assert probe.parent.span_id == run.context.span_id
    assert attribute(run, "router_health.run.strategy") == "sequential"


async def test_hundreds_of_concurrent_probes_each_parent_to_their_own_run(
    autojump_clock: trio.testing.MockClock, spans: Spans
) -> None:
    # Two runs at once, 300 and 200 probes each in one nursery per model, each
    # probe sleeping a random while and opening a span of its own inside: Trio
    # switches between hundreds of tasks, each with its own copy of the context.
    rng = random.Random(17)
    tracer = spans.tracer

    def traced_check(provider: str) -> Any:
        async def check() -> bool:
            await trio.sleep(rng.uniform(0, 0.5))
            with tracer.start_as_current_span("inside", attributes={"provider": provider}):
                await trio.sleep(rng.uniform(0, 0.5))
            await trio.sleep(rng.uniform(0, 0.5))
            return True

        return check

    plans = {
        size: {f"model-{size}": [adapter(f"{size}-{i}", traced_check(f"{size}-{i}"))
                                 for i in range(size)]}
        for size in (300, 200)
    }
    checker = HealthChecker(settings())
    checker.tracing.use(tracer)
    async with trio.open_nursery() as nursery:
        for plan in plans.values():
            nursery.start_soon(checker.run, plan)

    runs = {attribute(run, "router_health.run.adapters"): run for run in spans.runs()}
    assert set(runs) == {300, 200}
    assert runs[300].context.trace_id != runs[200].context.trace_id
    probes = by_provider(spans.probes())
    assert len(probes) == 500
    for provider, probe in probes.items():
        run = runs[int(str(provider).split("-")[0])]
        assert probe.parent is not None
        assert probe.parent.span_id == run.context.span_id, provider
        assert probe.context.trace_id == run.context.trace_id
    inside = spans.named("inside")
    assert len(inside) == 500
    for span in inside:
        probe = probes[attribute(span, "provider")]
        assert span.parent is not None
        assert span.parent.span_id == probe.context.span_id  # its own probe, no other
    for run in runs.values():
        assert attribute(run, "router_health.run.healthy") == attribute(
            run, "router_health.run.adapters"
        )


async def test_a_probe_outside_a_run_is_a_root(
    autojump_clock: trio.testing.MockClock, spans: Spans
) -> None:
    checker = HealthChecker(settings())
    checker.tracing.use(spans.tracer)
    await checker.probe_one("m", adapter("a", healthy))  # what background checks call
    assert spans.runs() == []
    [probe] = spans.probes()
    assert probe.parent is None
    assert attribute(probe, "router_health.probe.status") == "healthy"


async def test_a_result_served_from_min_interval_is_no_probe_span(
    autojump_clock: trio.testing.MockClock, spans: Spans
) -> None:
    checker = HealthChecker(settings(min_interval=60))
    checker.tracing.use(spans.tracer)
    plan = {"m": [adapter("a", healthy)]}
    await checker.run(plan)
    await checker.run(plan)
    first, second = spans.runs()
    assert attribute(first, "router_health.run.cached") == 0
    assert attribute(second, "router_health.run.cached") == 1
    [probe] = spans.probes()
    assert probe.parent is not None
    assert probe.parent.span_id == first.context.span_id


async def test_a_recheck_is_a_second_probe_span_marked_fallback(
    autojump_clock: trio.testing.MockClock, spans: Spans
) -> None:
    calls = 0

    async def slow_then_fast() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            await trio.sleep_forever()
        return True

    checker = HealthChecker(settings(adapter_timeout=1.0, recheck_timeouts=True))
    checker.tracing.use(spans.tracer)
    report = await checker.run({"m": [adapter("a", slow_then_fast)]})
    [run] = spans.runs()
    first, second = spans.probes()
    assert attribute(first, "router_health.probe.status") == "timeout"
    assert attribute(first, "router_health.probe.fallback") is None
    assert attribute(second, "router_health.probe.status") == "healthy"
    assert attribute(second, "router_health.probe.fallback") is True
    assert {first.parent.span_id, second.parent.span_id} == {run.context.span_id}  # type: ignore[union-attr]
    assert attribute(run, "router_health.run.fallback") is True
    assert attribute(run, "router_health.run.fallback_reason") == report.fallback_reason


async def test_a_run_cancelled_from_outside_ends_its_spans_marked_cancelled(
    autojump_clock: trio.testing.MockClock, spans: Spans
) -> None:
    checker = HealthChecker(settings())
    checker.tracing.use(spans.tracer)
    with trio.move_on_after(1):
        await checker.run({"m": [adapter("a", hang), adapter("b", hang)]})
    [run] = spans.runs()
    probes = spans.probes()
    assert len(probes) == 2
    for span in (run, *probes):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "cancelled"
        assert attribute(span, "router_health.interrupted") == "cancelled"
    assert attribute(run, "router_health.run.status") is None  # it never finished


async def test_tracing_turned_off_again_makes_no_more_spans(
    autojump_clock: trio.testing.MockClock, spans: Spans
) -> None:
    checker = HealthChecker(settings())
    checker.tracing.use(spans.tracer)
    assert checker.tracing.on
    checker.tracing.use(None)
    assert not checker.tracing.on
    await checker.run({"m": [adapter("a", healthy)]})
    assert spans.finished() == []


# -- exported over OTLP/HTTP -------------------------------------------------------------


class _Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP receiver on 127.0.0.1: keeps each POST's path, headers and body."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.posts: list[tuple[str, dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.posts.append((self.path, headers, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")  # an empty ExportTraceServiceResponse
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Receiver]:
    # The exporter reads these itself: none of the machine's may change what it sends.
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def decoded(posts: Sequence[tuple[str, dict[str, str], bytes]]) -> list[dict[str, Any]]:
    """Every span the receiver got: name, ids, attributes, and its resource's attributes."""
    found = []
    for _, _, body in posts:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        {
                            "name": span.name,
                            "scope": scope_spans.scope.name,
                            "span_id": span.span_id,
                            "parent_span_id": span.parent_span_id,
                            "attributes": {kv.key: _value(kv.value) for kv in span.attributes},
                            "status": (span.status.code, span.status.message),
                            "resource": resource,
                        }
                    )
    return found


def _value(value: Any) -> object:
    return getattr(value, value.WhichOneof("value"))


async def test_spans_reach_an_otlp_http_receiver_with_the_configured_headers(
    sim: Simulator, receiver: _Receiver
) -> None:
    document = {
        "checks": {"adapter_timeout": 5, "recheck_timeouts": False},
        "models": [{"name": "m", "providers": [
            e for e in sim.provider_entries() if e["name"] in ("up", "refused")
        ]}],
        "telemetry": {
            "endpoint": receiver.url,
            "service_name": "router-health-test",
            "headers_env": "OTLP_TEST_HEADERS",
        },
    }
    config = parse_config(document, env={"OTLP_TEST_HEADERS": "X-Tenant=blue%20team"})
    assert config.telemetry.endpoint == receiver.url + "/v1/traces"
    async with AdapterManager.from_config(config) as manager:
        assert manager.health_checker.tracing.on
        await manager.health_checker.run(manager.model_adapters)
    # Closing the manager flushed the exporter: every span has been received.
    assert not manager.health_checker.tracing.on

    assert receiver.posts
    for path, headers, body in receiver.posts:
        assert path == "/v1/traces"
        assert headers["content-type"] == "application/x-protobuf"
        assert headers["x-tenant"] == "blue team"
        assert KEY.encode() not in body
    exported = decoded(receiver.posts)
    [run] = [span for span in exported if span["name"] == RUN_SPAN]
    probes = {span["attributes"]["router_health.provider"]: span
              for span in exported if span["name"] == PROBE_SPAN}
    assert set(probes) == {"up", "refused"}
    assert run["parent_span_id"] == b""
    assert run["scope"] == "router_health"
    assert run["resource"]["service.name"] == "router-health-test"
    assert run["attributes"]["router_health.run.adapters"] == 2
    assert run["attributes"]["router_health.run.unhealthy"] == 1
    for probe in probes.values():
        assert probe["parent_span_id"] == run["span_id"]
    assert probes["refused"]["attributes"]["router_health.probe.failure"] == "auth"
    assert probes["refused"]["attributes"]["http.response.status_code"] == 401
    assert probes["refused"]["status"][0] == 2  # STATUS_CODE_ERROR
    assert_no_key(json.dumps(exported, default=repr))


async def test_a_sample_ratio_of_zero_exports_no_root_run(
    sim: Simulator, receiver: _Receiver
) -> None:
    document = {
        "checks": {"adapter_timeout": 5},
        "models": [{"name": "m", "providers": [
            e for e in sim.provider_entries() if e["name"] == "up"
        ]}],
        "telemetry": {"endpoint": receiver.url, "sample_ratio": 0},
    }
    async with AdapterManager.from_config(parse_config(document, env={})) as manager:
        await manager.health_checker.run(manager.model_adapters)
    assert decoded(receiver.posts) == []
