"""What a benchmark process measures of itself (and of the upstream), runtime-agnostic.

CPU is process CPU time (user + system, every thread) minus what the fd
sampler thread spent; peak RSS is the kernel's high-water mark, so every
measured configuration runs in a fresh process; open file descriptors are
sampled by a thread every ``interval`` seconds, which works the same under
Trio and asyncio.
"""

from __future__ import annotations

import os
import resource
import threading
import time

__all__ = ["FdSampler", "open_fds", "peak_rss_mb", "proc_cpu_seconds", "proc_fds", "process_cpu"]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def open_fds(pid: int | str = "self") -> int:
    """Open file descriptors of ``pid`` (Linux: the size of /proc/PID/fd)."""
    path = f"/proc/{pid}/fd"
    size = os.stat(path).st_size  # Linux >= 6.2 reports the count here, cheaply
    return size if size > 0 else len(os.listdir(path))


def proc_fds(pid: int) -> int:
    return open_fds(pid)


def process_cpu() -> float:
    return time.process_time()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) another process has used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def proc_peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class FdSampler:
    """A thread that records the peak of the open fds summed over ``pids`` ("self": this process).

    Several processes at once for a sharded row, whose sockets are in its
    worker processes.
    """

    def __init__(self, *pids: int | str, interval: float = 0.02) -> None:
        self.pids = pids or ("self",)
        self.interval = interval
        self.peak = 0
        self.cpu = 0.0  # CPU seconds this thread used, to subtract from the process's
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fd-sampler", daemon=True)

    def _run(self) -> None:
        start = time.thread_time()
        while True:
            try:
                self.peak = max(self.peak, sum(open_fds(pid) for pid in self.pids))
            except OSError:
                break
            if self._stop.wait(self.interval):
                break
        self.cpu = time.thread_time() - start

    def __enter__(self) -> FdSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
