"""benchmarks/bench_large_jobs.py runs (in its --quick mode) and writes what it
says it writes, so that the script cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_large_jobs.py"


def test_large_jobs_benchmark_quick(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "large_jobs.json").read_text())
    rows = results["online_vs_batch"]
    n = results["assumptions"]["texts"]
    assert rows["online"]["requests"] == n and rows["online"]["batches"] == 0
    assert rows["batch"]["requests"] == 0 and rows["batch"]["batches"] == 1
    assert rows["batch"]["batch_lines"] == n
    cost = results["cost"]
    assert cost["online_usd"] > 0
    assert abs(cost["batch_usd"] * 2 - cost["online_usd"]) <= 0.011
    assert results["pacing"]["requests"] == 20
    runs = results["memory"]["runs"]
    assert set(runs) == {"in chunks (default)", "all at once"}
    assert all(r["requests"] == results["memory"]["texts"] for r in runs.values())
    text = (tmp_path / "large_jobs.md").read_text()
    assert "online vs the Batch API" in text and "Peak memory" in text
