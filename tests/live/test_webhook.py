"""Webhook notifications: real POSTs over loopback to a tiny trio + h11 receiver (tests/support/receivers.py).

Nothing sleeps to wait for something to happen: tests wait on the
receiver's request log and the notifier's statistics (both event-driven),
each under a ``fail_after`` guard. Timings are only asserted as lower bounds
(with a little slack for delivery jitter) or as generous upper bounds.

Secrets use the ``rhtestkey`` / ``rhtesttoken`` prefixes CI greps a whole
run's DEBUG log for (see tests/system/test_secrets.py).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio

from adapters import FailureKind
from adapters.base import Secret
from service.config import CheckSchedule
from service.config.webhook import WebhookConfig, display_url, webhook_problems
from service.engine.report import ProbeResult, ProbeStatus
from service.live.state import HealthState
from service.live.webhook import WebhookNotifier
from tests.support import eventually
from tests.support.fakes import probe_result
from tests.support.receivers import HttpReceiver, Received
from tests.support.served import free_port

H, U, T = ProbeStatus.HEALTHY, ProbeStatus.UNHEALTHY, ProbeStatus.TIMEOUT
GUARD = 5.0
#: Scheduling jitter allowed around one clock reading.
SLACK = 0.05
#: What a POST's delivery may add to its arrival time at the receiver on a busy
#: machine (0.13 s seen with both cores busy): gaps between arrivals can be
#: that much shorter than the notifier's spacing, which is measured start to start.
ARRIVAL_JITTER = 0.3
TOKEN = "rhtesttoken-webhook-5d2c9e71"
QUERY_SECRET = "rhtestkey-webhook-query-8a41"
USER_SECRET = "rhtestkey-webhook-userinfo-33f0"


# -- the receiver -------------------------------------------------------------


def providers(request: Received) -> list[str]:
    return [t["provider"] for t in request.json()["transitions"]]


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> HttpReceiver:
    r = HttpReceiver(ok_status=204)
    await nursery.start(r.serve)
    return r


# -- helpers ------------------------------------------------------------------


def result(
    provider: str, status: ProbeStatus, *, model: str = "gpt-4", error: str | None = None,
    http_status: int | None = None, failure: FailureKind | None = None,
) -> ProbeResult:
    return probe_result(
        status, model=model, provider=provider, failure=failure, adapter="OpenAIAdapter",
        latency_ms=12.34, checked_at=1_700_000_000.1234, http_status=http_status, error=error,
    )


def new_state() -> HealthState:
    return HealthState(lambda model, provider: CheckSchedule(interval=10))


@asynccontextmanager
async def notifying(
    config: WebhookConfig, state: HealthState, client: httpx.AsyncClient | None = None
) -> AsyncIterator[WebhookNotifier]:
    """A running notifier; leaving the block cancels it."""
    notifier = WebhookNotifier(config, state, client=client)
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run)
        yield notifier
        nursery.cancel_scope.cancel()


# -- tests --------------------------------------------------------------------


async def test_a_transition_is_posted_with_its_json_and_the_bearer_token(
    receiver: HttpReceiver,
) -> None:
    state = new_state()
    config = WebhookConfig(url=receiver.url("/hook?k=v"), min_interval=0.1, token=Secret(TOKEN))
    with trio.fail_after(GUARD):
        async with notifying(config, state) as notifier:
            state.record(result("openai", H))  # a first result is a transition
            state.record(result("openai", H))  # no change: not a transition
            state.record(
                result("openai", U, error="HTTP 503: down", http_status=503,
                       failure=FailureKind.HTTP_STATUS)
            )
            await notifier.wait_until(lambda s: s.sent == 2)
    requests = receiver.requests
    sent = [t for r in requests for t in r.json()["transitions"]]
    assert sent == [
        {"model": "gpt-4", "provider": "openai", "previous": None, "current": "healthy",
         "at": 1_700_000_000.123, "latency_ms": 12.3, "failure": None, "error": None,
         "http_status": None},
        {"model": "gpt-4", "provider": "openai", "previous": "healthy", "current": "unhealthy",
         "at": 1_700_000_000.123, "latency_ms": 12.3, "failure": "http_status",
         "error": "HTTP 503: down", "http_status": 503},
    ]
    first = requests[0]
    assert first.target == "/hook?k=v"
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert first.headers["content-type"] == "application/json"
    assert set(first.json()) == {"transitions", "dropped", "sent_at"}
    assert first.json()["dropped"] == 0 and isinstance(first.json()["sent_at"], float)
    stats = notifier.statistics()
    assert (stats.sent, stats.failed, stats.dropped, stats.pending) == (2, 0, 0, 0)
    assert stats.posts == len(requests) and stats.last_error is None


async def test_transitions_within_min_interval_are_batched_and_posts_spaced(
    receiver: HttpReceiver,
) -> None:
    # Long enough that a busy machine's scheduling delays stay well inside it.
    min_interval = 1.0
    state = new_state()
    config = WebhookConfig(url=receiver.url(), min_interval=min_interval)
    with trio.fail_after(GUARD + 3 * min_interval):
        async with notifying(config, state) as notifier:
            state.record(result("a", H))
            await receiver.wait_requests(1)  # the first one goes out at once
            for provider in ("b", "c", "d"):
                state.record(result(provider, U))
                await trio.lowlevel.checkpoint()  # separate ticks: still one POST
            await receiver.wait_requests(2)
            state.record(result("e", T))
            await receiver.wait_requests(3)
            await notifier.wait_until(lambda s: s.sent == 5)
            # A quiet period (min_interval since the last POST arrived): the
            # next transition does not wait for min_interval.
            last = receiver.requests[-1].at
            await eventually(lambda: trio.current_time() - last >= min_interval + SLACK)
            recorded = trio.current_time()
            state.record(result("f", H))
            await notifier.wait_until(lambda s: s.sent == 6)
    requests = receiver.requests
    assert [providers(r) for r in requests] == [["a"], ["b", "c", "d"], ["e"], ["f"]]
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests[:3])]
    assert all(gap >= min_interval - ARRIVAL_JITTER for gap in gaps), gaps
    assert requests[3].at - recorded < min_interval  # went out immediately
    assert notifier.statistics().posts == 4


async def test_a_failing_receiver_is_retried_then_counted_failed_and_delivery_resumes(
    receiver: HttpReceiver, caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.mode = "fail"
    state = new_state()
    config = WebhookConfig(url=receiver.url(), min_interval=0.05, retries=2)
    caplog.set_level(logging.INFO, logger="router_health.webhook")
    with trio.fail_after(GUARD):
        async with notifying(config, state) as notifier:
            state.record(result("openai", U))
            stats = await notifier.wait_until(lambda s: s.failed == 1)
            assert stats.attempts == 3 and stats.sent == 0 and stats.pending == 1
            assert stats.last_error == "HTTP 500"
            requests = list(receiver.requests)
            assert len(requests) == 3
            assert all(providers(r) == ["openai"] for r in requests)
            # Backoff: min_interval (at least the 0.1 s floor), then twice that: the
            # schedule exactly as the notifier logged it, and the arrivals in that
            # order (their gaps carry each POST's delivery delay, see ARRIVAL_JITTER).
            retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
            assert [m.split("retrying in ")[1] for m in retries] == ["0.1 s", "0.2 s"], retries
            assert requests[0].at < requests[1].at < requests[2].at
            # The receiver comes back: the kept transition goes out with the new one.
            receiver.mode = "ok"
            state.record(result("azure", H))
            stats = await notifier.wait_until(lambda s: s.sent == 2)
            assert stats.pending == 0 and stats.failed == 1 and stats.last_error is None
    assert providers(receiver.requests[-1]) == ["openai", "azure"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].name == "router_health.webhook"
    assert "failed after 3 attempt(s)" in warnings[0].getMessage()
    assert "HTTP 500" in warnings[0].getMessage()


async def test_a_hanging_receiver_is_abandoned_within_timeout(receiver: HttpReceiver) -> None:
    receiver.mode = "hang"
    timeout = 0.3
    state = new_state()
    config = WebhookConfig(url=receiver.url(), min_interval=0.05, timeout=timeout, retries=0)
    with trio.fail_after(GUARD):
        async with notifying(config, state) as notifier:
            started = trio.current_time()
            state.record(result("openai", U))
            stats = await notifier.wait_until(lambda s: s.failed == 1)
            elapsed = trio.current_time() - started
            assert timeout - SLACK <= elapsed < timeout + 1.0
            assert stats.last_error == "no complete answer within 0.3 s"
            assert stats.pending == 1
            # The client really hung up (the receiver saw the connection end).
            await receiver.wait_until(lambda: receiver.disconnects >= 1)
            receiver.mode = "ok"
            await notifier.wait_until(lambda s: s.sent == 1)


async def test_a_flood_beyond_max_pending_drops_the_oldest_and_reports_it(
    receiver: HttpReceiver,
) -> None:
    receiver.mode = "hold"
    state = new_state()
    config = WebhookConfig(url=receiver.url(), min_interval=0.05, max_pending=5)
    with trio.fail_after(GUARD):
        async with notifying(config, state) as notifier:
            state.record(result("first", U))
            await receiver.wait_requests(1)  # in flight, held by the receiver
            for i in range(12):  # in one tick: the channel's buffer takes the burst
                state.record(result(f"p{i}", U))
            stats = await notifier.wait_until(lambda s: s.dropped == 7)
            assert stats.pending == 1 + 5  # the batch in flight, and the newest five
            receiver.mode = "ok"
            receiver.release.set()
            stats = await notifier.wait_until(lambda s: s.pending == 0)
    first, second = receiver.requests
    assert providers(first) == ["first"] and first.json()["dropped"] == 0
    assert providers(second) == [f"p{i}" for i in range(7, 12)]
    assert second.json()["dropped"] == 7
    assert (stats.sent, stats.dropped, stats.failed) == (6, 7, 0)


async def test_secrets_never_reach_logs_reprs_or_errors(
    receiver: HttpReceiver, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # httpx and httpcore included, whatever level a library imported earlier set
    # on their loggers (LiteLLM quiets httpx's).
    for name in ("httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    secret_url = receiver.url(f"/hook?key={QUERY_SECRET}&x=1").replace(
        "http://", f"http://user:{USER_SECRET}@"
    )
    state = new_state()
    config = WebhookConfig(
        url=secret_url, min_interval=0.05, timeout=0.3, retries=0, token=Secret(TOKEN)
    )
    texts = [repr(config), str(config)]
    with trio.fail_after(GUARD):
        async with notifying(config, state) as notifier:
            state.record(result("a", U))  # 204
            await notifier.wait_until(lambda s: s.sent == 1)
            receiver.mode = "fail"
            state.record(result("b", U))
            await notifier.wait_until(lambda s: s.failed == 1)
            receiver.mode = "hang"
            await notifier.wait_until(lambda s: s.failed == 2)
            texts += [repr(notifier), str(notifier.statistics())]
    # A connection refused, too (nothing listens on a port we bound and closed).
    closed_port = free_port()
    refused = WebhookConfig(
        url=f"http://user:{USER_SECRET}@127.0.0.1:{closed_port}/h?key={QUERY_SECRET}",
        min_interval=0.05, retries=0, token=Secret(TOKEN),
    )
    with trio.fail_after(GUARD):
        async with notifying(refused, state) as notifier:
            state.record(result("c", U))
            stats = await notifier.wait_until(lambda s: s.failed == 1)
            assert stats.last_error is not None and "Connect" in stats.last_error
            texts.append(repr(notifier))
    for bad in (
        {"url": f"ftp://user:{USER_SECRET}@example.com/h?key={QUERY_SECRET}"},
        {"url": f"https://user:{USER_SECRET}@example.com:99999/h?key={QUERY_SECRET}"},
        {"url": secret_url, "timeout": 0},
    ):
        with pytest.raises(ValueError) as raised:
            WebhookConfig(**bad)  # type: ignore[arg-type]
        texts.append(str(raised.value))
    with pytest.raises(TypeError) as wrong_type:
        WebhookConfig(url=secret_url, token=TOKEN)  # type: ignore[arg-type]
    texts.append(str(wrong_type.value))

    # The secrets were really used...
    target = receiver.requests[0]
    assert target.target == f"/hook?key={QUERY_SECRET}&x=1"
    assert target.headers["authorization"] == f"Bearer {TOKEN}"  # the token wins over userinfo
    # ...the log paths really ran (httpx logs every request with its URL)...
    assert any(r.name == "httpx" for r in caplog.records)
    assert any("HTTP 500" in r.getMessage() for r in caplog.records)
    assert any("no complete answer" in r.getMessage() for r in caplog.records)
    assert f"http://127.0.0.1:{receiver.port}/hook" in caplog.text
    # ...and never shown.
    everything = caplog.text + "\n".join(texts)
    for secret in (TOKEN, QUERY_SECRET, USER_SECRET):
        assert secret not in everything
    assert repr(config) == (
        f"WebhookConfig(url='http://127.0.0.1:{receiver.port}/hook', min_interval=0.05, "
        "timeout=0.3, max_pending=1000, retries=0)"
    )


async def test_userinfo_is_sent_as_basic_auth_without_a_token(receiver: HttpReceiver) -> None:
    state = new_state()
    url = receiver.url().replace("http://", f"http://hook:{USER_SECRET}@")
    with trio.fail_after(GUARD):
        async with notifying(WebhookConfig(url=url, min_interval=0.05), state) as notifier:
            state.record(result("a", U))
            await notifier.wait_until(lambda s: s.sent == 1)
    assert receiver.requests[0].headers["authorization"].startswith("Basic ")


async def test_cancellation_abandons_the_post_and_leaves_nothing_running(
    receiver: HttpReceiver,
) -> None:
    receiver.mode = "hang"
    state = new_state()
    config = WebhookConfig(url=receiver.url(), min_interval=0.05, timeout=30)
    notifier = WebhookNotifier(config, state)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(notifier.run)
            state.record(result("openai", U))
            await receiver.wait_requests(1)
            assert len(state._subscribers) == 1
            nursery.cancel_scope.cancel()
        # run() is gone, and so is everything it started: its connection is closed,
        # its subscription is closed (the next publish removes it) and its batch is kept.
        await receiver.wait_until(lambda: receiver.disconnects >= 1)
    assert not nursery.child_tasks
    state.record(result("azure", U))
    assert state._subscribers == []
    assert notifier.statistics().pending == 1


async def test_state_close_sends_what_is_pending_and_ends_run(receiver: HttpReceiver) -> None:
    state = new_state()
    config = WebhookConfig(url=receiver.url(), min_interval=60)
    notifier = WebhookNotifier(config, state)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(notifier.run)
            state.record(result("a", U))
            await receiver.wait_requests(1)
            state.record(result("b", U))  # would wait a minute for its slot
            await notifier.wait_until(lambda s: s.pending == 1)
            state.close()
        # The nursery closed by itself: run() returned, well before min_interval.
    assert [providers(r) for r in receiver.requests] == [["a"], ["b"]]
    stats = notifier.statistics()
    assert (stats.sent, stats.pending, stats.dropped) == (2, 0, 0)


async def test_state_close_with_a_dead_receiver_is_bounded_by_the_timeout(
    receiver: HttpReceiver,
) -> None:
    receiver.mode = "hang"
    timeout = 0.2
    state = new_state()
    config = WebhookConfig(url=receiver.url(), min_interval=60, timeout=timeout)
    notifier = WebhookNotifier(config, state)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(notifier.run)
            state.record(result("a", U))
            await receiver.wait_requests(1)  # hanging
            state.record(result("b", U))
            closed = trio.current_time()
            state.close()
        elapsed = trio.current_time() - closed
    # The POST in flight ran out its timeout, then one final attempt did.
    assert elapsed < 2 * timeout + 1.0
    assert [providers(r) for r in receiver.requests] == [["a"], ["a", "b"]]
    stats = notifier.statistics()
    assert (stats.sent, stats.pending, stats.dropped, stats.attempts) == (0, 0, 2, 2)


async def test_state_close_with_nothing_pending_returns_at_once(receiver: HttpReceiver) -> None:
    state = new_state()
    notifier = WebhookNotifier(WebhookConfig(url=receiver.url()), state)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(notifier.run)
            state.close()
    assert receiver.requests == []
    with pytest.raises(RuntimeError, match="runs once"):
        await notifier.run()


async def test_a_given_client_is_used_and_left_open(receiver: HttpReceiver) -> None:
    state = new_state()
    async with httpx.AsyncClient() as client:
        with trio.fail_after(GUARD):
            async with notifying(WebhookConfig(url=receiver.url()), state, client) as notifier:
                state.record(result("a", H))
                await notifier.wait_until(lambda s: s.sent == 1)
        assert not client.is_closed


def test_config_problems_are_phrased_like_the_config_module() -> None:
    assert webhook_problems("https://hooks.example.com/x?token=abc") == {}
    problems = webhook_problems(
        f"ftp://u:{USER_SECRET}@example.com/p?k={QUERY_SECRET}",
        min_interval=-1,
        timeout=float("inf"),
        max_pending=0,
        retries=True,
    )
    assert problems == {
        "url": "must start with http:// or https://, got 'ftp://example.com/p'",
        "min_interval": "must be a finite number of seconds >= 0 (0 = off), got -1",
        "timeout": "must be a finite number of seconds > 0, got inf",
        "max_pending": "must be at least 1, got 0",
        "retries": "must be an integer, got bool",
    }
    assert webhook_problems("http://example.com/#frag")["url"].startswith("must not have a #")
    assert webhook_problems("http:///nohost")["url"].startswith("has no host name")
    assert display_url("https://u:p@Example.com:8443/a/b?q=1#f") == "https://Example.com:8443/a/b"
    with pytest.raises(ValueError, match="webhook max_pending must be at least 1"):
        WebhookConfig(url="http://example.com/", max_pending=0)


# -- wired into the app, configured from TOML ---------------------------------------------


def webhook_config(webhook: dict[str, Any], checks: dict[str, Any] | None = None,
                   env: dict[str, str] | None = None) -> Any:
    from service import parse_config

    entry = {"name": "local", "type": "ollama", "base_url": "http://127.0.0.1:9"}
    return parse_config(
        {"checks": {"interval": 3600, **(checks or {})}, "webhook": webhook,
         "models": [{"name": "llama3", "providers": [entry]}]},
        source="t.toml", env=env or {},
    )


def test_webhook_table_is_parsed_and_validated_one_line_each() -> None:
    from service import ConfigError

    token = "rhtesttoken-webhook-cfg"
    config = webhook_config(
        {"url": "https://alerts.example/hook", "min_interval": 30, "token_env": "HOOK_TOKEN",
         "retries": 0},
        env={"HOOK_TOKEN": token},
    )
    hook = config.webhook
    assert hook is not None and hook.url == "https://alerts.example/hook"
    assert hook.min_interval == 30 and hook.retries == 0 and hook.timeout == 5.0
    assert hook.token is not None and hook.token.reveal() == token and token not in repr(config)

    with pytest.raises(ConfigError) as info:
        webhook_config(
            {"url": "ftp://x?key=rhtestkey-in-url", "min_interval": -1, "timeout": 0,
             "max_pending": 0, "retries": "2", "token": "has space", "colour": 1},
            checks={"interval": 0},
        )
    text = str(info.value)
    lines = text.splitlines()
    for expected in (
        "webhook.url: must start with http:// or https://",
        "webhook.min_interval:",
        "webhook.timeout:",
        "webhook.max_pending: must be at least 1",
        "webhook.retries: must be an integer, got '2'",
        "webhook.token: the token must be visible ASCII characters with no spaces",
        "webhook.colour: unknown key",
        "webhook: transitions come from background checks: set [checks] interval > 0",
    ):
        assert any(expected in line for line in lines), (expected, lines)
    assert "rhtestkey" not in text and "has space" not in text
    with pytest.raises(ConfigError, match=r"webhook\.url: required"):
        webhook_config({"min_interval": 5})
    with pytest.raises(ConfigError, match="HOOK_TOKEN is not set"):
        webhook_config({"url": "http://127.0.0.1:9/h", "token_env": "HOOK_TOKEN"})


async def test_the_app_posts_its_transitions(receiver: HttpReceiver) -> None:
    from service.api.app import create_app
    from service.engine.manager import AdapterManager
    from tests.support.app import serving
    from tests.support.fakes import Probe, adapter

    config = webhook_config({"url": receiver.url(), "min_interval": 0, "token": "rhtesttoken-app"},
                            checks={"jitter": 0})
    manager = AdapterManager(config)
    manager.model_adapters.clear()
    manager.register_adapter("gpt-4", adapter("openai", Probe([True])))
    manager.register_adapter("llama3", adapter("ollama", Probe([False])))
    app = create_app(config, manager=manager)
    async with serving(app):
        received = await receiver.wait_requests(1)
        await receiver.wait_until(
            lambda: sum(len(r.json()["transitions"]) for r in receiver.requests) >= 2
        )
    seen = {(t["model"], t["previous"], t["current"])
            for r in received for t in r.json()["transitions"]}
    assert seen == {("gpt-4", None, "healthy"), ("llama3", None, "unhealthy")}
    assert received[0].headers["authorization"] == "Bearer rhtesttoken-app"


async def test_a_real_server_shutdown_still_sends_the_last_post(receiver: HttpReceiver) -> None:

    from service.api.app import create_app, serve
    from service.engine.manager import AdapterManager
    from tests.support.fakes import Probe, adapter

    # min_interval 60: the second transition waits, and only shutdown sends it.
    config = webhook_config({"url": receiver.url(), "min_interval": 60}, checks={"jitter": 0})
    manager = AdapterManager(config)
    manager.model_adapters.clear()
    probe = Probe([True, False])  # healthy at startup, unhealthy when checked again
    manager.register_adapter("gpt-4", adapter("openai", probe))
    app = create_app(config, manager=manager)
    stop, stopped = trio.Event(), trio.Event()

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await serve(app, host="127.0.0.1", port=0, shutdown_trigger=stop.wait,
                        task_status=task_status)
        finally:
            stopped.set()

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            [url] = await nursery.start(run)
            await receiver.wait_requests(1)  # the first result, sent at once
            async with httpx.AsyncClient() as client:
                await client.get(f"{url}/v1/health/?fresh=true")  # -> unhealthy, pending
            stop.set()
            await stopped.wait()
    changes = [(t["previous"], t["current"]) for r in receiver.requests
               for t in r.json()["transitions"]]
    assert changes == [(None, "healthy"), ("healthy", "unhealthy")]
