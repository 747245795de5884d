"""``python -m benchmarks.serving [--write]``: state-backed answers vs a bare route, as ratios.

A health API is hit by every load balancer, Kubernetes probe, dashboard and
router, so what one answer costs the server matters. This measures, in one
run and on one hypercorn process, requests per second and p99 latency of:

* ``bare``: a bare Quart-Trio JSON route (``return {"status": "ok"}``, no
  hooks), served by a second app in the same process with the same
  hypercorn settings: the floor for this stack;
* ``/livez``, and ``GET /v1/health/`` and ``GET /v1/health/models/{name}``
  answered from the live state (15 adapters, background checks on), each
  with its full details, the way a load balancer or a dashboard calls them;
* ``GET /v1/route/{model}`` as a router polls it: without, then with its
  last ``ETag`` in ``If-None-Match`` (a 200, then a 304 with no body).

The load generator is ``wrk`` (``apt-get install wrk``): one thread, 32
connections, ``--seconds`` per measurement, the targets measured in turn and
the order rotated each round; medians over ``--rounds``. Ratios are each
target's median over the bare route's median from the same run. The
simulator runs in a process of its own. ``--write`` replaces this record's
part of benchmarks/RESULTS.md (between its markers; appended once).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from .sections import write_section
from .upstream import entries, simulator

RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN = "<!-- serving:begin (python -m benchmarks.serving --write rewrites this part) -->"
END = "<!-- serving:end -->"

ADAPTERS = 15
PER_MODEL = 3
API_KEY = "rhbench-serving-0123456789"
#: Background checks every 30 s: the state changes (15 results) twice a minute.
CHECKS: dict[str, Any] = {"interval": 30.0, "jitter": 0.0}
TARGETS = ("bare", "livez", "health", "model", "route", "route304")
#: What each target must reach, as a share of the bare route's requests per second.
GOALS = {"livez": 0.95, "health": 0.9, "model": 0.9, "route": 0.9, "route304": 0.9}


def spec() -> list[dict[str, Any]]:
    return [
        {"name": f"serve-{i:02d}", "kind": "openai", "api_key": API_KEY,
         "models": ["sim-model"], "behavior": {"latency": 0.02}}
        for i in range(ADAPTERS)
    ]


def document(root_url: str) -> dict[str, Any]:
    tables = entries(root_url, spec())
    models = [
        {"name": f"model-{m}", "providers": tables[m * PER_MODEL : (m + 1) * PER_MODEL]}
        for m in range(ADAPTERS // PER_MODEL)
    ]
    return {"checks": CHECKS, "models": models}


# -- the server process: the app and the bare route, on one hypercorn ---------------------


def _serve(config_path: str) -> None:
    import trio
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.trio import serve as hypercorn_serve
    from quart_trio import QuartTrio

    from service import parse_config
    from service.api.app import create_app, serve

    logging.basicConfig(level=logging.CRITICAL)
    config = parse_config(json.loads(Path(config_path).read_text(encoding="utf-8")), env={})
    app = create_app(config)
    bare = QuartTrio("bare")

    @bare.get("/bare")
    async def bare_route() -> dict[str, str]:
        return {"status": "ok"}

    # The settings service.api.app.serve gives hypercorn, for the bare app.
    settings = HypercornConfig()
    settings.bind = ["127.0.0.1:0"]
    settings.keep_alive_timeout = config.server.keep_alive_timeout
    settings.graceful_timeout = config.server.shutdown_grace
    settings.accesslog = None
    settings.errorlog = logging.getLogger("hypercorn.error")

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                urls = await nursery.start(functools.partial(serve, app, host="127.0.0.1", port=0))
                bare_urls = await nursery.start(
                    functools.partial(hypercorn_serve, bare, settings)
                )
                print(f"SERVING {urls[0]} {bare_urls[0]}", flush=True)
                async for _ in signals:
                    break
                nursery.cancel_scope.cancel()

    trio.run(main)


@contextmanager
def server(config: dict[str, Any]) -> Iterator[tuple[str, str, int]]:
    """The server process: yields (app URL, bare URL, pid)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.serving", "--serve", str(path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline().split()
            if len(line) != 3 or line[0] != "SERVING":
                raise RuntimeError(f"the server did not start: {line!r}")
            yield line[1], line[2], process.pid
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


# -- measuring ------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str, *, seconds: float, connections: int, pid: int, headers: dict[str, str] | None = None
) -> dict[str, float]:
    """One ``wrk`` run: requests per second, p50/p99 latency (ms), answers neither 2xx nor
    3xx, and the server's CPU time per request (µs: less sensitive than throughput to
    other tenants)."""
    before = cpu_seconds(pid)
    sent = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", *sent, url],
        capture_output=True, text=True, check=True,
    ).stdout
    cpu = cpu_seconds(pid) - before
    total = int(re.search(r"([0-9]+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+([0-9]+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "cpu_us": cpu * 1e6 / max(total, 1),
            "non_2xx": float(bad.group(1)) if bad else 0.0,
            "socket_errors": 0.0 if errors is None else 1.0}


def _ready(app_url: str, deadline: float) -> dict[str, Any]:
    """Wait until every adapter has a result in the state; the first state-backed answer."""
    while True:
        body: dict[str, Any] = httpx.get(f"{app_url}/v1/health/", timeout=30).json()
        if body.get("source") == "background" and body.get("status") == "healthy":
            return body
        if time.monotonic() > deadline:
            raise RuntimeError(f"the state never filled: {str(body)[:300]}")
        time.sleep(0.2)


def measure(*, seconds: float, rounds: int, connections: int) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    with simulator(spec()) as upstream, server(document(upstream.url)) as (app, bare, pid):
        first = _ready(app, time.monotonic() + 60)
        urls = {
            "bare": f"{bare}/bare",
            "livez": f"{app}/livez",
            "health": f"{app}/v1/health/",
            "model": f"{app}/v1/health/models/model-0",
            "route": f"{app}/v1/route/model-0",
            "route304": f"{app}/v1/route/model-0",
        }
        etag = httpx.get(urls["route"], timeout=30).headers["etag"]
        headers: dict[str, dict[str, str]] = {name: {} for name in TARGETS}
        headers["route304"] = {"If-None-Match": etag}
        answers = {
            name: httpx.get(url, headers=headers[name], timeout=30) for name, url in urls.items()
        }
        if answers["route304"].status_code != 304:
            raise RuntimeError(f"the route's ETag did not hold: {answers['route304']}")
        sizes = {name: len(answer.content) for name, answer in answers.items()}
        for name, url in urls.items():  # warm-up: connections, caches
            wrk(url, seconds=1, connections=connections, pid=pid, headers=headers[name])
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in TARGETS}
        held = 0  # 304 runs whose ETag still held at their end (all their answers were 304s)
        for turn in range(rounds):
            order = TARGETS[turn % len(TARGETS) :] + TARGETS[: turn % len(TARGETS)]
            for name in order:
                if name == "route304":  # the set's current ETag: a background check may move it
                    etag = httpx.get(urls["route"], timeout=30).headers["etag"]
                    headers[name] = {"If-None-Match": etag}
                runs[name].append(
                    wrk(urls[name], seconds=seconds, connections=connections, pid=pid,
                        headers=headers[name])
                )
                if name == "route304":
                    after = httpx.get(urls[name], headers=headers[name], timeout=30)
                    held += after.status_code == 304
        last = httpx.get(urls["health"], timeout=30).json()
    rows = {}
    bare_rps = statistics.median(r["rps"] for r in runs["bare"])
    bare_cpu = statistics.median(r["cpu_us"] for r in runs["bare"])
    for name in TARGETS:
        rps = statistics.median(r["rps"] for r in runs[name])
        cpu = statistics.median(r["cpu_us"] for r in runs[name])
        rows[name] = {
            "url": urls[name].replace(app, "").replace(bare, "") or "/",
            "headers": headers[name],
            "bytes": sizes[name],
            "rps": round(rps),
            "rps_runs": [round(r["rps"]) for r in runs[name]],
            "ratio": round(rps / bare_rps, 3),
            "cpu_us": round(cpu),
            "cpu_ratio": round(bare_cpu / cpu, 3),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in runs[name]), 2),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in runs[name]), 2),
            "non_2xx": sum(r["non_2xx"] for r in runs[name]),
        }
    return {
        "seconds": seconds,
        "rounds": rounds,
        "connections": connections,
        "adapters": ADAPTERS,
        "served_from": [first.get("source"), last.get("source")],
        "etag_held": held,
        "rows": rows,
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}",
        "load": os.getloadavg()[0],
        "at": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


# -- the record -----------------------------------------------------------------------------


def section(result: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    rows = result["rows"]
    earlier = None if before is None else before["rows"]
    lines = [
        BEGIN,
        "## Serving speed: state-backed answers vs a bare route",
        f"Measured by `python -m benchmarks.serving --write` on {result['at']}, {result['machine']}"
        f" (1-minute load average {result['load']:.2f} at the end). One hypercorn process "
        "serves the app and, on a second port with the same settings, a bare Quart-Trio "
        "route (`return {\"status\": \"ok\"}`); "
        f"{result['adapters']} simulated adapters (5 models x 3), background checks on "
        f"(`interval = {CHECKS['interval']:g}`), so the check routes answer from the live "
        "state with every detail. Those answers, and `/livez`, are kept as bytes until the "
        "state changes and sent from the app's ASGI entry point, before Quart "
        "(`service/api/answers.py`); the bare route goes through Quart, as every route did "
        "before. `/v1/route/model-0` is measured twice, as a router polls it: a 200 with the "
        "set, and with that answer's `ETag` in `If-None-Match`, a 304 with no body. `wrk -t1 "
        f"-c{result['connections']} -d{result['seconds']:g}s`, the {len(TARGETS)} targets in "
        "turn, "
        f"{result['rounds']} rounds (order rotated); medians. *ratio* is requests per second "
        "over the bare route's, from the same run; *CPU ratio* is the bare route's "
        "server CPU time per request over the target's (read from /proc: it moves less than "
        "throughput when other processes share the two cores).",
        "",
        "| target | body bytes | requests/s | ratio | goal | server CPU µs/request | CPU ratio "
        "| p50 ms | p99 ms | non-2xx |" + (" ratio before | CPU µs/request before |" if earlier else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if earlier else ""),
    ]
    for name in TARGETS:
        row = rows[name]
        goal = GOALS.get(name)
        met = "" if goal is None else f"≥ {goal:g} {'✅' if row['ratio'] >= goal else '❌'}"
        shown = row["url"] + "".join(f"` + `{header}: ETag" for header in row.get("headers", {}))
        was = None if earlier is None else earlier.get(name)
        lines.append(
            f"| `{shown}` | {row['bytes']:,} | {row['rps']:,} | {row['ratio']:.2f} | "
            f"{met} | {row['cpu_us']:,} | {row['cpu_ratio']:.2f} | {row['p50_ms']:.2f} | "
            f"{row['p99_ms']:.2f} | {row['non_2xx']:g} |"
            + ("" if earlier is None else
               "  |  |" if was is None else f" {was['ratio']:.2f} | {was['cpu_us']:,} |")
        )
    if before is not None:
        lines += [
            "",
            f"*Before*: the same measurement of {before.get('label', 'the previous version')} "
            f"({before['at']}, load average {before['load']:.2f}), in the same session: the "
            "state-backed routes built a report, its dictionaries and its JSON for every request, "
            "and every answer went through Quart and re-armed hypercorn's keep-alive timer with "
            "a new task.",
        ]
    route, not_modified = rows["route"], rows["route304"]
    lines += [
        "",
        f"The route's 304 cost {not_modified['cpu_us']:,} µs of server CPU per request, its "
        f"200 {route['cpu_us']:,} µs ({not_modified['rps']:,} against {route['rps']:,} "
        f"requests/s). The ETag was read before each 304 run and still held after "
        f"{result['etag_held']} of its {result['rounds']} runs (a background check moving a "
        "weight by a hundredth changes it; the requests after that get the 200).",
    ]
    lines += [
        "",
        "Per-round requests/s: "
        + "; ".join(f"{name} {rows[name]['rps_runs']}" for name in TARGETS)
        + f". Every check answer was served from the state ({', '.join(result['served_from'])}).",
        END,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=10.0, help="per wrk run (10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the targets (3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    parser.add_argument(
        "--before", metavar="FILE",
        help="a previous run's --json (with a 'label'), shown next to this one",
    )
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve)
        return 0
    result = measure(seconds=args.seconds, rounds=args.rounds, connections=args.connections)
    before = None
    if args.before:
        before = json.loads(Path(args.before).read_text(encoding="utf-8"))
    part = section(result, before)
    print(part)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    if args.write:
        write_section(part, BEGIN, END, RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
