"""Tests of the simulated LLM teacher (skcandist.datasets._simulate)."""

import numpy as np
import pytest
import scipy.sparse as sp

from skcandist.datasets._simulate import (
    OUR_TEACHERS,
    PAPER_TEACHERS,
    TEACHER_PROFILES,
    WEAK_TEACHERS,
    _gold_indices,
    _oof_probabilities,
    simulate_candidates,
)
from skcandist.exceptions import InvalidInputError
from skcandist.metrics import candidate_coverage, mean_set_size

TOL = 0.01


def _synthetic(n=400, random_state=0):
    """Four topics with overlapping vocabularies, so some texts are ambiguous."""
    rng = np.random.RandomState(random_state)
    vocab = {
        "sport": ["goal", "match", "team", "score", "coach"],
        "money": ["bank", "loan", "score", "rate", "cash"],
        "food": ["pizza", "menu", "chef", "rate", "taste"],
        "travel": ["flight", "hotel", "team", "coach", "taste"],
    }
    classes = sorted(vocab)
    labels = rng.choice(classes, size=n)
    shared = ["the", "a", "today", "new"]
    texts = [" ".join(rng.choice(vocab[label] + shared, size=6)) for label in labels]
    return texts, labels, classes


def _realised(candidates, single, labels, classes):
    gold = _gold_indices(labels, classes)
    return (
        float(np.mean(single == gold)),
        candidate_coverage(candidates, gold),
        mean_set_size(candidates),
    )


@pytest.mark.parametrize(
    "target",
    [
        dict(single_accuracy=0.7, coverage=0.85, mean_set_size=1.6),
        dict(single_accuracy=0.5, coverage=0.5, mean_set_size=1.0),
        dict(single_accuracy=0.9, coverage=1.0, mean_set_size=2.5),
    ],
)
def test_realised_statistics_synthetic(target):
    texts, labels, classes = _synthetic()
    candidates, single = simulate_candidates(texts, labels, classes, **target)
    acc, cov, size = _realised(candidates, single, labels, classes)
    assert abs(acc - target["single_accuracy"]) <= TOL
    assert abs(cov - target["coverage"]) <= TOL
    assert abs(size - target["mean_set_size"]) <= TOL
    dense = candidates.toarray()
    assert sp.issparse(candidates) and candidates.shape == (len(texts), len(classes))
    assert set(np.unique(dense)) <= {0, 1}
    assert (dense.sum(axis=1) >= 1).all()
    # The single label is always a candidate.
    assert dense[np.arange(len(single)), single].all()


@pytest.fixture(scope="module")
def trec_train(shared_data):
    from skcandist.datasets import load_dataset

    data = load_dataset("trec", "train", data_home=shared_data, n_samples=1000)
    gold = _gold_indices(data.labels, data.classes)
    return data, _oof_probabilities(data.texts, gold, len(data.classes), 5, 0)


@pytest.mark.parametrize("prompt", ["add", "all"])
def test_realised_statistics_paper_profiles_trec(trec_train, prompt):
    data, probs = trec_train
    target = PAPER_TEACHERS[("trec", prompt)]
    candidates, single = simulate_candidates(
        data.texts, data.labels, data.classes, pred_probs=probs, **target
    )
    acc, cov, size = _realised(candidates, single, data.labels, data.classes)
    assert abs(acc - target["single_accuracy"]) <= TOL
    assert abs(cov - target["coverage"]) <= TOL
    assert abs(size - target["mean_set_size"]) <= TOL


def test_fits_its_own_model_on_trec(trec_train):
    data, _ = trec_train
    n = 300
    target = PAPER_TEACHERS[("trec", "all")]
    candidates, single = simulate_candidates(
        data.texts[:n], data.labels[:n], data.classes, **target
    )
    acc, cov, size = _realised(candidates, single, data.labels[:n], data.classes)
    assert abs(acc - target["single_accuracy"]) <= TOL
    assert abs(cov - target["coverage"]) <= TOL
    assert abs(size - target["mean_set_size"]) <= TOL


def test_errors_are_instance_dependent():
    texts, labels, classes = _synthetic(n=600)
    gold = _gold_indices(labels, classes)
    probs = _oof_probabilities(texts, gold, len(classes), 5, 0)
    candidates, single = simulate_candidates(
        texts,
        labels,
        classes,
        single_accuracy=0.7,
        coverage=0.8,
        mean_set_size=1.5,
        pred_probs=probs,
    )
    wrong = np.flatnonzero(single != gold)
    masked = probs.copy()
    masked[np.arange(len(gold)), gold] = -1
    runner_up = masked.argmax(axis=1)
    agreement = np.mean(single[wrong] == runner_up[wrong])
    chance = 1 / (len(classes) - 1)
    assert agreement > chance + 0.25
    # Wrong single labels go to texts the out-of-fold model finds confusing.
    p_gold = probs[np.arange(len(gold)), gold]
    assert p_gold[wrong].mean() < p_gold[single == gold].mean() - 0.1


def test_deterministic_and_shared_single_labels():
    texts, labels, classes = _synthetic()
    add = dict(single_accuracy=0.7, coverage=0.75, mean_set_size=1.1)
    all_ = dict(single_accuracy=0.7, coverage=0.9, mean_set_size=1.8)
    c1, s1 = simulate_candidates(texts, labels, classes, random_state=3, **add)
    c2, s2 = simulate_candidates(texts, labels, classes, random_state=3, **add)
    c3, s3 = simulate_candidates(texts, labels, classes, random_state=3, **all_)
    c4, s4 = simulate_candidates(texts, labels, classes, random_state=4, **add)
    assert (c1 != c2).nnz == 0 and (s1 == s2).all()
    assert (s1 == s3).all()
    assert not ((s1 == s4).all() and (c1 != c4).nnz == 0)


def test_profiles():
    assert set(TEACHER_PROFILES) == set(PAPER_TEACHERS) | set(OUR_TEACHERS)
    assert set(WEAK_TEACHERS) == set(OUR_TEACHERS)
    for key, weak in WEAK_TEACHERS.items():
        assert weak["single_accuracy"] < OUR_TEACHERS[key]["single_accuracy"]
        assert weak["coverage"] >= weak["single_accuracy"]
    assert WEAK_TEACHERS[("sst2", "all")]["mean_set_size"] == 1.3
    assert PAPER_TEACHERS[("trec", "all")] == dict(
        single_accuracy=0.7107, coverage=0.8909, mean_set_size=1.70
    )
    for profile in TEACHER_PROFILES.values():
        assert profile["coverage"] >= profile["single_accuracy"]
        extra = profile["coverage"] - profile["single_accuracy"]
        assert profile["mean_set_size"] >= 1 + extra


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(single_accuracy=1.5), "single_accuracy"),
        (dict(coverage=-0.1), "coverage"),
        (dict(single_accuracy=0.9, coverage=0.8), "below single_accuracy"),
        (dict(coverage=0.9, mean_set_size=1.05), "too small"),
        (dict(mean_set_size=4.5), "too large"),
        (dict(n_splits=1), "n_splits"),
        (dict(pred_probs=np.ones((3, 2))), "pred_probs"),
        (dict(teacher_errors="bert"), "teacher_errors"),
        (dict(teacher_errors="embedding", features=np.ones((3, 2))), "features"),
        (
            dict(teacher_errors="embedding", features=np.full((100, 2), np.nan)),
            "NaN",
        ),
    ],
)
def test_bad_input(kwargs, match):
    texts, labels, classes = _synthetic(n=100)
    params = dict(single_accuracy=0.7, coverage=0.8, mean_set_size=1.5)
    params.update(kwargs)
    with pytest.raises(InvalidInputError, match=match):
        simulate_candidates(texts, labels, classes, **params)


def test_bad_labels():
    with pytest.raises(InvalidInputError, match="not in classes"):
        simulate_candidates(
            ["a", "b"],
            ["x", "z"],
            ["x", "y"],
            single_accuracy=1,
            coverage=1,
            mean_set_size=1,
        )
    with pytest.raises(InvalidInputError, match="texts but"):
        simulate_candidates(
            ["a"],
            ["x", "y"],
            ["x", "y"],
            single_accuracy=1,
            coverage=1,
            mean_set_size=1,
        )
    with pytest.raises(InvalidInputError, match="two classes"):
        simulate_candidates(
            ["a"], ["x"], ["x"], single_accuracy=1, coverage=1, mean_set_size=1
        )


def _embedded_topics(n=400, random_state=0):
    """Texts whose embeddings (here: two made-up coordinates) put half of one
    class among the other, and whose words say nothing of the class."""
    rng = np.random.RandomState(random_state)
    labels = np.array(["a", "b"] * (n // 2))
    texts = [f"text number {i}" for i in range(n)]
    features = rng.normal(size=(n, 2))
    features[:, 0] += np.where(labels == "a", 2.0, -2.0)
    hidden = np.flatnonzero(labels == "a")[: n // 8]
    features[hidden, 0] = -2.0  # these "a" texts look like "b" to an embedding
    return texts, labels, features, hidden


def test_embedding_errors_fall_where_the_embeddings_are_ambiguous():
    texts, labels, features, hidden = _embedded_topics()
    target = dict(single_accuracy=0.85, coverage=0.9, mean_set_size=1.2)
    cand, single = simulate_candidates(
        texts,
        labels,
        ["a", "b"],
        teacher_errors="embedding",
        features=features,
        random_state=0,
        **target,
    )
    acc, cov, size = _realised(cand, single, labels, ["a", "b"])
    assert abs(acc - 0.85) <= TOL and abs(cov - 0.9) <= TOL
    assert abs(size - 1.2) <= TOL
    wrong = single != _gold_indices(labels, ["a", "b"])
    # The texts hidden among the other class take most of the errors ...
    assert wrong[hidden].mean() > 2 * wrong.mean()
    # ... which TF-IDF features (identical texts but for a number) cannot place.
    _, tfidf_single = simulate_candidates(
        texts, labels, ["a", "b"], random_state=0, **target
    )
    tfidf_wrong = tfidf_single != _gold_indices(labels, ["a", "b"])
    assert tfidf_wrong[hidden].mean() < wrong[hidden].mean() / 2
