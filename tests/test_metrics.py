"""Candidate-set quality against gold labels (the paper's definitions)."""

import numpy as np
import pytest
import scipy.sparse as sp

from skcandist.exceptions import InvalidInputError
from skcandist.metrics import (
    candidate_beta,
    candidate_coverage,
    candidate_f1,
    candidate_report,
    mean_set_size,
    single_label_accuracy,
)

CANDIDATES = np.array([[1, 1, 0], [0, 0, 1], [1, 1, 1], [0, 1, 0]])
GOLD = np.array([1, 0, 2, 1])


@pytest.mark.parametrize("as_sparse", [False, True])
def test_values_by_hand(as_sparse):
    candidates = sp.csr_matrix(CANDIDATES) if as_sparse else CANDIDATES
    assert candidate_coverage(candidates, GOLD) == pytest.approx(0.75)
    assert mean_set_size(candidates) == pytest.approx(7 / 4)
    # (C - |s|) / (C - 1) per row: 0.5, 1, 0, 1
    assert candidate_beta(candidates) == pytest.approx(0.625)
    f1 = 2 * 0.75 * 0.625 / (0.75 + 0.625)
    assert candidate_f1(candidates, GOLD) == pytest.approx(f1)


def test_extremes():
    single = np.eye(3, dtype=int)
    assert candidate_beta(single) == 1.0
    assert candidate_coverage(single, [0, 1, 2]) == 1.0
    assert candidate_f1(single, [0, 1, 2]) == 1.0
    full = np.ones((3, 3), dtype=int)
    assert candidate_beta(full) == 0.0
    assert candidate_coverage(full, [0, 1, 2]) == 1.0
    assert candidate_f1(np.eye(3, dtype=int), [1, 2, 0]) == 0.0


def test_label_names_with_classes():
    classes = ["a", "b", "c"]
    names = np.array(classes)[GOLD]
    assert candidate_coverage(CANDIDATES, names, classes=classes) == 0.75
    report = candidate_report(CANDIDATES, names, classes=classes)
    assert report == pytest.approx(
        {
            "n_samples": 4,
            "coverage": 0.75,
            "mean_set_size": 1.75,
            "beta": 0.625,
            "f1": candidate_f1(CANDIDATES, GOLD),
        }
    )


def test_single_label_accuracy_counts_missing_as_wrong():
    assert single_label_accuracy(["a", "b", None], ["a", "a", "a"]) == 1 / 3
    assert single_label_accuracy([0, -1, 2], [0, 1, 2]) == 2 / 3


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: candidate_coverage([[1, 2]], [0]), "only 0 and 1"),
        (lambda: candidate_coverage([1, 0], [0]), "2-D"),
        (lambda: candidate_coverage([[1, 0]], [0, 1]), "rows"),
        (lambda: candidate_coverage([[1, 0]], [5]), "outside"),
        (lambda: candidate_coverage([[1, 0]], ["a"]), "classes="),
        (lambda: candidate_coverage([[1, 0]], ["z"], classes=["a", "b"]), "not in"),
        (lambda: candidate_coverage(np.zeros((0, 2)), np.zeros(0, int)), "no samples"),
        (lambda: candidate_beta([[1]]), "two classes"),
        (lambda: single_label_accuracy(["a"], ["a", "b"]), "labels"),
        (lambda: single_label_accuracy([], []), "no samples"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(InvalidInputError, match=match):
        call()


def test_annotator_output_feeds_the_metrics():
    from skcandist import AnnotatedTexts

    out = AnnotatedTexts(["x", "y"], sp.csr_matrix([[1, 0], [1, 1]]), ["a", "b"])
    assert candidate_coverage(out.candidates, ["b", "b"], classes=out.classes) == 0.5
