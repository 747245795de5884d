"""RESULTS.md from a synthetic run: every number in it comes from that run (or is a parameter).

Rendered through ``python -m benchmarks --render`` from a synthetic run and from copies of it
that differ in every measured value, each by its own random factor: a number that shows up
unchanged in every rendering did not come from the measurements, so it must be a parameter of
the plan, a target, a count, or something the run recorded as text (machine, date, command).
Several perturbed copies, not one: a figure derived from two measurements (a ratio shown to
one decimal) can land on the same rounded value once by chance, never in all of them.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import random
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from benchmarks import __main__ as bench_main
from benchmarks import report, suite, workload

SENTINELS = len(workload.SENTINELS)
#: Values a run measures (everything else in a result is a parameter or a count).
MEASURED = {
    "wall_s", "walls", "checker_s", "cpu_ms_per_probe", "sim_cpu_ms_per_probe", "peak_rss_mb",
    "peak_fds", "body_bytes", "concurrent_s", "sequential_s", "speedup", "improvement_percent",
    "median_s", "max_s", "evicted", "seconds", "calibration_ms", "load_average",
    "parent_cpu_ms_per_probe", "shard_cpu_ms_per_probe", "upstream_cpu_s", "sentinel_cpu_s",
    "parent_peak_rss_mb", "shard_peak_rss_mb",
}  # fmt: skip


def _ours(n: int, latency: float, *, wall: float, cpu: float, repeats: int = 3,
          fd_limit: int = 20000, warmup: int = 1, workers: int = 0) -> dict[str, Any]:  # fmt: skip
    probes = n + SENTINELS
    shard_cpu = [cpu * (0.41 + i / 97) for i in range(workers)]
    shard_rss = [31 + n * 0.0093 + i for i in range(workers)]
    return {
        "impl": "trio", "n": n, "probes_per_run": probes,
        "walls": [wall * 0.98, wall, wall * 1.05][:repeats], "wall_s": wall,
        "checker_s": wall * 0.97, "cpu_ms_per_probe": cpu + sum(shard_cpu),
        "parent_cpu_ms_per_probe": cpu, "shard_cpu_ms_per_probe": shard_cpu, "workers": workers,
        "sim_cpu_ms_per_probe": cpu * 0.13, "upstream_cpu_s": [n * cpu * 0.00011, n * 0.000017],
        "sentinel_cpu_s": 0.0137, "parent_peak_rss_mb": 50 + n * 0.021,
        "shard_peak_rss_mb": shard_rss, "peak_rss_mb": 50 + n * 0.021 + sum(shard_rss),
        "peak_fds": min(probes + 7, fd_limit - 300),
        "fd_limit": fd_limit, "connection_budget": {"limit": fd_limit - 300, "evicted": 0},
        "correct": probes, "expected": probes, "all_correct": True, "wrong": [],
        "finished": True, "warmup": warmup, "repeats": repeats,
    }  # fmt: skip


def _seed(n: int, latency: float, *, wall: float | None, right: bool = True,
          warmup: int = 1) -> dict[str, Any]:  # fmt: skip
    probes = n + SENTINELS
    if wall is None:  # its warm-up did not finish inside the cap
        return {"impl": "seed", "finished": False, "cap_s": 30.0, "walls": [], "wall_s": None,
                "correct": 0, "expected": probes, "all_correct": False, "warmup": warmup,
                "repeats": 1}  # fmt: skip
    result = _ours(n, latency, wall=wall, cpu=4.2, repeats=1, warmup=warmup)
    correct = probes if right else SENTINELS
    return {**result, "impl": "seed", "correct": correct, "all_correct": right,
            "connection_budget": None, "cap_s": 60.0, "peak_fds": min(probes, 100) + 6}  # fmt: skip


def synthetic() -> dict[str, Any]:
    plan = suite.Plan.full()
    lat, seed_lat = plan.scale_latency, plan.seed_latency
    data = asdict(suite.Results(plan))
    data.update(
        command="python -m benchmarks --json run.json",
        machine="2 cores, x86_64, Python 3.11.7, Linux 6.18.44; trio 0.35.0",
        started_at="2026-12-02 03:00 UTC",
        cpu_count=2,
        seconds=1834.0,
        load_average=[0.41, 0.58],
        calibration_ms=[19.3, 21.7],
    )
    data["acceptance"] = [
        {"scenario": "15 x 300 ms, 1 returns 500: concurrent", "median_s": 0.3071,
         "max_s": 0.3123, "target": "< 0.40 s", "ok": True, "correct": True,
         "note": "14 healthy / 1 unhealthy"},
    ]  # fmt: skip
    data["seed_table"] = [
        {"n": n, "latency": seed_lat,
         "trio": _ours(n, seed_lat, wall=seed_lat * 1.0031, cpu=0.61),
         "trio_sequential": _ours(n, seed_lat, wall=seed_lat * n * 1.0017, cpu=0.7, warmup=0,
                                  repeats=1),
         "seed": _seed(n, seed_lat, wall=seed_lat * 1.0123),
         "seed_sequential": _seed(n, seed_lat, wall=seed_lat * n * 1.0041, warmup=0)}
        for n in plan.seed_ns
    ]  # fmt: skip
    data["scale"] = [
        {"n": n, "latency": lat,
         "trio": _ours(n, lat, wall=lat * (1.013 + n / 6517), cpu=0.147 + n / 91000,
                       repeats=3 if n < 10000 else 2, workers=2 if n >= 1000 else 0),
         "seed": _seed(n, lat, wall=None if n >= 10000 else lat * (1.07 + n / 37),
                       right=n < 1000)}
        for n in plan.scale_ns
    ]  # fmt: skip
    for row in data["scale"]:
        n = row["n"]
        if n in plan.litellm_ns:  # right up to 100, wrong at 1,000, capped at 10,000
            lite = _seed(n, lat, wall=None if n >= 10000 else lat * (1.31 + n / 29),
                         right=n < 1000)  # fmt: skip
            row["litellm"] = {**lite, "impl": "litellm", "cpu_ms_per_probe": 8.7,
                              "correct": lite["correct"] + (n // 3 if n == 1000 else 0)}  # fmt: skip
        if row["n"] in plan.unsharded_ns:
            n = row["n"]
            row["trio"]["workers_config"] = "auto"
            row["trio_single"] = {**_ours(n, lat, wall=lat * (1.021 + n / 4517),
                                          cpu=0.333 + n / 97000, repeats=3 if n < 10000 else 2),
                                  "workers_config": 1}  # fmt: skip
    data["sequential"] = [
        {"n": n, "latency": plan.sequential_latency,
         "trio": _ours(n, plan.sequential_latency, wall=0.0531 + n / 9000, cpu=0.52),
         "trio_sequential": _ours(n, plan.sequential_latency, wall=0.0527 * n, cpu=0.53,
                                  repeats=1),
         "seed": _seed(n, plan.sequential_latency, wall=0.0541 + n / 430),
         "seed_sequential": _seed(n, plan.sequential_latency, wall=0.0549 * n)}
        for n in plan.sequential_ns
    ]  # fmt: skip
    costs = {"direct": 0.413, "direct-no-keepalive": 0.731, "httpcore-per-adapter": 0.779,
             "httpx-per-adapter": 1.093, "httpx-shared": 2.861, "httpx-shared-keepalive": 23.67}  # fmt: skip
    data["strategies"] = [
        {"n": n, "strategy": name, "fd_limit": None,
         "trio": _ours(n, lat, wall=lat * (1.2 + costs[name] * n / 900), cpu=costs[name] * 1.07)}
        for n, names in ((plan.strategy_n, plan.strategies),
                         (plan.strategy_big_n, plan.strategies_big))
        for name in names
    ] + [
        {"n": n, "strategy": name, "fd_limit": limit,
         "trio": _ours(n, lat, wall=lat * 20.3, cpu=0.661, fd_limit=limit, warmup=0, repeats=1)}
        for (n, limit, _), name in zip(
            plan.fd_limited, ("direct + ConnectionBudget", "no keep-alive + checker probe_limiter"),
            strict=True)
    ]  # fmt: skip
    data["http"] = [
        {"n": n, "latency": lat,
         "http": {**_ours(n, lat, wall=lat * (1.03 + n / 1800), cpu=0.39), "impl": "http",
                  "checker_s": lat * (1.02 + n / 1850), "body_bytes": 230 * (n + SENTINELS)}}
        for n in plan.http_ns
    ]  # fmt: skip
    data["performance"] = [
        {"n": n, "latency": seed_lat,
         "http": {"wall_s": seed_lat * n * 1.11, "concurrent_s": seed_lat * 1.0037,
                  "sequential_s": seed_lat * n * 1.0013, "speedup": n * 0.9971,
                  "improvement_percent": 100 * (1 - 1 / n) * 0.9993, "total_adapters": n,
                  "all_correct": True, "wrong": []}}
        for n in plan.performance_ns
    ]  # fmt: skip
    return data


def perturbed(data: Any, rng: random.Random, key: str = "") -> Any:
    """``data`` with every measured value moved by its own factor (counts and parameters kept)."""
    if isinstance(data, dict):
        return {k: perturbed(v, rng, k) for k, v in data.items()}
    if isinstance(data, list):
        return [perturbed(v, rng, key) for v in data]
    if key in MEASURED and isinstance(data, int | float) and not isinstance(data, bool):
        moved = data * rng.uniform(1.13, 1.71)
        return round(moved) if isinstance(data, int) else moved
    return data


NAMES = re.compile(
    r"HTTP/1\.1|h11|/v1/|\bv1\b|seed_asyncio|RLIMIT_NOFILE|issues? \d+(?: and \d+)?", re.I
)
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def numbers(text: str) -> set[str]:
    return {m.replace(",", "").rstrip(".") for m in NUMBER.findall(NAMES.sub(" ", text))}


def parameters(data: dict[str, Any]) -> set[str]:
    """Numbers a rendering may show whatever was measured: what the input says besides its
    measurements, and the report's own constants (targets, budgets, the seed's table)."""
    kept = json.dumps(_without_measured(data))
    found = numbers(kept)
    for value in list(found):  # the same number as the renderer formats it
        try:
            number = float(value)
        except ValueError:
            continue
        found |= {f"{number:g}", f"{number:.0f}", f"{number:.1f}", f"{number:.2f}"}
    plan = data["plan"]
    probes = {n + SENTINELS for n in plan["scale_ns"] + [plan["strategy_n"],
                                                          plan["strategy_big_n"]]}  # fmt: skip
    from service.engine.manager import FD_RESERVE

    found |= {str(p) for p in probes} | {str(p + FD_RESERVE) for p in probes}
    # The seed design's sequential fallback at N (minutes): probes x the latency.
    found |= {f"{p * plan['scale_latency'] / 60:.0f}" for p in probes}
    found |= {str(SENTINELS), str(FD_RESERVE), str(suite.SEED_POOL)}
    found |= {f"{v:g}" for v in (suite.OURS_TIMEOUT, suite.OURS_ADAPTER_TIMEOUT,
                                 suite.SEED_TIMEOUT, suite.SEED_ADAPTER_TIMEOUT)}  # fmt: skip
    found |= {f"{limit:g}" for _, limit in report.WALL_TARGETS}
    found |= {f"{report.CPU_TARGET_MS:g}", f"{report.RSS_PER_PROBE_BEFORE_KB:.1f}", "1.03"}
    found |= {"0.95"} | {f"{0.95 * n:.2f}" for n in plan["seed_ns"]}
    for serial, concurrent, speedup in suite.SEED_TABLE.values():  # the seed's published table
        found |= {f"{serial:g}", f"{concurrent:g}", f"{speedup:.1f}",
                  f"{(1 - concurrent / serial) * 100:.0f}"}  # fmt: skip
    found |= {"20"}  # FdSampler's interval, in ms (a parameter of the measurement)
    found |= {"500", "429", "401", "10"}  # the sentinels' statuses and the 10 MB body's size
    found |= {"0", "1", "9c72312"}  # margins of none; "1x (baseline)"; the RSS target's source
    return found


def _without_measured(data: Any, key: str = "") -> Any:
    if isinstance(data, dict):
        return {k: _without_measured(v, k) for k, v in data.items() if k not in MEASURED}
    if isinstance(data, list):
        return [_without_measured(v, key) for v in data]
    return data


def render(data: dict[str, Any], where: Path) -> str:
    where.mkdir(exist_ok=True)
    source = where / "run.json"
    source.write_text(json.dumps(data), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        if importlib.util.find_spec("matplotlib") is None:  # the bench extra draws the plot
            patch.setattr(report, "plot", lambda results, path: None)
        assert bench_main.main(["--render", str(source), "--results-dir", str(where)]) == 0
    return (where / "RESULTS.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def two_renderings(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, dict[str, Any]]:
    data = synthetic()
    base = tmp_path_factory.mktemp("render")
    first = render(data, base / "a")
    second = render(perturbed(data, random.Random(18)), base / "b")
    return first, second, data


#: Seeds of the further perturbed copies (beyond the fixture's ``second``).
MORE_SEEDS = (19, 20, 21)


def unchanged(first: str, second: str) -> list[tuple[str, str]]:
    """(number, line) for every number at the same place of the same sentence in both texts.

    Lines are paired by their shape (the line with its numbers masked), so a measured value
    that happens to equal another row's in the other rendering is not taken for a fixed one.
    """

    def shape(line: str) -> str:
        return NUMBER.sub("#", NAMES.sub(" ", line))

    a, b = first.splitlines(), second.splitlines()
    matcher = difflib.SequenceMatcher(None, [shape(x) for x in a], [shape(x) for x in b],
                                      autojunk=False)  # fmt: skip
    found = []
    for block in matcher.get_matching_blocks():
        for i in range(block.size):
            line_a, line_b = a[block.a + i], b[block.b + i]
            pairs = zip(NUMBER.findall(NAMES.sub(" ", line_a)),
                        NUMBER.findall(NAMES.sub(" ", line_b)), strict=True)  # fmt: skip
            found += [(x.replace(",", "").rstrip("."), line_a) for x, y in pairs if x == y]
    return found


def test_no_number_in_results_md_survives_a_change_of_every_measurement(
    two_renderings: tuple[str, str, dict[str, Any]], tmp_path: Path
) -> None:
    first, second, data = two_renderings
    allowed = parameters(data)
    unexplained = {(x, line) for x, line in unchanged(first, second) if x not in allowed}
    for seed in MORE_SEEDS:  # a number is fixed only if no perturbation moved it
        if not unexplained:
            break
        other = render(perturbed(data, random.Random(seed)), tmp_path / str(seed))
        unexplained &= set(unchanged(first, other))
    assert not unexplained, sorted(unexplained)


def test_the_machine_and_date_are_the_runs(two_renderings: tuple[str, str, dict[str, Any]]) -> None:
    first, _, data = two_renderings
    assert f"- Machine: {data['machine']}\n" in first
    assert f"- Started: {data['started_at']}\n" in first
    assert report.machine() not in first  # never this process's, at render time


def test_every_reading_in_the_analysis_is_filled(
    two_renderings: tuple[str, str, dict[str, Any]],
) -> None:
    first, _, _ = two_renderings
    assert "{{reading:" not in first
    for heading in ("## The seed's design, re-run", "## Targets missed, by how much"):
        assert heading in first
    assert "within it" in first  # the measured peak fds, against its bound


def test_the_hand_written_analysis_holds_no_number() -> None:
    text = (report.HERE / "analysis.md").read_text(encoding="utf-8")
    # Names that contain digits, not figures: the protocol, its library, the API path.
    assert numbers(text) == set(), sorted(numbers(text))


def test_fds_over_their_bound_fail_the_target() -> None:
    data = synthetic()
    row = data["scale"][-1]["trio"]
    row["peak_fds"] = row["probes_per_run"] * 2  # a socket leaked per probe
    results = suite.Results.from_json(data)
    (target,) = [t for t in report.targets(results) if t["target"].startswith("N=10,000:")]
    assert not target["met"] and target["margin"] == "fds over the bound"


def test_a_seed_design_without_our_warm_up_is_said_in_the_text() -> None:
    data = synthetic()
    data["scale"][3]["seed"]["warmup"] = 0
    text = report.reading_setup(suite.Results.from_json(data))
    assert "did not get our warm-up at N = 1,000" in text


def test_a_full_run_carries_every_section_other_commands_wrote(tmp_path: Path) -> None:
    old = "# old\n\n" + "".join(
        f"<!-- {name}:begin (x) -->\n{name} rows\n<!-- {name}:end -->\n\n"
        for name in report.CARRIED_SECTIONS
    )
    (tmp_path / "RESULTS.md").write_text(old, encoding="utf-8")
    new = render(synthetic(), tmp_path)
    for name in report.CARRIED_SECTIONS:
        assert f"<!-- {name}:begin (x) -->\n{name} rows\n<!-- {name}:end -->" in new


def test_worker_processes_are_shown_beside_one_process(
    two_renderings: tuple[str, str, dict[str, Any]],
) -> None:
    first, _, _ = two_renderings
    assert "## Worker processes: several vs one" in first
    assert "| 10,000 + 11 | workers = auto | 3 |" in first
    assert "| 10,000 + 11 | workers = 1 | 1 |" in first
    assert "At N = 10,000, 3 processes (the checker and 2 workers) took" in first
    assert "The lean upstream ran as 2 processes" in first
    assert "LiteLLM's proxy health check took" in first
    assert "At N = 10,000 it did not finish inside its cap of 30 s." in first


def test_the_rss_target_is_on_the_one_process_row() -> None:
    data = synthetic()
    (row,) = [r for r in data["scale"] if r["n"] == report.RSS_TARGET_N]
    single = row["trio_single"]
    results = suite.Results.from_json(data)
    (target,) = [t for t in report.targets(results) if "peak RSS" in t["target"]]
    assert "workers = 1" in target["target"]
    assert target["value"] == pytest.approx(single["peak_rss_mb"] * 1024 / single["probes_per_run"])
    # Without that row, the scale row itself (a run recorded before worker processes).
    del row["trio_single"]
    (target,) = [
        t for t in report.targets(suite.Results.from_json(data)) if "peak RSS" in t["target"]
    ]
    assert "workers = 1" not in target["target"]


def test_a_wrong_one_process_row_is_a_correctness_failure() -> None:
    data = synthetic()
    single = data["scale"][-1]["trio_single"]
    single.update(all_correct=False, wrong=["fleet-3: no verdict"])
    failures = suite.Results.from_json(data).correctness_failures()
    assert failures == ["scale N=10000 trio_single: ['fleet-3: no verdict']"]
