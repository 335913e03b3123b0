"""AnnotatedTexts: indexing as scikit-learn does it, deferred candidates."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.model_selection import KFold
from sklearn.utils import _safe_indexing

from skcandist import AnnotatedTexts


def _sample():
    return AnnotatedTexts(
        ["a", "b", "c"], sp.csr_matrix(np.eye(3, dtype=int)), ["x", "y", "z"], [0, 1, 2]
    )


def test_safe_indexing_keeps_candidates_with_their_texts():
    part = _safe_indexing(_sample(), np.array([2, 0]))
    assert isinstance(part, AnnotatedTexts)
    assert list(part.texts) == ["c", "a"]
    assert part.candidates.toarray().tolist() == [[0, 0, 1], [1, 0, 0]]
    assert part.single.tolist() == [2, 0]


def test_kfold_splits_and_boolean_masks():
    data = _sample()
    for train, test in KFold(3).split(data):
        assert len(data[train]) == 2 and len(data[test]) == 1
    assert list(data[np.array([True, False, True])].texts) == ["a", "c"]
    assert list(data[1:].texts) == ["b", "c"]
    assert data[1] == "b"


def test_only_row_indexing():
    with pytest.raises(IndexError, match="rows"):
        _sample()[0, 1]


def test_deferred_candidates_are_computed_once_on_access():
    calls = []

    def annotate(texts):
        calls.append(list(texts))
        return sp.csr_matrix(np.ones((len(texts), 2), dtype=int)), np.zeros(len(texts))

    data = AnnotatedTexts(["a", "b"], classes=["x", "y"], annotate=annotate)
    assert not data.is_annotated and "deferred" in repr(data)
    part = data[[1]]
    assert list(part.texts) == ["b"] and calls == []
    assert part.candidates.shape == (1, 2)
    assert calls == [["b"]]
    assert data.single.tolist() == [0, 0]
    data.candidates  # noqa: B018
    assert calls == [["b"], ["a", "b"]]


def test_needs_candidates_or_annotate():
    with pytest.raises(ValueError, match="candidates or annotate"):
        AnnotatedTexts(["a"], classes=["x", "y"])
