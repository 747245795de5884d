"""Markdown tables, the targets check, the PNG plot and RESULTS.md from one run's results."""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from . import acceptance, workload
from .measure import FdSampler
from .suite import (
    DEFAULT_SHARD_THRESHOLD,
    LITELLM_ADAPTER_TIMEOUT,
    OURS_ADAPTER_TIMEOUT,
    OURS_TIMEOUT,
    SEED_ADAPTER_TIMEOUT,
    SEED_POOL,
    SEED_TABLE,
    SEED_TIMEOUT,
    Results,
)

HERE = Path(__file__).resolve().parent
PACKAGES = ("trio", "httpx", "httpcore", "h11", "hypercorn", "quart-trio", "rich", "matplotlib")

#: Sections other commands write into RESULTS.md (or this suite, when a run skips them):
#: a full run carries each over as recorded when it did not write it itself.
CARRIED_SECTIONS = ("policies", "cluster", "serving", "storage", "profile")


def calibration_ms() -> float:
    """A fixed pure-Python workload (best of 5), to compare runs across machines and hours.

    The 2 cores here are shared with other tenants: the same code has
    measured up to 2x apart in CPU per probe at different times of a day.
    """
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        sum(i * i for i in range(300_000))
        best = min(best, time.process_time() - start)
    return best * 1000


def machine() -> str:
    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    packages = ", ".join(f"{p} {ver(p)}" for p in PACKAGES)
    return (
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; {packages}"
    )


def _machine(results: Results) -> str:
    """The machine line recorded with the run (never this process's)."""
    return results.machine or "machine not recorded with this run"


# -- formatting ----------------------------------------------------------------


def _load(results: Results) -> str:
    if not results.load_average:
        return "load average not recorded"
    shown = " → ".join(f"{v:.2f}" for v in results.load_average)
    calibration = " → ".join(f"{v:.1f}" for v in results.calibration_ms) or "—"
    return (
        f"1-minute load average {shown}; CPU calibration {calibration} ms "
        "(a fixed pure-Python loop: lower is a faster machine; the cores are shared)"
    )


def _s(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f} s"


def _x(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ok(result: dict[str, Any] | None) -> str:
    if not result:
        return "—"
    if "error" in result:
        return f"**error**: {result['error'][:80]}"
    if not result.get("finished", True):
        return (
            f"**unfinished** ({result['correct']}/{result['expected']})"
            if result.get("correct")
            else "**unfinished**"
        )
    mark = "yes" if result["all_correct"] else "**NO**"
    if "correct" not in result:
        return mark
    return f"{mark} {result['correct']}/{result['expected']}"


def _runs(result: dict[str, Any] | None) -> str:
    """Warm-up + measured runs the row was given (absent from results recorded before)."""
    if not result or "warmup" not in result:
        return "—"
    return f"{result['warmup']} + {result['repeats']}"


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or b == 0 else f"{a / b:.1f}x"


def _table(headers: list[str], rows: list[list[str]], align: str = "") -> str:
    align = align or "l" + "r" * (len(headers) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _wall(result: dict[str, Any] | None) -> float | None:
    if not result or "error" in result or not result.get("finished", True):
        return None
    return result.get("wall_s")


def _speedup(seq: dict[str, Any] | None, conc: dict[str, Any] | None) -> float | None:
    a, b = _wall(seq), _wall(conc)
    return None if a is None or b is None or b == 0 else a / b


# -- sections ------------------------------------------------------------------


def seed_table(results: Results) -> str:
    rows = []
    for row in results.seed_table:
        n = row["n"]
        serial, conc, seed_speedup = SEED_TABLE[n]
        ours = _speedup(row["trio_sequential"], row["trio"])
        base = _speedup(row["seed_sequential"], row["seed"])
        rows.append(
            [
                str(n),
                f"{serial} / {conc} s",
                f"{seed_speedup:.1f}x ({(1 - conc / serial) * 100:.0f}%)",
                f"{_s(_wall(row['trio_sequential']), 2)} / {_s(_wall(row['trio']))}",
                "—" if ours is None else f"**{ours:.2f}x** ({(1 - 1 / ours) * 100:.1f}%)",
                "—" if ours is None else f"{ours / n:.3f}",
                f"{_s(_wall(row['seed_sequential']), 2)} / {_s(_wall(row['seed']))}",
                "—" if base is None else f"{base:.2f}x ({(1 - 1 / base) * 100:.1f}%)",
                f"{n}x",
                _ok(row["trio"]),
            ]
        )
    latency = results.seed_table[0]["latency"] if results.seed_table else 0
    return (
        f"Each adapter answers after {latency:g} s"
        + (
            " (the seed's serial column / N)"
            if not results.plan.quick
            else " (scaled down for --quick)"
        )
        + ". Sequential / concurrent wall time, speedup (improvement %).\n\n"
        + _table(
            [
                "N",
                "seed: serial / concurrent",
                "seed: speedup",
                "ours: sequential / concurrent",
                "ours: speedup",
                "ours: speedup / N",
                "seed design re-run: sequential / concurrent",
                "seed design re-run: speedup",
                "ideal",
                "ours correct",
            ],
            rows,
        )
    )


def _baseline_cells(b: dict[str, Any] | None, tw: float | None, lat: float) -> list[str]:
    """A baseline's wall, wall / latency, CPU, RSS, runs, correct and wall / ours."""
    if not b:
        return ["—"] * 7
    if "skipped" in b:
        return [b["skipped"], *["—"] * 6]
    bw = _wall(b)
    return [
        _s(bw) if b.get("finished", True) else f"> {b.get('cap_s', 0):.0f} s (cap)",
        _x(bw / lat if bw else None),
        _x(b.get("cpu_ms_per_probe"), 3),
        _x(b.get("peak_rss_mb"), 0),
        _runs(b),
        _ok(b),
        _ratio(bw, tw)
        if bw
        else (f"> {_ratio(b.get('cap_s'), tw)}" if tw and b.get("cap_s") else "—"),
    ]


def _processes(result: dict[str, Any] | None) -> str:
    """1 + the worker processes a row of ours ran with ("—" when not recorded)."""
    if not result or "error" in result or "workers" not in result:
        return "—"
    return str(1 + int(result["workers"]))


def scale_table(results: Results) -> str:
    rows = []
    for row in results.scale:
        t, b = row["trio"], row["seed"]
        lat = row["latency"]
        tw, bw = _wall(t), _wall(b)
        rows.append(
            [
                f"{row['n']:,} + {len(workload.SENTINELS)}",
                _processes(t),
                _s(tw),
                _x(tw / lat if tw else None),
                _x(t.get("cpu_ms_per_probe"), 3),
                _x(t.get("sim_cpu_ms_per_probe"), 3),
                _x(t.get("peak_rss_mb"), 0),
                _fds(t),
                _runs(t),
                _ok(t),
                _s(bw) if b.get("finished", True) else f"> {b.get('cap_s', 0):.0f} s (cap)",
                _x(bw / lat if bw else None),
                _x(b.get("cpu_ms_per_probe"), 3),
                _x(b.get("peak_rss_mb"), 0),
                _fds(b),
                _runs(b),
                _ok(b),
                _ratio(bw, tw)
                if bw
                else (f"> {_ratio(b.get('cap_s'), tw)}" if tw and b.get("cap_s") else "—"),
                *_baseline_cells(row.get("litellm"), tw, lat),
            ]
        )
    lat = results.scale[0]["latency"] if results.scale else 0
    return (
        f"Every provider answers after {lat:g} s; each run also probes {len(workload.SENTINELS)} "
        "failure-mode sentinels (status 500, 429, 401, key echo, malformed JSON, HTML, wrong shape, "
        "reset, 10 MB body, hang, trickled body), which must come back with their own status and "
        "failure kind (ours) or unhealthy (the seed design and LiteLLM's proxy health check, "
        "which have nothing finer; LiteLLM with its own defaults: chat probes, unbounded "
        f"concurrency, {LITELLM_ADAPTER_TIMEOUT:g} s per deployment). The healthy "
        "fleet is answered by the lean upstream (`benchmarks/fast_upstream.py`), the sentinels by "
        "the full simulator. Wall is the median of the measured runs; *runs* is warm-up + measured "
        "runs. Ours runs with the default `[checks] workers` (*processes*: the checker and its "
        "worker processes); its CPU and peak RSS are summed over them (each process's own peak). "
        "*Upstream CPU ms/request* is the lean upstream's, summed over its processes, per "
        "request it answered.\n\n"
        + _table(
            [
                "N + sentinels",
                "processes",
                "ours: wall",
                "wall / latency",
                "CPU ms/probe",
                "upstream CPU ms/request",
                "peak RSS MB",
                "peak fds / bound",
                "runs",
                "correct",
                "seed design: wall",
                "wall / latency",
                "CPU ms/probe",
                "peak RSS MB",
                "peak fds / bound",
                "runs",
                "correct",
                "seed wall / ours",
                "LiteLLM: wall",
                "wall / latency",
                "CPU ms/probe",
                "peak RSS MB",
                "runs",
                "correct",
                "LiteLLM wall / ours",
            ],
            rows,
        )
    )


def _kb_per_adapter(result: dict[str, Any] | None) -> float | None:
    """Peak RSS (summed over the row's processes) per probe of a run, in KB."""
    if not result or "error" in result:
        return None
    rss, probes = result.get("peak_rss_mb"), result.get("probes_per_run")
    return rss * 1024 / probes if rss and probes else None


def _cpu_split(result: dict[str, Any]) -> str:
    """``parent + workers`` CPU ms per probe (the parts of the summed figure)."""
    parent = result.get("parent_cpu_ms_per_probe")
    workers = result.get("shard_cpu_ms_per_probe") or []
    if parent is None:
        return "—"
    if not workers:
        return f"{parent:.3f}"
    return f"{parent:.3f} + " + " + ".join(f"{w:.3f}" for w in workers)


def workers_table(results: Results) -> str:
    rows = []
    for row in results.scale:
        if not row.get("trio_single"):
            continue
        for r in (row["trio"], row["trio_single"]):
            w = _wall(r)
            label = f"workers = {r.get('workers_config', 'default')}"
            kb = _kb_per_adapter(r)
            rows.append(
                [
                    f"{row['n']:,} + {len(workload.SENTINELS)}",
                    label,
                    _processes(r),
                    _s(w),
                    _x(w / row["latency"] if w else None),
                    _x(r.get("cpu_ms_per_probe"), 3),
                    _cpu_split(r),
                    _x(r.get("peak_rss_mb"), 0),
                    "—" if kb is None else f"{kb:.1f}",
                    _fds(r),
                    _runs(r),
                    _ok(r),
                ]
            )
    return (
        "The scale curve's rows where the fleet is large enough for worker processes, run again "
        "with `[checks] workers = 1` (one process), on the same upstreams. CPU per probe is summed "
        "over the checker and its workers (*parent + each worker* beside it); peak RSS is the sum "
        "of each process's own peak, and *per adapter* divides it by the probes of a run; peak fds "
        "are sampled as the sum over the processes.\n\n"
        + _table(
            [
                "N + sentinels",
                "config",
                "processes",
                "wall",
                "wall / latency",
                "CPU ms/probe, summed",
                "parent + each worker",
                "peak RSS MB, summed",
                "KB / adapter",
                "peak fds / bound",
                "runs",
                "correct",
            ],
            rows,
            "llrrrrrrrrrr",
        )
    )


def sequential_table(results: Results) -> str:
    rows = []
    for row in results.sequential:
        n = row["n"]
        ours = _speedup(row["trio_sequential"], row["trio"])
        base = _speedup(row["seed_sequential"], row["seed"])
        rows.append(
            [
                str(n),
                _s(_wall(row["trio_sequential"])),
                _s(_wall(row["trio"])),
                _x(ours),
                _x(ours / n if ours else None, 3),
                _s(_wall(row["seed_sequential"])),
                _s(_wall(row["seed"])),
                _x(base),
                f"{n}",
                _ok(row["trio"]),
            ]
        )
    lat = results.sequential[0]["latency"] if results.sequential else 0
    return f"Every provider answers after {lat:g} s; no sentinels.\n\n" + _table(
        [
            "N",
            "ours: sequential",
            "ours: concurrent",
            "speedup",
            "speedup / N",
            "seed design: sequential",
            "seed design: concurrent",
            "speedup",
            "ideal",
            "ours correct",
        ],
        rows,
    )


def strategy_table(results: Results) -> str:
    from .worker import TRANSPORTS

    rows = []
    for row in results.strategies:
        r = row["trio"]
        w = _wall(r)
        budget = r.get("connection_budget") or {}
        rows.append(
            [
                row["strategy"],
                f"{row['n']:,}",
                str(row["fd_limit"] or r.get("fd_limit", "—")),
                _s(w),
                _x(w / results.plan.scale_latency if w else None),
                _x(r.get("cpu_ms_per_probe"), 3),
                _x(r.get("sim_cpu_ms_per_probe"), 3),
                _fds(r),
                str(budget.get("evicted", "—")) if row["fd_limit"] else "—",
                _ok(r),
            ]
        )
    legend = "\n".join(f"- `{k}`: {v}" for k, v in TRANSPORTS.items())
    return (
        f"Same fleet as the scale curve ({results.plan.scale_latency:g} s, with sentinels). "
        "`fd limit` rows lower RLIMIT_NOFILE (soft and hard) in the checker process first.\n\n"
        + _table(
            [
                "strategy",
                "N",
                "fd limit",
                "wall",
                "wall / latency",
                "CPU ms/probe",
                "upstream CPU ms/request",
                "peak fds / bound",
                "sockets evicted",
                "correct",
            ],
            rows,
        )
        + "\n\n"
        + legend
    )


def _overhead(h: dict[str, Any]) -> float | None:
    """Client wall minus the checker's own time: per run where recorded, else of the medians."""
    if h.get("overhead_s") is not None:
        return float(h["overhead_s"])
    w = _wall(h)
    return w - h["checker_s"] if w and h.get("checker_s") else None


def http_table(results: Results) -> str:
    direct = {row["n"]: _wall(row["trio"]) for row in results.scale}
    rows = []
    for row in results.http:
        h = row["http"]
        w = _wall(h)
        rows.append(
            [
                f"{row['n']:,} + {len(workload.SENTINELS)}",
                _s(w),
                _s(h.get("checker_s")),
                _s(_overhead(h)),
                _x(w / row["latency"] if w else None),
                _s(direct.get(row["n"])),
                _x(h.get("cpu_ms_per_probe"), 3),
                _x(h.get("peak_rss_mb"), 0),
                _fds(h),
                f"{h['body_bytes'] / 1024:,.0f} KB" if "body_bytes" in h else "—",
                _ok(h),
            ]
        )
    perf_rows = []
    for row in results.performance:
        h = row["http"]
        n = row["n"]
        perf_rows.append(
            [
                str(n),
                _s(h.get("concurrent_s")),
                _s(h.get("sequential_s"), 2),
                "—" if h.get("speedup") is None else f"**{h['speedup']:.2f}x**",
                "—" if h.get("improvement_percent") is None else f"{h['improvement_percent']:.1f}%",
                f"{SEED_TABLE[n][2]:.1f}x" if n in SEED_TABLE else "—",
                f"{n}x",
                _ok(h),
            ]
        )
    lat = results.http[0]["latency"] if results.http else 0
    plat = results.performance[0]["latency"] if results.performance else 0
    return (
        f"`GET /v1/health/` on the real app (hypercorn, Trio worker) in its own process, "
        f"{lat:g} s upstream, sentinels included, `details` on (the default). Wall is measured "
        "at the client; *checker* is the body's `execution_time`; CPU, RSS and fds are the "
        "server process's, summed with its worker processes' where the fleet is sharded.\n\n"
        + _table(
            [
                "N + sentinels",
                "wall (client)",
                "checker",
                "HTTP overhead",
                "wall / latency",
                "same run, no HTTP",
                "server CPU ms/probe",
                "peak RSS MB",
                "peak fds / bound",
                "body",
                "correct",
            ],
            rows,
        )
        + f"\n\n`GET /v1/health/performance` (the seed's own endpoint: concurrent, then "
        f"sequential), {plat:g} s per adapter:\n\n"
        + _table(
            [
                "N",
                "concurrent",
                "sequential",
                "speedup",
                "improvement",
                "seed claimed",
                "ideal",
                "agree + healthy",
            ],
            perf_rows,
        )
    )


# -- cost policies (benchmarks/policies.py) -------------------------------------------

POLICIES_BEGIN = "<!-- policies:begin (python -m benchmarks --policies-only rewrites this part) -->"
POLICIES_END = "<!-- policies:end -->"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"


def _fewer(baseline: float | None, value: float | None) -> str:
    if baseline is None or value is None:
        return "—"
    if value == 0:
        return "none sent"
    return "1x (baseline)" if value == baseline else f"**{baseline / value:.1f}x fewer**"


def polling_table(results: Results) -> str:
    from .policies import DASH_MODELS, DASH_PROVIDERS, LATENCY, POLL_PERIOD

    seed = {
        r["clients"]: r.get("probes_per_minute")
        for r in results.polling
        if not r.get("checks") and "error" not in r
    }
    rows = []
    for r in results.polling:
        if "error" in r:
            error = f"**error**: {r['error'][:80]}"
            rows.append([r["policy"], str(r["clients"]), error, *[""] * 7])
            continue
        rows.append(
            [
                r["policy"],
                str(r["clients"]),
                str(r["polls"]),
                str(r["upstream_requests"]),
                f"{r['probes_per_minute']:.0f}",
                _fewer(seed.get(r["clients"]), r["probes_per_minute"]),
                _x(r.get("probes_per_poll"), 2),
                _ms(r.get("p50_ms")),
                _ms(r.get("p95_ms")),
                f"{r['polls_right']}/{r['polls']}",
            ]
        )
    seconds = results.polling[0].get("seconds", 0) if results.polling else 0
    return (
        f"Each dashboard polls `GET /v1/health/` every {POLL_PERIOD:g} s (start to start; several "
        "dashboards are spread evenly over the second) on a `router-health serve` process with "
        f"{len(DASH_MODELS) * len(DASH_PROVIDERS)} adapters ({len(DASH_MODELS)} models x "
        f"{len(DASH_PROVIDERS)} providers, {LATENCY:g} s upstream latency), for ~{seconds:.0f} s "
        "after one warm-up poll. *Upstream requests* is what the simulator itself counted in that "
        "window, background probes included; *polls right* means 200 with every model healthy. "
        "Each row is a fresh server.\n\n"
        + _table(
            [
                "[checks]",
                "dashboards",
                "polls",
                "upstream requests",
                "probes / minute",
                "vs no cache",
                "probes / poll",
                "dashboard p50",
                "dashboard p95",
                "polls right",
            ],
            rows,
        )
    )


def limiter_table(results: Results) -> str:
    from .policies import LATENCY, PROVIDER_LIMIT

    rows = []
    for r in results.limiter:
        head = [r["policy"], f"{r['retry_after']:g} s"]
        if "skipped" in r or "error" in r:
            why = r.get("skipped") or f"**error**: {r['error'][:80]}"
            rows.append([*head, why, *[""] * 6])
            continue
        limits = r.get("limits") or []
        shown = ", ".join("—" if v is None else str(v) for v in limits)
        rows.append(
            [
                *head,
                str(r["upstream_requests"]),
                f"**{r['upstream_429s']}**",
                f"{r['healthy_total']}/{r['verdicts_total']}",
                f"{r['healthy_per_run'][-1]}/{r['adapters']}",
                _s(r["wall_median_s"]),
                _s(r["wall_last_s"]),
                "—" if not limits or limits[-1] is None else f"{limits[-1]} ({shown})",
            ]
        )
    first = next((r for r in results.limiter if "adapters" in r), {})
    return (
        f"One simulated provider answers 429 (with Retry-After) to any request beyond "
        f"{PROVIDER_LIMIT} in flight, {LATENCY:g} s latency otherwise; {first.get('adapters', '?')} "
        "models are all served by that one provider name, so they share one per-provider limiter. "
        f"Each configuration runs {first.get('runs', '?')} full checks back to back in a fresh "
        "process; *429s sent* is the simulator's own count, *healthy* counts the verdicts "
        "(every adapter is healthy, so every other verdict is wrong). *limit* is the "
        "per-provider limit after the last run (after each run).\n\n"
        + _table(
            [
                "configuration",
                "Retry-After",
                "upstream requests",
                "429s sent",
                "healthy verdicts, all runs",
                "healthy, last run",
                "wall, median run",
                "wall, last run",
                "limit",
            ],
            rows,
            "llrrrrrrl",
        )
    )


def policies_md(results: Results) -> str:
    """The cost-policy records, framed by markers so a later run can replace them alone."""
    when = f", {results.policies_at}" if results.policies_at else ""
    return "\n\n".join(
        [
            POLICIES_BEGIN,
            "## Cost policies: caching for polling dashboards, limits for rate-limiting providers",
            f"Measured by `{results.command or 'python -m benchmarks'}`{when} on "
            f"{_machine(results)}.",
            "### Probes per minute for dashboards polling every second",
            polling_table(results),
            "### Fixed vs adaptive concurrency against a provider that rate-limits",
            limiter_table(results),
            POLICIES_END,
        ]
    )


def splice_policies(document: str, section: str) -> str:
    """``document`` (a RESULTS.md) with its policies part replaced by ``section``.

    Without one yet, the section goes where a full run puts it: before the
    ``## Targets`` table (not the analysis's "## Targets missed..."), or at the end.
    """
    begin, end = document.find(POLICIES_BEGIN), document.find(POLICIES_END)
    if begin != -1 and end > begin:
        return document[:begin] + section + document[end + len(POLICIES_END) :]
    anchor = document.find("\n## Targets\n")
    if anchor == -1:
        return document.rstrip("\n") + "\n\n" + section + "\n"
    return document[: anchor + 1] + section + "\n\n" + document[anchor + 1 :]


# -- several instances, with and without [cluster] (benchmarks/cluster.py) ---------------

CLUSTER_BEGIN = "<!-- cluster:begin (python -m benchmarks --cluster-only rewrites this part) -->"
CLUSTER_END = "<!-- cluster:end -->"


def cluster_md(results: Results) -> str:
    """The instances-with-and-without-Redis record, framed by markers (like the policies')."""
    from . import cluster

    rows = results.cluster
    first = next((r for r in rows if "error" not in r), {})
    when = f", {results.cluster_at}" if results.cluster_at else ""
    intro = (
        f"One simulator process serves {first.get('adapters', '?')} adapters (openai-compatible, "
        f"no key, {first.get('latency', 0):g} s latency); N `router-health serve` processes run "
        f"background checks on all of them (`[checks] interval = {first.get('interval', 0):g}`, "
        f"`jitter = {first.get('jitter', 0):g}`), alone or sharing one redis-server through "
        "`[cluster] redis_url` (each its own `instance_id`). Each row starts fresh instances, "
        "waits until every instance has a result for every adapter and half an interval more "
        "(a window opening on the first, synchronized round would miss one at its end), then "
        "measures "
        f"~{first.get('seconds', 0):.0f} s: *upstream requests* is the simulator's own count; "
        "*sent by each instance* is each one's probe-latency histogram count (`/metrics`); CPU "
        "is user + system time of each process (`/proc/PID/stat`) per minute of the window. "
        "*Every instance serves all* means each answered `GET /v1/health/?details=false` from "
        "its background state with every adapter in its report, all healthy (and, with the "
        "cluster, `/readyz` said `connected`). *Expected* is one probe per adapter per interval "
        "per instance without the cluster, once in all with it."
    )
    return "\n\n".join(
        [
            CLUSTER_BEGIN,
            "## Several instances: probes and CPU with and without the cluster backend",
            f"Measured by `{results.command or 'python -m benchmarks'}`{when} on "
            f"{_machine(results)}.",
            intro,
            cluster.table(rows),
            cluster.reading(rows),
            CLUSTER_END,
        ]
    )


def splice_cluster(document: str, section: str) -> str:
    """``document`` with its cluster part replaced by ``section``.

    Without one yet, it goes right after the policies part, else before the
    ``## Targets`` table, else at the end.
    """
    begin, end = document.find(CLUSTER_BEGIN), document.find(CLUSTER_END)
    if begin != -1 and end > begin:
        return document[:begin] + section + document[end + len(CLUSTER_END) :]
    after = document.find(POLICIES_END)
    if after != -1:
        cut = after + len(POLICIES_END)
        return document[:cut] + "\n\n" + section + document[cut:]
    anchor = document.find("\n## Targets\n")
    if anchor == -1:
        return document.rstrip("\n") + "\n\n" + section + "\n"
    return document[: anchor + 1] + section + "\n\n" + document[anchor + 1 :]


# -- targets -------------------------------------------------------------------


#: Issue 18's targets for wall / slowest latency, by fleet size (the largest N each covers).
WALL_TARGETS = ((15, 1.03), (100, 1.05), (1000, 1.25), (10000, 2.5))
CPU_TARGET_N, CPU_TARGET_MS = 1000, 0.25
#: Issue 18: peak RSS per adapter at 10,000 "no worse than today". Today is the run
#: recorded before issue 18 (RESULTS.md at commit 9c72312: 243 MB at 10,000 + 11),
#: a target carried from that run, not a measurement of this one.
RSS_TARGET_N, RSS_PER_PROBE_BEFORE_KB = 10000, 243 * 1024 / 10011


def _wall_target(n: int) -> float:
    return next((limit for top, limit in WALL_TARGETS if n <= top), WALL_TARGETS[-1][1])


def fd_bound(result: dict[str, Any]) -> int | None:
    """The most descriptors a correct run may hold: one socket per probe plus the manager's
    reserve for everything else (what it raises RLIMIT_NOFILE to), and never above the limit."""
    from service.engine.manager import FD_RESERVE

    probes = result.get("probes_per_run") or result.get("expected")
    if not probes:
        return None
    limit = result.get("fd_limit") or 0
    bound = int(probes) + FD_RESERVE
    return min(bound, int(limit)) if limit > 0 else bound


def fds_within(result: dict[str, Any]) -> bool | None:
    """Measured peak fds against :func:`fd_bound`; None when either is missing."""
    bound, peak = fd_bound(result), result.get("peak_fds")
    return None if bound is None or not peak else peak <= bound


def _fds(result: dict[str, Any]) -> str:
    bound, peak = fd_bound(result), result.get("peak_fds")
    if not peak:
        return "—"
    return f"{peak:,}" if bound is None else f"{peak:,} / {bound:,}"


def targets(results: Results) -> list[dict[str, Any]]:
    """Each issue target, its measured value and how far off it is."""
    out: list[dict[str, Any]] = []

    def add(
        name: str,
        value: float | None,
        limit: float,
        *,
        higher_is_better: bool = False,
        unit: str = "",
    ) -> None:
        if value is None:
            out.append({"target": name, "measured": "—", "met": False, "margin": "not measured"})
            return
        met = value >= limit if higher_is_better else value <= limit
        margin = (value / limit - 1) * 100 if not higher_is_better else (1 - value / limit) * 100
        out.append(
            {
                "target": name,
                "measured": f"{value:.3f}{unit}",
                "met": met,
                "margin": "" if met else f"missed by {abs(margin):.0f}%",
                "value": value,
                "limit": limit,
            }
        )

    for row in results.scale:
        n, t = row["n"], row["trio"]
        w = _wall(t)
        limit = _wall_target(n)
        add(f"scale N={n:,}: wall / latency ≤ {limit}", w / row["latency"] if w else None, limit)
        if n == CPU_TARGET_N:
            add(
                f"CPU ≤ {CPU_TARGET_MS} ms per probe at N={n:,}",
                t.get("cpu_ms_per_probe"),
                CPU_TARGET_MS,
                unit=" ms",
            )
        if n == RSS_TARGET_N:
            # On one process (workers = 1) where the run has that row: the target compares
            # the checker's own memory per adapter, which worker processes would add to.
            single = row.get("trio_single")
            add(
                f"peak RSS per adapter at N={n:,}"
                + (", workers = 1" if single else "")
                + f" ≤ {RSS_PER_PROBE_BEFORE_KB:.1f} KB (the run before issue 18)",
                _kb_per_adapter(single or t),
                RSS_PER_PROBE_BEFORE_KB,
                unit=" KB",
            )
        within = fds_within(t)
        out.append(
            {
                "target": f"N={n:,}: every result correct, peak fds within bound",
                "measured": f"{t.get('correct', 0):,}/{t.get('expected', 0):,} correct, "
                f"peak fds {_fds(t)}",
                "met": bool(t.get("all_correct")) and within is True,
                "margin": "" if within is not False else "fds over the bound",
            }
        )
        single = row.get("trio_single")
        if single:
            within = fds_within(single)
            out.append(
                {
                    "target": f"N={n:,}, workers = 1: every result correct, peak fds within bound",
                    "measured": f"{single.get('correct', 0):,}/{single.get('expected', 0):,} "
                    f"correct, peak fds {_fds(single)}",
                    "met": bool(single.get("all_correct")) and within is True,
                    "margin": "" if within is not False else "fds over the bound",
                }
            )
    for row in results.seed_table:
        n = row["n"]
        sp = _speedup(row["trio_sequential"], row["trio"])
        add(
            f"seed table N={n}: speedup ≥ 0.95·N = {0.95 * n:.2f}",
            sp,
            0.95 * n,
            higher_is_better=True,
        )
        w = _wall(row["trio"])
        add(f"seed table N={n}: wall / latency ≤ 1.03", w / row["latency"] if w else None, 1.03)
    return out


def targets_table(results: Results) -> str:
    rows = [
        [t["target"], t["measured"], "yes" if t["met"] else "**no**", t["margin"]]
        for t in targets(results)
    ]
    return (
        "Issue 18's targets (the seed table's from issue 2); *peak fds* is the measured peak "
        "against its bound (see *File descriptors*).\n\n"
        + _table(["target", "measured", "met", "margin"], rows, "lrll")
    )


def markdown(results: Results) -> str:
    parts = [
        f"Machine: {_machine(results)}",
        f"Suite time: {results.seconds:.0f} s; {_load(results)}",
    ]
    if results.plan.only_sections():
        if results.plan.only_policies:
            parts.append(policies_md(results))
        if results.plan.only_cluster:
            parts.append(cluster_md(results))
        return "\n\n".join([*parts, _correctness(results)]) + "\n"
    if results.acceptance:
        parts += ["## Acceptance (issues 2 and 3)", acceptance.markdown(results.acceptance)]
    parts += ["## The seed's table", seed_table(results)]
    parts += ["## The scale curve", scale_table(results)]
    if any(row.get("trio_single") for row in results.scale):
        parts += ["## Worker processes: several vs one", workers_table(results)]
    if results.sequential:
        parts += ["## Sequential vs concurrent at low latency", sequential_table(results)]
    if results.strategies:
        parts += ["## Client strategies", strategy_table(results)]
    parts += ["## Through HTTP", http_table(results)]
    if results.polling or results.limiter:
        parts += [policies_md(results)]
    if results.cluster:
        parts += [cluster_md(results)]
    parts += ["## Targets", targets_table(results)]
    parts += [_correctness(results)]
    return "\n\n".join(parts) + "\n"


def _correctness(results: Results) -> str:
    failures = results.correctness_failures()
    verdict = (
        "All of this project's results are correct."
        if not failures
        else "\n".join(f"- **wrong**: {f}" for f in failures)
    )
    return "## Correctness\n\n" + verdict


# -- plot ----------------------------------------------------------------------


def plot(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results.scale
    if not rows:
        return
    lat = rows[0]["latency"]
    ns = [r["n"] for r in rows]
    probes = [r["n"] + len(workload.SENTINELS) for r in rows]
    ours = [_wall(r["trio"]) for r in rows]
    seed = [_wall(r["seed"]) for r in rows]
    seed_cap = [
        (r["n"], r["seed"].get("cap_s"))
        for r in rows
        if _wall(r["seed"]) is None and r["seed"].get("cap_s")
    ]
    http = {r["n"]: _wall(r["http"]) for r in results.http}

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    left.plot(ns, ours, "o-", color="tab:blue", label="router-health (Trio), wall / latency shown")
    if any(http.values()):
        hn = [n for n in ns if http.get(n)]
        left.plot(
            hn,
            [http[n] for n in hn],
            "s--",
            color="tab:cyan",
            label="router-health via GET /v1/health/",
        )
    single = {r["n"]: _wall(r.get("trio_single")) for r in rows if r.get("trio_single")}
    if any(single.values()):
        on = [n for n in ns if single.get(n)]
        left.plot(
            on,
            [single[n] for n in on],
            "D--",
            color="tab:purple",
            label="router-health, one process (workers = 1)",
        )
    sn = [n for n, w in zip(ns, seed, strict=True) if w]
    left.plot(
        sn,
        [w for w in seed if w],
        "o-",
        color="tab:red",
        label="seed design (asyncio.gather, shared httpx client)",
    )
    lite = [(r["n"], _wall(r.get("litellm"))) for r in rows if r.get("litellm")]
    if any(w for _, w in lite):
        left.plot(
            [n for n, w in lite if w],
            [w for _, w in lite if w],
            "v-",
            color="tab:green",
            label="LiteLLM proxy health check (its defaults)",
        )
    lite_cap = [
        (r["n"], r["litellm"].get("cap_s"))
        for r in rows
        if r.get("litellm") and _wall(r["litellm"]) is None and r["litellm"].get("cap_s")
    ]
    if lite_cap:
        left.plot(
            [n for n, _ in lite_cap],
            [c for _, c in lite_cap],
            "+",
            color="tab:green",
            markersize=12,
            label="LiteLLM: unfinished at the cap",
        )
    if seed_cap:
        left.plot(
            [n for n, _ in seed_cap],
            [c for _, c in seed_cap],
            "x",
            color="tab:red",
            markersize=10,
            label="seed design: unfinished at the cap",
        )
    for r in rows:  # a fast-because-wrong (or slow-and-wrong) point must say so
        seed_result = r["seed"]
        seed_wall = _wall(seed_result)
        if seed_wall and not seed_result.get("all_correct"):
            left.annotate(
                f"wrong: {seed_result['correct']:,}/{seed_result['expected']:,} correct",
                (r["n"], seed_wall),
                textcoords="offset points",
                xytext=(-165, -12),
                color="tab:red",
                fontsize=8,
            )
    left.plot(ns, [lat] * len(ns), "k:", label=f"ideal: the slowest adapter ({lat:g} s)")
    left.set_xscale("log")
    left.set_yscale("log")
    for n, w in zip(ns, ours, strict=True):  # the ratio the targets are about, on the plot
        if w:
            left.annotate(
                f"{w / lat:.2f}x", (n, w), textcoords="offset points", xytext=(4, 6), fontsize=8
            )
    sentinels = len(workload.SENTINELS)
    left.set_xlabel(f"healthy adapters N (+ {sentinels} failure sentinels)")
    left.set_ylabel("wall time of one check-all run (s)")
    left.set_title(f"Wall time, {lat:g} s upstream latency")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8, loc="center left")

    def eff(walls: list[float | None]) -> list[float | None]:
        return [None if w is None else p * lat / w for p, w in zip(probes, walls, strict=True)]

    right.plot(ns, eff(ours), "o-", color="tab:blue", label="router-health (Trio)")
    seff = eff(seed)
    right.plot(
        [n for n, v in zip(ns, seff, strict=True) if v],
        [v for v in seff if v],
        "o-",
        color="tab:red",
        label="seed design",
    )
    if any(w for _, w in lite):
        by_n = dict(zip(ns, probes, strict=True))
        right.plot(
            [n for n, w in lite if w],
            [by_n[n] * lat / w for n, w in lite if w],
            "v-",
            color="tab:green",
            label="LiteLLM proxy health check",
        )
    right.plot(ns, probes, "k:", label=f"ideal: N + {sentinels} (every probe at once)")
    for n, (_serial, _conc, sp) in SEED_TABLE.items():
        right.plot(
            [n], [sp], "^", color="tab:orange", label="seed's published table" if n == 5 else None
        )
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("healthy adapters N")
    right.set_ylabel("speedup = probes x latency / wall")
    right.set_title("Speedup over a one-at-a-time run")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle(
        f"router-health benchmarks ({results.started_at or 'date not recorded'}; "
        f"{results.cpu_count or '?'} cores; loopback upstreams in processes of their own)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- readings: the prose's figures, computed from this run ----------------------------
#
# analysis.md is hand-written and holds no measured number; where its prose needs one it
# names a reading, ``{{reading:NAME}}``, and results_md() puts this run's sentence there.


DASH = "\N{EN DASH}"


def _n(n: int) -> str:
    return f"N = {n:,}"


def _span(values: list[float], fmt: str = ".2f", unit: str = "") -> str:
    low, high = min(values), max(values)
    if f"{low:{fmt}}" == f"{high:{fmt}}":
        return f"{low:{fmt}}{unit}"
    return f"{low:{fmt}}{DASH}{high:{fmt}}{unit}"


def reading_setup(results: Results) -> str:
    """The budgets both designs ran with, and the warm-up each row had."""
    text = (
        "Our runs use `recheck_timeouts = false` and budgets far above the latency (run "
        f"timeout {OURS_TIMEOUT:g} s, `adapter_timeout` {OURS_ADAPTER_TIMEOUT:g} s), so a "
        "deadline never ends a healthy probe and a timed-out sentinel is not re-probed (the "
        "re-check's cost is in the acceptance rows). The seed design runs with the seed's own "
        f"defaults (run timeout {SEED_TIMEOUT:g} s, adapter timeout {SEED_ADAPTER_TIMEOUT:g} s, "
        f"httpx's default pool of {SEED_POOL} connections). "
    )
    pairs = [
        (section, row["n"], row["trio"], row["seed"])
        for section in ("seed_table", "scale", "sequential")
        for row in getattr(results, section)
        if row.get("trio") and row.get("seed")
    ]
    if not pairs:
        return text.rstrip()
    if any("warmup" not in ours or "warmup" not in seed for _, _, ours, seed in pairs):
        return text + "The warm-up runs of each row were not recorded with this run."
    differ = sorted({n for _, n, ours, seed in pairs if seed["warmup"] != ours["warmup"]})
    warmups = sorted({ours["warmup"] for _, _, ours, _ in pairs})
    if not differ:
        text += (
            f"Every concurrent row gave both designs the same warm-up ({_plural(warmups, 'run')} "
            "before the measured ones, connections left open); walls are medians of the measured "
            "runs (*runs* columns)."
        )
    else:
        text += (
            "The seed design did not get our warm-up at "
            + ", ".join(_n(n) for n in differ)
            + " (see the *runs* columns): its walls there include opening its connections."
        )
    stopped = sorted(
        {
            n
            for _, n, _, seed in pairs
            if not seed.get("finished", True) and seed.get("warmup") and not seed.get("walls")
        }
    )
    if stopped:
        text += (
            " At "
            + ", ".join(_n(n) for n in stopped)
            + " the seed design's warm-up run itself did not finish inside its cap, so none of "
            "its runs there was measured."
        )
    cold = sorted(
        {
            row["strategy"]
            for row in results.strategies
            if row["trio"].get("warmup") == 0 and "error" not in row["trio"]
        }
    )
    if cold:
        text += (
            " Rows with no warm-up: "
            + ", ".join(f"*{name}*" for name in cold)
            + " (with fewer sockets than adapters, none survives to the next run anyway)."
        )
    return text


def _plural(values: list[int], noun: str) -> str:
    shown = " or ".join(str(v) for v in values)
    return f"{shown} {noun}" + ("" if values == [1] else "s")


def _measured_results(results: Results) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for section in ("seed_table", "scale", "sequential"):
        for row in getattr(results, section):
            for key, who in (
                ("trio", "ours"),
                ("trio_single", "ours, workers = 1"),
                ("seed", "seed design"),
                ("litellm", "LiteLLM"),
            ):
                if row.get(key):
                    found.append((f"{section.replace('_', ' ')} {_n(row['n'])}, {who}", row[key]))
    for row in results.strategies:
        found.append((f"strategy {row['strategy']} {_n(row['n'])}", row["trio"]))
    for row in results.http:
        found.append((f"HTTP {_n(row['n'])}", row["http"]))
    return found


def reading_spread(results: Results) -> str:
    """How far repeated runs of one row, and the CPU calibration, moved during this run."""
    spreads = [
        ((max(r["walls"]) - min(r["walls"])) / statistics.median(r["walls"]), where)
        for where, r in _measured_results(results)
        if len(r.get("walls") or []) >= 2 and statistics.median(r["walls"]) > 0
    ]
    parts = []
    if spreads:
        worst, where = max(spreads)
        typical = statistics.median(value for value, _ in spreads)
        parts.append(
            f"In this run, the measured runs of one row differed in wall time by {typical:.0%} "
            f"(median over {len(spreads)} rows), at most {worst:.0%} ({where})."
        )
    if len(results.calibration_ms) >= 2:
        first, last = results.calibration_ms[0], results.calibration_ms[-1]
        parts.append(
            f"The CPU calibration read {first:.1f} ms at the start and {last:.1f} ms at the end "
            f"({abs(last / first - 1) if first else 0:.0%} apart)."
        )
    return " ".join(parts) or "This run recorded no repeated runs to compare."


def _strategy_rows(results: Results, n: int) -> dict[str, dict[str, Any]]:
    return {
        row["strategy"]: row["trio"]
        for row in results.strategies
        if row["n"] == n and not row["fd_limit"] and _wall(row["trio"])
    }


def reading_strategies(results: Results) -> str:
    """The client strategies ranked by CPU per probe, and what each layer added."""
    if not any(not row["fd_limit"] for row in results.strategies):
        return "This run compared no client strategies (a full run does)."
    lat = results.plan.scale_latency
    sizes = sorted({row["n"] for row in results.strategies if not row["fd_limit"]})
    sentences = []
    for n in sizes:
        rows = _strategy_rows(results, n)
        if not rows:
            continue
        ranked = sorted(rows.items(), key=lambda item: item[1]["cpu_ms_per_probe"])
        listed = "; ".join(
            f"`{name}` {r['cpu_ms_per_probe']:.2f} ms/probe, {r['wall_s'] / lat:.2f}x latency"
            for name, r in ranked
        )
        sentences.append(f"At {_n(n)}, from the least CPU per probe to the most: {listed}.")
        cheapest = ranked[0][0]
        sentences.append(
            "The production strategy (`direct`) was the cheapest there."
            if cheapest == "direct"
            else f"The cheapest there was `{cheapest}`, not the production strategy (`direct`)."
        )
        layers = [
            ("httpcore-per-adapter", "direct", "httpcore's pool over the same keep-alive sockets"),
            ("httpx-per-adapter", "httpcore-per-adapter", "httpx's layer over httpcore"),
            ("direct-no-keepalive", "direct", "a new connection per probe instead of keep-alive"),
        ]
        added = [
            f"{why} {rows[a]['cpu_ms_per_probe'] - rows[b]['cpu_ms_per_probe']:+.2f} ms"
            for a, b, why in layers
            if a in rows and b in rows
        ]
        if added:
            sentences.append("Per probe, " + "; ".join(added) + ".")
    return " ".join(sentences)


def reading_fds(results: Results) -> str:
    """Measured peak fds against the bound, and the limited-fd rows side by side."""
    import inspect

    from service.engine.manager import FD_RESERVE

    interval = inspect.signature(FdSampler).parameters["interval"].default
    text = (
        f"*Peak fds* is sampled every {interval * 1000:g} ms by a thread in the measured process "
        "(`benchmarks/measure.py: FdSampler`), during the measured runs; its *bound* is one socket "
        f"per probe plus the manager's reserve of {FD_RESERVE} for everything else, never above "
        "the process's RLIMIT_NOFILE. "
    )
    theirs = ("seed design", "LiteLLM")
    ours = [
        (where, r)
        for where, r in _measured_results(results)
        if not any(name in where for name in theirs)
    ]
    over = [where for where, r in ours if fds_within(r) is False]
    checked = [where for where, r in ours if fds_within(r) is not None]
    if not checked:
        text += "No row of this run recorded its peak fds."
    elif over:
        text += "Over the bound in this run: " + "; ".join(over) + "."
    else:
        text += f"All {len(checked)} rows of ours with a recorded peak stayed within it."
    limited = {row["strategy"]: row for row in results.strategies if row["fd_limit"]}
    budget = limited.get("direct + ConnectionBudget")
    if budget and "error" not in budget["trio"]:
        r = budget["trio"]
        evicted = (r.get("connection_budget") or {}).get("evicted", "—")
        text += (
            f" With RLIMIT_NOFILE forced down to {budget['fd_limit']:,}, {r['expected']:,} probes "
            f"({_n(budget['n'])} + sentinels) peaked at {r.get('peak_fds', 0):,} fds with "
            f"{evicted} sockets evicted, {r['correct']:,}/{r['expected']:,} right "
            "(row *direct + ConnectionBudget*)."
        )
        limiter = limited.get("no keep-alive + checker probe_limiter")
        if limiter and _wall(limiter["trio"]) and _wall(r):
            q = limiter["trio"]
            text += (
                f" The checker's `probe_limiter` with keep-alive off, under the same limit: "
                f"{_wall(q):.2f} vs {_wall(r):.2f} s and {q['cpu_ms_per_probe']:.2f} vs "
                f"{r['cpu_ms_per_probe']:.2f} ms/probe (limiter vs budget), "
                f"{q['correct']:,}/{q['expected']:,} right."
            )
    fits = [n for n in sorted({row["n"] for row in results.strategies})]
    for n in reversed(fits):
        rows = _strategy_rows(results, n)
        if "direct" in rows and "direct-no-keepalive" in rows:
            on, off = (
                rows["direct"]["cpu_ms_per_probe"],
                rows["direct-no-keepalive"]["cpu_ms_per_probe"],
            )
            text += (
                f" Where the fleet fits the limit ({_n(n)}), keep-alive off cost {off:.2f} ms/probe "
                f"against {on:.2f} with it ({off / on:.1f}x)."
            )
            break
    return text


def reading_seed(results: Results) -> str:
    """The seed design against ours, row by row of the scale curve and the seed's table."""
    sentences = []
    both = [
        r
        for r in results.scale
        if _wall(r["trio"]) and _wall(r["seed"]) and r["seed"].get("all_correct")
    ]
    if both:
        walls = [_wall(r["seed"]) / _wall(r["trio"]) for r in both]  # type: ignore[operator]
        cpus = [
            r["seed"]["cpu_ms_per_probe"] / r["trio"]["cpu_ms_per_probe"]
            for r in both
            if r["seed"].get("cpu_ms_per_probe") and r["trio"].get("cpu_ms_per_probe")
        ]
        sentences.append(
            f"Where it was right (up to {_n(max(r['n'] for r in both))}), the seed design took "
            f"{_span(walls)}x our wall time"
            + (f" at {_span(cpus, '.1f')}x our CPU per probe" if cpus else "")
            + " (it reads whole bodies, the 10 MB sentinel's too)."
        )
    for r in results.scale:
        seed = r["seed"]
        if _wall(seed) and not seed.get("all_correct"):
            sentences.append(
                f"At {_n(r['n'])} it finished in {_wall(seed):.1f} s "
                f"({_wall(seed) / r['latency']:.1f}x the latency) at "
                f"{seed.get('cpu_ms_per_probe') or 0:.1f} ms of CPU per probe, and was right on "
                f"{seed['correct']:,}/{seed['expected']:,}: its one shared client queues every "
                f"request behind {SEED_POOL} connections, and a probe that waits past the "
                f"{SEED_ADAPTER_TIMEOUT:g} s adapter timeout is reported unhealthy."
            )
        elif not _wall(seed) and seed.get("cap_s") is not None and "error" not in seed:
            n, lat = r["n"], r["latency"]
            sequential = (n + len(workload.SENTINELS)) * lat
            sentences.append(
                f"At {_n(n)} it did not finish inside its cap of {seed['cap_s']:g} s"
                + (
                    f" (its own budget is {SEED_TIMEOUT:g} s)"
                    if seed["cap_s"] != SEED_TIMEOUT
                    else ""
                )
                + "; its sequential fallback would then take "
                f"{n + len(workload.SENTINELS):,} x {lat:g} s ≈ {sequential / 60:.0f} min."
            )
    if results.seed_table:
        published = " → ".join(f"{SEED_TABLE[r['n']][1]:g}" for r in results.seed_table)
        ours = [_speedup(r["trio_sequential"], r["trio"]) for r in results.seed_table]
        seeds = [_speedup(r["seed_sequential"], r["seed"]) for r in results.seed_table]
        ns = " / ".join(str(r["n"]) for r in results.seed_table)

        def speedups(values: list[float | None]) -> str:
            return " / ".join("—" if v is None else f"{v:.1f}x" for v in values)

        sentences.append(
            f"The seed's published concurrent column ({published} s at {ns} adapters) grows with "
            "N, as if part of every probe ran one at a time; re-run plainly on the same upstream "
            f"({results.seed_table[0]['latency']:g} s adapters), its design reached "
            f"{speedups(seeds)} at {ns} adapters and ours {speedups(ours)} (*The seed's table*)."
        )
    return " ".join(sentences) or "This run has no rows of the seed design."


def reading_litellm(results: Results) -> str:
    """LiteLLM's proxy health check against ours, row by row of the scale curve."""
    rows = [r for r in results.scale if r.get("litellm")]
    skipped = [r["litellm"]["skipped"] for r in rows if "skipped" in r["litellm"]]
    rows = [r for r in rows if "skipped" not in r["litellm"]]
    if not rows:
        return (
            f"This run did not measure LiteLLM's health check ({skipped[0]})."
            if skipped
            else "This run did not measure LiteLLM's health check."
        )
    sentences = []
    right = [
        r
        for r in rows
        if _wall(r["litellm"]) and _wall(r["trio"]) and r["litellm"].get("all_correct")
    ]
    if right:
        walls = [_wall(r["litellm"]) / _wall(r["trio"]) for r in right]  # type: ignore[operator]
        cpus = [
            r["litellm"]["cpu_ms_per_probe"] / r["trio"]["cpu_ms_per_probe"]
            for r in right
            if r["litellm"].get("cpu_ms_per_probe") and r["trio"].get("cpu_ms_per_probe")
        ]
        sentences.append(
            f"Where it was right (up to {_n(max(r['n'] for r in right))}), LiteLLM's proxy health "
            f"check took {_span(walls)}x our wall time"
            + (f" at {_span(cpus, '.1f')}x our CPU per probe" if cpus else "")
            + "."
        )
    for r in rows:
        b, n = r["litellm"], r["n"]
        wall = _wall(b)
        if wall and not b.get("all_correct"):
            sentences.append(
                f"At {_n(n)} it finished in {wall:.1f} s ({wall / r['latency']:.1f}x the latency) "
                f"at {b.get('cpu_ms_per_probe') or 0:.1f} ms of CPU per probe, and was right on "
                f"{b.get('correct', 0):,}/{b.get('expected', 0):,}."
            )
        elif not wall and b.get("cap_s") is not None and "error" not in b:
            sentences.append(f"At {_n(n)} it did not finish inside its cap of {b['cap_s']:g} s.")
    return " ".join(sentences) or "No run of LiteLLM's health check finished in this run."


def reading_missed(results: Results) -> str:
    """Every target this run missed, by how much, with the CPU each side spent per run."""
    missed = [t for t in targets(results) if not t["met"]]
    if not missed:
        return "This run met every target in the *Targets* table."
    lines = []
    by_n = {r["n"]: r for r in results.scale}
    for t in missed:
        line = f"- **{t['target']}**: measured {t['measured']}" + (
            f", {t['margin']}." if t["margin"] else "."
        )
        n = next((n for n in by_n if t["target"].startswith(f"scale N={n:,}:")), None)
        if n is not None:
            line += " " + _cpu_per_run(results, by_n[n]["trio"], by_n[n]["latency"])
        lines.append(line)
    return "\n".join(lines)


def _cpu_per_run(results: Results, r: dict[str, Any], lat: float) -> str:
    """What every process of a row spent per run, against the latency and the cores."""
    probes = r.get("probes_per_run") or 0
    ours = (r.get("cpu_ms_per_probe") or 0) * probes / 1000
    processes = 1 + int(r.get("workers") or 0)
    who = "our process" if processes == 1 else f"our {processes} processes (summed)"
    text = f"Per run of {probes:,} probes, {who} used {ours:.2f} s of CPU"
    upstream = r.get("upstream_cpu_s")
    if upstream:  # the lean upstream, per process
        total = sum(upstream)
        text += f", the lean upstream {total:.2f} s"
        if len(upstream) > 1:
            text += f" over {len(upstream)} processes (the busiest {max(upstream):.2f} s)"
        if r.get("sentinel_cpu_s") is not None:
            text += f" and the sentinels' simulator {r['sentinel_cpu_s']:.2f} s"
        busiest = max(upstream)
    else:  # one simulator answered every probe
        total = busiest = (r.get("sim_cpu_ms_per_probe") or 0) * probes / 1000
        text += f" and the simulator process {total:.2f} s"
    if busiest > lat:
        return text + (
            f", {busiest / lat:.1f}x the latency in one upstream process: a process runs on one "
            "core at a time, so no checker gets its answers sooner from that upstream."
        )
    cores = results.cpu_count or 0
    if cores:
        floor = (ours + total) / cores
        text += (
            f"; on {cores} cores, that CPU alone needs at least {floor:.2f} s of wall time "
            f"({floor / lat:.2f}x the latency)"
        )
    return text + "."


def reading_workers(results: Results) -> str:
    """Worker processes against one process, at the sizes the run measured both."""
    sentences = []
    for row in results.scale:
        single, many = row.get("trio_single"), row["trio"]
        if not single or not _wall(single) or not _wall(many):
            continue
        lat, n = row["latency"], row["n"]
        w1, wn = _wall(single) or 0.0, _wall(many) or 0.0
        processes = 1 + int(many.get("workers") or 0)
        if processes == 1:
            sentences.append(
                f"At {_n(n)} the default configuration ran in one process on this machine, so "
                "both rows measured the same design."
            )
            continue
        kb1, kbn = _kb_per_adapter(single), _kb_per_adapter(many)
        sentences.append(
            f"At {_n(n)}, {processes} processes (the checker and {processes - 1} workers) took "
            f"{wn:.2f} s ({wn / lat:.2f}x the latency) against {w1:.2f} s ({w1 / lat:.2f}x) in "
            f"one process, at {many['cpu_ms_per_probe']:.3f} ms of CPU per probe summed against "
            f"{single['cpu_ms_per_probe']:.3f}; peak RSS summed "
            f"{many.get('peak_rss_mb') or 0:.0f} MB against {single.get('peak_rss_mb') or 0:.0f} MB"
            + (f" ({kbn:.1f} against {kb1:.1f} KB per adapter)" if kb1 and kbn else "")
            + "."
        )
    return " ".join(sentences) or (
        "This run measured no fleet both with worker processes and in one process."
    )


def reading_upstream(results: Results) -> str:
    """The lean upstream's CPU per request and per run, against the latency."""
    parts = []
    processes = 0
    rows = [r for r in results.scale if r["trio"].get("upstream_cpu_s")]
    big = [r for r in rows if r["n"] >= DEFAULT_SHARD_THRESHOLD]
    for row in big or rows:  # the sizes where it could have been the limit
        r = row["trio"]
        upstream = r["upstream_cpu_s"]
        if r.get("sim_cpu_ms_per_probe") is None:
            continue
        processes = len(upstream)
        parts.append(
            f"{r['sim_cpu_ms_per_probe']:.3f} ms per request at {_n(row['n'])} "
            f"({sum(upstream):.3f} s per run"
            + (f", the busiest process {max(upstream):.3f} s)" if processes > 1 else ")")
        )
    if not parts:
        return "In this run one simulator process answered every probe."
    lat = results.scale[0]["latency"]
    return (
        f"The lean upstream ran as {processes} process{'' if processes == 1 else 'es'}"
        + " and used "
        + "; ".join(parts)
        + f", against the {lat:g} s latency each answer waits."
    )


def reading_http(results: Results) -> str:
    """What the HTTP endpoint added to the checker's own time, row by row."""
    parts = []
    for row in results.http:
        h = row["http"]
        w = _wall(h)
        if not w or _overhead(h) is None:
            continue
        size = f", a {h['body_bytes'] / 1024:,.0f} KB body" if "body_bytes" in h else ""
        parts.append(f"{(_overhead(h) or 0) * 1000:,.0f} ms at {_n(row['n'])}{size}")
    if not parts:
        return "This run measured nothing through HTTP."
    return (
        "Through HTTP, the endpoint added (client wall minus the body's `execution_time`, "
        "median over the measured runs) "
        + "; ".join(parts)
        + " (with `details` on; `details=false` trims the body)."
    )


READINGS = {
    "setup": reading_setup,
    "spread": reading_spread,
    "strategies": reading_strategies,
    "fds": reading_fds,
    "seed": reading_seed,
    "missed": reading_missed,
    "http": reading_http,
    "workers": reading_workers,
    "litellm": reading_litellm,
    "upstream": reading_upstream,
}
_READING = re.compile(r"\{\{reading:([a-z_]+)\}\}")


def narrate(narrative: str, results: Results) -> str:
    """``narrative`` with every ``{{reading:NAME}}`` replaced by this run's sentence."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in READINGS:
            raise KeyError(f"analysis.md names an unknown reading: {name!r}")
        return READINGS[name](results)

    return _READING.sub(fill, narrative)


# -- RESULTS.md ------------------------------------------------------------------


def carry_section(old: str, new: str, name: str) -> str:
    """``new`` with the ``<!-- name:begin ... -->``..``<!-- name:end -->`` part of ``old`` appended.

    For sections another command writes: a full run must not drop them.
    """
    begin, end_marker = old.find(f"<!-- {name}:begin"), f"<!-- {name}:end -->"
    end = old.find(end_marker, begin)
    if begin == -1 or end == -1 or f"<!-- {name}:begin" in new:
        return new
    return new.rstrip("\n") + "\n\n" + old[begin : end + len(end_marker)] + "\n"


def results_md(results: Results, narrative: str) -> str:
    head = (
        "# Benchmark results\n\n"
        "Written by the last full run of `python -m benchmarks`; do not edit by hand "
        "(the analysis below is `benchmarks/analysis.md`, kept with the code, with this run's "
        "figures filled in by `benchmarks/report.py`).\n\n"
        f"- Command: `{results.command}` (from the repository root, after `pip install -e '.[dev,bench]'`)\n"
        f"- Started: {results.started_at or 'not recorded with this run'}\n"
        f"- Machine: {_machine(results)}\n"
        f"- Suite time: {results.seconds:.0f} s; {_load(results)}\n"
        "- Plot: `benchmarks/scale.png`\n\n"
    )
    body = markdown(results).split("\n\n", 2)[2]  # drop the machine and time lines
    return (
        head
        + "![wall time and speedup vs N](scale.png)\n\n"
        + narrate(narrative.strip(), results)
        + "\n\n"
        + body
    )
