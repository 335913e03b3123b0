"""The student-speed, fine-tune-speed and cost benchmarks run and write their results
(no timings are checked)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script, *args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_student_speed_quick_writes_its_results(tmp_path, shared_data):
    # Its frozen-ratio part reads TREC from the shared data: skip without it.
    done = _run("bench_student_speed.py", "--quick", "--out-dir", str(tmp_path))
    results = json.loads((tmp_path / "student_speed.json").read_text())
    assert results["threads"] == 1
    assert len(results["sizes"]) == 1
    row = results["sizes"][0]
    for key in (
        "encoder_pass_s",
        "fit_cold_s",
        "fit_warm_s",
        "fit_ratio_to_encoder",
        "predict_cold_s",
        "predict_texts_per_s",
        "predict_ratio_to_encoder",
        "peak_rss_mb_encoder_only",
        "peak_rss_mb_fit_predict",
    ):
        assert _positive(row[key]), key
    grid = results["grid_search"]
    assert grid["settings"] == 4 and grid["folds"] == 3
    # Every fold asks for its texts; the cache encodes each text once.
    assert grid["texts_requested"] == 13 * grid["n"]
    assert grid["texts_encoded"] == grid["n"]
    tune = results["finetune"]
    for key in ("epoch_s", "epoch_s_per_1k_texts", "fit_s", "peak_rss_mb"):
        assert _positive(tune[key]), key
    assert (tmp_path / "student_speed.md").read_text().startswith("Student speed")
    assert (tmp_path / "fit_time_vs_size.png").stat().st_size > 0
    assert "| texts |" in done.stdout


@pytest.mark.slow
def test_finetune_speed_quick_writes_its_results(tmp_path):
    done = _run("bench_finetune_speed.py", "--quick", "--out-dir", str(tmp_path))
    results = json.loads((tmp_path / "finetune_speed.json").read_text())
    assert results["quick"] is True and results["threads"] == 1
    assert results["epochs"] == 2
    runs = [results["bare"]["before"], results["bare"]["after"], results["candist"]]
    for run in runs:
        for clock in ("wall_s", "cpu_s"):
            assert len(run[clock]) == 2 and all(_positive(s) for s in run[clock])
    assert results["candist"]["params"]["finetune"] is True
    for ratio in (results["ratio"], results["ratio_cpu"]):
        assert _positive(ratio["last"]) and _positive(ratio["first"])
    assert results["ratio"]["last"] == pytest.approx(
        results["candist_epoch_s"] / results["bare_epoch_s"]
    )
    assert results["meets_target"] == (results["ratio"]["last"] <= 2.5)
    assert results["command"] == (
        f"python benchmarks/bench_finetune_speed.py --quick --out-dir {tmp_path}"
    )
    text = (tmp_path / "finetune_speed.md").read_text()
    assert text.startswith("Fine-tuning speed") and results["command"] in text
    assert "CanDist epoch / bare epoch" in done.stdout


def _check_cost(folder):
    results = json.loads((folder / "cost.json").read_text())
    assert results["assumptions"]["example_values_not_quotes"] is True
    assert [r["style"] for r in results["styles"]] == [
        "single",
        "add",
        "all",
        "logprobs",
    ]
    for row in results["styles"]:
        for key in (
            "requests_per_1k_texts",
            "prompt_tokens_per_1k_texts",
            "completion_tokens_per_1k_texts",
            "price_per_1k_texts",
            "projected_hours_per_1m_texts",
        ):
            assert _positive(row[key]), key
        assert row["binding_limit"] in row["hours_per_1m_texts"]
    assert "whitespace word counts" in (folder / "cost.md").read_text()
    return results


def test_cost_from_annotator_results(tmp_path):
    annotator = {
        "latency_s": 0.1,
        "concurrency": [
            {
                "n_jobs": n,
                "requests_per_s": 9 * n,
                "ideal_per_s": 10 * n,
                "ratio_to_ideal": 0.9,
            }
            for n in (1, 4, 16, 64)
        ],
        "styles": [
            {
                "style": style,
                "texts": 10,
                "requests_per_text": 1.0,
                "prompt_tokens_per_text": 250.0,
                "completion_tokens_per_text": 2.0,
            }
            for style in ("single", "add", "all", "logprobs")
        ],
    }
    path = tmp_path / "annotator_speed.json"
    path.write_text(json.dumps(annotator))
    out = tmp_path / "out"
    _run(
        "bench_cost.py",
        "--annotator-json",
        str(path),
        "--out-dir",
        str(out),
        "--price-prompt-per-1m",
        "1",
        "--price-completion-per-1m",
        "2",
    )
    results = _check_cost(out)
    # 250 prompt and 2 completion tokens per text at $1 and $2 per million.
    assert math.isclose(results["styles"][0]["price_per_1k_texts"], 0.254)
    assert results["assumptions"]["efficiency_measured"] is True
    assert (out / "throughput_vs_n_jobs.png").stat().st_size > 0


def test_cost_quick_measures_against_a_fake_server(tmp_path):
    _run(
        "bench_cost.py",
        "--measure",
        "--quick",
        "--annotator-json",
        str(tmp_path / "absent.json"),
        "--out-dir",
        str(tmp_path),
    )
    results = _check_cost(tmp_path)
    assert results["source"] == "measured (--measure)"
    assert results["styles"][0]["requests_per_1k_texts"] == 1000
