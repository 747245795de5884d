"""The soak's quick path, briefly: ``python -m benchmarks.soak --quick`` must pass.

It runs the real thing (simulator and ``router-health serve`` processes, the
seeded request mix with hanging-up clients, the task probe, SIGTERM at the
end) for a few seconds; every pass criterion it checks is a correctness one
(nothing leaked, only expected statuses, a clean exit), none is a timing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def test_a_short_quick_soak_passes_and_writes_nothing(tmp_path: Path) -> None:
    report = tmp_path / "SOAK.md"
    recorded = ROOT / "benchmarks" / "SOAK.md"  # the full run's record
    before = recorded.read_bytes() if recorded.exists() else None
    outputs_before = sorted(p.name for p in tmp_path.iterdir())
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", "--quick", "--duration", "5",
         "--output", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,  # a guard against a hang, not a measurement
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "Result: **PASS**" in done.stdout
    assert "FAIL" not in done.stdout
    assert not report.exists()  # --quick writes no report
    assert sorted(p.name for p in tmp_path.iterdir()) == outputs_before  # nor anything else there
    assert (recorded.read_bytes() if recorded.exists() else None) == before  # nor the record
