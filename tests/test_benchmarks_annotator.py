"""The annotator benchmark runs in quick mode and writes its JSON (no timings)."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_annotator_speed.py"


def test_quick_benchmark_writes_its_results(tmp_path):
    out = tmp_path / "annotator_speed.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert {"concurrency", "cached_rerun", "styles", "latency_s", "growth"} <= set(
        results
    )
    assert [r["texts"] for r in results["growth"]] == [100, 200]
    assert all(r["texts_per_s"] > 0 and r["cache_bytes"] > 0 for r in results["growth"])
    assert [r["n_jobs"] for r in results["concurrency"]] == [1, 4, 16, 64]
    for row in results["concurrency"]:
        assert {"requests_per_s", "ideal_per_s", "ratio_to_ideal"} <= set(row)
    assert results["cached_rerun"]["requests_sent"] == 0
    assert [r["style"] for r in results["styles"]] == [
        "single",
        "add",
        "all",
        "logprobs",
    ]
    assert "| n_jobs |" in done.stdout
