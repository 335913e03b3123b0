"""CanDistClassifier: input checks, the scikit-learn contract, and quality."""

import contextlib
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")
pytest.importorskip("skorch")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402

from skcandist import AnnotatedTexts, CanDistClassifier  # noqa: E402
from skcandist.exceptions import InvalidInputError  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _noise import simulate_teacher, teacher_stats  # noqa: E402

TEXTS = [
    "win a free prize now",
    "free cash, call now",
    "claim your free prize today",
    "cheap loans, call this number",
    "see you at lunch",
    "lunch at noon?",
    "meet me at noon",
    "are we still on for dinner",
]
GOLD = np.array(["spam"] * 4 + ["ham"] * 4)
CLASSES = ["ham", "spam"]
CANDS = np.array([[0, 1], [1, 1], [0, 1], [1, 1], [1, 0], [1, 1], [1, 0], [1, 0]])

FAST = {"max_epochs": 4, "warmup_epochs": 1, "batch_size": 4}


@contextlib.contextmanager
def _one_thread():
    """One torch and BLAS thread: the test machines share few cores."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def _few_threads():
    with _one_thread():
        yield


def _fit(**params):
    return CanDistClassifier(**{**FAST, **params}).fit(TEXTS, CANDS, classes=CLASSES)


# ----------------------------------------------------------------- basic use
@pytest.mark.parametrize("loss", ["candist", "proden", "cc", "lws", "cavl", "ce"])
def test_every_loss_fits_and_predicts_class_names(loss):
    clf = _fit(loss=loss)
    pred = clf.predict(TEXTS)
    assert set(pred) <= set(CLASSES)
    proba = clf.predict_proba(TEXTS)
    assert proba.shape == (8, 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert list(clf.classes_) == CLASSES
    assert 0.0 <= clf.score(TEXTS, GOLD) <= 1.0
    assert len(clf.net_.history) == FAST["max_epochs"]


def test_sparse_and_dense_candidates_agree():
    dense = _fit().predict_proba(TEXTS)
    sparse = (
        CanDistClassifier(**FAST)
        .fit(TEXTS, sp.csr_matrix(CANDS), classes=CLASSES)
        .predict_proba(TEXTS)
    )
    assert np.array_equal(dense, sparse)


def test_matrix_without_class_names_gets_integer_classes():
    clf = CanDistClassifier(**FAST).fit(TEXTS, CANDS)
    assert clf.classes_.tolist() == [0, 1]
    assert set(clf.predict(TEXTS).tolist()) <= {0, 1}


def test_one_dimensional_labels_train_a_supervised_student():
    clf = CanDistClassifier(loss="ce", max_epochs=30).fit(TEXTS, GOLD)
    assert clf.classes_.tolist() == CLASSES
    assert clf.score(TEXTS, GOLD) == 1.0


def test_annotated_texts_bring_candidates_and_y_is_ignored():
    annotated = AnnotatedTexts(TEXTS, sp.csr_matrix(CANDS), CLASSES)
    a = CanDistClassifier(**FAST).fit(annotated)
    b = CanDistClassifier(**FAST).fit(annotated, np.array(["ham"] * 8))
    assert np.array_equal(a.predict_proba(TEXTS), b.predict_proba(annotated))
    assert a.classes_.tolist() == CLASSES


def test_predict_never_touches_deferred_candidates():
    clf = _fit()

    def annotate(texts):
        raise AssertionError("predict must not annotate")

    deferred = AnnotatedTexts(TEXTS, classes=CLASSES, annotate=annotate)
    assert clf.predict(deferred).shape == (8,)
    assert clf.score(deferred, GOLD) >= 0


def test_ce_uses_the_teachers_single_label():
    # Candidate sets are both classes everywhere; only single tells them apart.
    single = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    annotated = AnnotatedTexts(TEXTS, sp.csr_matrix(np.ones((8, 2))), CLASSES, single)
    clf = CanDistClassifier(loss="ce", max_epochs=30).fit(annotated)
    assert clf.score(TEXTS, GOLD) == 1.0


def _reworded(texts):
    # Not t.upper(): the encoder is uncased, so that view would be the text itself.
    return [f"{t} thanks" for t in texts]


def test_augment_callable_and_precomputed_views():
    called = CanDistClassifier(augment=_reworded, **FAST)
    called.fit(TEXTS, CANDS, classes=CLASSES)
    precomputed = CanDistClassifier(**FAST).fit(
        TEXTS, CANDS, classes=CLASSES, augmented=_reworded(TEXTS)
    )
    assert np.allclose(called.predict_proba(TEXTS), precomputed.predict_proba(TEXTS))
    # The augmented view is trained on: without it (a second dropout view of
    # the same embeddings), the same seed gives other predictions.
    plain = _fit().predict_proba(TEXTS)
    assert np.abs(called.predict_proba(TEXTS) - plain).max() > 1e-4
    with pytest.raises(InvalidInputError, match="augmented"):
        CanDistClassifier(**FAST).fit(TEXTS, CANDS, augmented=TEXTS[:3])


def test_history_logs_the_refinery_groups():
    clf = _fit(max_epochs=4, warmup_epochs=1)
    history = clf.net_.history
    assert history[0, "n_selected"] == 0
    assert history[-1, "n_selected"] > 0
    assert {"n_confident_out", "n_ignored", "train_loss"} <= set(history[-1])


def test_verbose_prints_the_epoch_log(capsys):
    _fit(verbose=0)
    assert capsys.readouterr().out == ""
    _fit(verbose=1)
    assert "train_loss" in capsys.readouterr().out


def test_user_callbacks_run():
    from skorch.callbacks import Callback

    class Count(Callback):
        def initialize(self):
            self.epochs = 0
            return self

        def on_epoch_end(self, net, **kwargs):
            self.epochs += 1

    counter = Count()
    _fit(callbacks=[counter])
    assert counter.epochs == FAST["max_epochs"]


@pytest.mark.parametrize(
    "switch",
    [
        "renormalize",
        "filter_out_of_candidate",
        "sharpen",
        "classwise_selection",
        "small_loss_selection",
        "confident_targets",
        "consistency",
        "mixup",
    ],
)
def test_each_refinery_component_can_be_switched_off(switch):
    # Sets of both labels on most texts (so that the selected samples have
    # targets to sharpen) and tau=0.5 (so that out-of-candidate predictions are
    # confident): on this data and seed every component changes what is learnt.
    cands = np.array([[0, 1], [1, 1], [1, 1], [1, 1], [1, 0], [1, 1], [1, 1], [0, 1]])
    params = {**FAST, "tau": 0.5, "random_state": 7}
    full = CanDistClassifier(**params).fit(TEXTS, cands, classes=CLASSES)
    ablated = CanDistClassifier(**params, **{switch: False})
    ablated.fit(TEXTS, cands, classes=CLASSES)
    difference = np.abs(ablated.predict_proba(TEXTS) - full.predict_proba(TEXTS))
    assert difference.max() > 1e-4, switch


def test_small_loss_selection_off_selects_nothing():
    history = _fit(small_loss_selection=False).net_.history
    assert all(row["n_selected"] == 0 for row in history)


@pytest.mark.parametrize("patience", [1, 2])
def test_early_stopping_on_held_out_candidate_consistency(patience):
    clf = _fit(validation_fraction=0.25, patience=patience, max_epochs=30)
    history = clf.net_.history
    assert "valid_loss" in history[-1]
    # It stopped, patience epochs after the best held-out loss ...
    best = max(i for i, row in enumerate(history, 1) if row["valid_loss_best"])
    assert len(history) == best + patience < 30
    # ... and kept that epoch's weights: those of a run that ends there.
    shorter = _fit(validation_fraction=0.25, patience=30, max_epochs=best)
    np.testing.assert_allclose(
        clf.predict_proba(TEXTS), shorter.predict_proba(TEXTS), atol=1e-6
    )


def test_refits_reuse_cached_embeddings(monkeypatch, tmp_path):
    from skcandist import encoders

    _fit(cache_dir=tmp_path)
    assert (tmp_path / "embeddings.sqlite").exists()

    def fail(*args, **kwargs):
        raise AssertionError("a refit must not encode the same texts again")

    monkeypatch.setattr(encoders, "_encode_uncached", fail)
    clf = clone(CanDistClassifier(**FAST)).fit(TEXTS[:6], CANDS[:6])
    assert clf.predict(TEXTS).shape == (8,)
    encoders.clear_memory_cache()
    _fit(cache_dir=tmp_path)  # from disk


# -------------------------------------------------------------- determinism
def test_same_seed_same_predictions_other_seed_differs():
    a = _fit(random_state=3).predict_proba(TEXTS)
    b = _fit(random_state=3).predict_proba(TEXTS)
    c = _fit(random_state=4).predict_proba(TEXTS)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fit_does_not_change_the_global_torch_seed():
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    _fit()
    assert torch.equal(torch.rand(1), expected)


# ------------------------------------------------------------ input checks
@pytest.mark.parametrize(
    "texts, y, classes, match",
    [
        (TEXTS, np.vstack([CANDS[:7], [0, 0]]), None, r"rows \[7\]"),
        (TEXTS, CANDS, ["a", "b", "c"], "2 columns but 3 classes"),
        (TEXTS[:5], CANDS, None, "5 texts but the candidate matrix has 8 rows"),
        (TEXTS[:5], GOLD, None, "5 texts but y has 8 labels"),
        ([*TEXTS[:7], 3], CANDS, None, "items \\[7\\]"),
        ("just one string", CANDS, None, "single string"),
        (TEXTS, np.ones((8, 1)), ["only"], "at least two classes"),
        (TEXTS, np.array(["spam"] * 8), None, "at least two classes"),
        (TEXTS, np.where(CANDS == 1, np.nan, 0), None, "NaN"),
        (TEXTS, CANDS * 2, None, "only 0 and 1"),
        (TEXTS, np.array([[0.5, 0.5]] * 8), None, "only 0 and 1"),
        (TEXTS, None, None, "y is required"),
        (TEXTS, np.array([1.0] * 4 + [np.nan] * 4), None, "NaN"),
        (TEXTS, GOLD, ["ham", "eggs"], "not in classes"),
        (TEXTS, np.c_[np.ones(8), np.zeros(8)], None, "single class"),
    ],
)
def test_bad_input_raises_a_clear_error(texts, y, classes, match):
    with pytest.raises(InvalidInputError, match=match):
        CanDistClassifier(**FAST).fit(texts, y, classes=classes)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"loss": "hinge"}, "loss must be"),
        ({"delta": 1.5}, "delta"),
        ({"gamma": 0.0}, "gamma"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"lr": -1.0}, "lr"),
        ({"augment": "back-translate"}, "augment"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"teacher_model": "dawid-skene"}, "teacher_model"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"ema_decay": -0.1}, "ema_decay"),
    ],
)
def test_bad_parameters_raise(params, match):
    with pytest.raises(InvalidInputError, match=match):
        CanDistClassifier(**params).fit(TEXTS, CANDS)


# ------------------------------------------------------ averaged weights
def _step_weights():
    """A skorch callback keeping the module's weights after every step."""
    from skorch.callbacks import Callback

    class StepWeights(Callback):
        def __init__(self):
            self.steps = []

        def on_batch_end(self, net, training=False, **kwargs):
            if training:
                self.steps.append(
                    [p.detach().clone() for p in net.module_.parameters()]
                )

    return StepWeights()


@pytest.mark.parametrize("loss", ["candist", "ce"])
def test_the_student_keeps_the_moving_average_of_its_weights(loss):
    decay = 0.6
    recorder = _step_weights()
    clf = _fit(loss=loss, ema_decay=decay, callbacks=[("steps", recorder)])
    assert len(recorder.steps) == FAST["max_epochs"] * 2  # 8 texts, batches of 4
    expected = [p.clone() for p in recorder.steps[0]]
    for t, step in enumerate(recorder.steps[1:], start=1):
        d = min(decay, (1 + t) / (10 + t))  # a lower decay over the first steps
        for avg, value in zip(expected, step):
            avg.mul_(d).add_(value, alpha=1 - d)
    final = [p.detach() for p in clf.net_.module_.parameters()]
    for avg, value in zip(expected, final):
        torch.testing.assert_close(value, avg)
    assert any(
        not torch.allclose(value, last)
        for value, last in zip(final, recorder.steps[-1])
    )


def test_early_stopping_keeps_its_best_epochs_own_weights():
    recorder = _step_weights()
    clf = _fit(validation_fraction=0.25, patience=30, callbacks=[("s", recorder)])
    for value, last in zip(clf.net_.module_.parameters(), recorder.steps[-1]):
        torch.testing.assert_close(value.detach(), last)


def test_no_averaging_keeps_the_last_steps_weights():
    recorder = _step_weights()
    clf = _fit(ema_decay=0.0, callbacks=[("steps", recorder)])
    for value, last in zip(clf.net_.module_.parameters(), recorder.steps[-1]):
        torch.testing.assert_close(value.detach(), last)
    # The averaged copy is not left on the net (nor pickled with it).
    assert "ema_t" not in clf.net_.__dict__
    assert "ema_t" not in _fit().net_.__dict__


def test_predict_checks_texts_and_fitted_state():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        CanDistClassifier().predict(TEXTS)
    with pytest.raises(InvalidInputError, match="texts"):
        _fit().predict([1, 2])


# ------------------------------------------------------ scikit-learn contract
def test_init_stores_params_and_clone_round_trips():
    clf = CanDistClassifier(delta=0.4, tau=0.95, mixup=False)
    assert clf.get_params()["delta"] == 0.4
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    copy.set_params(gamma=0.5, loss="proden")
    assert copy.gamma == 0.5 and clf.gamma == 0.85


def test_pickle_round_trip_gives_identical_predictions(tmp_path):
    import joblib

    clf = _fit()
    expected = clf.predict_proba(TEXTS)
    again = pickle.loads(pickle.dumps(clf))
    assert np.array_equal(again.predict_proba(TEXTS), expected)
    assert len(again.net_.history) == len(clf.net_.history)
    assert hasattr(clf, "net_")  # pickling leaves the original fitted
    joblib.dump(clf, tmp_path / "model.joblib")
    assert np.array_equal(
        joblib.load(tmp_path / "model.joblib").predict_proba(TEXTS), expected
    )


def test_pickle_loads_in_a_fresh_process(tmp_path):
    clf = _fit()
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(clf))
    np.save(tmp_path / "expected.npy", clf.predict_proba(TEXTS))
    code = (
        "import pickle, sys, numpy as np, torch;"
        "torch.set_num_threads(1);"  # the same as this process: same float sums
        f"clf = pickle.load(open({str(tmp_path / 'model.pkl')!r}, 'rb'));"
        f"expected = np.load({str(tmp_path / 'expected.npy')!r});"
        f"assert np.array_equal(clf.predict_proba({TEXTS!r}), expected)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _attacher():
    """A transformer attaching each text's candidate set (a stand-in teacher)."""
    cands = sp.csr_matrix(CANDS)
    lookup = {t: i for i, t in enumerate(TEXTS)}

    def attach(texts):
        rows = [lookup[t] for t in texts]
        return AnnotatedTexts(list(texts), cands[rows], CLASSES)

    return FunctionTransformer(attach)


def test_grid_search_over_refinery_params():
    pipe = make_pipeline(_attacher(), CanDistClassifier(**FAST))
    search = GridSearchCV(
        pipe,
        {
            "candistclassifier__delta": [0.4, 0.6],
            "candistclassifier__sharpen": [True, False],
        },
        cv=2,
    )
    search.fit(np.array(TEXTS, dtype=object), GOLD)
    assert len(search.cv_results_["params"]) == 4
    assert search.predict(np.array(TEXTS, dtype=object)).shape == (8,)


def test_cross_val_score_in_a_pipeline_scores_with_gold_labels():
    pipe = make_pipeline(_attacher(), CanDistClassifier(**FAST))
    scores = cross_val_score(pipe, np.array(TEXTS, dtype=object), GOLD, cv=2)
    assert scores.shape == (2,)
    assert np.all((scores >= 0) & (scores <= 1))


def test_cross_val_score_on_texts_with_gold_labels():
    scores = cross_val_score(
        CanDistClassifier(loss="ce", **FAST), np.array(TEXTS, dtype=object), GOLD, cv=2
    )
    assert scores.shape == (2,)


@pytest.fixture(scope="module")
def finetuned(_few_threads):
    """A student fine-tuned for one epoch on the 8 texts (max_length 64)."""
    clf = CanDistClassifier(
        finetune=True, max_epochs=1, warmup_epochs=0, batch_size=4, max_length=64
    )
    return clf.fit(TEXTS, CANDS, classes=CLASSES)


def test_finetune_trains_the_whole_encoder_on_a_tiny_slice(finetuned):
    clf = finetuned
    encoder = clf.net_.module_.encoder
    from skcandist.encoders import load_encoder

    fresh = load_encoder(None)[1]
    changed = any(
        not torch.equal(a, b)
        for a, b in zip(encoder.state_dict().values(), fresh.state_dict().values())
    )
    assert changed
    proba = clf.predict_proba(TEXTS)
    assert proba.shape == (8, 2)
    again = pickle.loads(pickle.dumps(clf))
    assert np.allclose(again.predict_proba(TEXTS), proba, atol=1e-6)


# ------------------------------------------------------------ teacher model
def _separable(n=60, random_state=0):
    """Texts whose words give the class away; the teacher is unsure on a third
    and wrong on some sets."""
    rng = np.random.RandomState(random_state)
    words = {"spam": ["prize", "free", "cash", "win"], "ham": ["lunch", "noon", "meet"]}
    gold = rng.choice(CLASSES, n)
    texts = [
        " ".join(rng.choice(words[g], 3)) + f" message {i}" for i, g in enumerate(gold)
    ]
    single = np.array([CLASSES.index(g) for g in gold])
    cands = np.eye(2)[single]
    cands[: n // 3] = 1
    return texts, gold, cands, single


def test_teacher_model_learns_answer_reliability_and_can_be_switched_off():
    texts, _, cands, single = _separable()
    annotated = AnnotatedTexts(texts, cands, CLASSES, single=single)
    with_model = CanDistClassifier(**FAST).fit(annotated)
    rates = with_model.answer_reliability_
    assert set(rates) == {"sole", "primary", "other", "outside"}
    assert sum(rates.values()) == pytest.approx(1.0)
    assert rates["primary"] > rates["other"]
    paper = CanDistClassifier(teacher_model=None, **FAST).fit(annotated)
    assert paper.answer_reliability_ is None
    assert not np.allclose(with_model.predict_proba(texts), paper.predict_proba(texts))
    # Baselines never use it.
    baseline = CanDistClassifier("proden", **FAST).fit(annotated)
    assert baseline.answer_reliability_ is None


def test_teacher_model_reads_the_preferred_label():
    texts, _, cands, single = _separable()
    flipped = single.copy()
    flipped[: len(texts) // 3] = 1 - flipped[: len(texts) // 3]  # unsure sets only
    a = CanDistClassifier(**FAST).fit(AnnotatedTexts(texts, cands, CLASSES, single))
    b = CanDistClassifier(**FAST).fit(AnnotatedTexts(texts, cands, CLASSES, flipped))
    assert not np.allclose(a.predict_proba(texts), b.predict_proba(texts))


def test_single_labels_outside_the_classes_are_rejected():
    texts, _, cands, single = _separable()
    single[3] = 5
    with pytest.raises(InvalidInputError, match=r"single must hold .*\[5\]"):
        CanDistClassifier(**FAST).fit(AnnotatedTexts(texts, cands, CLASSES, single))


def test_teacher_model_is_skipped_on_too_few_texts():
    clf = _fit()  # 8 texts: too few for its out-of-fold predictions
    assert clf.answer_reliability_ is None


# ------------------------------------------------------ quality on real data
@pytest.fixture(scope="session")
def trec_task(shared_data):
    """TREC texts, a simulated instance-dependent teacher, frozen embeddings."""
    from skcandist.datasets import load_dataset
    from skcandist.encoders import encode

    train = load_dataset("trec", "train", n_samples=2000, data_home=shared_data)
    test = load_dataset("trec", "test", data_home=shared_data)
    with _one_thread():
        cands, single = simulate_teacher(
            train.texts, train.labels, train.classes, random_state=0
        )
        encode(train.texts), encode(test.texts)  # computed once, cached in memory
    return train, test, cands, single


@pytest.fixture(scope="session")
def trec_results(trec_task):
    """Annotation / test accuracy of each student, and of the LR baseline."""
    from sklearn.linear_model import LogisticRegression

    from skcandist.encoders import encode

    train, test, cands, single = trec_task
    annotated = AnnotatedTexts(train.texts, cands, train.classes, single)
    classes = np.array(train.classes)
    results = {}
    with _one_thread():
        lr = LogisticRegression(max_iter=2000).fit(encode(train.texts), classes[single])
        results["lr"] = (
            lr.score(encode(train.texts), train.labels),
            lr.score(encode(test.texts), test.labels),
        )
        for loss in ("candist", "proden", "ce"):
            clf = CanDistClassifier(loss, random_state=0).fit(annotated)
            results[loss] = (
                clf.score(train.texts, train.labels),
                clf.score(test.texts, test.labels),
            )
    return results


@pytest.mark.slow
def test_simulated_teacher_matches_the_target_statistics(trec_task):
    train, _, cands, single = trec_task
    stats = teacher_stats(cands, single, train.labels, train.classes)
    assert stats["coverage"] == pytest.approx(0.88, abs=0.02)
    assert stats["mean_size"] == pytest.approx(1.7, abs=0.05)
    assert stats["single_accuracy"] == pytest.approx(0.71, abs=0.02)


@pytest.mark.slow
def test_candist_beats_ce_on_the_top_labels(trec_results):
    candist, ce = trec_results["candist"], trec_results["ce"]
    assert candist[0] >= ce[0] + 0.02, trec_results
    assert candist[1] >= ce[1] + 0.02, trec_results


@pytest.mark.slow
def test_candist_is_at_least_as_good_as_proden(trec_results):
    candist, proden = trec_results["candist"], trec_results["proden"]
    assert candist[0] >= proden[0] - 0.005, trec_results
    assert candist[1] >= proden[1] - 0.005, trec_results


@pytest.mark.slow
def test_candist_beats_logistic_regression_on_frozen_embeddings(trec_results):
    candist, lr = trec_results["candist"], trec_results["lr"]
    assert candist[0] >= lr[0] + 0.01, trec_results
    assert candist[1] >= lr[1] + 0.01, trec_results


# ------------------------------------- the quality rule on a binary slice
@pytest.fixture(scope="session")
def sst2_results(shared_data):
    """SST-2 slice, a simulated binary teacher (right on 88%, 1.2 labels per set):
    accuracy of the teacher, of LR on its labels, and of the default student."""
    from sklearn.linear_model import LogisticRegression

    from skcandist.datasets import OUR_TEACHERS, load_dataset, simulate_candidates
    from skcandist.encoders import encode

    train = load_dataset(
        "sst2", "train", n_samples=2000, random_state=1, data_home=shared_data
    )
    test = load_dataset("sst2", "test", n_samples=500, data_home=shared_data)
    classes = np.array(train.classes)
    with _one_thread():
        cands, single = simulate_candidates(
            train.texts,
            train.labels,
            train.classes,
            random_state=0,
            **OUR_TEACHERS[("sst2", "all")],
        )
        x_train, x_test = encode(train.texts), encode(test.texts)
        lr = LogisticRegression(max_iter=2000, C=10.0).fit(x_train, classes[single])
        results = {
            "teacher": (float(np.mean(classes[single] == train.labels)), None),
            "lr": (lr.score(x_train, train.labels), lr.score(x_test, test.labels)),
        }
        annotated = AnnotatedTexts(train.texts, cands, train.classes, single)
        clf = CanDistClassifier(random_state=0).fit(annotated)
        results["candist"] = (
            clf.score(train.texts, train.labels),
            clf.score(test.texts, test.labels),
        )
    return results


@pytest.mark.slow
def test_binary_student_is_never_below_the_teacher_or_a_single_label_peer(
    sst2_results,
):
    """The rule of benchmarks/bench_quality.py on a slice: annotation at most
    half a point below the teacher's own labels and LR, test below LR."""
    candist, teacher, lr = (sst2_results[k] for k in ("candist", "teacher", "lr"))
    assert candist[0] >= max(teacher[0], lr[0]) - 0.005, sst2_results
    assert candist[1] >= lr[1] - 0.005, sst2_results


# ------------------------------------------------- defects found in review (#12)
def test_a_new_encoder_gets_its_own_tokenizer(monkeypatch):
    import transformers

    loaded = []

    class FakeTokenizer:
        def __init__(self, path):
            self.path = path

        def __call__(self, texts, **kwargs):
            ids = np.ones((len(texts), 4), dtype=np.int64)
            return {"input_ids": ids, "attention_mask": ids}

    def from_pretrained(path, *args, **kwargs):
        loaded.append(str(path))
        return FakeTokenizer(path)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    clf = CanDistClassifier(finetune=True)
    clf._tokenize(["a"])
    clf._tokenize(["b"])  # cached for the same encoder
    clf.set_params(encoder="/some/other/encoder")
    clf._tokenize(["c"])
    assert loaded == [str(CanDistClassifier()._encoder_path()), "/some/other/encoder"]


def test_a_student_trained_on_a_missing_device_loads_on_the_cpu():
    from skcandist.exceptions import SkcandistWarning

    clf = _fit()
    expected = clf.predict_proba(TEXTS)
    state = clf.__getstate__()
    state["device"] = "cuda"  # as pickled by a student trained on a GPU
    restored = CanDistClassifier.__new__(CanDistClassifier)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the device exists")
    with pytest.warns(SkcandistWarning, match="loaded on the CPU"):
        restored.__setstate__(state)
    assert restored.net_.device == "cpu"
    np.testing.assert_allclose(restored.predict_proba(TEXTS), expected, atol=1e-6)


def test_a_failed_refit_leaves_the_previous_fit_whole(monkeypatch):
    from skcandist import _student

    clf = _fit()
    before = clf.predict_proba(TEXTS)

    def broken(self, *args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(_student._RefineryNet, "partial_fit", broken)
    three = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]] * 2)
    with pytest.raises(RuntimeError, match="out of memory"):
        clf.fit(TEXTS, three, classes=["a", "b", "c"])
    assert clf.classes_.tolist() == CLASSES
    np.testing.assert_array_equal(clf.predict_proba(TEXTS), before)


def test_seeding_forks_every_cuda_generator(monkeypatch):
    from skcandist import _student

    if not torch.cuda.is_available():
        assert _student._cuda_devices() == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert _student._cuda_devices() == [0, 1]


@pytest.mark.parametrize(
    "params, warns",
    [
        ({"dropout": 0.0}, True),
        ({"dropout": 0.0, "consistency": False}, False),
        ({"dropout": 0.0, "augment": lambda texts: [t + "!" for t in texts]}, False),
        ({"dropout": 0.1}, False),
    ],
)
def test_dropout_zero_without_augmentation_warns(params, warns):
    from skcandist.exceptions import SkcandistWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(**params)
    hits = [w for w in caught if issubclass(w.category, SkcandistWarning)]
    assert bool(hits) == warns
    if warns:
        assert "identical" in str(hits[0].message)


# ------------------------------------- the refinery's schedule and wiring
def _selected(clf):
    return [row["n_selected"] for row in clf.net_.history]


@pytest.mark.parametrize("warmup, epochs", [(1, 4), (2, 6), (3, 9), (10, 50)])
def test_selection_starts_right_after_the_warm_up(warmup, epochs):
    # max_epochs >= 3 * warmup: no shortening, the warm-up is warmup epochs.
    selected = _selected(_fit(warmup_epochs=warmup, max_epochs=epochs))
    assert selected[:warmup] == [0] * warmup
    assert all(n > 0 for n in selected[warmup:]), selected


@pytest.mark.parametrize(
    "min_steps, first_selected",
    [(0, 3), (4, 3), (5, 4), (6, 4), (7, 5), (10, 6), (500, 6)],
)
def test_a_short_run_keeps_a_minimum_of_warm_up_steps(
    monkeypatch, min_steps, first_selected
):
    """warmup_epochs=5 of max_epochs=6: the cap (a third of the run, 2 epochs)
    still holds min_steps optimisation steps (2 per epoch here), and never
    more than warmup_epochs epochs."""
    from skcandist import _student

    monkeypatch.setattr(_student, "_MIN_WARMUP_STEPS", min_steps)
    selected = _selected(_fit(warmup_epochs=5, max_epochs=6))
    warm = first_selected - 1
    assert selected[:warm] == [0] * warm
    assert all(n > 0 for n in selected[warm:]), selected


def test_a_four_epoch_run_on_few_texts_does_not_select_on_an_untrained_student():
    # 2 steps per epoch: the default warm-up (10 epochs) is not cut to a third
    # of the run (1 epoch), and the refinery stays re-normalised targets.
    assert _selected(_fit(warmup_epochs=10, max_epochs=4)) == [0] * 4


def test_the_consistency_and_mixup_weight_ramps_up(monkeypatch):
    """eta = min(1, (epoch - 1) / ramp_epochs) scales the extra terms: with a
    consistency term that adds a constant 10 (and no gradient), each epoch's
    training loss rises by exactly 10 * eta."""
    from skcandist import losses

    real = losses.consistency_loss

    def shifted(shift):
        def consistency(logits_aug, logits, qhat, has_target):
            return real(logits_aug, logits, qhat, has_target) * 0 + shift

        return consistency

    def train_losses(shift, **params):
        monkeypatch.setattr(losses, "consistency_loss", shifted(shift))
        clf = _fit(mixup=False, max_epochs=5, **params)
        return np.array([row["train_loss"] for row in clf.net_.history])

    rise = train_losses(10.0, ramp_epochs=3) - train_losses(0.0, ramp_epochs=3)
    np.testing.assert_allclose(rise, 10 * np.array([0, 1 / 3, 2 / 3, 1, 1]), atol=1e-4)
    rise = train_losses(10.0, ramp_epochs=0) - train_losses(0.0, ramp_epochs=0)
    np.testing.assert_allclose(rise, 10 * np.ones(5), atol=1e-4)


def test_confident_out_of_candidate_predictions_are_one_hot_targets(monkeypatch):
    """D_hc (Eq. 4): a confident prediction outside the candidate set is a
    target of L_dr (Eq. 5), the one-hot of that prediction."""
    from skcandist import _student, losses

    real_step = _student._RefineryNet.train_step_single
    real_ce = losses.soft_cross_entropy
    steps = []

    def step(self, data, **kwargs):
        index = data[0]["index"].clone()
        steps.append({"groups": self.groups_t[index], "index": index})
        steps[-1]["predicted"] = self.predicted_t[index]
        result = real_step(self, data, **kwargs)
        steps[-1]["loss"] = result["loss"].detach()
        return result

    def cross_entropy(logits, targets):
        value = real_ce(logits, targets)
        steps[-1].update(targets=targets.detach(), ce=value.detach())
        return value

    monkeypatch.setattr(_student._RefineryNet, "train_step_single", step)
    monkeypatch.setattr(losses, "soft_cross_entropy", cross_entropy)
    # Binary and tau=0.5: every out-of-candidate prediction is confident. With
    # no consistency and mixup, L_dr is the step's loss and its only CE.
    clf = _fit(tau=0.5, random_state=5, consistency=False, mixup=False)
    n_confident = 0
    for batch in steps:
        rows = batch["groups"] == losses.CONFIDENT_OUT
        n_confident += int(rows.sum())
        predicted = batch["predicted"][rows]
        assert (torch.as_tensor(CANDS)[batch["index"][rows], predicted] == 0).all()
        one_hot = torch.nn.functional.one_hot(predicted, 2).float()
        assert torch.equal(batch["targets"][rows], one_hot)
        # Eq. 5: the mean over the batch of every sample with a target, D_hc too.
        kept = batch["groups"] != losses.OUT
        expected = (batch["ce"] * kept).sum() / len(kept)
        assert torch.allclose(batch["loss"], expected, atol=1e-6)
    assert n_confident > 0
    assert n_confident == sum(row["n_confident_out"] for row in clf.net_.history)


@pytest.mark.parametrize("means", ["batch", "separate"])
def test_the_student_passes_its_consistency_means_to_the_term(monkeypatch, means):
    from skcandist import losses

    real, seen = losses.consistency_term, []

    def term(*args, **kwargs):
        seen.append(kwargs["separate_means"])
        return real(*args, **kwargs)

    monkeypatch.setattr(losses, "consistency_term", term)
    _fit(consistency_means=means, mixup=False)
    assert seen and set(seen) == {means == "separate"}


def test_an_unknown_consistency_means_is_refused():
    with pytest.raises(InvalidInputError, match="consistency_means"):
        _fit(consistency_means="mean")


def test_cavl_trains_on_uniform_targets_at_a_first_visit(monkeypatch):
    """CAVL as in its original: each sample's first visit (the first epoch)
    trains on the uniform target over its set, later visits on the one-hot of
    the largest class activation value inside the set."""
    from skcandist import _student, losses

    real_ce = losses.soft_cross_entropy
    real_step = _student._RefineryNet.train_step_single
    seen = []

    def step(self, data, **kwargs):
        seen.append({"index": data[0]["index"].clone(), "epoch": len(self.history)})
        return real_step(self, data, **kwargs)

    def cross_entropy(logits, targets):
        seen[-1]["targets"] = targets.detach().clone()
        return real_ce(logits, targets)

    monkeypatch.setattr(_student._RefineryNet, "train_step_single", step)
    monkeypatch.setattr(losses, "soft_cross_entropy", cross_entropy)
    _fit(loss="cavl", max_epochs=3)
    cands = torch.as_tensor(CANDS, dtype=torch.float32)
    epochs = {batch["epoch"] for batch in seen}
    assert epochs == {1, 2, 3}
    for batch in seen:
        sets = cands[batch["index"]]
        if batch["epoch"] == 1:
            assert torch.allclose(batch["targets"], sets / sets.sum(1, keepdim=True))
        else:
            targets = batch["targets"]
            assert torch.equal(targets.sum(1), torch.ones(len(targets)))
            assert ((targets == 0) | (targets == 1)).all()
            assert (targets <= sets).all()


def test_validation_rows_are_never_selected():
    # delta=1 selects every in-candidate sample, tau=0 makes every
    # out-of-candidate one confident: each epoch after the warm-up, the groups
    # hold every training row, and none of the 2 held-out rows.
    clf = _fit(validation_fraction=0.25, patience=30, delta=1.0, tau=0.0)
    for row in clf.net_.history[1:]:
        assert row["n_selected"] + row["n_confident_out"] == 6, row
        assert row["n_ignored"] == 0


def test_set_params_then_refit_uses_the_new_params():
    clf = _fit()
    first = clf.predict_proba(TEXTS)
    changed = {"max_epochs": 3, "hidden_size": 0, "delta": 0.4, "random_state": 2}
    clf.set_params(**changed)
    clf.fit(TEXTS, CANDS, classes=CLASSES)
    assert len(clf.net_.history) == 3
    assert clf.net_.module_.body.__class__.__name__ == "Identity"  # linear head
    fresh = _fit(**changed)
    np.testing.assert_array_equal(clf.predict_proba(TEXTS), fresh.predict_proba(TEXTS))
    assert not np.allclose(clf.predict_proba(TEXTS), first)


# --------------------------------------------------------- fine-tune mode
def test_trim_padding_cuts_each_batch_to_its_longest_text():
    from skcandist._student import _trim_padding

    ids = torch.tensor([[5, 6, 0, 0, 0], [5, 6, 7, 0, 0]])
    mask = (ids > 0).long()
    cut = _trim_padding({"input_ids": ids, "attention_mask": mask, "index": ids[:, 0]})
    assert cut["input_ids"].tolist() == [[5, 6, 0], [5, 6, 7]]
    assert cut["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    # The augmented view is cut by its own mask; a left-padded batch is kept.
    left = torch.tensor([[0, 0, 5], [0, 6, 7]])
    kept = _trim_padding({"input_ids_aug": left, "attention_mask_aug": left > 0})
    assert kept["input_ids_aug"].tolist() == left.tolist()


def test_finetune_pads_each_batch_to_its_longest_text_only(finetuned, monkeypatch):
    from transformers import AutoTokenizer

    # Batches of 4 (the student's batch_size): short texts, then a long one.
    texts = ["hi", "free prize", "see you", "ok", *TEXTS[:3], " ".join(TEXTS[3:])]
    encoder = finetuned.net_.module_.encoder
    widths = []
    real = encoder.forward

    def forward(*args, **kwargs):
        widths.append(kwargs["input_ids"].shape[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(encoder, "forward", forward)
    proba = finetuned.predict_proba(texts)
    lengths = finetuned._tokenize(texts)["attention_mask"].sum(axis=1)
    assert widths == [lengths[:4].max(), lengths[4:].max()]
    assert widths[0] < widths[1] < 64
    # The same texts padded to max_length (the padding masked out) give the
    # same probabilities: padding does not leak into the result.
    monkeypatch.setattr(encoder, "forward", real)
    tokens = AutoTokenizer.from_pretrained(str(finetuned._encoder_path()))(
        texts, padding="max_length", max_length=64, return_tensors="pt"
    )
    module = finetuned.net_.module_.eval()
    with torch.no_grad():
        padded = torch.softmax(module(**tokens), dim=1).numpy()
    np.testing.assert_allclose(proba, padded, atol=1e-5)


def test_finetune_runs_consistency_and_mixup(monkeypatch):
    """With ramp_epochs=0, eta is 1 from the first epoch: every step runs the
    encoder a second time (the consistency term's dropout view) and mixes."""
    from skcandist import _student, losses

    calls = {"embed": 0, "mixup": 0}
    real_embed, real_mixup = _student._FineTuned.embed, losses.mixup

    def embed(self, *args, **kwargs):
        calls["embed"] += 1
        return real_embed(self, *args, **kwargs)

    def mixup(*args):
        calls["mixup"] += 1
        return real_mixup(*args)

    monkeypatch.setattr(_student._FineTuned, "embed", embed)
    monkeypatch.setattr(losses, "mixup", mixup)
    params = dict(
        finetune=True,
        max_epochs=2,
        warmup_epochs=1,
        ramp_epochs=0,
        batch_size=4,
        max_length=16,
        teacher_model=None,
    )
    extras = CanDistClassifier(**params).fit(TEXTS, CANDS, classes=CLASSES)
    steps = 2 * 2  # 8 texts in batches of 4, 2 epochs
    assert calls == {"embed": 2 * steps, "mixup": steps}
    plain = CanDistClassifier(**params, consistency=False, mixup=False)
    plain.fit(TEXTS, CANDS, classes=CLASSES)
    assert np.abs(extras.predict_proba(TEXTS) - plain.predict_proba(TEXTS)).max() > 1e-5


# ------------------------------------------- speed of the training step (#12)
def _step_spy(monkeypatch, before=None):
    """Wrap the training step: ``before(net, batch)`` runs ahead of each step;
    the list returned gets one dict per step (the batch and the step's loss)."""
    from skcandist import _student

    real, steps = _student._RefineryNet.train_step_single, []

    def step(self, batch, **kwargs):
        record = {"X": {k: v.clone() for k, v in batch[0].items()}}
        if before is not None:
            record.update(before(self, batch))
        result = real(self, batch, **kwargs)
        record["loss"] = result["loss"].detach()
        steps.append(record)
        return result

    monkeypatch.setattr(_student._RefineryNet, "train_step_single", step)
    return steps


def _separate_passes(net, batch):
    """The step's loss and gradients as the three separate head passes of the
    step before #12 (plain view, consistency view, mixup view) give them."""
    import copy

    from skcandist import losses

    cfg, head = net.refinery, net.module_
    X = batch[0]
    index = X["index"]
    qhat, has = losses.refinery_targets(
        net.targets_t[index],
        net.groups_t[index],
        net.predicted_t[index],
        gamma=cfg["gamma"],
        sharpen_selected=cfg["sharpen"],
    )
    head.train()
    logits = head.classify(X["x"])
    loss = (losses.soft_cross_entropy(logits, qhat) * has).mean()
    second = X["x_aug"] if "x_aug" in X else X["x"]
    loss = loss + losses.consistency_term(
        head.classify(second), logits, qhat, net.groups_t[index]
    )
    rng = copy.deepcopy(net.rng)  # the step's own draws come next
    omega = float(rng.beta(cfg["mixup_alpha"], cfg["mixup_alpha"]))
    omega = max(omega, 1.0 - omega)
    perm = torch.as_tensor(rng.permutation(int(has.sum())))
    mixed, mixed_q = losses.mixup(X["x"][has], qhat[has], omega, perm)
    loss = loss + losses.soft_cross_entropy(head.classify(mixed), mixed_q).mean()
    grads = torch.autograd.grad(loss, list(head.parameters()))
    return {"expected_loss": loss.detach(), "expected_grads": grads}


@pytest.mark.parametrize("augmented", [False, True])
def test_one_head_pass_gives_the_separate_passes_loss(monkeypatch, augmented):
    """With dropout 0 (no randomness in the head), the step's single pass of the
    head over the plain, consistency and mixed rows gives the loss and the
    gradients of three separate passes; with augmented texts the consistency
    view reads x_aug."""
    from skcandist import _student

    steps = _step_spy(monkeypatch, _separate_passes)
    params = dict(dropout=0.0, ramp_epochs=0)  # eta = 1 from the first epoch
    real_step = _student._RefineryNet.train_step

    def train_step(self, batch, **kwargs):
        result = real_step(self, batch, **kwargs)
        steps[-1]["grads"] = [p.grad.clone() for p in self.module_.parameters()]
        return result

    monkeypatch.setattr(_student._RefineryNet, "train_step", train_step)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if augmented:
            CanDistClassifier(**FAST, **params).fit(
                TEXTS, CANDS, classes=CLASSES, augmented=_reworded(TEXTS)
            )
        else:
            _fit(**params)
    assert len(steps) == 2 * FAST["max_epochs"]
    assert all(("x_aug" in step["X"]) == augmented for step in steps)
    for step in steps:
        assert torch.allclose(step["loss"], step["expected_loss"], atol=1e-6)
        for got, want in zip(step["grads"], step["expected_grads"]):
            assert torch.allclose(got, want, atol=1e-6)


def test_one_head_pass_stacks_the_views_in_order(monkeypatch):
    """The head's one training pass of a step reads the plain rows, then the
    consistency view (x_aug where given), then the mixed rows of the samples
    with a target."""
    from skcandist import _student

    inputs = []
    real = _student._Head.classify

    def classify(self, embeddings):
        if self.training:
            inputs.append(embeddings.clone())
        return real(self, embeddings)

    monkeypatch.setattr(_student._Head, "classify", classify)
    steps = _step_spy(monkeypatch)
    CanDistClassifier(**FAST, ramp_epochs=0).fit(
        TEXTS, CANDS, classes=CLASSES, augmented=_reworded(TEXTS)
    )
    assert len(inputs) == len(steps) == 2 * FAST["max_epochs"]
    for rows, step in zip(inputs, steps):
        x, x_aug = step["X"]["x"], step["X"]["x_aug"]
        n = len(x)
        assert torch.equal(rows[:n], x)
        assert torch.equal(rows[n : 2 * n], x_aug)
        assert not torch.equal(x, x_aug)
        # The mixed rows lie between two plain ones: convex combinations, so
        # within the batch's range in every coordinate.
        mixed = rows[2 * n :]
        assert 2 <= len(mixed) <= n
        assert (mixed >= x.min(0).values - 1e-6).all()
        assert (mixed <= x.max(0).values + 1e-6).all()


def test_the_first_epoch_runs_the_plain_view_only(monkeypatch):
    """eta is 0 in the first epoch (ramp_epochs > 0): one view, no mixup draw."""
    from skcandist import _student

    sizes = []
    real = _student._Head.classify

    def classify(self, embeddings):
        if self.training:
            sizes.append(len(embeddings))
        return real(self, embeddings)

    monkeypatch.setattr(_student._Head, "classify", classify)
    _fit(max_epochs=2, ramp_epochs=5)
    assert sizes[:2] == [4, 4]  # epoch 1: batches of 4, the plain view
    assert all(size > 8 for size in sizes[2:])  # epoch 2: three views


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_the_cpu_training_dropout_keeps_each_unit_with_probability_1_minus_p(p):
    """Both dropout layers of the head in training on the CPU: each unit kept
    with probability 1 - p, scaled by 1 / (1 - p); the same draws for the same
    seed; none in evaluation."""
    from skcandist._student import _Head

    head = _Head(300, 2, hidden=200, dropout=p)
    with torch.no_grad():
        head.body[0].weight.zero_()
        head.body[0].bias.fill_(1.0)  # every hidden unit is GELU(1) before dropout
    head.out = torch.nn.Identity()
    head.train()
    torch.manual_seed(0)
    hidden = head.classify(torch.ones(500, 300))
    gelu1 = torch.nn.functional.gelu(torch.tensor(1.0))
    kept = hidden != 0
    assert torch.allclose(hidden[kept], gelu1 / (1 - p))
    # 100,000 units: the share dropped is p within 5 standard deviations.
    assert abs(1 - kept.float().mean().item() - p) < 5 * (p * (1 - p) / 1e5) ** 0.5
    # The input layer: a linear head (hidden=0) returns the dropped inputs.
    linear = _Head(300, 2, hidden=0, dropout=p)
    linear.out = torch.nn.Identity()
    linear.train()
    dropped = linear.classify(torch.ones(500, 300))
    scaled = dropped[dropped != 0]
    assert torch.allclose(scaled, torch.full_like(scaled, 1 / (1 - p)))
    share = (dropped == 0).float().mean().item()
    assert abs(share - p) < 5 * (p * (1 - p) / 1.5e5) ** 0.5
    # The two layers' masks are independent: through an identity first layer,
    # a unit survives both with probability (1 - p) ** 2.
    chain = _Head(300, 2, hidden=300, dropout=p)
    with torch.no_grad():
        chain.body[0].weight.copy_(torch.eye(300))
        chain.body[0].bias.zero_()
    chain.out = torch.nn.Identity()
    chain.train()
    both = (chain.classify(torch.ones(500, 300)) != 0).float().mean().item()
    keep = (1 - p) ** 2
    assert abs(both - keep) < 5 * (keep * (1 - keep) / 1.5e5) ** 0.5
    torch.manual_seed(1)
    a = head.classify(torch.ones(8, 300))
    torch.manual_seed(1)
    assert torch.equal(head.classify(torch.ones(8, 300)), a)
    head.eval()
    assert torch.equal(head.classify(torch.ones(8, 300)), torch.full((8, 200), gelu1))


def test_the_cpu_training_dropout_gradient_is_masked_and_scaled():
    """The masked path's gradient: the upstream gradient times the mask."""
    from skcandist._student import _Head

    head = _Head(6, 3, hidden=0, dropout=0.5)
    head.train()
    x = torch.ones(40, 6, requires_grad=True)
    torch.manual_seed(0)
    out = head.classify(x)
    out.sum().backward()
    weight_sums = head.out.weight.sum(0)
    torch.manual_seed(0)
    mask = (torch.rand(40, 6) >= 0.5) * 2.0
    assert torch.allclose(x.grad, mask * weight_sums)


def test_the_student_steps_with_fused_adamw_where_it_runs(monkeypatch):
    from skcandist._student import _RefineryNet

    clf = _fit()
    assert clf.net_.optimizer_.defaults["fused"] == _RefineryNet.fused_adamw("cpu")
    # A torch whose AdamW refuses fused=True: the student falls back to the
    # default update.
    real = torch.optim.AdamW

    def refusing(params, fused=None, **kwargs):
        if fused:
            raise RuntimeError("fused=True requires CUDA")
        return real(params, **kwargs)

    monkeypatch.setattr(_RefineryNet, "_FUSED_ADAMW", {})
    monkeypatch.setattr(torch.optim, "AdamW", refusing)
    assert _RefineryNet.fused_adamw("cpu") is False


def test_fused_adamw_gives_the_default_update():
    """Where the fused kernel runs on the CPU, 20 steps on the head's shapes
    end where the default AdamW's do, up to float rounding."""
    from skcandist._student import _RefineryNet

    if not _RefineryNet.fused_adamw("cpu"):
        pytest.skip("this torch has no fused AdamW on the CPU")
    torch.manual_seed(0)
    start = [torch.randn(256, 384), torch.randn(256), torch.randn(6, 256)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(20)]
    ends = []
    for fused in (False, True):
        params = [p.clone().requires_grad_() for p in start]
        optimizer = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.01, fused=fused)
        for step in grads:
            for param, grad in zip(params, step):
                param.grad = grad.clone()
            optimizer.step()
        ends.append([p.detach() for p in params])
    for a, b in zip(*ends):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def test_shuffled_batches_are_slices_of_one_permutation():
    """The iterator permutes the whole data once per pass (the generator's
    order), and its batches are that order's consecutive slices."""
    from skorch.dataset import Dataset

    from skcandist._student import _TensorBatches

    X = {"x": torch.arange(10.0)[:, None], "index": torch.arange(10)}
    y = torch.arange(10) * 10
    batches = _TensorBatches(
        Dataset(X, y), 4, shuffle=True, generator=torch.Generator().manual_seed(7)
    )
    expected = torch.Generator().manual_seed(7)
    orders = []
    for _ in range(2):  # a fresh order per pass
        order = torch.randperm(10, generator=expected)
        orders.append(order)
        got = list(batches)
        assert [len(b[1]) for b in got] == [4, 4, 2]
        assert torch.equal(torch.cat([b[0]["index"] for b in got]), order)
        assert all(torch.equal(b[1], b[0]["index"] * 10) for b in got)
        assert all(torch.equal(b[0]["x"][:, 0].long(), b[0]["index"]) for b in got)
    assert not torch.equal(*orders)
    plain = list(_TensorBatches(Dataset(X, y), 4))
    assert torch.equal(torch.cat([b[0]["index"] for b in plain]), torch.arange(10))


@pytest.mark.parametrize("augmented", [None, _reworded(TEXTS)])
def test_same_seed_same_predictions_with_the_one_pass_step(augmented):
    params = dict(ramp_epochs=0, random_state=5)
    runs = [
        CanDistClassifier(**FAST, **params)
        .fit(TEXTS, CANDS, classes=CLASSES, augmented=augmented)
        .predict_proba(TEXTS)
        for _ in range(2)
    ]
    assert np.array_equal(*runs)


def test_finetune_classifies_every_view_in_one_pass(monkeypatch):
    """Fine-tuning: two encoder passes (the plain and the augmented tokens, each
    cut to its own width) and one pass of the linear head over both views and
    the mixed rows; the student still trains (the loss falls on 8 texts)."""
    from skcandist import _student

    sizes, widths = [], []
    real_classify, real_embed = _student._FineTuned.classify, _student._FineTuned.embed

    def classify(self, embeddings):
        if self.training:
            sizes.append(len(embeddings))
        return real_classify(self, embeddings)

    def embed(self, input_ids=None, attention_mask=None, augmented=False, **kwargs):
        if self.training:
            ids = kwargs["input_ids_aug"] if augmented else input_ids
            widths.append((augmented, ids.shape[1]))
        return real_embed(self, input_ids, attention_mask, augmented, **kwargs)

    monkeypatch.setattr(_student._FineTuned, "classify", classify)
    monkeypatch.setattr(_student._FineTuned, "embed", embed)
    clf = CanDistClassifier(
        finetune=True,
        max_epochs=3,
        warmup_epochs=1,
        ramp_epochs=0,
        batch_size=4,
        max_length=16,
        lr=1e-4,
        teacher_model=None,
    )
    long_views = [f"{t} and a much longer tail of words for it" for t in TEXTS]
    clf.fit(TEXTS, CANDS, classes=CLASSES, augmented=long_views)
    steps = 3 * 2
    assert len(sizes) == steps
    assert all(8 + 2 <= size <= 8 + 4 for size in sizes)  # 2 views + mixed rows
    assert [a for a, _ in widths] == [False, True] * steps
    plain = [w for a, w in widths if not a]
    longer = [w for a, w in widths if a]
    assert all(b > a for a, b in zip(plain, longer))  # each view its own width
    losses = clf.net_.history[:, "train_loss"]
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0]


def test_device_none_trains_on_the_cpu_without_moving():
    from skcandist._student import _RefineryNet

    assert _RefineryNet.fused_adamw(None) == _RefineryNet.fused_adamw("cpu")
    proba = _fit(device=None).predict_proba(TEXTS)
    assert np.array_equal(proba, _fit().predict_proba(TEXTS))


@pytest.mark.parametrize("loss", ["candist", "proden"])
def test_each_epoch_ends_with_the_renormalised_targets_of_its_rows(loss):
    """Eq. 1 at the end of each epoch: the targets q of every row trained on
    are the re-normalised latest predictions; held-out rows keep theirs."""
    from skorch.callbacks import Callback

    from skcandist import losses

    class Snapshot(Callback):
        def initialize(self):
            self.epochs = []
            return self

        def on_epoch_end(self, net, **kwargs):
            self.epochs.append(
                {
                    name: getattr(net, name).clone()
                    for name in ("targets_t", "probs_t", "weights_t", "visited_t")
                }
            )

    snapshot = Snapshot()
    _fit(loss=loss, validation_fraction=0.25, patience=30, callbacks=[snapshot])
    start = losses.uniform_targets(torch.as_tensor(CANDS, dtype=torch.float32))
    assert len(snapshot.epochs) == FAST["max_epochs"]
    for state in snapshot.epochs:
        seen = state["visited_t"]
        assert int(seen.sum()) == 6  # 2 of the 8 rows held out
        expected = losses.renormalize(state["probs_t"], state["weights_t"])
        assert torch.allclose(state["targets_t"][seen], expected[seen], atol=1e-7)
        assert torch.equal(state["targets_t"][~seen], start[~seen])
        assert not torch.equal(state["targets_t"][seen], start[seen])


# ------------------------------------------------ mixed precision (issue 12)
def test_mixed_precision_dtype_by_device(monkeypatch):
    from skcandist._student import _autocast_dtype

    assert _autocast_dtype("cpu") is None and _autocast_dtype(None) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert _autocast_dtype("cuda") is torch.bfloat16
    assert _autocast_dtype("cuda:1") is torch.bfloat16
    assert _autocast_dtype("cuda", enabled=False) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert _autocast_dtype("cuda") is torch.float16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _autocast_dtype("cuda") is None


def _logit_dtypes(monkeypatch):
    from skcandist import losses

    real, seen = losses.soft_cross_entropy, []

    def recording(logits, targets):
        seen.append(logits.dtype)
        return real(logits, targets)

    monkeypatch.setattr(losses, "soft_cross_entropy", recording)
    return seen


def test_the_cpu_trains_in_full_precision(monkeypatch):
    seen = _logit_dtypes(monkeypatch)
    _fit()
    assert seen and set(seen) == {torch.float32}


def test_bfloat16_steps_run_under_autocast(monkeypatch):
    """What a CUDA GPU with bfloat16 gets, run here under the CPU's autocast."""
    from skcandist import _student

    reference = _fit().predict_proba(TEXTS)  # full precision
    monkeypatch.setattr(_student, "_autocast_dtype", lambda *a, **k: torch.bfloat16)
    seen = _logit_dtypes(monkeypatch)
    clf = _fit()
    assert set(seen) == {torch.bfloat16}
    # Another precision, nearly the same student.
    probs = clf.predict_proba(TEXTS)
    assert 0 < np.abs(probs - reference).max() < 0.05


def test_float16_steps_go_through_a_gradient_scaler(monkeypatch):
    """float16 (a GPU without bfloat16): the loss is scaled before backward
    and the scaler steps the optimizer, once per optimisation step."""
    from skcandist import _student

    calls = {"step": 0, "update": 0, "scale": 0}

    class CountingScaler(torch.amp.GradScaler):
        def __init__(self, *args, **kwargs):
            super().__init__("cpu", init_scale=1024.0)

        def scale(self, outputs):
            calls["scale"] += 1
            return super().scale(outputs)

        def step(self, optimizer, *args, **kwargs):
            calls["step"] += 1
            return super().step(optimizer, *args, **kwargs)

        def update(self, *args, **kwargs):
            calls["update"] += 1
            return super().update(*args, **kwargs)

    reference = _fit().predict_proba(TEXTS)  # full precision
    monkeypatch.setattr(_student, "_autocast_dtype", lambda *a, **k: torch.float16)
    monkeypatch.setattr(torch.amp, "GradScaler", CountingScaler)
    seen = _logit_dtypes(monkeypatch)
    clf = _fit()
    n_steps = clf.net_.n_steps
    assert n_steps == FAST["max_epochs"] * 2  # 8 texts, batches of 4
    assert calls == {"step": n_steps, "update": n_steps, "scale": n_steps}
    assert set(seen) == {torch.float16}
    assert "grad_scaler" not in clf.net_.__dict__  # dropped after training
    # The scaled gradients were unscaled before each update: the student is
    # the full-precision one up to float16 rounding, not 1024 times off.
    probs = clf.predict_proba(TEXTS)
    assert 0 < np.abs(probs - reference).max() < 0.05
