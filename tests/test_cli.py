"""The command line: bad input gets one line and a non-zero status; a real run
against the local test endpoint writes the annotated file and the report."""

import csv
import json
import subprocess
import sys

import pytest

from skcandist.cli import main
from skcandist.datasets import load_sms_spam


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
