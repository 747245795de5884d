"""A worker process of a sharded fleet: ``python -m service.engine.shard_worker``.

Started by :class:`service.engine.shards.ShardPool`, never by hand. It reads
its shard's config from stdin (the first frame), builds and opens those
adapters, says "ready", then probes each batch it is sent concurrently
through its own :class:`~service.engine.checker.HealthChecker` (the same
probe code as the parent's), streaming results back on stdout, as many per
frame as are ready. "cancel" cancels a run's probes (their sockets close);
"stop", or stdin ending (the parent is gone, even killed), ends the process;
SIGINT and SIGTERM do not (the parent stops it, or SIGKILL).

It logs WARNING and above to stderr, and nothing per probe: the parent logs
every verdict.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
from typing import Any

import trio

from .cost import free_twin
from .manager import AdapterManager
from .shards import FrameReader, build_worker_config, encode

__all__ = ["main"]

logger = logging.getLogger("router_health.shard_worker")


async def _serve(stdin: trio.abc.ReceiveStream, stdout: trio.abc.SendStream) -> None:
    reader = FrameReader(stdin)
    config, secrets = build_worker_config(await reader.read())
    outbox_send, outbox = trio.open_memory_channel[tuple[Any, ...]](math.inf)
    manager = AdapterManager(config)
    checker = manager.health_checker
    checker.add_secrets(secrets)  # the whole fleet's: redacted here, at the source
    adapters = {
        (model, adapter.provider): adapter
        for model, listed in manager.model_adapters.items()
        for adapter in listed
    }
    scopes: dict[str, trio.CancelScope] = {}

    async def write() -> None:
        # Whatever is ready goes in one frame: at ten thousand results a run,
        # a frame (and a write) each would cost more than the probes.
        async for message in outbox:
            messages = [message]
            while True:
                try:
                    messages.append(outbox.receive_nowait())
                except trio.WouldBlock:
                    break
            await stdout.send_all(encode(messages))

    async def run_batch(
        run_id: str, model_remaining: float, run_remaining: float, items: list[Any]
    ) -> None:
        now = trio.current_time()
        model_deadline, run_deadline = now + model_remaining, now + run_remaining
        run = checker.worker_run(run_id)

        async def probe(index: int, model: str, provider: str, free: bool) -> None:
            adapter = adapters[(model, provider)]
            if free:
                adapter = free_twin(adapter)
            result, granted = await checker.probe_in_worker(
                model, adapter, model_deadline, run_deadline, run
            )
            outbox_send.send_nowait(("result", run_id, index, result, granted))

        scope = scopes[run_id]
        try:
            with scope:
                async with trio.open_nursery() as nursery:
                    for index, model, provider, free, _fallback in items:
                        nursery.start_soon(probe, index, model, provider, free)
        finally:
            del scopes[run_id]
            outbox_send.send_nowait(("done", run_id))

    async with manager, trio.open_nursery() as nursery:
        nursery.start_soon(write)
        outbox_send.send_nowait(("ready",))
        while True:
            message = await reader.read()
            if message is None or message[0] == "stop":
                break
            if message[0] == "batch":
                _, run_id, model_remaining, run_remaining, items = message
                scopes[run_id] = trio.CancelScope()
                nursery.start_soon(run_batch, run_id, model_remaining, run_remaining, items)
            elif message[0] == "cancel":
                scope = scopes.get(message[1])
                if scope is not None:
                    scope.cancel()
        nursery.cancel_scope.cancel()


def main() -> None:
    # Ctrl-C in a terminal, or a service manager's SIGTERM, reaches the whole
    # process group: the main process decides when its workers stop (its
    # graceful shutdown may still need them), and a worker whose main process
    # is gone sees its stdin end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    # The parent logs every verdict (and knows every key to redact).
    logging.getLogger("router_health.checker").disabled = True
    # Frames only on stdout: anything else printing there would break them.
    stdin = trio.lowlevel.FdStream(os.dup(0))
    stdout = trio.lowlevel.FdStream(os.dup(1))
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        trio.run(_serve, stdin, stdout)
    except KeyboardInterrupt:
        pass
    except BaseException as exc:  # the parent is gone or broke the protocol: say what, not more
        if isinstance(exc, SystemExit):
            raise
        # The exception's text might quote a config value: its type only.
        print(f"router-health shard worker stopped: {type(exc).__name__}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
