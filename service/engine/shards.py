"""Worker processes a large fleet's concurrent pass is sharded over.

One Python process runs out of CPU somewhere past a thousand concurrent
probes. With ``[checks] workers`` (default "auto": the CPU count) and a fleet
of at least ``shard_threshold`` HTTP adapters built from the config, the
:class:`~service.engine.manager.AdapterManager` starts that many worker
processes (``python -m service.engine.shard_worker``); each builds and owns
its share of the adapters, and the checker's concurrent pass sends each one
batch of probes per run and takes the results back as they come
(:meth:`HealthChecker._sharded_pass <service.engine.checker.HealthChecker>`).

What stays in this process: everything before a probe is sent (reported
traffic, Retry-After holds, ``min_interval``, the token budget) and after
(counting, remembering, the verdict's log line, listeners), the run's
deadline (the only one: a worker gets the time *remaining*, a little short),
the sequential strategy, the re-check pass, the fallback and ``probe_one``
(this process keeps its own adapters, whose connections open on first use).

The wire: length-prefixed pickle frames over the worker's stdin and stdout.
The shard's config (keys included) travels only there: a dedicated pickler
lets :class:`~adapters.redaction.Secret` through, which ordinary pickling
refuses on purpose; nothing goes in argv, the environment or a file. A
worker exits by itself when its stdin closes (this process ended, even by
SIGKILL).
"""

from __future__ import annotations

import contextlib
import copyreg
import dataclasses
import heapq
import io
import logging
import math
import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import trio

from adapters.base import Adapter, HttpAdapter
from adapters.redaction import Secret

from ..config import Config, ProviderConfig, ServerConfig, StorageConfig
from ..config.telemetry import TelemetryConfig
from .checker import ShardDelivery, ShardItem
from .report import ProbeResult
from .settings import CheckerSettings

__all__ = ["FrameReader", "ShardError", "ShardPool", "encode", "plan_shards", "write_frame"]

logger = logging.getLogger("router_health.shards")

#: How long a worker may take to start (import, build its adapters) and say so.
START_TIMEOUT: Final = 60.0
#: How long a worker has to exit after "stop" and its stdin closing, before it is killed.
STOP_TIMEOUT: Final = 5.0
#: How long a "cancel" may take to be written (shielded): a stuck pipe must not hang a run.
CANCEL_TIMEOUT: Final = 1.0
#: How long one frame to a worker may take to be written (it reads all the time).
SEND_TIMEOUT: Final = 10.0
#: Worker failures in a row after which sharding is turned off (one WARNING).
MAX_FAILURES: Final = 3
#: The largest frame either side accepts: a bigger length means a broken stream.
MAX_FRAME: Final = 1 << 30

_LENGTH = struct.Struct(">I")


class ShardError(Exception):
    """A worker process failed (exited, or broke the protocol): the run falls back."""


# -- frames ----------------------------------------------------------------------------------


def _secret_reduce(secret: Secret) -> tuple[type[Secret], tuple[str]]:
    return Secret, (secret.reveal(),)


def encode(obj: object, *, with_secrets: bool = False) -> bytes:
    """One frame: a 4-byte big-endian length, then ``obj`` pickled.

    ``with_secrets`` lets :class:`Secret` values through (only for the
    shard's config, written to the worker's stdin); any other frame that
    would carry one fails, as ordinary pickling does.
    """
    buffer = io.BytesIO()
    buffer.write(b"\0\0\0\0")
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    if with_secrets:
        table: dict[type, Callable[[Any], Any]] = dict(copyreg.dispatch_table)
        table[Secret] = _secret_reduce
        pickler.dispatch_table = table
    pickler.dump(obj)
    data = buffer.getbuffer()
    _LENGTH.pack_into(data, 0, len(data) - 4)
    return bytes(data)


async def write_frame(
    stream: trio.abc.SendStream, obj: object, *, with_secrets: bool = False
) -> None:
    await stream.send_all(encode(obj, with_secrets=with_secrets))


class FrameReader:
    """Frames from a byte stream; :meth:`read` returns None at a clean end of stream."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            chunk = await self._stream.receive_some(max(65536, size - len(self._buffer)))
            if not chunk:
                if self._buffer:
                    raise ShardError("the stream ended inside a frame")
                return False
            self._buffer += chunk
        return True

    async def read(self) -> Any:
        if not await self._fill(4):
            return None
        (length,) = _LENGTH.unpack_from(self._buffer)
        if length > MAX_FRAME:
            raise ShardError(f"a frame of {length} bytes: the stream is broken")
        if not await self._fill(4 + length):
            raise ShardError("the stream ended inside a frame")
        data = bytes(self._buffer[4 : 4 + length])
        del self._buffer[: 4 + length]
        return pickle.loads(data)


# -- assignment ----------------------------------------------------------------------------


def shard_candidates(
    config: Config, model_adapters: dict[str, list[Adapter]]
) -> list[tuple[str, ProviderConfig, Adapter]]:
    """The adapters built from ``config`` that a worker can probe: HTTP, active, supported."""
    found: list[tuple[str, ProviderConfig, Adapter]] = []
    for model in config.models:
        adapters = model_adapters.get(model.name, [])
        for entry, adapter in zip(model.providers, adapters, strict=False):
            if (
                isinstance(adapter, HttpAdapter)
                and adapter.provider == entry.name
                and not entry.passive
                and entry.type != "unsupported"
            ):
                found.append((model.name, entry, adapter))
    return found


def assign(
    candidates: Sequence[tuple[str, ProviderConfig, Adapter]],
    workers: int,
    settings: CheckerSettings,
) -> list[int]:
    """Each candidate's worker: counts balanced; a capped provider name stays in one worker.

    Adapters whose provider name has ``max_concurrent``, or all of a name
    when ``adaptive_concurrency`` is on, go to the same worker, so that the
    cap (or the adaptive limit) is one limit, as in one process.
    """
    groups: dict[object, list[int]] = {}
    for position, (_, entry, _) in enumerate(candidates):
        together = settings.adaptive_concurrency or entry.name in settings.provider_max_concurrent
        key: object = ("provider", entry.name) if together else position
        groups.setdefault(key, []).append(position)
    loads = [(0, worker) for worker in range(workers)]
    heapq.heapify(loads)
    chosen = [0] * len(candidates)
    for members in sorted(groups.values(), key=len, reverse=True):
        load, worker = heapq.heappop(loads)
        for position in members:
            chosen[position] = worker
        heapq.heappush(loads, (load + len(members), worker))
    return chosen


def shard_config(
    config: Config,
    candidates: Sequence[tuple[str, ProviderConfig, Adapter]],
    settings: CheckerSettings,
    workers: int,
) -> Config:
    """``config`` restricted to ``candidates``: no server, storage, alerts or telemetry.

    The global ``max_concurrent_probes`` is split evenly (rounded up) over the
    workers; the worker itself never shards again.
    """
    models: dict[str, list[ProviderConfig]] = {}
    for model, entry, _ in candidates:
        models.setdefault(model, []).append(entry)
    by_name = {model.name: model for model in config.models}
    cap = settings.max_concurrent_probes
    checks = dataclasses.replace(
        config.checks,
        workers=0,
        max_concurrent_probes=math.ceil(cap / workers) if cap else 0,
        timeout=settings.timeout,
        model_timeout=settings.model_timeout,
        adapter_timeout=settings.adapter_timeout,
        adaptive_concurrency=settings.adaptive_concurrency,
        adaptive_ceiling=settings.adaptive_ceiling,
        provider_max_concurrent={
            name: value
            for name, value in settings.provider_max_concurrent.items()
            if any(entry.name == name for _, entry, _ in candidates)
        },
        min_interval=0.0,
        adapter_min_interval={},
        adapter_schedule={},
        max_probe_tokens_per_hour=None,
    )
    return Config(
        checks=checks,
        models=tuple(
            dataclasses.replace(by_name[name], providers=tuple(entries))
            for name, entries in models.items()
        ),
        server=ServerConfig(),
        source=config.source,
        storage=dataclasses.replace(StorageConfig(), enabled=False),
        telemetry=TelemetryConfig(),
    )


# -- one worker ------------------------------------------------------------------------------


class _Batch:
    """One run's batch in one worker, as the reader task sees it."""

    __slots__ = ("deliver", "done", "error")

    def __init__(self, deliver: ShardDelivery) -> None:
        self.deliver = deliver
        self.done = trio.Event()
        self.error: BaseException | None = None


class _Worker:
    def __init__(self, index: int, config: Config, env: dict[str, str]) -> None:
        self.index = index
        self.config = config
        self.env = env
        self.process: trio.Process | None = None
        self.batches: dict[str, _Batch] = {}
        self.send_lock = trio.Lock()
        self.start_lock = trio.Lock()
        self.ready = trio.Event()
        self.failed: str | None = None  # why the process is no use any more
        self.reader_done = trio.Event()
        self.reader_scope = trio.CancelScope()

    @property
    def pid(self) -> int | None:
        process = self.process
        if process is None or process.returncode is not None or self.failed is not None:
            return None
        return process.pid

    @property
    def alive(self) -> bool:
        return self.pid is not None and self.ready.is_set()

    def describe(self) -> str:
        pid = None if self.process is None else self.process.pid
        return f"worker process {self.index} (pid {pid})"

    async def start(self) -> None:
        """Start the process, send its config, and wait (bounded) until it is ready."""
        self.ready = trio.Event()
        self.failed = None
        self.reader_done = trio.Event()
        self.reader_scope = trio.CancelScope()
        try:
            self.process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "service.engine.shard_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=self.env,
            )
        except OSError as exc:
            raise ShardError(f"{self.describe()} could not be started: {exc}") from None
        assert self.process.stdin is not None and self.process.stdout is not None
        trio.lowlevel.spawn_system_task(self._read, self.process, name=f"shard-reader-{self.index}")
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async with self.send_lock:  # a worker that died at once is reported below
                await write_frame(self.process.stdin, ("config", self.config), with_secrets=True)
        with trio.move_on_after(START_TIMEOUT):
            await self.ready.wait()
        if not self.ready.is_set() or self.failed is not None:
            reason = self.failed or f"not ready within {START_TIMEOUT:g} s"
            await self.stop()
            raise ShardError(f"{self.describe()} did not start: {reason}")

    async def _read(self, process: trio.Process) -> None:
        """The reader task (a system task: it outlives whichever task opened the manager)."""
        assert process.stdout is not None
        reader = FrameReader(process.stdout)
        reason = "its output ended"
        try:
            with self.reader_scope:
                while True:
                    frame = await reader.read()
                    if frame is None:
                        break
                    for message in frame:
                        self._dispatch(message)
        except Exception as exc:  # a system task must never raise: this run's batches fail
            reason = f"protocol error ({type(exc).__name__})"
        finally:
            if self.process is process:
                self._fail(reason)
            self.reader_done.set()

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "result":
            _, run_id, index, result, granted = message
            if not isinstance(result, ProbeResult):
                raise ShardError(f"a result that is a {type(result).__name__}")
            batch = self.batches.get(run_id)
            if batch is not None and batch.error is None:
                try:
                    batch.deliver(index, result, bool(granted))
                except Exception as exc:  # a listener's failure fails that run, not the worker
                    batch.error = exc
                    batch.done.set()
        elif kind == "done":
            batch = self.batches.get(message[1])
            if batch is not None:
                batch.done.set()
        elif kind == "ready":
            self.ready.set()
        else:
            raise ShardError(f"unknown message {kind!r}")

    def _fail(self, reason: str) -> None:
        """The process is no use any more: every batch waiting on it fails."""
        if self.failed is None:
            self.failed = reason
        self.ready.set()  # wake a start() waiting for it
        for batch in self.batches.values():
            if batch.error is None:
                batch.error = ShardError(f"{self.describe()} failed mid-run: {reason}")
            batch.done.set()

    async def send(self, message: object) -> None:
        process = self.process
        if process is None or process.stdin is None:
            raise ShardError(f"{self.describe()} is not running")
        data = encode(message)
        # A frame is written whole or the stream is broken: a write cut by a
        # cancellation would leave half a frame, so it is shielded, and bounded.
        with trio.CancelScope(shield=True), trio.move_on_after(SEND_TIMEOUT) as bound:
            try:
                async with self.send_lock:
                    await process.stdin.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._fail(f"its input closed ({type(exc).__name__})")
                raise ShardError(f"{self.describe()} failed: its input closed") from None
        if bound.cancelled_caught:
            self._fail(f"it read nothing for {SEND_TIMEOUT:g} s")
            process.kill()
            raise ShardError(f"{self.describe()} failed: it stopped reading its input")

    async def probe(
        self,
        run_id: str,
        items: list[ShardItem],
        model_remaining: float,
        run_remaining: float,
        deliver: ShardDelivery,
    ) -> None:
        batch = _Batch(deliver)
        self.batches[run_id] = batch
        finished = False
        try:
            await self.send(("batch", run_id, model_remaining, run_remaining, items))
            await batch.done.wait()
            finished = True
            if batch.error is not None:
                raise batch.error
        finally:
            del self.batches[run_id]
            if not finished and self.failed is None:
                # Cancelled (the deadline, a caller gone): every probe of this
                # run in the worker is cancelled and its socket closed.
                with trio.move_on_after(CANCEL_TIMEOUT) as scope:
                    scope.shield = True
                    with contextlib.suppress(ShardError):
                        await self.send(("cancel", run_id))

    async def stop(self) -> None:
        """"stop", close stdin, wait (bounded), then kill: never a process left behind."""
        process = self.process
        if process is None:
            return
        with trio.move_on_after(STOP_TIMEOUT) as scope:
            scope.shield = True
            if process.returncode is None and self.failed is None and process.stdin is not None:
                with contextlib.suppress(ShardError, trio.BrokenResourceError, trio.ClosedResourceError):
                    with trio.move_on_after(CANCEL_TIMEOUT):
                        async with self.send_lock:
                            await write_frame(process.stdin, ("stop",))
            if process.stdin is not None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await process.stdin.aclose()
            await process.wait()
        if process.returncode is None:
            process.kill()
            with trio.move_on_after(STOP_TIMEOUT) as scope:
                scope.shield = True
                await process.wait()
        self.reader_scope.cancel()
        with trio.move_on_after(STOP_TIMEOUT) as scope:
            scope.shield = True
            await self.reader_done.wait()
        if process.stdout is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await process.stdout.aclose()
        self._fail("stopped")


# -- the pool --------------------------------------------------------------------------------


class ShardPool:
    """N worker processes and which adapter each probes (the checker's ``shards``)."""

    def __init__(
        self,
        config: Config,
        candidates: Sequence[tuple[str, ProviderConfig, Adapter]],
        workers: int,
        settings: CheckerSettings,
    ) -> None:
        chosen = assign(candidates, workers, settings)
        self._worker_of: dict[int, int] = {}
        shares: list[list[tuple[str, ProviderConfig, Adapter]]] = [[] for _ in range(workers)]
        for (model, entry, adapter), worker in zip(candidates, chosen, strict=True):
            shares[worker].append((model, entry, adapter))
            self._worker_of[id(adapter)] = worker
        env = _worker_env(config)
        self.workers = [
            _Worker(i, shard_config(config, share, settings, workers), env)
            for i, share in enumerate(shares)
        ]
        self.sizes = [len(share) for share in shares]
        self.failures = 0
        self.disabled = False

    def __repr__(self) -> str:
        return f"ShardPool(workers={len(self.workers)}, adapters={self.sizes})"

    async def start(self) -> None:
        """Start every worker at once; raises :class:`ShardError` (all stopped) if one fails."""
        problems: list[str] = []

        async def start(worker: _Worker) -> None:
            try:
                await worker.start()
            except ShardError as exc:
                problems.append(str(exc))

        try:
            async with trio.open_nursery() as nursery:
                for worker in self.workers:
                    nursery.start_soon(start, worker)
        except BaseException:  # cancelled while starting: no process left behind
            await self.aclose()
            raise
        if problems:
            await self.aclose()
            raise ShardError("; ".join(problems))

    def pids(self) -> list[int]:
        return [pid for worker in self.workers if (pid := worker.pid) is not None]

    def worker_of(self, model: str, adapter: Adapter) -> int | None:
        if self.disabled:
            return None
        return self._worker_of.get(id(adapter))

    async def probe(
        self,
        worker: int,
        run_id: str,
        items: list[ShardItem],
        model_remaining: float,
        run_remaining: float,
        deliver: ShardDelivery,
    ) -> None:
        shard = self.workers[worker]
        if not shard.alive:
            async with shard.start_lock:
                if not shard.alive:
                    await shard.stop()
                    try:
                        await shard.start()
                    except ShardError:
                        self._failed()
                        raise
                    logger.info("%s restarted", shard.describe())
        try:
            await shard.probe(run_id, items, model_remaining, run_remaining, deliver)
        except ShardError:
            self._failed()
            raise
        self.failures = 0

    def _failed(self) -> None:
        self.failures += 1
        if self.failures >= MAX_FAILURES and not self.disabled:
            self.disabled = True
            logger.warning(
                "Worker processes failed %d times in a row: sharding is off until restart; "
                "this process probes every adapter itself (see [checks] workers)",
                self.failures,
            )

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for worker in self.workers:
                    nursery.start_soon(worker.stop)


def _worker_env(config: Config) -> dict[str, str]:
    """The environment a worker runs in: ours, minus the variables keys were read from.

    The keys travel in the config, over the pipe; the worker must be able to
    import this package wherever it was imported from here.
    """
    named = {
        name
        for model in config.models
        for entry in model.providers
        for name in (entry.api_key_env, *entry.headers_env.values())
        if name
    }
    env = {key: value for key, value in os.environ.items() if key not in named}
    root = str(Path(__file__).resolve().parents[2])
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = root if not path else os.pathsep.join([root, path])
    return env


def plan_shards(
    config: Config,
    model_adapters: dict[str, list[Adapter]],
    settings: CheckerSettings,
    *,
    shardable: bool = True,
) -> ShardPool | None:
    """The pool a fleet needs, or None: too small, workers off, or an outside probe limiter."""
    if settings.workers < 2 or not shardable:
        return None
    candidates = shard_candidates(config, model_adapters)
    if len(candidates) < settings.shard_threshold:
        return None
    workers = min(settings.workers, len(candidates))
    if workers < 2:
        return None
    return ShardPool(config, candidates, workers, settings)


# For the worker module: the one place that reads the first frame.
def build_worker_config(message: object) -> Config:
    if (
        not isinstance(message, tuple)
        or len(message) != 2
        or message[0] != "config"
        or not isinstance(message[1], Config)
    ):
        raise ShardError("the first frame is not a config")
    config: Config = message[1]
    return config

