"""The quality benchmarks' quick modes run and write well-formed results.

No accuracy or timing thresholds: these tests only keep the scripts from rotting.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script, tmp_path, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env["TRANSFORMERS_OFFLINE"] = "1"
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", "--out", str(tmp_path)]
        + list(extra),
        capture_output=True,
        text=True,
        timeout=600,  # a bound against hanging, not a speed check
        env=env,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]


def _stat(value):
    assert set(value) == {"mean", "std", "values"}
    assert len(value["values"]) >= 1


def test_bench_theory_quick(tmp_path):
    _run("bench_theory.py", tmp_path)
    result = json.loads((tmp_path / "theory.json").read_text())
    assert {"config", "environment", "methods", "results", "plot"} <= set(result)
    assert (tmp_path / "theory.md").exists()
    assert (tmp_path / result["plot"]).exists()
    for rows in result["results"].values():
        assert [row["rate"] for row in rows] == result["config"]["rates"]
        for row in rows:
            _stat(row["teacher_top1_accuracy"])
            _stat(row["top2_coverage"])
            assert set(row["methods"]) == set(result["methods"])
            for scores in row["methods"].values():
                _stat(scores["annotation"])
                _stat(scores["test"])


@pytest.mark.slow
def test_bench_quality_quick(tmp_path, shared_data):
    _run("bench_quality.py", tmp_path, "--cache-dir", str(tmp_path / "cache"))
    result = json.loads((tmp_path / "quality.json").read_text())
    assert {"config", "student", "environment", "table2", "ablation", "sweep"} <= set(
        result
    )
    assert (tmp_path / "quality.md").exists()
    assert list((tmp_path / "cache").glob("trec_*.npy"))

    trec = result["table2"]["trec"]
    assert set(trec["teacher_stats"]) == {"add", "all"}
    for stats in trec["teacher_stats"].values():
        for key in ("single_accuracy", "coverage", "mean_set_size", "f1"):
            _stat(stats[key])
    expected = {
        "teacher_single",
        "student_ce",
        "lr_single",
        "cleanlab",
        "student_cc",
        "student_proden",
        "student_lws",
        "student_cavl",
        "candist_add",
        "candist_all",
        "candist_all_paper",
    }
    assert set(trec["methods"]) == expected
    for name, summary in trec["methods"].items():
        _stat(summary["annotation"])
        if name != "teacher_single":
            _stat(summary["test"])

    verdict = result["rule"]["trec"]
    assert verdict["informative"] is True  # 6 classes, coverage 0.89
    for part in ("annotation", "test"):
        best = verdict[part]["best_peer"]
        margin = trec["methods"]["candist_all"][part]["mean"]
        margin = (margin - trec["methods"][best][part]["mean"]) * 100
        assert verdict[part]["margin"] == pytest.approx(margin)
    assert "The quality rule" in (tmp_path / "quality.md").read_text()

    ablation = result["ablation"]
    assert ablation["rows"] and {"config", "annotation", "test"} <= set(
        ablation["rows"][0]
    )
    # The paper's switches run without the teacher model; it is the last row.
    assert all(
        r["params"].get("teacher_model", "x") is None for r in ablation["rows"][1:-1]
    )
    assert "teacher_model" in ablation["rows"][-1]["config"]

    sweep = result["sweep"]
    assert (tmp_path / sweep["plot"]).exists()
    assert {"coverage", "mean_set_size", "f1", "annotation", "test"} <= set(
        sweep["points"][0]
    )
    for corr in sweep["f1_vs_accuracy_correlation"].values():
        assert {"pearson", "spearman", "n_runs"} <= set(corr)


@pytest.mark.slow
def test_bench_quality_endpoint_teacher(tmp_path, shared_data, llm_server):
    """``--teacher endpoint`` asks a real OpenAI-compatible server (here the
    local test server, answering the gold label first and a wrong one second)
    once per text and prompt style, and scores what it answered."""
    from skcandist.datasets import load_dataset
    from skcandist.testing import candidate_responder

    train = load_dataset("trec", "train", data_home=shared_data)
    answers = {
        text: [label, "NUM" if label != "NUM" else "LOC"]
        for text, label in zip(train.texts, train.labels)
    }
    llm_server.respond = candidate_responder(answers)
    _run(
        "bench_quality.py",
        tmp_path,
        "--teacher",
        "endpoint",
        "--base-url",
        llm_server.base_url,
        "--model",
        "fake",
        "--parts",
        "table2",
        "--n-examples",
        "2",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    result = json.loads((tmp_path / "quality_endpoint.json").read_text())
    trec = result["table2"]["trec"]
    # three prompt styles, each text asked once
    assert llm_server.n_requests == 3 * trec["n_train"]
    assert trec["methods"]["teacher_single"]["annotation"]["mean"] == 1.0
    assert trec["teacher_stats"]["all"]["coverage"]["mean"] == 1.0


def _bench_quality():
    sys.path.insert(0, str(BENCHMARKS))
    import bench_quality

    return bench_quality


def _res(n_classes, coverage, candist, peers):
    """A table2 entry: (annotation, test) means per method."""
    stat = lambda v: {"mean": v, "std": 0.0, "values": [v]}  # noqa: E731
    methods = {
        name: {"annotation": stat(a)} | ({} if t is None else {"test": stat(t)})
        for name, (a, t) in {**peers, "candist_all": candist}.items()
    }
    return {
        "n_classes": n_classes,
        "teacher_stats": {"all": {"coverage": stat(coverage)}},
        "methods": methods,
    }


@pytest.mark.parametrize(
    "n_classes, coverage, candist, expected",
    [
        (2, 0.9, (0.876, 0.80), True),  # 0.4 point below the teacher: allowed
        (2, 0.9, (0.874, 0.80), False),  # 0.6 point below: not
        (2, 0.9, (0.90, 0.794), False),  # test 0.6 below cleanlab
        (6, 0.9, (0.90, 0.81), True),  # +2 and +1 where the sets carry information
        (6, 0.9, (0.899, 0.81), False),
        (6, 0.7, (0.88, 0.80), True),  # coverage < 0.8: never-worse only
    ],
)
def test_quality_rule(n_classes, coverage, candist, expected):
    peers = {
        "teacher_single": (0.88, None),
        "lr_single": (0.85, 0.79),
        "cleanlab": (0.86, 0.80),
        "student_ce": (0.88, 0.75),
    }
    verdict = _bench_quality().rule(_res(n_classes, coverage, candist, peers))
    assert verdict["pass"] is expected
    assert verdict["annotation"]["best_peer"] in ("teacher_single", "student_ce")
    assert verdict["test"]["best_peer"] == "cleanlab"


@pytest.mark.slow
def test_probe_student_heads_quick(tmp_path, shared_data):
    _run("probe_student_heads.py", tmp_path, "run", "--seeds", "0", "--part", "q")
    rows = json.loads((tmp_path / "student_heads_q.json").read_text())
    sys.path.insert(0, str(BENCHMARKS))
    import probe_student_heads

    heads = set(probe_student_heads.HEADS)
    assert {"default", "linear", "dropout_0.3", "dropout_0.1_no_ema"} <= heads
    assert {(r["setting"], r["head"]) for r in rows} == {
        (s, h) for s in ("trec", "sms_spam/embedding/weak") for h in heads
    }
    for row in rows:
        assert 0.0 <= row["annotation"] <= 1.0 and 0.0 <= row["test"] <= 1.0
    _run("probe_student_heads.py", tmp_path, "table")
    table = (tmp_path / "student_heads.md").read_text()
    assert "| trec | 1 |" in table and "| sms_spam/embedding/weak | 1 |" in table
    assert "Settings meeting the rule: default " in table


@pytest.mark.slow
def test_probe_student_heads_runs_only_the_settings_named(tmp_path, shared_data):
    args = ("run", "--seeds", "0", "--part", "q", "--heads", "default", "linear")
    _run("probe_student_heads.py", tmp_path, *args, "--settings", "trec")
    rows = json.loads((tmp_path / "student_heads_q.json").read_text())
    assert {(r["setting"], r["head"]) for r in rows} == {
        ("trec", "default"),
        ("trec", "linear"),
    }


def test_probe_student_heads_table_names_the_seeds_of_a_head_that_ran_fewer(
    tmp_path,
):
    sys.path.insert(0, str(BENCHMARKS))
    import probe_student_heads

    def row(seed, head, margin):
        return {
            "setting": "sst2",
            "seed": seed,
            "head": head,
            "margin_annotation": margin,
            "margin_test": margin,
        }

    # The default over seeds 0-2 (two parts), the linear head over seed 0 only.
    parts = {
        "a": [row(0, "default", 1.0), row(0, "linear", -1.0)],
        "b": [row(1, "default", 2.0), row(2, "default", 3.0)],
    }
    for part, rows in parts.items():
        (tmp_path / f"student_heads_{part}.json").write_text(json.dumps(rows))
    probe_student_heads.table(tmp_path)
    table = (tmp_path / "student_heads.md").read_text()
    line = next(x for x in table.splitlines() if x.startswith("| sst2 |"))
    assert line == "| sst2 | 3 | +2.00 \\| +2.00 | -1.00 \\| -1.00 (fails) (1 seed) |"


def test_probe_teacher_trust_quick(tmp_path, shared_data):
    _run("probe_teacher_trust.py", tmp_path, "--seeds", "0")
    rows = json.loads((tmp_path / "teacher_trust.json").read_text())
    assert [r["setting"] for r in rows] == ["trec", "sms_spam/embedding/weak"]
    for row in rows:
        assert abs(sum(row["theta_true"]) - 1) < 1e-2
        assert -100 <= row["alpha=1"] <= 100 and -100 <= row["oracle rates"] <= 100
        assert -100 <= row["lda 1"] <= 100
    table = (tmp_path / "teacher_trust.md").read_text()
    assert "| trec | 1 |" in table and "alpha=inf" in table and "lda 1" in table


def _full_size():
    sys.path.insert(0, str(BENCHMARKS))
    import bench_full_size

    return bench_full_size


def test_bench_full_size_stops_without_a_gpu(monkeypatch, tmp_path, capsys):
    bench = _full_size()
    calls = []
    monkeypatch.setattr(bench, "gpu_name", lambda: None)
    monkeypatch.setattr(bench.bq, "main", lambda argv: calls.append(argv))
    assert bench.main(["--out", str(tmp_path)]) == bench.NO_GPU
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert calls == [] and not any(tmp_path.iterdir())


def test_bench_full_size_runs_the_papers_setting_on_a_gpu(monkeypatch, tmp_path):
    bench = _full_size()
    calls = []

    def fake_main(argv):
        calls.append(argv)
        config = {"teacher": "sim", "seeds": 3, "finetune": True, "max_epochs": 50}
        return {"config": dict(config, encoder="some/path"), "student": "s"}

    monkeypatch.setattr(bench, "gpu_name", lambda: "Fake GPU")
    monkeypatch.setattr(bench.bq, "main", fake_main)
    assert bench.main(["--out", str(tmp_path), "--encoder", "some/path"]) == 0
    (argv,) = calls
    flags = " ".join(argv)
    for expected in (
        "--n-train 0",
        "--n-test 0",
        "--max-epochs 50",
        "--student-lr 3e-05",
        "--seeds 3",
        "--device cuda",
        "--encoder some/path",
        "--datasets trec banking77",
    ):
        assert expected in flags, (expected, flags)
    assert "--finetune" in argv
    result = json.loads((tmp_path / "quality_finetune.json").read_text())
    assert result["full_size"]["gpu"] == "Fake GPU"
    # The table names the GPU and the encoder too (it used to say "MiniLM").
    table = (tmp_path / "quality_finetune.md").read_text()
    assert "Fake GPU" in table and "fine-tuned some/path" in table


def test_bench_full_size_falls_back_to_minilm_where_roberta_is_missing():
    bench = _full_size()
    encoder, note = bench.pick_encoder()
    if encoder is None:  # no RoBERTa-base in the offline cache (this machine)
        assert "all-MiniLM-L6-v2" in note
    else:
        assert encoder == bench.PAPER_ENCODER
    assert bench.pick_encoder("x/y") == ("x/y", "encoder x/y (given)")


def test_bench_quality_full_splits_and_student_options():
    sys.path.insert(0, str(BENCHMARKS))
    import bench_quality as bq

    args = bq.parse_args(["--n-train", "0", "--n-test", "0", "--device", "cuda"])
    assert args.n_train is None and args.n_test is None
    student, dropped = bq.make_student("candist", args, 0, None)
    assert student.device == "cuda" and not dropped


def test_merge_orders_the_settings_whatever_the_order_of_the_parts(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    import bench_quality as bq

    whole = json.loads((BENCHMARKS / "results" / "quality.json").read_text())
    keys = list(whole["table2"])
    assert len(keys) >= 4
    # Two parts in the reverse of the published order, as two processes write them.
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2 :]]
    for name, part_keys in zip(("first", "second"), reversed(halves)):
        part = dict(whole, wall_s=1.0)
        for key in ("table2", "rule", "rule_paper"):
            part[key] = {k: whole[key][k] for k in reversed(part_keys)}
        (tmp_path / name).mkdir()
        (tmp_path / name / "quality.json").write_text(json.dumps(part))
    out = tmp_path / "merged"
    merged = bq.merge([tmp_path / "first", tmp_path / "second"], out)
    assert list(merged["table2"]) == keys
    assert list(merged["rule"]) == keys
    assert merged["wall_s"] == 2.0
    table = (out / "quality.md").read_text()
    positions = [table.index(f"| {key} |") for key in keys]
    assert positions == sorted(positions)


def _seed_part(res, keep):
    """``res`` (a table-2 entry over seeds 0..n-1) cut down to the seeds ``keep``."""
    sys.path.insert(0, str(BENCHMARKS))
    from _common import mean_std

    part = dict(res, seeds=list(keep))
    part["runs"] = {name: [runs[i] for i in keep] for name, runs in res["runs"].items()}
    part["methods"] = {
        name: {k: mean_std([v["values"][i] for i in keep]) for k, v in stat.items()}
        for name, stat in res["methods"].items()
    }
    part["teacher_stats"] = {
        prompt: {k: mean_std([v["values"][i] for i in keep]) for k, v in stats.items()}
        for prompt, stats in res["teacher_stats"].items()
    }
    return part


def test_merge_combines_runs_of_one_setting_over_other_seeds(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    import bench_quality as bq

    whole = json.loads((BENCHMARKS / "results" / "quality.json").read_text())
    key = "banking77"
    res = whole["table2"][key]
    n_seeds = len(res["methods"]["candist_all"]["annotation"]["values"])
    assert n_seeds >= 2
    # Seed 0 in one process, the others in another; the finetune stem, as the
    # fine-tuned table is run one seed per process.
    for name, keep in (("first", [0]), ("rest", range(1, n_seeds))):
        part = dict(whole, table2={key: _seed_part(res, keep)}, wall_s=1.0)
        part["config"] = dict(whole["config"], seeds=len(keep), first_seed=keep[0])
        (tmp_path / name).mkdir()
        (tmp_path / name / "quality_finetune.json").write_text(json.dumps(part))
    out = tmp_path / "merged"
    merged = bq.merge([tmp_path / "first", tmp_path / "rest"], out)
    got = merged["table2"][key]
    assert got["seeds"] == list(range(n_seeds))
    assert merged["config"]["seeds"] == n_seeds
    for name, summary in res["methods"].items():
        for part, stat in summary.items():
            assert got["methods"][name][part]["values"] == stat["values"]
            assert got["methods"][name][part]["mean"] == pytest.approx(stat["mean"])
            assert got["methods"][name][part]["std"] == pytest.approx(stat["std"])
    coverage = got["teacher_stats"]["all"]["coverage"]
    assert coverage["mean"] == pytest.approx(
        res["teacher_stats"]["all"]["coverage"]["mean"]
    )
    # The rule is recomputed from the combined cells, not taken from a part.
    assert merged["rule"][key]["annotation"]["margin"] == pytest.approx(
        whole["rule"][key]["annotation"]["margin"]
    )
    assert (out / "quality_finetune.md").is_file()
    assert f"{n_seeds} seed(s)" in (out / "quality_finetune.md").read_text()

    # The same seed twice is refused, naming the setting.
    with pytest.raises(SystemExit, match=key):
        bq.merge([tmp_path / "first", tmp_path / "first"], tmp_path / "again")


def test_merge_infers_the_seeds_of_runs_from_before_first_seed(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    import bench_quality as bq

    whole = json.loads((BENCHMARKS / "results" / "quality.json").read_text())
    key = "trec"
    res = whole["table2"][key]
    old = _seed_part(res, [0])
    del old["seeds"]  # written before the seeds were recorded
    first = dict(whole, table2={key: old})
    first["config"] = {k: v for k, v in whole["config"].items() if k != "first_seed"}
    first["config"]["seeds"] = 1
    rest = dict(whole, table2={key: _seed_part(res, [1])})
    rest["config"] = dict(whole["config"], seeds=1, first_seed=1)
    for name, part in (("old", first), ("new", rest)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "quality.json").write_text(json.dumps(part))
    merged = bq.merge([tmp_path / "old", tmp_path / "new"], tmp_path / "out")
    assert merged["table2"][key]["seeds"] == [0, 1]


def test_merge_of_settings_with_different_seed_counts_says_each_ones_seeds(
    tmp_path,
):
    sys.path.insert(0, str(BENCHMARKS))
    import bench_quality as bq

    whole = json.loads((BENCHMARKS / "results" / "quality.json").read_text())
    # TREC over seeds 0 and 1 (two processes), Banking77 over seed 0 alone.
    parts = {
        "trec_s0": ("trec", [0]),
        "trec_s1": ("trec", [1]),
        "banking77_s0": ("banking77", [0]),
    }
    for name, (key, keep) in parts.items():
        part = dict(whole, table2={key: _seed_part(whole["table2"][key], keep)})
        part["config"] = dict(whole["config"], seeds=1, first_seed=keep[0])
        (tmp_path / name).mkdir()
        (tmp_path / name / "quality.json").write_text(json.dumps(part))
    bq.merge([tmp_path / name for name in parts], tmp_path / "out")
    table = (tmp_path / "out" / "quality.md").read_text()
    assert "1 seed(s)" not in table and "2 seed(s)" not in table
    assert "seeds per data set" in table
    assert "## trec (train 2000, test 500, 6 classes, seeds 0, 1)" in table
    assert "## banking77 (train 2000, test 1000, 77 classes, seeds 0)" in table


def test_first_seed_must_not_be_negative():
    sys.path.insert(0, str(BENCHMARKS))
    import bench_quality as bq

    assert bq.parse_args(["--first-seed", "2", "--seeds", "1"]).first_seed == 2
    with pytest.raises(SystemExit):
        bq.parse_args(["--first-seed", "-1"])
