"""CandidateAnnotator and CanDistClassifier composed in scikit-learn.

A FakeLLMServer on 127.0.0.1 plays the LLM through the real openai client: it
answers each text with a candidate set fixed in advance (true label plus, for some
texts, a wrong one; for others a wrong label only), so that the tests can count
requests and check what the student learnt from.
"""

import pickle
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline

from skcandist import AnnotatedTexts, CandidateAnnotator, CanDistClassifier
from skcandist.datasets import load_sms_spam
from skcandist.testing import candidate_responder

N_TEXTS = 80


@pytest.fixture(scope="module")
def spam():
    data = load_sms_spam("train").subset(N_TEXTS, random_state=3)
    rng = np.random.RandomState(0)
    answers = {}
    for text, label in zip(data.texts, data.labels):
        other = "spam" if label == "ham" else "ham"
        roll = rng.rand()
        if roll < 0.15:
            answers[text] = [other]
        elif roll < 0.35:
            answers[text] = [other, label]
        else:
            answers[text] = [label]
    return data, answers


@pytest.fixture
def server(llm_server, spam):
    _, answers = spam
    llm_server.respond = candidate_responder(answers)
    return llm_server


def _pipe(server, tmp_path, **student):
    annotator = CandidateAnnotator(
        {"ham": "a personal message", "spam": "advertising or an offer"},
        model="fake-model",
        base_url=server.base_url,
        prompt="all",
        n_jobs=4,
        cache=str(tmp_path / "answers.sqlite"),
        verbose=0,
    )
    student = CanDistClassifier(
        **{"max_epochs": 4, "random_state": 0, "verbose": 0, **student}
    )
    return Pipeline([("annotate", annotator), ("student", student)])


def test_fit_without_gold_then_predict_sends_no_request(server, spam, tmp_path):
    data, answers = spam
    pipe = _pipe(server, tmp_path).fit(data.texts)
    assert server.n_requests == N_TEXTS
    fitted = pipe.named_steps["student"]
    assert list(fitted.classes_) == ["ham", "spam"]
    before = server.n_requests
    new = load_sms_spam("test").subset(30, random_state=0)
    pred = pipe.predict(new.texts)
    proba = pipe.predict_proba(new.texts)
    assert server.n_requests == before
    assert set(pred) <= {"ham", "spam"}
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_candidates_reach_the_student(server, spam, tmp_path):
    data, answers = spam
    annotator = _pipe(server, tmp_path).named_steps["annotate"]
    out = annotator.fit_transform(data.texts)
    assert isinstance(out, AnnotatedTexts)
    classes = list(annotator.classes_)
    for i, text in enumerate(data.texts):
        got = {classes[j] for j in out.candidates[i].indices}
        assert got == set(answers[text])


def test_gold_labels_never_train_the_student(server, spam, tmp_path):
    data, _ = spam
    gold = np.asarray(data.labels)
    permuted = np.random.RandomState(1).permutation(gold)
    p1 = _pipe(server, tmp_path).fit(data.texts, gold)
    p2 = _pipe(server, tmp_path).fit(data.texts, permuted)
    new = load_sms_spam("test").subset(40, random_state=2).texts
    np.testing.assert_array_equal(p1.predict_proba(new), p2.predict_proba(new))


def test_cross_val_and_grid_search_ask_each_text_once(server, spam, tmp_path):
    data, _ = spam
    pipe = _pipe(server, tmp_path)
    scores = cross_val_score(
        pipe, data.texts, data.labels, cv=KFold(5, shuffle=True, random_state=0)
    )
    assert scores.shape == (5,) and np.all((scores >= 0) & (scores <= 1))
    assert server.n_requests == N_TEXTS  # every text asked once over all folds
    grid = GridSearchCV(
        pipe,
        {"student__delta": [0.4, 0.6], "annotate__temperature": [0.3]},
        cv=KFold(3, shuffle=True, random_state=0),
    )
    grid.fit(data.texts, data.labels)
    assert server.n_requests == N_TEXTS
    assert grid.best_params_["student__delta"] in (0.4, 0.6)
    # a different prompt style changes the question: new requests, once per text
    grid = GridSearchCV(
        pipe,
        {"annotate__prompt": ["add", "all"]},
        cv=KFold(2, shuffle=True, random_state=0),
    )
    grid.fit(data.texts, data.labels)
    assert server.n_requests == 2 * N_TEXTS


def test_make_pipeline_and_clone(server, spam, tmp_path):
    data, _ = spam
    pipe = _pipe(server, tmp_path)
    pipe2 = make_pipeline(clone(pipe.steps[0][1]), clone(pipe.steps[1][1]))
    pipe2.fit(data.texts)
    assert pipe2.score(data.texts, data.labels) > 0.5


def test_pickled_pipeline_predicts_in_fresh_process_without_llm(server, spam, tmp_path):
    data, _ = spam
    pipe = _pipe(server, tmp_path).fit(data.texts)
    new = load_sms_spam("test").subset(20, random_state=5).texts
    expected = pipe.predict_proba(new)
    path = tmp_path / "pipe.pkl"
    path.write_bytes(pickle.dumps(pipe))
    server.stop()  # no LLM from here on
    np.save(tmp_path / "texts.npy", np.asarray(new, dtype=object), allow_pickle=True)
    code = (
        "import pickle, numpy as np, sys;"
        f"pipe = pickle.load(open({str(path)!r}, 'rb'));"
        f"texts = list(np.load({str(tmp_path / 'texts.npy')!r}, allow_pickle=True));"
        f"np.save({str(tmp_path / 'out.npy')!r}, pipe.predict_proba(texts))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-6)


def test_model_selection_in_worker_processes_shares_the_answer_cache(
    server, spam, tmp_path
):
    """GridSearchCV and cross_val_score with joblib's process backend (loky):
    the workers read and write the same answer cache as the parent."""
    from joblib import parallel_backend

    data, _ = spam
    pipe = _pipe(server, tmp_path, max_epochs=2)
    cv = KFold(2, shuffle=True, random_state=0)
    with parallel_backend("loky", n_jobs=2):
        scores = cross_val_score(pipe, data.texts, data.labels, cv=cv, n_jobs=2)
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
    # the workers' answers are in the parent's cache file: asking again is free
    assert server.n_requests >= N_TEXTS
    sent = server.n_requests
    annotator = pipe.named_steps["annotate"]
    clone(annotator).fit_transform(data.texts)
    assert server.n_requests == sent
    # and a grid search in worker processes finds every answer there
    grid = GridSearchCV(
        pipe, {"student__delta": [0.4, 0.6]}, cv=cv, n_jobs=2, refit=False
    )
    with parallel_backend("loky", n_jobs=2):
        grid.fit(data.texts, data.labels)
    assert server.n_requests == sent
    assert len(grid.cv_results_["mean_test_score"]) == 2
