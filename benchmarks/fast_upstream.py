"""A lean upstream for the scale curve's healthy fleet: stdlib only, so it is not the limit.

``python -m benchmarks.fast_upstream --spec FILE [--port P] [--processes K]`` prints
``FAST_UPSTREAM <root url> <pid>,<pid>...`` once every process listens, and serves
until SIGINT/SIGTERM (or its parent goes away).

The full simulator (``service.testing.simulator``) costs more CPU per request than
the checker it answers (h11, Trio, routing through every wire's validation). This
server answers exactly what the fleet's checkers send and nothing else: the OpenAI
adapter's free probe, ``GET {root}/{provider}/v1/models`` with ``Authorization:
Bearer KEY``, with the simulator's own answer (``{"object": "list", "data":
[model, ...]}``), and a chat completion probe (``POST .../v1/chat/completions``:
what LiteLLM's health check sends) with a one-token chat completion, the body
read and ignored. Each answer leaves after the provider's latency
(``loop.call_later``: no task per request). A wrong or missing
key gets the OpenAI 401 document; any other path or method gets a 404. Connections
are kept alive (HTTP/1.1), closed on ``Connection: close``; a client that hangs up
while its answer waits cancels that answer (counted as a disconnect).

Only healthy providers: a spec entry with a failure ``mode`` is refused, since the
failure-mode sentinels stay on the full simulator, which judges them strictly.

``--processes K`` runs K processes, each with its own listening socket on the same
port (SO_REUSEPORT: the kernel spreads connections over them). Their pids are all
printed, so a benchmark can sum their CPU. Children exit when the first process
does (a pipe they watch reaches EOF, even if it was killed).

``GET /_fast/stats`` (no key) answers this process's counters as JSON: requests,
answered, unauthorized, not_found, disconnects.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from typing import Any

_MODEL_CREATED = 1_700_000_000
_MAX_HEAD = 64 * 1024


def _response(status: int, reason: str, body: bytes, *, close: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "server: router-health-fast-upstream\r\n"
        + ("connection: close\r\n" if close else "")
        + "\r\n"
    )
    return head.encode("ascii") + body


def _error(status: int, reason: str, message: str, err_type: str, code: str | None) -> bytes:
    doc = {"error": {"message": message, "type": err_type, "param": None, "code": code}}
    return _response(status, reason, json.dumps(doc, separators=(",", ":")).encode())


class Route:
    """One provider's probe: the key it wants, its answers and its latency."""

    __slots__ = ("answer", "authorization", "chat", "latency")

    def __init__(self, entry: dict[str, Any]) -> None:
        models = entry.get("models") or []
        body = {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": _MODEL_CREATED, "owned_by": "system"}
                for m in models
            ],
        }
        self.answer = _response(200, "OK", json.dumps(body, separators=(",", ":")).encode())
        chat = {
            "id": "chatcmpl-fast",
            "object": "chat.completion",
            "created": _MODEL_CREATED,
            "model": models[0] if models else "",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "pong"},
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        self.chat = _response(200, "OK", json.dumps(chat, separators=(",", ":")).encode())
        self.authorization = f"Bearer {entry['api_key']}".encode()
        self.latency = float((entry.get("behavior") or {}).get("latency", 0.0))


#: (method, path) -> (route, its answer) for every provider of a spec.
Routes = dict[tuple[bytes, bytes], tuple[Route, bytes]]


def routes(spec: list[dict[str, Any]]) -> Routes:
    """(method, path) -> (route, answer) for every provider of ``spec`` (healthy, OpenAI kind)."""
    table: Routes = {}
    for entry in spec:
        if entry.get("kind", "openai") != "openai":
            raise ValueError(f"{entry['name']}: the lean upstream serves the openai kind only")
        mode = (entry.get("behavior") or {}).get("mode")
        if mode not in (None, "ok", "healthy"):
            raise ValueError(
                f"{entry['name']}: failure mode {mode!r} belongs on the full simulator "
                "(python -m service.testing.simulator)"
            )
        route = Route(entry)
        base = f"/{entry['name']}/v1"
        table[(b"GET", f"{base}/models".encode())] = (route, route.answer)
        table[(b"POST", f"{base}/chat/completions".encode())] = (route, route.chat)
    return table


class Stats:
    __slots__ = ("answered", "disconnects", "not_found", "requests", "unauthorized")

    def __init__(self) -> None:
        self.requests = self.answered = self.unauthorized = self.not_found = 0
        self.disconnects = 0

    def body(self) -> bytes:
        data = {name: getattr(self, name) for name in self.__slots__}
        return _response(200, "OK", json.dumps(data).encode())


_UNAUTHORIZED = _error(
    401,
    "Unauthorized",
    "Incorrect API key provided. You can find your API key at "
    "https://platform.openai.com/account/api-keys.",
    "invalid_request_error",
    "invalid_api_key",
)
_BAD_REQUEST = _response(400, "Bad Request", b'{"error":"bad request"}', close=True)


class Http(asyncio.Protocol):
    """One connection: requests answered one at a time, in order (pipelined ones wait)."""

    __slots__ = ("buffer", "close_after", "loop", "pending", "routes", "stats", "transport")

    def __init__(self, table: Routes, stats: Stats) -> None:
        self.routes = table
        self.stats = stats
        self.buffer = b""
        self.pending: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.close_after = False
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
            self.stats.disconnects += 1
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data
        if self.pending is None:
            self._next()

    def _next(self) -> None:
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end == -1:
            if len(buffer) > _MAX_HEAD:
                self._send(_BAD_REQUEST, close=True)
            return
        lines = buffer[:end].split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            self._send(_BAD_REQUEST, close=True)
            return
        method, target, version = parts
        authorization = None
        length = 0
        close = version != b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"authorization":
                authorization = value.strip()
            elif name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    self._send(_BAD_REQUEST, close=True)
                    return
            elif name == b"connection":
                close = value.strip().lower() == b"close"
            elif name == b"transfer-encoding":
                self._send(_BAD_REQUEST, close=True)  # a probe never streams its body
                return
        if len(buffer) < end + 4 + length:
            return  # the body is still coming
        self.buffer = buffer[end + 4 + length :]
        self.close_after = close
        stats = self.stats
        stats.requests += 1
        path = target.partition(b"?")[0]
        found = self.routes.get((method, path))
        if found is None:
            if method == b"GET" and path == b"/_fast/stats":
                self._send(stats.body())
                return
            stats.not_found += 1
            shown = f"{method.decode('latin-1')} {path.decode('latin-1')}"
            self._send(
                _error(404, "Not Found", f"Invalid URL ({shown})", "invalid_request_error", None)
            )
            return
        route, answer = found
        if authorization != route.authorization:
            stats.unauthorized += 1
            self._send(_UNAUTHORIZED)
            return
        if route.latency > 0:
            self.pending = self.loop.call_later(route.latency, self._answer, answer)
        else:
            self._answer(answer)

    def _answer(self, data: bytes) -> None:
        self.pending = None
        self.stats.answered += 1
        self._send(data)

    def _send(self, data: bytes, *, close: bool = False) -> None:
        transport = self.transport
        if transport is None:
            return
        transport.write(data)
        if close or self.close_after:
            transport.close()
            self.transport = None
            return
        if self.buffer:
            self._next()  # a pipelined request


def _listener(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


async def _serve(sock: socket.socket, table: Routes, watch_fd: int | None) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def done() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done)
    if watch_fd is not None:  # the first process's pipe: EOF when it is gone

        def check() -> None:
            try:
                data = os.read(watch_fd, 1)
            except BlockingIOError:
                return
            if not data:
                loop.remove_reader(watch_fd)
                done()

        os.set_blocking(watch_fd, False)
        loop.add_reader(watch_fd, check)
    stats = Stats()
    server = await loop.create_server(lambda: Http(table, stats), sock=sock, backlog=4096)
    try:
        await stop
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fast_upstream")
    parser.add_argument("--spec", required=True, help="the simulator's --spec JSON document")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args(argv)
    with open(args.spec, encoding="utf-8") as handle:
        table = routes(json.load(handle))
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    first = _listener(args.port)
    port = first.getsockname()[1]
    alive_r, alive_w = os.pipe()  # children watch alive_r: EOF once this process is gone
    ready_r, ready_w = os.pipe()
    children: list[int] = []
    for _ in range(args.processes - 1):
        pid = os.fork()
        if pid == 0:  # a child: its own socket on the same port
            first.close()
            os.close(alive_w)
            os.close(ready_r)
            code = 0
            try:
                sock = _listener(port)
                os.write(ready_w, b"R")
                os.close(ready_w)
                asyncio.run(_serve(sock, table, alive_r))
            except BaseException:
                code = 1
            os._exit(code)
        children.append(pid)
    os.close(alive_r)
    os.close(ready_w)
    got = b""
    while len(got) < len(children):
        chunk = os.read(ready_r, len(children) - len(got))
        if not chunk:
            raise SystemExit("a fast upstream process failed to listen")
        got += chunk
    os.close(ready_r)
    pids = ",".join(str(p) for p in [os.getpid(), *children])
    print(f"FAST_UPSTREAM http://127.0.0.1:{port} {pids}", flush=True)
    try:
        asyncio.run(_serve(first, table, None))
    finally:
        os.close(alive_w)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
