"""Clients that hang up in the middle of a request never hurt the server.

A client that sends part of a body the app never reads (over the size cap,
the wrong content type, ``Expect: 100-continue``) and then closes used to
race hypercorn's own 400 against the app's closing of the same socket; the
loser raised ``trio.BusyResourceError``, which ended the whole server.
"""

from __future__ import annotations

import logging

import pytest
import trio

from tests.support.served import GUARD, Service, raw_get, running_service

#: Requests whose body the app answers without reading, each cut short.
HALF_SENT = [
    # Over the 64 KB cap: 413.
    b"POST /v1/health/batch HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    b"Content-Length: 200000\r\n\r\n" + b"x" * 60000,
    # Not JSON: 415.
    b"POST /v1/health/batch HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 50000\r\n\r\n" + b"x" * 30000,
    # Waiting for "100 Continue", then gone.
    b"POST /v1/health/batch HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    b"Expect: 100-continue\r\nContent-Length: 50000\r\n\r\n",
]
#: Enough tries to hit the race nearly every time before the fix (it took < 50 here).
TRIES = 150


async def hang_up_mid_body(service: Service, request: bytes, *, read_first: bool) -> None:
    host, port = service.url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    try:
        await stream.send_all(request)
        if read_first:  # sometimes the answer has started, sometimes not
            with trio.move_on_after(0.01):
                await stream.receive_some(100)
    except trio.BrokenResourceError:
        pass  # the server closed first: also fine
    finally:
        await stream.aclose()


async def test_clients_hanging_up_mid_body_leave_the_server_serving_and_the_log_clean(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_service() as service:
        for attempt in range(TRIES):
            request = HALF_SENT[attempt % len(HALF_SENT)]
            await hang_up_mid_body(service, request, read_first=attempt % 2 == 1)
        with trio.fail_after(GUARD):
            answer = await raw_get(service, b"/livez")
        assert answer.status == 200
        assert not service.stopped.is_set()
    logged = "\n".join(
        f"{record.getMessage()}\n{record.exc_text or ''}" for record in caplog.records
    )
    assert "BusyResourceError" not in logged
    assert "Traceback" not in logged
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
