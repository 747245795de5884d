"""``python -m benchmarks [--quick] [--json FILE]``.

A full run (about 35 minutes on 2 cores, redis-server needed for the cluster
record) writes benchmarks/RESULTS.md and benchmarks/scale.png; ``--quick`` (about three minutes, small N, short
latencies and windows) writes neither and exits 1 if any of this project's results is
wrong (never because something is slow). ``--policies-only`` runs just the
cost-policy records (benchmarks/policies.py, ~8 minutes in full) and replaces
only their part of RESULTS.md; ``--cluster-only`` does the same for the
1/3/5-instance record with and without ``[cluster]`` (benchmarks/cluster.py,
~8 minutes in full; needs redis-server).

RESULTS.md's prose is benchmarks/analysis.md, which holds no measured number:
where it needs one it names a reading (``{{reading:NAME}}``) that
benchmarks/report.py computes from the run (``report.READINGS``). The machine
line and the date are recorded with the run (``--json``), so ``--render`` shows
the run's, not the rendering machine's.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from . import report, suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a seconds-long smoke run: small N, latency scaled down to 0.1-0.2 s",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write the results as JSON to this file"
    )
    parser.add_argument(
        "--no-acceptance", action="store_true", help="skip the issue-2 acceptance rows"
    )
    parser.add_argument(
        "--no-policies",
        action="store_true",
        help="skip the cost-policy records (dashboard caching, adaptive limits)",
    )
    parser.add_argument(
        "--policies-only",
        action="store_true",
        help="run only the cost-policy records; a full run rewrites just their part of RESULTS.md",
    )
    parser.add_argument(
        "--no-cluster",
        action="store_true",
        help="skip the several-instances record (with and without the [cluster] Redis backend)",
    )
    parser.add_argument(
        "--cluster-only",
        action="store_true",
        help="run only the several-instances record; a full run rewrites just its part of RESULTS.md",
    )
    parser.add_argument(
        "--render",
        metavar="FILE",
        help="run nothing: rewrite RESULTS.md and scale.png from a full run's --json FILE",
    )
    parser.add_argument(
        "--results-dir",
        metavar="DIR",
        default=str(report.HERE),
        help="where a full run writes RESULTS.md and scale.png (default: benchmarks/)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # per-probe log lines would be measured too

    if args.render:
        with open(args.render, encoding="utf-8") as handle:
            results = suite.Results.from_json(json.load(handle))
        _write_results(results, Path(args.results_dir))
        return 0
    plan = suite.Plan.quick_plan() if args.quick else suite.Plan.full()
    plan.acceptance = not args.no_acceptance
    plan.policies = not args.no_policies
    plan.only_policies = args.policies_only
    plan.cluster = not args.no_cluster
    plan.only_cluster = args.cluster_only
    results = _run_with_progress(plan)
    results.command = "python -m benchmarks" + "".join(
        f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:])
    )

    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(asdict(results), handle, indent=2)
    print(report.markdown(results))
    if not args.quick:
        _write_results(results, Path(args.results_dir))
    failures = results.correctness_failures()
    for failure in failures:
        print(f"WRONG: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _write_results(results: suite.Results, out: Path) -> None:
    if results.plan.only_sections():
        # One section of a longer suite: replace it in place, keep the rest as recorded.
        path = out / "RESULTS.md"
        text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
        if results.plan.only_policies:
            text = report.splice_policies(text, report.policies_md(results))
        if results.plan.only_cluster:
            text = report.splice_cluster(text, report.cluster_md(results))
        path.write_text(text, encoding="utf-8")
        return
    report.plot(results, out / "scale.png")
    narrative = (report.HERE / "analysis.md").read_text(encoding="utf-8")
    path = out / "RESULTS.md"
    text = report.results_md(results, narrative)
    if path.exists():
        # Sections other commands write (or this run skipped) are carried over as recorded.
        old = path.read_text(encoding="utf-8")
        for name in report.CARRIED_SECTIONS:
            text = report.carry_section(old, text, name)
    path.write_text(text, encoding="utf-8")


def _run_with_progress(plan: suite.Plan) -> suite.Results:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (
        TextColumn("[progress.description]{task.description:<48}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("starting", total=plan.steps())
        started = False

        def step(description: str) -> None:
            nonlocal started
            if started:
                progress.advance(task)
            started = True
            progress.update(task, description=description)

        results = suite.run(plan, step)
        progress.update(task, completed=plan.steps(), description="done")
    return results


if __name__ == "__main__":
    sys.exit(main())
