"""Worker processes a large fleet's concurrent pass is sharded over.

One Python process runs out of CPU somewhere past a thousand concurrent
probes. With ``[checks] workers`` (default "auto": the CPUs this process may
use) and a fleet of at least ``shard_threshold`` HTTP adapters built from the
config, the :class:`~service.engine.manager.AdapterManager` starts that many
worker processes (never more than groups of adapters):
:mod:`service.engine.shard_worker`, run by a small ``-c`` bootstrap that puts
this package's root after the standard library on ``sys.path``. Each builds
and owns its share of the adapters, and the checker's concurrent pass sends
each one batch of probes per run and takes the results back as they come
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
from adapters.redaction import Secret, prepare_secrets

from ..config import Config, ProviderConfig, ServerConfig, StorageConfig
from ..config.telemetry import TelemetryConfig
from .checker import ShardDelivery, ShardError, ShardItem
from .report import ProbeResult
from .settings import CheckerSettings

__all__ = ["FrameReader", "ShardError", "ShardPool", "encode", "plan_shards", "write_frame"]

logger = logging.getLogger("router_health.shards")

#: How long a worker may take to start (import, build its adapters) and say so.
START_TIMEOUT: Final = 60.0
#: How long a worker has to exit after "stop" and its stdin closing, before it is killed.
STOP_TIMEOUT: Final = 5.0
#: How long a "cancel" may take to be written (shielded, bounded): a stuck pipe must not hang a run.
CANCEL_TIMEOUT: Final = 1.0
#: How long one frame to a worker may take to be written (it reads all the time).
SEND_TIMEOUT: Final = 10.0
#: Worker failures in a row after which sharding is turned off (one WARNING).
MAX_FAILURES: Final = 3
#: The largest frame either side accepts: a bigger length means a broken stream.
MAX_FRAME: Final = 1 << 30
#: The most bytes one read asks for (a frame's length says how many more are due).
READ_SIZE: Final = 1 << 20
#: Results the reader hands on between two checkpoints (the event loop's other tasks run).
DISPATCH_CHUNK: Final = 256

_LENGTH = struct.Struct(">I")


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
            chunk = await self._stream.receive_some(
                min(max(65536, size - len(self._buffer)), READ_SIZE)
            )
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
        with memoryview(self._buffer) as view:
            obj = pickle.loads(view[4 : 4 + length])
        del self._buffer[: 4 + length]
        return obj


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
    groups = _groups(candidates, settings)
    loads = [(0, worker) for worker in range(workers)]
    heapq.heapify(loads)
    chosen = [0] * len(candidates)
    for members in sorted(groups.values(), key=len, reverse=True):
        load, worker = heapq.heappop(loads)
        for position in members:
            chosen[position] = worker
        heapq.heappush(loads, (load + len(members), worker))
    return chosen


def _groups(
    candidates: Sequence[tuple[str, ProviderConfig, Adapter]], settings: CheckerSettings
) -> dict[object, list[int]]:
    """Candidates that must stay in one worker (a capped provider name), by key."""
    groups: dict[object, list[int]] = {}
    for position, (_, entry, _) in enumerate(candidates):
        together = settings.adaptive_concurrency or entry.name in settings.provider_max_concurrent
        key: object = ("provider", entry.name) if together else position
        groups.setdefault(key, []).append(position)
    return groups


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
    def __init__(
        self, index: int, config: Config, env: dict[str, str], secrets: tuple[str, ...] = ()
    ) -> None:
        self.index = index
        self.config = config
        self.env = env
        self.secrets = secrets
        self.process: trio.Process | None = None
        self.batches: dict[str, _Batch] = {}
        self.send_lock = trio.Lock()
        self.start_lock = trio.Lock()
        self.ready = trio.Event()
        self.failed: str | None = None  # why the process is no use any more
        self.usable = False  # started and not failed since: a plain flag, read per adapter
        self.failures = 0  # failures in a row (a start, a batch)
        self.restart_scope: trio.CancelScope | None = None
        self.restart_done = trio.Event()
        self.restart_done.set()
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
        try:
            config_frame = encode(("config", self.config, self.secrets), with_secrets=True)
        except Exception as exc:  # e.g. a value that does not pickle: probe locally
            raise ShardError(
                f"{self.describe()} could not be sent its config ({type(exc).__name__})"
            ) from None
        self.usable = False
        self.ready = trio.Event()
        self.failed = None
        self.reader_done = trio.Event()
        self.reader_scope = trio.CancelScope()
        try:
            self.process = await trio.lowlevel.open_process(
                [sys.executable, "-c", BOOTSTRAP],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=self.env,
            )
        except Exception as exc:
            raise ShardError(f"{self.describe()} could not be started: {exc}") from None
        assert self.process.stdin is not None and self.process.stdout is not None
        trio.lowlevel.spawn_system_task(self._read, self.process, name=f"shard-reader-{self.index}")
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async with self.send_lock:  # a worker that died at once is reported below
                await self.process.stdin.send_all(config_frame)
        with trio.move_on_after(START_TIMEOUT):
            await self.ready.wait()
        if not self.ready.is_set() or self.failed is not None:
            reason = self.failed or f"not ready within {START_TIMEOUT:g} s"
            await self.stop()
            raise ShardError(f"{self.describe()} did not start: {reason}")
        self.usable = True

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
                    for count, message in enumerate(frame, 1):
                        self._dispatch(message)
                        if count % DISPATCH_CHUNK == 0:  # a big frame must not stall the loop
                            await trio.lowlevel.checkpoint()
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
        self.usable = False
        self.ready.set()  # wake a start() waiting for it
        for batch in self.batches.values():
            if batch.error is None:
                batch.error = ShardError(f"{self.describe()} failed mid-run: {reason}")
            batch.done.set()

    async def send(self, message: object, within: float) -> None:
        """Write one frame within ``within`` seconds (and the caller's own deadline).

        A frame is written whole or the stream is broken: a write cut short
        (the bound, the run's deadline, a cancellation) fails the worker and
        kills its process (it is restarted between runs).
        """
        process = self.process
        if process is None or process.stdin is None:
            raise ShardError(f"{self.describe()} is not running")
        try:
            data = encode(message)
        except Exception as exc:
            raise ShardError(f"a frame for {self.describe()} ({type(exc).__name__})") from None
        writing = False
        try:
            with trio.move_on_after(within) as bound:
                async with self.send_lock:
                    writing = True
                    await process.stdin.send_all(data)
                    writing = False
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            writing = False
            self._fail(f"its input closed ({type(exc).__name__})")
            raise ShardError(f"{self.describe()} failed: its input closed") from None
        finally:
            if writing:
                self._fail("a frame to it was cut short")
                process.kill()
        if bound.cancelled_caught:
            self._fail(f"it read nothing for {within:g} s")
            process.kill()
            raise ShardError(f"{self.describe()} failed: it stopped reading its input")

    async def probe(
        self,
        run_id: str,
        items: list[ShardItem],
        model_remaining: float,
        run_remaining: float,
        deliver: ShardDelivery,
        written: Callable[[], None],
    ) -> None:
        batch = _Batch(deliver)
        self.batches[run_id] = batch
        finished = False
        try:
            await self.send(("batch", run_id, model_remaining, run_remaining, items), SEND_TIMEOUT)
            written()
            await batch.done.wait()
            if batch.error is not None:
                raise batch.error
            finished = True
        finally:
            del self.batches[run_id]
            if not finished and self.failed is None:
                # Cancelled (the deadline, a caller gone) or a listener failed:
                # every probe of this run in the worker is cancelled.
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + CANCEL_TIMEOUT
                    with contextlib.suppress(ShardError):
                        await self.send(("cancel", run_id), CANCEL_TIMEOUT)

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
        secrets: Sequence[Secret | str | None] = (),
    ) -> None:
        chosen = assign(candidates, workers, settings)
        self._worker_of: dict[int, int] = {}
        shares: list[list[tuple[str, ProviderConfig, Adapter]]] = [[] for _ in range(workers)]
        for (model, entry, adapter), worker in zip(candidates, chosen, strict=True):
            shares[worker].append((model, entry, adapter))
            self._worker_of[id(adapter)] = worker
        env = _worker_env(config)
        # Every key of the fleet goes to every worker (over the same pipe as
        # its own): it redacts any of them at the source, and this process
        # re-redacts only with keys added since (``redacted``).
        raws = prepare_secrets(
            [
                *secrets,
                *(getattr(adapter, "api_key", None) for _, _, adapter in candidates),
            ]
        )
        self.redacted: frozenset[str] = frozenset(raws)
        self.workers = [
            _Worker(i, shard_config(config, share, settings, workers), env, tuple(raws))
            for i, share in enumerate(shares)
        ]
        self.sizes = [len(share) for share in shares]
        self.disabled = False
        self._stopping: trio.Event | None = None
        self.closing = False

    @property
    def failures(self) -> int:
        """The most failures in a row of any one worker."""
        return max((worker.failures for worker in self.workers), default=0)

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
        if self.disabled:
            return []
        return [pid for worker in self.workers if (pid := worker.pid) is not None]

    def worker_of(self, model: str, adapter: Adapter) -> int | None:
        """``adapter``'s worker, or None: not sharded, or its worker is not running.

        A worker that is not running is restarted in the background; its
        adapters are probed in this process meanwhile (a start never eats a
        run's deadline).
        """
        if self.disabled:
            return None
        worker = self._worker_of.get(id(adapter))
        if worker is None:
            return None
        shard = self.workers[worker]
        if shard.usable:
            return worker
        if shard.restart_done.is_set():
            self._restart_soon(shard)
        return None

    def _restart_soon(self, shard: _Worker) -> None:
        shard.restart_scope = trio.CancelScope()
        shard.restart_done = trio.Event()
        trio.lowlevel.spawn_system_task(
            self._restart, shard, shard.restart_scope, name=f"shard-restart-{shard.index}"
        )

    async def _restart(self, shard: _Worker, scope: trio.CancelScope) -> None:
        """A system task: never raises; a start that fails or never finishes counts."""
        try:
            with scope:
                try:
                    async with shard.start_lock:
                        await shard.stop()
                        await shard.start()
                except ShardError as exc:
                    self._failed(shard, str(exc))
                except Exception as exc:
                    self._failed(shard, f"{shard.describe()} did not start ({type(exc).__name__})")
                else:
                    logger.info("%s restarted", shard.describe())
            if scope.cancelled_caught and not self.closing:
                self._failed(shard, f"{shard.describe()} did not finish starting")
        finally:
            shard.restart_done.set()

    async def probe(
        self,
        worker: int,
        run_id: str,
        items: list[ShardItem],
        model_remaining: float,
        run_remaining: float,
        deliver: ShardDelivery,
        written: Callable[[], None],
    ) -> None:
        shard = self.workers[worker]
        try:
            await shard.probe(run_id, items, model_remaining, run_remaining, deliver, written)
        except ShardError as exc:
            self._failed(shard, str(exc))
            if not self.disabled and shard.restart_done.is_set():
                self._restart_soon(shard)  # now, in the background: ready for the next run
            raise
        shard.failures = 0

    def _failed(self, shard: _Worker, reason: str) -> None:
        shard.failures += 1
        if shard.failures >= MAX_FAILURES and not self.disabled and not self.closing:
            self.disabled = True
            logger.warning(
                "%s failed %d times in a row (%s): sharding is off until restart; "
                "this process probes every adapter itself (see [checks] workers)",
                shard.describe(),
                shard.failures,
                reason,
            )
            # Idle from now on: stopped in the background (aclose waits for it).
            self._stopping = trio.Event()
            trio.lowlevel.spawn_system_task(self._stop_all, self._stopping, name="shard-stop")

    async def _stop_all(self, done: trio.Event) -> None:
        try:
            with trio.CancelScope(shield=True):
                for worker in self.workers:
                    if worker.restart_scope is not None:
                        worker.restart_scope.cancel()
                    await worker.restart_done.wait()
                async with trio.open_nursery() as nursery:
                    for worker in self.workers:
                        nursery.start_soon(worker.stop)
        except Exception:  # a system task must never raise; aclose stops them again
            logger.debug("stopping idle worker processes failed", exc_info=True)
        finally:
            done.set()

    async def aclose(self) -> None:
        self.closing = True
        with trio.CancelScope(shield=True):
            if self._stopping is not None:
                await self._stopping.wait()
            for worker in self.workers:
                if worker.restart_scope is not None:
                    worker.restart_scope.cancel()
                await worker.restart_done.wait()
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
    # Nor the variables this process's own secrets come from (the server's
    # tokens, Redis, webhooks, telemetry): a worker never needs them.
    sections: list[object] = [config.server, config.storage, config.telemetry, *config.alerts]
    for section in sections:
        if dataclasses.is_dataclass(section):
            for field in dataclasses.fields(section):
                value = getattr(section, field.name, None)
                if field.name.endswith("_env") and isinstance(value, str) and value:
                    named.add(value)
    env = {key: value for key, value in os.environ.items() if key not in named}
    # The package's root goes after the standard library (see shard_worker's
    # bootstrap), never before it as PYTHONPATH would put it.
    env[ROOT_VARIABLE] = str(Path(__file__).resolve().parents[2])
    return env


#: The variable a worker finds this package's root in (it joins sys.path after the stdlib).
ROOT_VARIABLE: Final = "ROUTER_HEALTH_SHARD_ROOT"
#: How a worker starts: the package root joins sys.path before site-packages, after the stdlib.
BOOTSTRAP: Final = (
    "import os, sys\n"
    "root = os.environ.pop('ROUTER_HEALTH_SHARD_ROOT', '')\n"
    "if root and root not in sys.path:\n"
    "    at = next((i for i, p in enumerate(sys.path) if 'site-packages' in p or 'dist-packages' in p), len(sys.path))\n"
    "    sys.path.insert(at, root)\n"
    "import runpy\n"
    "runpy.run_module('service.engine.shard_worker', run_name='__main__', alter_sys=True)\n"
)


def plan_shards(
    config: Config,
    model_adapters: dict[str, list[Adapter]],
    settings: CheckerSettings,
    *,
    shardable: bool = True,
    secrets: Sequence[Secret | str | None] = (),
) -> ShardPool | None:
    """The pool a fleet needs, or None: too small, workers off, or an outside probe limiter."""
    if settings.workers < 2 or not shardable:
        return None
    candidates = shard_candidates(config, model_adapters)
    if len(candidates) < settings.shard_threshold:
        return None
    # Never more workers than groups: an idle process only costs.
    workers = min(settings.workers, len(_groups(candidates, settings)))
    if workers < 2:
        return None
    return ShardPool(config, candidates, workers, settings, secrets)


# For the worker module: the one place that reads the first frame.
def build_worker_config(message: object) -> tuple[Config, tuple[str, ...]]:
    """The worker's config, and every key of the fleet (to redact from its texts)."""
    if (
        not isinstance(message, tuple)
        or len(message) != 3
        or message[0] != "config"
        or not isinstance(message[1], Config)
        or not isinstance(message[2], tuple)
    ):
        raise ShardError("the first frame is not a config")
    config: Config = message[1]
    secrets: tuple[str, ...] = message[2]
    return config, secrets
