"""The lean benchmark upstream (benchmarks/fast_upstream.py) and the sharded benchmark rows.

No timing is asserted beyond "an answer waits at least its latency": every wait here is for
a condition (a counter, a process gone), bounded generously for a busy 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks import fast_upstream, suite, workload
from benchmarks.upstream import fast_upstream as start_fast_upstream

ROOT = Path(__file__).resolve().parents[2]
KEY = {"Authorization": f"Bearer {workload.API_KEY}"}


def wait_for(condition: Callable[[], Any], what: str, bound: float = 60.0) -> Any:
    """Poll ``condition`` until it is truthy (a generous bound: the machine is shared)."""
    deadline = time.monotonic() + bound
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stats(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/_fast/stats").json()


@pytest.fixture(scope="module")
def upstream() -> Any:
    with start_fast_upstream(workload.simulator_spec(3, 0.05, sentinels=False)) as up:
        yield up


def test_the_probe_gets_the_simulators_model_list_after_the_latency(upstream: Any) -> None:
    with httpx.Client() as client:
        start = time.monotonic()
        response = client.get(f"{upstream.url}/fleet-1/v1/models", headers=KEY)
        assert time.monotonic() - start >= 0.05
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "object": "list",
        "data": [{"id": workload.MODEL, "object": "model", "created": 1_700_000_000,
                  "owned_by": "system"}],
    }  # fmt: skip


def test_a_chat_completion_probe_is_answered_too(upstream: Any) -> None:
    body = {"model": workload.MODEL, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{upstream.url}/fleet-2/v1/chat/completions", json=body, headers=KEY)
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion" and data["choices"][0]["message"]["content"]
    assert data["model"] == workload.MODEL and data["usage"]["total_tokens"] == 2


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": workload.API_KEY}]
)
def test_a_wrong_or_missing_key_is_refused(upstream: Any, headers: dict[str, str]) -> None:
    response = httpx.get(f"{upstream.url}/fleet-0/v1/models", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/fleet-9/v1/models"), ("GET", "/fleet-0/v1/nope"), ("POST", "/fleet-0/v1/models"),
     ("GET", "/fleet-0/v1/chat/completions")],
)  # fmt: skip
def test_anything_else_is_a_404(upstream: Any, method: str, path: str) -> None:
    response = httpx.request(method, f"{upstream.url}{path}", headers=KEY)
    assert response.status_code == 404
    assert path in response.json()["error"]["message"]


def test_connections_are_kept_alive_and_pipelined_requests_answered_in_order(
    upstream: Any,
) -> None:
    request = (
        f"GET /fleet-0/v1/models HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {workload.API_KEY}\r\n\r\n"
    ).encode()
    host, port = upstream.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request * 2 + request.replace(b"fleet-0", b"fleet-1").replace(b"\r\n\r\n",
                     b"\r\nConnection: close\r\n\r\n"))  # fmt: skip
        received = b""
        while chunk := sock.recv(65536):  # the server closes after the third answer
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert received.endswith(b"}")  # nothing after the third body


def test_a_client_that_hangs_up_cancels_its_waiting_answer() -> None:
    spec = [{"name": "slow", "kind": "openai", "api_key": workload.API_KEY,
             "models": [workload.MODEL], "behavior": {"latency": 3600}}]  # fmt: skip
    with start_fast_upstream(spec) as up:
        host, port = up.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(
                f"GET /slow/v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                f"{workload.API_KEY}\r\n\r\n".encode()
            )
            wait_for(lambda: stats(up.url)["requests"] >= 1, "the request to arrive")
        counted = wait_for(lambda: stats(up.url)["disconnects"], "the disconnect to be seen")
        assert counted == 1
        assert stats(up.url)["answered"] == 0


def test_failure_modes_belong_on_the_full_simulator() -> None:
    with pytest.raises(ValueError, match="full simulator"):
        fast_upstream.routes(workload.simulator_spec(0, 0.1, sentinels=True))


def test_several_processes_share_the_port_and_leave_nothing_behind() -> None:
    with start_fast_upstream(workload.simulator_spec(2, 0.01, sentinels=False), processes=3) as up:
        pids = up.all_pids()
        assert len(set(pids)) == 3 and all(alive(p) for p in pids)
        with httpx.Client() as client:  # fresh connections: the kernel spreads them
            for _ in range(20):
                response = client.get(
                    f"{up.url}/fleet-0/v1/models", headers={**KEY, "Connection": "close"}
                )
                assert response.status_code == 200
        assert len(up.cpu_seconds()) == 3
    for pid in pids:
        wait_for(lambda pid=pid: not alive(pid), f"process {pid} to exit")


def test_its_children_exit_when_the_first_process_is_killed(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(workload.simulator_spec(1, 0.01, sentinels=False)),
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fast_upstream", "--spec", str(spec), "--processes",
         "2"], stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        assert line[0] == "FAST_UPSTREAM"
        child = int(line[2].split(",")[1])
        assert alive(child)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        wait_for(lambda: not alive(child), "the child to notice its parent is gone")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- our checker against it, one process and sharded --------------------------------------


@pytest.fixture(scope="module")
def scale_upstreams() -> Any:
    with suite.scale_upstreams(8, 0.05, processes=2) as up:
        yield up


def _run(up: Any, **extra: Any) -> dict[str, Any]:
    job = suite._job(up, 8, 0.05, sentinels=True, concurrent=True, warmup=1, repeats=1, **extra)
    return suite._ours(job)


def test_every_verdict_is_right_with_the_fleet_on_the_lean_upstream(scale_upstreams: Any) -> None:
    result = _run(scale_upstreams, workers=1)
    assert "error" not in result, result.get("error")
    assert result["all_correct"], result["wrong"]
    assert result["expected"] == 8 + len(workload.SENTINELS)
    assert result["workers"] == 0 and result["shard_cpu_ms_per_probe"] == []
    assert len(result["upstream_cpu_s"]) == 2  # one figure per upstream process
    assert result["sentinel_cpu_s"] is not None


def test_a_sharded_row_is_right_and_sums_its_processes(scale_upstreams: Any) -> None:
    plan = suite.Plan.quick_plan()
    plan.shard_threshold = 4
    keys = suite.sharding(plan, 8, None)
    assert keys == {"workers": 2, "shard_threshold": 4, "expect_sharded": True}
    result = _run(scale_upstreams, **keys)
    assert "error" not in result, result.get("error")
    assert result["all_correct"], result["wrong"]
    assert result["workers"] == 2
    parts = result["parent_cpu_ms_per_probe"] + sum(result["shard_cpu_ms_per_probe"])
    assert result["cpu_ms_per_probe"] == pytest.approx(parts)
    assert len(result["shard_peak_rss_mb"]) == 2
    assert result["peak_rss_mb"] == pytest.approx(
        result["parent_peak_rss_mb"] + sum(result["shard_peak_rss_mb"])
    )


def test_a_row_that_should_shard_and_did_not_is_wrong(scale_upstreams: Any) -> None:
    # Above its threshold with one worker: nothing to shard over, so not sharded.
    result = _run(scale_upstreams, workers=1, expect_sharded=True)
    assert not result["all_correct"]
    assert any("not sharded" in w for w in result["wrong"])


def test_litellms_health_check_finds_the_fleet_healthy_on_the_lean_upstream(
    scale_upstreams: Any,
) -> None:
    # Its probe is a chat completion through the OpenAI SDK: the lean upstream's answer must
    # parse as one, or the baseline would be measured as wrong for the upstream's sake.
    from tests.support.litellm import require_litellm

    require_litellm("the lean upstream's LiteLLM test")
    job = suite._job(scale_upstreams, 8, 0.05, sentinels=True, concurrent=True, warmup=0,
                     repeats=1)  # fmt: skip
    result = suite._litellm(job, cap=120)
    assert "error" not in result and "skipped" not in result, result
    assert result["finished"] and result["all_correct"], result["wrong"]


def test_the_http_rows_find_worker_processes_a_thread_started() -> None:
    # Trio starts processes from a worker thread: the main task's /proc children list misses
    # them, so the HTTP rows' CPU, RSS and fds would leave the workers out.
    import threading

    started: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        started.append(subprocess.Popen([sys.executable, "-c", "input()"], stdin=subprocess.PIPE))

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    (child,) = started
    try:
        assert child.pid in suite._children(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert child.pid not in suite._children(os.getpid())
