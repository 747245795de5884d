"""``python -m benchmarks.storage [--write]``: what ``[storage]`` costs, and how fast it answers.

Two records, one run:

* **on vs off.** One simulator process serves ``providers x models`` adapters
  (OpenAI-compatible, no key, ``latency`` s). Two ``router-health serve``
  processes check all of them in the background (``[checks] interval``),
  side by side so both see the same machine: one with ``[storage]`` on (a
  SQLite file in a temporary folder), one with ``enabled = false``. After
  both know every adapter, one window of ``--seconds`` measures each
  process's CPU seconds (``/proc/PID/stat``) and the database's growth
  (the file, its WAL and shared-memory files). *Extra CPU* is on over off
  from the same window; *size per day* is the growth scaled to 24 h (the
  raw rows grow until ``raw_retention`` prunes them, rollups for 90 days).
* **uptime on a full database.** A database filled as 30 days of
  ``adapters`` checked every ``interval`` would leave it (the last
  ``raw_retention`` as raw results through the storage's own writer, the
  days before as the rollups those results become), then ``GET
  /v1/health/uptime?window=30d`` timed from a client on a served
  router-health reading it: p50/p95/p99 over ``--requests`` calls.

``--write`` replaces this record's part of benchmarks/RESULTS.md (between
its markers; appended once); a full ``python -m benchmarks`` run keeps it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import trio
import trio.testing

from adapters.base import FailureKind
from service.config import CheckSchedule, StorageConfig, dump_toml, load_config
from service.engine.report import ProbeResult, ProbeStatus
from service.live.state import HealthState
from service.live.storage import open_storage

from .cluster import Proc, serve_instances, wait_until_known
from .measure import proc_cpu_seconds
from .report import machine
from .sections import write_section
from .upstream import simulator

RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN = "<!-- storage:begin (python -m benchmarks.storage --write rewrites this part) -->"
END = "<!-- storage:end -->"
KIND = "openai-compatible"
DASH = "\N{EN DASH}"
#: The targets of issue 16.
CPU_GOAL = 0.10  # extra CPU with storage on, as a share of the CPU with it off
UPTIME_P95_GOAL_MS = 100.0


@dataclass(frozen=True, slots=True)
class StoragePlan:
    providers: int = 50
    models: int = 20
    latency: float = 0.05
    interval: float = 10.0
    jitter: float = 0.2
    seconds: float = 600.0
    warmup_timeout: float = 120.0
    fill_days: float = 30.0  # the uptime record's database: days it covers
    writer_days: float = 2.0  # the last of them written by the storage writer (the rest backfilled)
    fill_step: float = 600.0  # seconds between two of one adapter's verdicts written
    requests: int = 200  # GET /v1/health/uptime?window=30d calls timed

    @property
    def adapters(self) -> int:
        return self.providers * self.models

    @classmethod
    def quick(cls) -> StoragePlan:
        return cls(
            providers=10, models=10, interval=2.0, seconds=20.0, warmup_timeout=60.0,
            fill_days=3.0, writer_days=1.0, requests=50,
        )


def _names(plan: StoragePlan) -> tuple[list[str], list[str]]:
    return [f"sp{j:02d}" for j in range(plan.providers)], [f"sm-{i}" for i in range(plan.models)]


def simulator_spec(plan: StoragePlan) -> list[dict[str, Any]]:
    providers, models = _names(plan)
    return [
        {"name": p, "kind": KIND, "models": models, "behavior": {"latency": plan.latency}}
        for p in providers
    ]


def config_toml(plan: StoragePlan, root_url: str, storage: dict[str, Any]) -> str:
    """Every adapter checked in the background, with this ``[storage]`` table."""
    providers, models = _names(plan)
    document = {
        "checks": {"interval": plan.interval, "jitter": plan.jitter},
        "models": [
            {
                "name": m,
                "providers": [
                    {"name": p, "type": KIND, "base_url": f"{root_url}/{p}/v1", "model": m}
                    for p in providers
                ],
            }
            for m in models
        ],
    }
    # dump_toml writes [checks], [server] and [[models]] only: the [storage] table is ours.
    lines = ["", "[storage]"] + [f"{k} = {json.dumps(v)}" for k, v in storage.items()]
    return dump_toml(document) + "\n".join(lines) + "\n"


def database_bytes(path: Path) -> int:
    """Bytes the database's pages hold now (committed, WAL included; free pages not).

    The files' sizes would measure SQLite's write-ahead log instead, which
    grows and is reused between checkpoints whatever the data.
    """
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def files_bytes(path: Path) -> int:
    """The database's files on disk: itself, its WAL and its shared-memory index."""
    return sum(
        os.stat(f"{path}{suffix}").st_size
        for suffix in ("", "-wal", "-shm")
        if os.path.exists(f"{path}{suffix}")
    )


def _storage_counters(client: httpx.Client, url: str) -> dict[str, float]:
    """``router_health_storage_*`` samples of ``/metrics``: name -> value."""
    response = client.get(f"{url}/metrics")
    response.raise_for_status()
    found: dict[str, float] = {}
    for line in response.text.splitlines():
        if line.startswith("router_health_storage_"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def measure_on_off(plan: StoragePlan, root_url: str, folder: Path) -> dict[str, Any]:
    """Storage on and off side by side over one window: CPU of each, growth of the database."""
    db = folder / "on.db"
    configs = []
    for name, storage in (("on", {"path": str(db)}), ("off", {"enabled": False})):
        path = folder / f"{name}.toml"
        path.write_text(config_toml(plan, root_url, storage), encoding="utf-8")
        load_config(path)  # a mistake in the config is ours: say so here, not as a dead server
        configs.append(path)
    with serve_instances(configs) as (on, off), httpx.Client(timeout=60, trust_env=False) as client:
        warmup = wait_until_known([on, off], plan.adapters, plan.warmup_timeout)
        time.sleep(plan.interval / 2)  # open the window mid-round
        before = _snapshot(client, db, on, off)
        time.sleep(plan.seconds)  # the background loops' own clock is what is measured
        after = _snapshot(client, db, on, off)
        ready = client.get(f"{on.url}/readyz").json().get("storage", {})
    elapsed = after["at"] - before["at"]
    cpu_on = after["cpu_on"] - before["cpu_on"]
    cpu_off = after["cpu_off"] - before["cpu_off"]
    grown = after["bytes"] - before["bytes"]
    written = after["counters"].get("router_health_storage_writes_total", 0.0) - before[
        "counters"
    ].get("router_health_storage_writes_total", 0.0)
    return {
        "adapters": plan.adapters,
        "interval": plan.interval,
        "seconds": round(elapsed, 1),
        "warmup_s": round(warmup, 1),
        "cpu_on_s": round(cpu_on, 2),
        "cpu_off_s": round(cpu_off, 2),
        "extra_cpu": (cpu_on - cpu_off) / cpu_off if cpu_off > 0 else float("nan"),
        "rows_written": int(written),
        "rows_per_second": written / elapsed,
        "bytes_grown": grown,
        "bytes_per_row": grown / written if written else float("nan"),
        "bytes_per_day": grown / elapsed * 86400,
        "bytes_end": after["bytes"],
        "files_end": files_bytes(db),
        "storage_status": ready.get("status"),
        "dropped": ready.get("dropped"),
        "correct": ready.get("status") == "ok" and ready.get("dropped") == 0 and written > 0,
    }


def _snapshot(client: httpx.Client, db: Path, on: Proc, off: Proc) -> dict[str, Any]:
    # Scrape first, then read the clocks: the scrape's own CPU stays outside the window.
    counters = _storage_counters(client, on.url)
    return {
        "at": time.perf_counter(),
        "counters": counters,
        "cpu_on": proc_cpu_seconds(on.pid),
        "cpu_off": proc_cpu_seconds(off.pid),
        "bytes": database_bytes(db),
    }


# -- uptime on a database filled to 30 days --------------------------------------------------


async def _fill(plan: StoragePlan, db: Path, end: float) -> dict[str, Any]:
    """The last ``writer_days`` of verdicts through the state and the storage writer.

    One verdict per adapter every ``fill_step`` seconds (held that long, so
    every minute is covered: the minute, hour and day rollups get every row a
    real fleet gives them; only the raw table is thinner than at a 10 s
    interval, and the uptime query reads it for nothing but each series'
    latest verdict). Every 50th adapter is down for one step in each 100, so
    the sums differ.
    """
    providers, models = _names(plan)
    keys = [(m, p) for m in models for p in providers]
    start = end - plan.writer_days * 86400
    clock = [start]
    health = HealthState(lambda model, provider: CheckSchedule(interval=plan.fill_step))
    config = StorageConfig(path=str(db), flush_interval=1e9, max_pending=10 * len(keys) + 100)
    began = time.perf_counter()
    steps = 0
    async with open_storage(
        config, health, known=keys, wall_clock=lambda: clock[0], hold_limit=plan.fill_step * 1.5
    ) as storage:
        while clock[0] < end:
            for index, (model, provider) in enumerate(keys):
                down = index % 50 == 0 and steps % 100 == 0
                health.record(ProbeResult(
                    model=model, provider=provider, adapter="OpenAICompatible",
                    status=ProbeStatus.UNHEALTHY if down else ProbeStatus.HEALTHY,
                    latency_ms=50.0, checked_at=clock[0] + index * 0.001,
                    failure=FailureKind.HTTP_STATUS if down else None,
                    http_status=503 if down else 200,
                ))
            await trio.testing.wait_all_tasks_blocked()  # the transitions forwarded
            if not await storage.flush():
                raise RuntimeError(f"filling the database failed: {storage.last_error}")
            clock[0] += plan.fill_step
            steps += 1
        health.close()
    return {
        "fill_s": round(time.perf_counter() - began, 1),
        "fill_results": steps * len(keys),
        "writer_start": start,
    }


def _backfill(db: Path, before: float, days: float) -> int:
    """Hour and day rollup rows for every series over the ``days`` before ``before``.

    What the writer would have left there (all up and covered, one down hour
    in every 100 for every 50th series); written directly, because pushing
    30 days of verdicts through the writer is an hour of filling, and the
    query reads these rows the same way whoever wrote them.
    """
    first_hour = int((before - days * 86400) // 3600 * 3600)
    last_hour = int(before // 3600 * 3600)  # the writer's own rows start in this hour
    hour_ms = 3_600_000
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        series = [row[0] for row in conn.execute("SELECT id FROM series")]
        hours = []
        for start in range(first_hour, last_hour, 3600):
            for sid in series:
                down = sid % 50 == 0 and (start // 3600) % 100 == 0
                hours.append((sid, start, 0 if down else hour_ms, hour_ms,
                              0 if down else 6, 0, 6 if down else 0, 0))
        conn.executemany("INSERT OR REPLACE INTO rollups_hour VALUES (?,?,?,?,?,?,?,?)", hours)
        conn.execute(
            "INSERT OR REPLACE INTO rollups_day SELECT series, start / 86400 * 86400, "
            "sum(up_ms), sum(covered_ms), sum(healthy), sum(degraded), sum(down), sum(other) "
            "FROM rollups_hour WHERE start < ? GROUP BY series, start / 86400",
            (last_hour // 86400 * 86400,),
        )
    return len(hours)


def _table_rows(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("results", "rollups_minute", "rollups_hour", "rollups_day")
        }


def measure_uptime(plan: StoragePlan, root_url: str, folder: Path) -> dict[str, Any]:
    """Fill a database to ``fill_days``, serve it, time ``GET /v1/health/uptime?window=30d``."""
    db = folder / "full.db"
    filled = trio.run(_fill, plan, db, time.time())
    filled["backfilled_hours"] = _backfill(
        db, filled.pop("writer_start"), plan.fill_days - plan.writer_days
    )
    rows = _table_rows(db)
    path = folder / "full.toml"
    path.write_text(config_toml(plan, root_url, {"path": str(db)}), encoding="utf-8")
    load_config(path)
    timings: list[float] = []
    with serve_instances([path]) as (server,), httpx.Client(timeout=60, trust_env=False) as client:
        wait_until_known([server], plan.adapters, plan.warmup_timeout)
        url = f"{server.url}/v1/health/uptime"
        first = client.get(url, params={"window": "30d"})
        first.raise_for_status()
        body = first.json()
        for _ in range(plan.requests):
            began = time.perf_counter()
            client.get(url, params={"window": "30d"}).raise_for_status()
            timings.append((time.perf_counter() - began) * 1000)
    ratios = [a["uptime"] for a in body["adapters"] if a["uptime"] is not None]
    coverage = [a["coverage"] for a in body["adapters"]]
    timings.sort()

    def pct(p: float) -> float:
        return timings[min(len(timings) - 1, max(0, round(p / 100 * len(timings)) - 1))]

    return {
        **filled,
        "rows": rows,
        "bytes": database_bytes(db),
        "requests": len(timings),
        "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99), "max_ms": timings[-1],
        "answer_bytes": len(first.content),
        "adapters_answered": len(body["adapters"]),
        "models_answered": len(body["models"]),
        "uptime_range": [min(ratios), max(ratios)] if ratios else None,
        "coverage_min": min(coverage) if coverage else None,
        "correct": len(body["adapters"]) == plan.adapters and len(ratios) == plan.adapters,
    }


def run(plan: StoragePlan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as name, simulator(simulator_spec(plan)) as up:
        on_off = measure_on_off(plan, up.url, Path(name))
        uptime = measure_uptime(plan, up.url, Path(name))
    return {
        "plan": asdict(plan),
        "on_off": on_off,
        "uptime": uptime,
        "machine": machine(),
        "load": os.getloadavg()[0],
        "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


# -- the record -----------------------------------------------------------------------------


def _mb(value: float) -> str:
    return f"{value / 1e6:,.1f} MB"


def section(result: dict[str, Any], command: str) -> str:
    row = result["on_off"]
    plan = result["plan"]
    met = "✅" if row["extra_cpu"] <= CPU_GOAL else "❌"
    lines = [
        BEGIN,
        "## Storage: what [storage] costs",
        f"Measured by `{command}` on {result['at']}, {result['machine']} (1-minute load "
        f"average {result['load']:.2f} at the end). {row['adapters']:,} simulated adapters "
        f"({plan['providers']} providers x {plan['models']} models, {plan['latency'] * 1000:g} ms "
        f"upstream), background checks every {row['interval']:g} s, two `router-health serve` "
        "processes side by side (one with `[storage]` on, one with `enabled = false`) over one "
        f"window of {row['seconds']:g} s after both knew every adapter.",
        "",
        "| | storage on | storage off |",
        "|---|---:|---:|",
        f"| CPU seconds in the window | {row['cpu_on_s']:.2f} | {row['cpu_off_s']:.2f} |",
        f"| CPU share of one core | {row['cpu_on_s'] / row['seconds']:.1%} | "
        f"{row['cpu_off_s'] / row['seconds']:.1%} |",
        "",
        f"**Extra CPU with storage on: {row['extra_cpu']:+.1%}** of the CPU with it off "
        f"(target ≤ {CPU_GOAL:.0%} {met}). It wrote {row['rows_written']:,} rows "
        f"({row['rows_per_second']:,.0f} per second, results and transitions); the database "
        f"grew {_mb(row['bytes_grown'])} ({row['bytes_per_row']:,.1f} bytes per row with its "
        f"rollups and indexes): **{_mb(row['bytes_per_day'])} per day** at this rate, "
        f"{_mb(row['bytes_end'])} in use at the end of the window "
        f"({_mb(row['files_end'])} of files with the write-ahead log). `/readyz` said storage "
        f"`{row['storage_status']}`, {row['dropped']} rows dropped.",
        "",
        *_uptime_lines(result),
        END,
    ]
    return "\n".join(lines)


def _uptime_lines(result: dict[str, Any]) -> list[str]:
    row, plan = result["uptime"], result["plan"]
    met = "✅" if row["p95_ms"] <= UPTIME_P95_GOAL_MS else "❌"
    rows = row["rows"]
    low, high = row["uptime_range"] or (float("nan"), float("nan"))
    return [
        f"### `GET /v1/health/uptime?window=30d` on a database filled to {plan['fill_days']:g} days",
        f"The last {plan['writer_days']:g} days of the database went through the state and the "
        f"storage writer ({row['fill_results']:,} verdicts, one per adapter every "
        f"{plan['fill_step']:g} s, in {row['fill_s']:g} s); the hour rollups of the "
        f"{plan['fill_days'] - plan['writer_days']:g} days before were written directly "
        f"({row['backfilled_hours']:,} rows, and the days summed from them): "
        f"{rows['rollups_minute']:,} minute, "
        f"{rows['rollups_hour']:,} hour and {rows['rollups_day']:,} day rollup rows (what the "
        f"query reads; the same counts a fleet checked every 10 s leaves), "
        f"{rows['results']:,} raw rows, {_mb(row['bytes'])}. A `router-health serve` on it "
        "(background checks running) answered "
        f"{row['requests']} calls from one client in turn: **p95 {row['p95_ms']:.1f} ms** "
        f"(target ≤ {UPTIME_P95_GOAL_MS:g} ms {met}), p50 {row['p50_ms']:.1f} ms, p99 "
        f"{row['p99_ms']:.1f} ms, max {row['max_ms']:.1f} ms; {row['answer_bytes']:,} bytes, "
        f"{row['adapters_answered']:,} adapters and {row['models_answered']} models, uptimes "
        f"{low:.4f}{DASH}{high:.4f}, coverage at least {row['coverage_min']:.3f}.",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storage")
    parser.add_argument("--quick", action="store_true", help="100 adapters for 20 s (a smoke run)")
    parser.add_argument("--seconds", type=float, help="the measured window (600)")
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    parser.add_argument(
        "--render", metavar="FILE", help="run nothing: the record of an earlier run's --json FILE"
    )
    args = parser.parse_args(argv)
    if args.render:
        result = json.loads(Path(args.render).read_text(encoding="utf-8"))
        part = section(result, result.get("command", "python -m benchmarks.storage"))
        print(part)
        if args.write:
            write_section(part, BEGIN, END, RESULTS)
        return 0
    plan = StoragePlan.quick() if args.quick else StoragePlan()
    if args.seconds is not None:
        plan = StoragePlan(**{**asdict(plan), "seconds": args.seconds})
    result = run(plan)
    command = "python -m benchmarks.storage" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    result["command"] = command
    part = section(result, command)
    print(part)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    if args.write:
        write_section(part, BEGIN, END, RESULTS)
    return 0 if result["on_off"]["correct"] and result["uptime"]["correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
