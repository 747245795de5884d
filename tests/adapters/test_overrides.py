"""Per-adapter probe overrides: probe_path, expect_status, headers, probe_model, wildcards, audio.

Most tests hand the adapter a canned transport (the answer is what matters);
the end-to-end ones go over loopback to a small fake upstream that records
exactly what arrived.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import h11
import pytest
import trio

from adapters import FailureKind, HttpAdapter, OpenAIAdapter, ProbeRequest, Secret
from adapters.transport import RawResponse
from service import AdapterManager, ProbeStatus, parse_config
from tests.support.leaks import fragment
from tests.support.served import receive_message

KEY = Secret("rhtestkey-overrides-0123456789abcdef")
TENANT = "Zq7f3a9c1e5bWx"


class Canned:
    """A transport that answers every request with one canned response, recording requests."""

    def __init__(
        self, status: int = 200, body: bytes = b"{}", headers: Mapping[str, str] | None = None,
        *, truncated: bool = False,
    ) -> None:
        self.response = RawResponse(status, dict(headers or {}), body, truncated)
        self.requests: list[ProbeRequest] = []

    async def fetch(self, request: ProbeRequest, *, max_body_bytes: int) -> RawResponse:
        self.requests.append(request)
        return self.response

    async def aclose(self) -> None:
        pass


def openai(**kwargs: Any) -> HttpAdapter:
    kwargs.setdefault("model", "gpt-4o")
    kwargs.setdefault("base_url", "https://gw.example.test:8443/v1")
    return OpenAIAdapter(provider="p", api_key=KEY, **kwargs)


def models_body(*ids: str) -> bytes:
    return json.dumps({"object": "list", "data": [{"id": i} for i in ids]}).encode()


async def answer(adapter: HttpAdapter, transport: Canned) -> Any:
    adapter.bind_client(transport)
    return await adapter.check_health()


# -- probe_path and expect_status ----------------------------------------------------------------


async def test_probe_path_gets_the_origin_plus_the_path_and_judges_only_the_status() -> None:
    transport = Canned(200, b"<html>fine</html>", {"content-type": "text/html"})
    outcome = await answer(openai(probe_path="/health"), transport)
    assert outcome.healthy and outcome.http_status == 200
    (request,) = transport.requests
    assert (request.method, request.url) == ("GET", "https://gw.example.test:8443/health")
    assert request.headers == {"Authorization": f"Bearer {KEY.reveal()}"}


async def test_probe_path_ignores_a_long_body_when_the_status_is_healthy() -> None:
    assert (await answer(openai(probe_path="/health"), Canned(200, truncated=True))).healthy


async def test_probe_path_failing_status_is_classified_like_any_other() -> None:
    down = await answer(openai(probe_path="/health"), Canned(503, b"warming up"))
    assert not down.healthy and down.failure is FailureKind.HTTP_STATUS and down.http_status == 503
    refused = await answer(openai(probe_path="/health"), Canned(401, b"no"))
    assert refused.failure is FailureKind.AUTH


async def test_expect_status_lets_a_health_url_answer_what_it_answers() -> None:
    adapter = openai(probe_path="/", expect_status=[401])
    assert (await answer(adapter, Canned(401, b"login first"))).healthy
    other = await answer(adapter, Canned(200, b"ok"))
    assert not other.healthy and "expected 401" in (other.error or "")


async def test_expect_status_narrows_a_normal_probe_too() -> None:
    adapter = openai(expect_status=[200])
    assert (await answer(adapter, Canned(200, models_body("gpt-4o")))).healthy
    outcome = await answer(adapter, Canned(203, models_body("gpt-4o")))
    assert not outcome.healthy and outcome.failure is FailureKind.HTTP_STATUS
    assert outcome.error == "HTTP 203, expected 200 (expect_status)"


async def test_probe_path_does_not_replace_the_paid_probe() -> None:
    transport = Canned(200, b'{"choices": [{"index": 0}]}')
    await answer(openai(probe_path="/health", probe="completion"), transport)
    assert transport.requests[0].url == "https://gw.example.test:8443/v1/chat/completions"


# -- headers -------------------------------------------------------------------------------------


async def test_extra_headers_go_on_every_probe_and_may_replace_ours() -> None:
    adapter = openai(headers={"X-Tenant": Secret(TENANT), "authorization": Secret("Bearer gw-token-1")})
    transport = Canned(200, models_body("gpt-4o"))
    await answer(adapter, transport)
    adapter.probe = "completion"
    transport.response = RawResponse(200, {}, b'{"choices": [{}]}', False)
    await answer(adapter, transport)
    for request in transport.requests:
        assert request.headers == {"X-Tenant": TENANT, "authorization": "Bearer gw-token-1"}


async def test_header_values_are_secrets_in_errors_and_reprs() -> None:
    adapter = openai(headers={"X-Tenant": TENANT})  # a plain string is held as a Secret too
    echo = json.dumps({"error": {"message": f"tenant {TENANT} is suspended"}}).encode()
    outcome = await answer(adapter, Canned(403, echo))
    assert outcome.failure is FailureKind.AUTH
    assert outcome.error is not None and fragment(TENANT, outcome.error) == 0
    assert TENANT not in repr(adapter) and TENANT not in str(vars(adapter))
    assert Secret(TENANT) in adapter.secrets and KEY in adapter.secrets


# -- probe_model, wildcard, audio -------------------------------------------------------------------


async def test_probe_model_is_what_the_paid_probe_calls_and_the_list_still_looks_for_model() -> None:
    adapter = openai(model="gpt-4o", probe_model="gpt-4o-mini", probe="completion")
    transport = Canned(200, b'{"choices": [{}], "usage": {"total_tokens": 9}}')
    outcome = await answer(adapter, transport)
    assert transport.requests[0].json_body["model"] == "gpt-4o-mini" and outcome.tokens == 9
    adapter.probe = "models"
    missing = await answer(adapter, Canned(200, models_body("gpt-4o-mini")))
    assert missing.failure is FailureKind.MODEL_MISSING


async def test_a_wildcard_reports_what_the_provider_lists_sorted_and_capped() -> None:
    ids = [f"model-{i:04d}" for i in range(1500)]
    outcome = await answer(openai(model="*"), Canned(200, models_body(*reversed(ids))))
    assert outcome.healthy and outcome.listed is not None
    assert list(outcome.listed) == ids[:1000]


async def test_a_speech_probe_is_judged_by_the_audio_it_returns() -> None:
    adapter = openai(model="tts-1", mode="audio_speech", probe="completion")
    audio = await answer(adapter, Canned(200, b"ID3\x04audio", {"content-type": "audio/mpeg"}))
    assert audio.healthy and audio.http_status == 200
    empty = await answer(adapter, Canned(200, b"", {"content-type": "audio/mpeg"}))
    assert empty.failure is FailureKind.BAD_BODY
    json_answer = await answer(adapter, Canned(200, b"{}", {"content-type": "application/json"}))
    assert json_answer.failure is FailureKind.BAD_BODY


# -- over the wire: a fake upstream that records what arrives ----------------------------------------


@dataclass
class Arrived:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeUpstream:
    """Answers ``routes[target]`` (status, content type, body), 404 otherwise; one request per connection."""

    routes: dict[str, tuple[int, str, bytes]]
    arrived: list[Arrived] = field(default_factory=list)
    port: int = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self.handle, listeners)

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        head, body = await receive_message(conn, stream)
        assert isinstance(head, h11.Request)
        target = head.target.decode()
        self.arrived.append(
            Arrived(head.method.decode(), target,
                    {k.decode(): v.decode() for k, v in head.headers}, body)
        )
        status, content_type, answer = self.routes.get(target.split("?")[0], (404, "text/plain", b"no"))
        reply = conn.send(h11.Response(status_code=status, headers=[
            ("content-type", content_type), ("content-length", str(len(answer))), ("connection", "close"),
        ]))
        await stream.send_all((reply or b"") + (conn.send(h11.Data(data=answer)) or b"")
                              + (conn.send(h11.EndOfMessage()) or b""))
        await stream.aclose()


async def check_entry(entry: dict[str, Any], env: Mapping[str, str]) -> Any:
    config = parse_config(
        {"checks": {"adapter_timeout": 5, "recheck_timeouts": False},
         "models": [{"name": "m", "providers": [{"name": "p", **entry}]}]},
        env=env,
    )
    async with AdapterManager.from_config(config) as manager:
        report = await manager.health_checker.run(manager.model_adapters)
    return report.models["m"].results["p"]


async def test_a_vllm_health_path_with_env_headers_end_to_end(nursery: trio.Nursery) -> None:
    upstream = FakeUpstream({"/health": (200, "text/plain", b"")})
    await nursery.start(upstream.serve)
    result = await check_entry(
        {"type": "vllm", "base_url": f"http://127.0.0.1:{upstream.port}/v1", "model": "qwen",
         "probe_path": "/health", "headers_env": {"X-Tenant": "TENANT_ID"}},
        {"TENANT_ID": TENANT},
    )
    assert result.status is ProbeStatus.HEALTHY, result.error
    (seen,) = upstream.arrived
    assert (seen.method, seen.target) == ("GET", "/health")
    assert seen.headers["x-tenant"] == TENANT and "authorization" not in seen.headers


async def test_an_error_quoting_a_header_value_is_redacted_end_to_end(nursery: trio.Nursery) -> None:
    echo = json.dumps({"error": {"message": f"bad tenant {TENANT}"}}).encode()
    upstream = FakeUpstream({"/v1/models": (500, "application/json", echo)})
    await nursery.start(upstream.serve)
    result = await check_entry(
        {"type": "openai-compatible", "base_url": f"http://127.0.0.1:{upstream.port}/v1",
         "model": "qwen", "headers": {"X-Tenant": TENANT}},
        {},
    )
    assert result.status is ProbeStatus.UNHEALTHY and result.http_status == 500
    assert result.error is not None and fragment(TENANT, result.error) == 0


async def test_a_transcription_upload_arrives_as_multipart_end_to_end(nursery: trio.Nursery) -> None:
    upstream = FakeUpstream(
        {"/v1/audio/transcriptions": (200, "application/json", b'{"text": ""}')}
    )
    await nursery.start(upstream.serve)
    result = await check_entry(
        {"type": "openai-compatible", "base_url": f"http://127.0.0.1:{upstream.port}/v1",
         "model": "whisper-1", "mode": "audio_transcription", "probe": "completion"},
        {},
    )
    assert result.status is ProbeStatus.HEALTHY, result.error
    (seen,) = upstream.arrived
    assert seen.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert int(seen.headers["content-length"]) == len(seen.body)
    assert b"RIFF" in seen.body and b'filename="probe.wav"' in seen.body


async def test_a_wildcard_entry_reports_listed_models_in_its_result(nursery: trio.Nursery) -> None:
    upstream = FakeUpstream({"/v1/models": (200, "application/json", models_body("b", "a", "c"))})
    await nursery.start(upstream.serve)
    result = await check_entry(
        {"type": "openai-compatible", "base_url": f"http://127.0.0.1:{upstream.port}/v1",
         "model": "*"},
        {},
    )
    assert result.status is ProbeStatus.HEALTHY, result.error
    assert result.listed_models == ("a", "b", "c")
    assert result.to_dict()["listed_models"] == ["a", "b", "c"]


@pytest.mark.parametrize("status", [200, 204])
async def test_expect_status_over_the_wire(nursery: trio.Nursery, status: int) -> None:
    upstream = FakeUpstream({"/ready": (status, "text/plain", b"")})
    await nursery.start(upstream.serve)
    result = await check_entry(
        {"type": "vllm", "base_url": f"http://127.0.0.1:{upstream.port}/v1", "model": "q",
         "probe_path": "/ready", "expect_status": 204},
        {},
    )
    assert (result.status is ProbeStatus.HEALTHY) is (status == 204), result.error
