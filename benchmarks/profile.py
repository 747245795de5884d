"""``python -m benchmarks.profile [--adapters N] [--write]``: where the checker's CPU goes.

One concurrent run of ``N`` adapters (plus the scale curve's sentinels)
against the simulator in a process of its own, the way ``benchmarks.worker``
measures the scale rows. The checking process runs in a child of its own:

1. one warm-up run (connections open, caches fill);
2. ``--repeats`` runs timed with ``process_time`` and no profiler: the CPU per
   probe, and its spread;
3. ``--profiled`` runs under cProfile, whose table says where that CPU goes
   (the profiler itself slows Python calls down, so its shares, not its
   seconds, are the finding).

Functions are grouped by area from their file: transport/h11 (our HTTP
client, h11, Trio's socket streams), checker/scheduling (service/engine),
report/result objects, adapter (request and verdict), logging, trio
internals. ``--write`` replaces this record's part of benchmarks/RESULTS.md
(between its markers; appended once). Several ``--adapters`` may be given.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import measure, workload
from .sections import write_section
from .upstream import simulator

RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN = "<!-- profile:begin (python -m benchmarks.profile --write rewrites this part) -->"
END = "<!-- profile:end -->"
ROOT = Path(__file__).resolve().parent.parent

LATENCY = 0.5  # the scale curve's upstream latency
TOP = 15

#: (area, what a file path contains), first match wins.
_AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "transport/h11",
        (
            "adapters/transport.py",
            "/h11/",
            "trio/_highlevel",
            "trio/_socket.py",
            "trio/_ssl.py",
            "/socket.py",
            "/ssl.py",
            "urllib/parse.py",
        ),
    ),
    ("report/result objects", ("service/engine/report.py", "/dataclasses.py", "/enum.py")),
    ("logging", ("/logging/",)),
    ("checker/scheduling", ("service/engine/",)),
    ("adapter (request, verdict)", ("adapters/", "/json/")),
    ("trio internals", ("/trio/", "/outcome/", "/sniffio/", "/contextvars", "/abc.py")),
)


def area_of(filename: str, name: str) -> str:
    if filename == "~":  # a builtin: {method 'send' of '_socket.socket' objects}
        lowered = name.lower()
        if "socket" in lowered or "select" in lowered or "epoll" in lowered:
            return "transport/h11" if "socket" in lowered else "trio internals"
        if "json" in lowered:
            return "adapter (request, verdict)"
        return "builtins (uncounted caller)"
    path = "/" + filename.replace(os.sep, "/").lstrip("/")
    if path.startswith("/<attrs generated") and " trio." in path:
        return "trio internals"
    for area, needles in _AREAS:
        if any(needle in path for needle in needles):
            return area
    return "other"


def _short(filename: str, line: int, name: str) -> str:
    if filename == "~":
        return name
    path = filename.replace(os.sep, "/")
    for marker in ("site-packages/", str(ROOT).replace(os.sep, "/") + "/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    if path.startswith(".") and "/" in path:  # lib/python3.12/x.py -> x.py
        path = path.split("/", 1)[1]
    return f"{path}:{line} {name}"


# -- the checking process -------------------------------------------------------------------


async def _child(job: dict[str, Any]) -> dict[str, Any]:
    from service import AdapterManager, parse_config

    tabs = workload.targets(job["root_url"], job["n"], LATENCY, sentinels=True)
    config = parse_config(
        workload.config_document(tabs, timeout=job["timeout"], adapter_timeout=60.0), env={}
    )
    cpu: list[float] = []
    walls: list[float] = []
    correct: list[int] = []
    async with AdapterManager(config) as manager:
        checker, plan = manager.health_checker, manager.model_adapters

        async def one() -> None:
            start = time.perf_counter()
            result = await checker.run(plan, concurrent=True)
            walls.append(time.perf_counter() - start)
            verdicts = {
                r.provider: (r.status.value, r.failure.value if r.failure else "", r.error or "")
                for r in result.results()
            }
            correct.append(workload.judge(tabs, verdicts, strict=True)[0])

        await one()  # warm-up
        for _ in range(job["repeats"]):
            cpu0 = measure.process_cpu()
            await one()
            cpu.append(measure.process_cpu() - cpu0)
        # CPU time, not wall time: a wall clock would charge epoll's idle waits.
        profiler = cProfile.Profile(time.process_time)
        cpu0 = measure.process_cpu()
        for _ in range(job["profiled"]):
            profiler.enable()
            await one()
            profiler.disable()
        profiled_cpu = measure.process_cpu() - cpu0
    profiler.dump_stats(job["stats"])
    probes = len(tabs)
    return {
        "n": job["n"],
        "probes_per_run": probes,
        "cpu_ms_per_probe": [c * 1000 / probes for c in cpu],
        "profiled_cpu_ms_per_probe": (
            profiled_cpu * 1000 / (probes * job["profiled"]) if job["profiled"] else None
        ),
        "walls": walls[1:],
        "correct": min(correct),
        "expected": probes,
    }


def _child_main(path: str) -> int:
    import trio

    from service.engine.manager import raise_open_file_limit

    with open(path, encoding="utf-8") as handle:
        job = json.load(handle)
    logging.basicConfig(level=logging.CRITICAL)  # as benchmarks.worker: no log line is written
    raise_open_file_limit(int(job["n"]))
    print(json.dumps(trio.run(_child, job)), flush=True)
    return 0


# -- the parent: simulator, child, table ---------------------------------------------------


#: The checking process: this file's ``_child_main``, its package (``benchmarks``,
#: ``service``, ``adapters``) imported from the tree it runs in (its cwd).
_CHILD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("benchmarks._profile_child", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
sys.exit(module._child_main(sys.argv[2]))
"""


def _run_child(
    root: Path, root_url: str, n: int, repeats: int, profiled: int, tmp: str
) -> dict[str, Any]:
    """One checking process of the tree at ``root`` (its own service and adapters)."""
    job = {
        "root_url": root_url,
        "n": n,
        "repeats": repeats,
        "profiled": profiled,
        "timeout": 120.0,
        "stats": os.path.join(tmp, "profile.pstats"),
    }
    job_path = os.path.join(tmp, "job.json")
    with open(job_path, "w", encoding="utf-8") as handle:
        json.dump(job, handle)
    command = [sys.executable, "-c", _CHILD, str(Path(__file__).resolve()), job_path]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"checking process failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def compare(n: int, before: Path, *, rounds: int, repeats: int) -> dict[str, list[float]]:
    """CPU per probe of the tree at ``before`` and of this one, alternated on one simulator.

    ``before`` is another checkout (e.g. ``git worktree add /tmp/before REV``);
    each round runs one checking process of each, so both see the same load.
    """
    medians: dict[str, list[float]] = {"before": [], "after": []}
    with (
        tempfile.TemporaryDirectory() as tmp,
        simulator(workload.simulator_spec(n, LATENCY, sentinels=True)) as up,
    ):
        for _ in range(rounds):
            for label, root in (("before", before), ("after", ROOT)):
                run = _run_child(root, up.url, n, repeats, 0, tmp)
                if run["correct"] != run["expected"]:
                    raise RuntimeError(f"{label}: {run['correct']}/{run['expected']} correct")
                medians[label].append(statistics.median(run["cpu_ms_per_probe"]))
    return medians


def profile(n: int, *, repeats: int, profiled: int, py_spy: bool) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        simulator(workload.simulator_spec(n, LATENCY, sentinels=True)) as up,
    ):
        sim_cpu0 = measure.proc_cpu_seconds(up.pid)
        result = _run_child(ROOT, up.url, n, repeats, profiled, tmp)
        result["sim_cpu_s"] = measure.proc_cpu_seconds(up.pid) - sim_cpu0
        stats = os.path.join(tmp, "profile.pstats")
        result["profile"] = _tables(pstats.Stats(stats)) if profiled else None
        if py_spy:
            result["py_spy"] = _py_spy(up.url, n, repeats, tmp)
    return result


def _tables(stats: pstats.Stats) -> dict[str, Any]:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in raw.values()) or 1.0
    areas: dict[str, float] = {}
    rows = []
    for (filename, line, name), (_, calls, tt, ct, callers) in raw.items():
        area = area_of(filename, name)
        if (filename == "~" or area == "other") and callers:
            # A builtin's or a helper's (contextlib, generated __init__) time
            # belongs to the area that called it, in proportion.
            weights = {key: value[2] for key, value in callers.items()}
            whole = sum(weights.values())
            for (c_file, _, c_name), weight in weights.items():
                share = tt * (weight / whole if whole else 1 / len(weights))
                c_area = area_of(c_file, c_name)
                areas[c_area] = areas.get(c_area, 0.0) + share
            top_caller = max(weights, key=lambda key: weights[key])
            area = area_of(top_caller[0], top_caller[2])
        else:
            areas[area] = areas.get(area, 0.0) + tt
        rows.append(
            {
                "function": _short(filename, line, name),
                "area": area,
                "calls": calls,
                "own": tt,
                "cum": ct,
            }
        )
    by_own = sorted(rows, key=lambda r: r["own"], reverse=True)[:TOP]
    # Coroutines are re-entered at every await, so a cumulative figure counts
    # a function's time once per frame on the stack; that is still its share.
    by_cum = sorted(
        (r for r in rows if not r["function"].startswith("<")), key=lambda r: r["cum"], reverse=True
    )[: TOP + 10]
    return {
        "total_s": total,
        "areas": sorted(areas.items(), key=lambda item: item[1], reverse=True),
        "by_own": by_own,
        "by_cum": by_cum,
    }


#: Frames of the child's setup, not of a run: their samples are left out.
_SETUP = ("parse_config", "importlib", "AdapterManager.__aenter__", "AdapterManager.__aexit__")


def _frame(text: str) -> tuple[str, str]:
    """(path, function) of one py-spy frame, ``function (path:line)``."""
    name, _, where = text.partition(" (")
    return where.rstrip(")").rsplit(":", 1)[0], name


def _py_spy(root_url: str, n: int, repeats: int, tmp: str) -> dict[str, Any] | None:
    """The same run sampled by py-spy (no instrumentation overhead), if py-spy can attach."""
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        return None
    job = {
        "root_url": root_url,
        "n": n,
        "repeats": repeats,
        "profiled": 0,
        "timeout": 120.0,
        "stats": os.path.join(tmp, "unused.pstats"),
    }
    job_path = os.path.join(tmp, "job-spy.json")
    with open(job_path, "w", encoding="utf-8") as handle:
        json.dump(job, handle)
    out = os.path.join(tmp, "spy.txt")
    done = subprocess.run(
        [
            str(exe),
            "record",
            "--format",
            "raw",
            "--nonblocking",
            "-r",
            "250",
            "-o",
            out,
            "--",
            sys.executable,
            "-m",
            "benchmarks.profile",
            "--child",
            job_path,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0 or not os.path.exists(out):
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    own: dict[str, int] = {}
    areas: dict[str, int] = {}
    samples = 0
    with open(out, encoding="utf-8") as handle:
        for line in handle:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            count = int(count_text)
            if "unrolled_run" not in stack or any(skip in stack for skip in _SETUP):
                continue  # outside the Trio run loop, or building the fleet
            frames = [_frame(frame) for frame in stack.split(";")]
            filename, name = frames[-1]
            leaf = f"{filename} {name}"  # by function, not by line
            samples += count
            own[leaf] = own.get(leaf, 0) + count
            # A helper's sample (contextlib, generated __init__) goes to the nearest caller with an area.
            area = next(
                (a for f, n in reversed(frames) if (a := area_of(f, n)) != "other"), "other"
            )
            areas[area] = areas.get(area, 0) + count
    return {
        "samples": samples,
        "areas": sorted(areas.items(), key=lambda item: item[1], reverse=True),
        "by_own": sorted(own.items(), key=lambda item: item[1], reverse=True)[:TOP],
    }


# -- the RESULTS.md part ----------------------------------------------------------------------


def _ms(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.3f} ms (min {min(values):.3f}, max {max(values):.3f})"


def section(results: list[dict[str, Any]], command: str) -> str:
    from . import report  # not in the checking process, which may run another tree's package

    lines = [
        BEGIN,
        "## Where the checker's CPU goes (profile)",
        "",
        f"Measured by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{report.machine()}. The checker runs in a process of its own against the simulator "
        f"in another (latency {LATENCY:g} s, the scale curve's sentinels included, "
        "logging configured at CRITICAL as in the suite): one warm-up run, then unprofiled "
        "runs timed with `process_time`, then a run under cProfile. cProfile slows every "
        "Python call, so its *shares* locate the time; the unprofiled runs give the CPU per probe.",
    ]
    for r in results:
        prof = r["profile"]
        profiled = r["profiled_cpu_ms_per_probe"]
        lines += [
            "",
            f"### {r['n']:,} adapters ({r['probes_per_run']:,} probes a run)",
            "",
            f"- CPU per probe, unprofiled, median of {len(r['cpu_ms_per_probe'])} runs: "
            f"{_ms(r['cpu_ms_per_probe'])}"
            + ("." if profiled is None else f"; under cProfile {profiled:.3f} ms."),
            f"- Wall per run: median {statistics.median(r['walls']):.3f} s "
            f"({statistics.median(r['walls']) / LATENCY:.2f}x the upstream latency); "
            f"correct verdicts {r['correct']:,}/{r['expected']:,}.",
        ]
        versus = r.get("compare")
        if versus:
            before, after = versus["before"], versus["after"]
            lines += [
                "",
                f"Before/after in this session: {len(after)} rounds, each one checking process "
                f"of `{versus['label']}` then one of this tree, on this run's simulator "
                f"({r['repeats']} timed runs each, medians): CPU per probe "
                f"{statistics.median(before):.3f} ms before "
                f"(rounds {', '.join(f'{v:.3f}' for v in before)}), "
                f"{statistics.median(after):.3f} ms now "
                f"(rounds {', '.join(f'{v:.3f}' for v in after)}): "
                f"{statistics.median(after) / statistics.median(before) - 1:+.0%}.",
            ]
        if prof is None:
            continue
        total = prof["total_s"]
        lines += [
            "",
            "Own time by area (cProfile):",
            "",
            "| area | own time | share |",
            "|---|---:|---:|",
        ]
        lines += [f"| {area} | {secs:.3f} s | {secs / total:.1%} |" for area, secs in prof["areas"]]
        lines += [
            "",
            f"Top {TOP} functions by own time:",
            "",
            "| function | area | calls | own | share | per probe |",
            "|---|---|---:|---:|---:|---:|",
        ]
        probes = r["probes_per_run"]
        lines += [
            f"| `{row['function']}` | {row['area']} | {row['calls']:,} | {row['own']:.3f} s | "
            f"{row['own'] / total:.1%} | {row['own'] * 1e6 / probes:.1f} us |"
            for row in prof["by_own"]
        ]
        lines += [
            "",
            "Top functions by cumulative share (of the profiled total; nested, so they overlap):",
            "",
            "| function | area | cumulative share |",
            "|---|---|---:|",
        ]
        lines += [
            f"| `{row['function']}` | {row['area']} | {row['cum'] / total:.1%} |"
            for row in prof["by_cum"]
        ]
        spy = r.get("py_spy")
        if spy and "error" not in spy:
            lines += [
                "",
                f"py-spy, sampling the same workload unprofiled at 250 Hz ({spy['samples']:,} "
                "samples in the Trio run loop, the warm-up run included, the fleet's setup "
                "left out), by leaf area (a helper's samples go to its caller's): "
                + ", ".join(f"{area} {count / spy['samples']:.1%}" for area, count in spy["areas"])
                + ".",
            ]
        elif spy:
            lines += ["", f"py-spy could not sample: {spy['error']}"]
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("--child", metavar="JOB", help=argparse.SUPPRESS)
    parser.add_argument(
        "--adapters", type=int, action="append", help="fleet size, repeatable (1000 and 10000)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="unprofiled timed runs (5)")
    parser.add_argument("--profiled", type=int, default=1, help="runs under cProfile (1)")
    parser.add_argument(
        "--py-spy", action="store_true", help="also sample with py-spy if installed"
    )
    parser.add_argument(
        "--compare",
        metavar="DIR",
        help="another checkout (git worktree add DIR REV): its CPU per probe, alternated with ours",
    )
    parser.add_argument(
        "--compare-label", metavar="TEXT", help="what --compare DIR is (a revision)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternations for --compare (3)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if args.child:
        return _child_main(args.child)
    sizes = args.adapters or [1000, 10000]
    results = []
    for n in sizes:
        result = profile(n, repeats=args.repeats, profiled=args.profiled, py_spy=args.py_spy)
        result["repeats"] = args.repeats
        if args.compare:
            medians = compare(n, Path(args.compare), rounds=args.rounds, repeats=args.repeats)
            result["compare"] = {"label": args.compare_label or args.compare, **medians}
        results.append(result)
    shown = argv if argv is not None else sys.argv[1:]
    command = "python -m benchmarks.profile" + "".join(f" {a}" for a in shown if a != "--write")
    part = section(results, command)
    print(part)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    if args.write:
        write_section(part, BEGIN, END, RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
