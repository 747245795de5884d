"""Hostile upstreams: every way a provider can misbehave, in both strategies.

Each case puts one misbehaving *target* first in a model, next to healthy
siblings (one in the same model, after it, and one in another model), and
checks that the target gets the right verdict within its own deadline and
that the siblings never notice. The simulator plays most cases; a few need
byte-level misbehaviour it does not offer (a refused or blackholed connect, a
TLS handshake with a certificate nobody trusts), so small raw Trio servers on
loopback play those. Everything stays on 127.0.0.0/8 (the DNS case asks the
resolver for a reserved ``.invalid`` name, which never leaves the machine's
resolver with an answer).

No test sleeps to wait for something: hanging cases end at the target's own
deadline (``timeout = 1``), and each run is guarded by ``fail_after``. The
verdict must come within that deadline plus a fixed slack for a busy machine
(:func:`~tests.support.served.deadline_bound`): a deadline applied three
times too late fails.
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from adapters import Adapter, CallableAdapter, SyncCallableAdapter
from service import AdapterManager, HealthReport, ProbeResult, parse_config
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support.served import deadline_bound, free_port

#: The target's own deadline: every hanging case ends there.
TARGET_TIMEOUT = 1.0
#: Generous bound on a whole run (the siblings' deadlines): only stops a hang.
RUN_GUARD = 10.0
TARGET_KEY = "rhtestkey-target-0b7c1d"
SIBLING_KEY = "rhtestkey-sibling-b-5e2f"


class BareBaseException(BaseException):
    """What careless user code might raise: neither an Exception nor a cancellation."""


@dataclass
class Stage:
    """What a case's ``arrange`` may use: the simulator, a nursery for raw servers, cleanups."""

    sim: Simulator
    nursery: trio.Nursery
    tmp_path: Path
    cleanups: list[Callable[[], None]] = field(default_factory=list)


# A case's arrange returns the target: a base_url for an OpenAI adapter, or an adapter.
Arrange = Callable[[Stage], Awaitable["str | Adapter"]]


@dataclass(frozen=True)
class Case:
    name: str
    arrange: Arrange
    status: str
    failure: str
    http_status: int | None = None
    retry_after: float | None = None
    memory_bound: bool = False  # check the process's peak RSS stays flat


# -- raw servers for what the simulator cannot do ------------------------------------


def _tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


_TCP_ESTABLISHED, _TCP_SYN_SENT = 1, 2


def blackhole(stage: Stage) -> int:
    """A port whose connects never complete: a listener with a full accept queue.

    With backlog 0 the kernel queues one connection and then drops every
    further SYN, so the client sits in SYN-SENT until its own deadline. The
    queue is filled first, and the trick is verified with a probe socket, so
    the test cannot silently degrade into "connection refused".
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers: list[socket.socket] = []
    stage.cleanups.append(listener.close)
    for _ in range(8):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(address)
        fillers.append(sock)
        stage.cleanups.append(sock.close)
        if _tcp_state(sock) == _TCP_SYN_SENT:
            break  # the queue is full: this very connect is blackholed
    else:
        # Linux drops a SYN for a full accept queue; a kernel that does not
        # would turn this case into "connection refused" or a success.
        message = "this kernel never dropped a SYN for a full accept queue"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: the blackholed connect is not tested")
        pytest.skip(message)
    assert _tcp_state(fillers[0]) == _TCP_ESTABLISHED
    return int(address[1])


async def self_signed_tls_server(stage: Stage) -> int:
    """A TLS server whose certificate no client trusts; it serves nothing else."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)

    async def handshake(stream: trio.SocketStream) -> None:
        tls = trio.SSLStream(stream, context, server_side=True)
        try:
            await tls.do_handshake()
            await tls.aclose()
        except trio.BrokenResourceError:
            pass  # the client rejected our certificate: the point of this server
        finally:
            await trio.aclose_forcefully(stream)

    serve = functools.partial(trio.serve_tcp, handshake, 0, host="127.0.0.1")
    listeners = await stage.nursery.start(serve)
    return int(listeners[0].socket.getsockname()[1])


# -- arrangements ----------------------------------------------------------------------


def sim_mode(**behaviour: Any) -> Arrange:
    async def arrange(stage: Stage) -> str:
        stage.sim.set_behavior("target", **behaviour)
        return stage.sim.base_url("target")

    return arrange


def url(make: Callable[[Stage], str]) -> Arrange:
    async def arrange(stage: Stage) -> str:
        return make(stage)

    return arrange


async def tls_target(stage: Stage) -> str:
    return f"https://127.0.0.1:{await self_signed_tls_server(stage)}/v1"


async def raising_target(stage: Stage) -> Adapter:
    async def check() -> bool:
        # Quoting a key the service knows (a sibling's): it must be redacted.
        raise BareBaseException(f"user code gave up (key {SIBLING_KEY})")

    return CallableAdapter("target", check, adapter_name="BareBaseAdapter")


async def blocking_sync_target(stage: Stage) -> Adapter:
    release = threading.Event()
    stage.cleanups.append(release.set)  # the abandoned thread ends with the test

    def legacy_sdk_ping() -> bool:
        release.wait(60)
        return True

    return SyncCallableAdapter("target", legacy_sdk_ping, timeout=TARGET_TIMEOUT)


CASES = [
    Case(
        "connection_refused",
        url(lambda stage: f"http://127.0.0.1:{free_port()}/v1"),
        "unhealthy",
        "connect",
    ),
    Case("dns_failure", url(lambda stage: "http://router-health-probe.invalid/v1"), "unhealthy", "connect"),
    Case(
        "blackhole_connect",
        url(lambda stage: f"http://127.0.0.1:{blackhole(stage)}/v1"),
        "timeout",
        "timeout",
    ),
    Case("headers_never_come", sim_mode(mode="hang"), "timeout", "timeout"),
    Case(
        "body_trickled_forever",
        sim_mode(mode="slow_body", trickle_interval=0.05),
        "timeout",
        "timeout",
    ),
    Case(
        "ten_megabyte_body",
        sim_mode(mode="huge_body"),
        "unhealthy",
        "body_too_large",
        http_status=200,
        memory_bound=True,
    ),
    Case("malformed_json", sim_mode(mode="malformed_json"), "unhealthy", "bad_body", 200),
    Case("html_captive_portal", sim_mode(mode="html"), "unhealthy", "bad_body", 200),
    Case("wrong_shape", sim_mode(mode="wrong_shape"), "unhealthy", "bad_body", 200),
    Case("http_401", sim_mode(mode="unauthorized"), "unhealthy", "auth", 401),
    Case("http_403", sim_mode(mode="status", status=403), "unhealthy", "auth", 403),
    Case(
        "http_429_with_retry_after",
        sim_mode(mode="rate_limited", retry_after=7),
        "unhealthy",
        "rate_limited",
        429,
        retry_after=7.0,
    ),
    Case("http_500", sim_mode(mode="status", status=500), "unhealthy", "http_status", 500),
    Case("http_502", sim_mode(mode="status", status=502), "unhealthy", "http_status", 502),
    Case("http_503", sim_mode(mode="status", status=503), "unhealthy", "http_status", 503),
    Case("reset_mid_body", sim_mode(mode="reset"), "unhealthy", "connect"),
    Case("tls_self_signed", tls_target, "unhealthy", "connect"),
    Case("adapter_raises_bare_base_exception", raising_target, "unhealthy", "exception"),
    Case("sync_adapter_blocks_for_a_minute", blocking_sync_target, "timeout", "timeout"),
]


# -- the world around a target -------------------------------------------------------------


def _fleet() -> list[SimProvider]:
    fast = Behavior(latency=0.0)
    return [
        SimProvider("target", "openai", TARGET_KEY, ["gpt-4"], fast),
        SimProvider("sibling-a", "openai-compatible", None, ["gpt-4"], fast),
        SimProvider("sibling-b", "anthropic", SIBLING_KEY, ["claude-3"], fast),
    ]


@asynccontextmanager
async def stage_for(tmp_path: Path) -> AsyncIterator[Stage]:
    async with trio.open_nursery() as nursery:
        sim = Simulator(_fleet())
        await nursery.start(sim.serve)
        stage = Stage(sim, nursery, tmp_path)
        try:
            yield stage
        finally:
            for cleanup in stage.cleanups:
                cleanup()
            nursery.cancel_scope.cancel()


def manager_for(stage: Stage, target_url: str) -> AdapterManager:
    entries = {entry["name"]: entry for entry in stage.sim.provider_entries()}
    target = {**entries["target"], "base_url": target_url, "timeout": TARGET_TIMEOUT}
    config = parse_config(
        {
            # Siblings get a deadline far beyond anything they need; the
            # re-check pass is off so each case shows its first verdict.
            "checks": {"timeout": RUN_GUARD, "model_timeout": RUN_GUARD, "adapter_timeout": 5,
                       "recheck_timeouts": False},
            "models": [
                {"name": "gpt-4", "providers": [target, {**entries["sibling-a"], "model": "gpt-4"}]},
                {"name": "claude-3", "providers": [entries["sibling-b"]]},
            ],
        },
        source="<hostile>",
        env={},
    )
    return AdapterManager(config)


def peak_rss_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM, the peak resident set size
    except OSError:
        return False
    return True


def memory_kib(field_name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field_name} not in /proc/self/status")


async def run_case(case: Case, concurrent: bool, tmp_path: Path) -> tuple[HealthReport, float]:
    async with stage_for(tmp_path) as stage:
        target = await case.arrange(stage)
        manager = manager_for(stage, target if isinstance(target, str) else stage.sim.base_url("target"))
        async with manager:
            plan = {model: list(adapters) for model, adapters in manager.model_adapters.items()}
            if not isinstance(target, str):
                plan["gpt-4"][0] = target  # a custom adapter replaces the HTTP one, first in line
            baseline = memory_kib("VmRSS")
            exact_peak = peak_rss_reset()
            with trio.fail_after(RUN_GUARD + 5):
                report = await manager.health_checker.check_all_models_with_timeout(
                    list(plan), plan, RUN_GUARD, use_concurrent=concurrent
                )
            growth = memory_kib("VmHWM" if exact_peak else "VmRSS") - baseline
        return report, growth / 1024


@pytest.mark.parametrize("concurrent", [True, False], ids=["concurrent", "sequential"])
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_a_hostile_upstream_gets_its_verdict_in_time_and_siblings_stay_healthy(
    case: Case, concurrent: bool, tmp_path: Path
) -> None:
    report, growth_mib = await run_case(case, concurrent, tmp_path)
    target: ProbeResult = report.models["gpt-4"].results["target"]

    assert (target.status.value, target.failure and target.failure.value) == (
        case.status,
        case.failure,
    ), target.error
    if case.http_status is not None:
        assert target.http_status == case.http_status
    if case.retry_after is not None:
        assert target.retry_after == case.retry_after
    # Its verdict came at its own deadline at the latest (plus a busy machine's slack).
    assert target.latency_ms is not None
    assert target.latency_ms < deadline_bound(TARGET_TIMEOUT) * 1000
    assert target.error
    assert TARGET_KEY not in target.error and SIBLING_KEY not in target.error

    # Siblings: one after it in the same model (sequentially: after its whole
    # misbehaviour), one in another model.
    assert report.models["gpt-4"].results["sibling-a"].status.value == "healthy"
    assert report.models["claude-3"].results["sibling-b"].status.value == "healthy"
    assert report.status.value == "degraded"
    assert report.concurrent is concurrent
    # The siblings answer at once: the whole run is the target's deadline at most.
    assert report.execution_time < deadline_bound(TARGET_TIMEOUT)
    if case.memory_bound:
        # Reading 10 MB would show as >= 10 MiB; the cap (1 MiB) keeps it far below.
        assert growth_mib < 8, f"peak RSS grew by {growth_mib:.1f} MiB"


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), True])
def test_a_custom_adapter_rejects_a_timeout_that_is_not_a_deadline(timeout: float) -> None:
    async def check() -> bool:
        return True

    with pytest.raises(ValueError, match="timeout must be a finite number of seconds > 0"):
        CallableAdapter("p", check, timeout=timeout)
    with pytest.raises(ValueError, match="timeout must be a finite number of seconds > 0"):
        SyncCallableAdapter("p", lambda: True, timeout=timeout)
