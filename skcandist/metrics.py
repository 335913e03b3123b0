"""Quality of candidate sets and of single labels against gold labels.

The definitions follow the CanDist paper (Xia et al., ACL 2025, Sec. 3.2 and
App. B.1). With gold labels ``y`` and candidate sets ``s``:

- coverage, ``1 - alpha``: the share of samples whose gold label is in ``s_i``;
- ``beta``: the mean of ``(C - |s_i|) / (C - 1)``, how much of the label space the
  sets prune (1 for single labels, 0 for sets holding every label);
- ``F1``: the harmonic mean of coverage and beta.

All functions take the candidate matrix as a scipy sparse or dense 0/1 array of
shape (n_samples, n_classes), and gold labels either as column indices or, with
``classes``, as label names.
"""

import numpy as np

from .exceptions import InvalidInputError

__all__ = [
    "candidate_coverage",
    "mean_set_size",
    "candidate_beta",
    "candidate_f1",
    "single_label_accuracy",
    "candidate_report",
]


def _as_dense_candidates(candidates):
    import scipy.sparse as sp

    if sp.issparse(candidates):
        dense = candidates.toarray()
    else:
        dense = np.asarray(candidates)
    if dense.ndim != 2:
        raise InvalidInputError(
            f"candidates must be a 2-D (n_samples, n_classes) matrix; got shape "
            f"{dense.shape}."
        )
    if dense.size and not np.isin(dense, (0, 1)).all():
        raise InvalidInputError("candidates must hold only 0 and 1.")
    return dense.astype(bool)


def _gold_indices(y_true, n_classes, classes):
    y_true = np.asarray(y_true)
    if y_true.ndim != 1:
        raise InvalidInputError(f"y_true must be 1-D; got shape {y_true.shape}.")
    if classes is not None:
        classes = np.asarray(classes)
        lookup = {c: i for i, c in enumerate(classes.tolist())}
        unknown = sorted({v for v in y_true.tolist() if v not in lookup}, key=str)
        if unknown:
            raise InvalidInputError(
                f"y_true holds labels that are not in classes: {unknown[:5]}."
            )
        return np.array([lookup[v] for v in y_true.tolist()], dtype=int)
    if y_true.size == 0:
        return y_true.astype(int)
    if not np.issubdtype(y_true.dtype, np.integer):
        raise InvalidInputError(
            "y_true holds label names; pass classes= to map them to columns."
        )
    if y_true.size and (y_true.min() < 0 or y_true.max() >= n_classes):
        raise InvalidInputError(
            f"y_true holds column indices outside [0, {n_classes - 1}]."
        )
    return y_true.astype(int)


def _checked(candidates, y_true, classes):
    dense = _as_dense_candidates(candidates)
    gold = _gold_indices(y_true, dense.shape[1], classes)
    if len(gold) != dense.shape[0]:
        raise InvalidInputError(
            f"candidates has {dense.shape[0]} rows but y_true has {len(gold)} labels."
        )
    if len(gold) == 0:
        raise InvalidInputError("no samples: candidates and y_true are empty.")
    return dense, gold


def candidate_coverage(candidates, y_true, *, classes=None):
    """Share of samples whose gold label is in their candidate set (1 - alpha).

    Parameters
    ----------
    candidates : {array-like, sparse matrix} of shape (n_samples, n_classes)
        0/1 candidate matrix.
    y_true : array-like of shape (n_samples,)
        Gold labels: column indices, or label names when ``classes`` is given.
    classes : array-like of shape (n_classes,), default=None
        Label names of the columns.

    Returns
    -------
    float

    Examples
    --------
    >>> candidate_coverage([[1, 1, 0], [0, 0, 1]], [1, 0])
    0.5
    """
    dense, gold = _checked(candidates, y_true, classes)
    return float(dense[np.arange(len(gold)), gold].mean())


def mean_set_size(candidates):
    """Mean number of candidate labels per sample.

    Examples
    --------
    >>> mean_set_size([[1, 1, 0], [0, 0, 1]])
    1.5
    """
    dense = _as_dense_candidates(candidates)
    return float(dense.sum(axis=1).mean()) if len(dense) else 0.0


def candidate_beta(candidates):
    """Mean share of the label space pruned by each set, ``(C - |s|) / (C - 1)``.

    Examples
    --------
    >>> candidate_beta([[1, 0, 0], [1, 1, 1]])
    0.5
    """
    dense = _as_dense_candidates(candidates)
    n_classes = dense.shape[1]
    if n_classes < 2:
        raise InvalidInputError("beta needs at least two classes.")
    sizes = dense.sum(axis=1)
    return float(((n_classes - sizes) / (n_classes - 1)).mean())


def candidate_f1(candidates, y_true, *, classes=None):
    """Harmonic mean of coverage and beta (the paper's F1 of candidate sets).

    Examples
    --------
    >>> round(candidate_f1([[1, 0, 0], [1, 1, 0]], [0, 1]), 4)
    0.8571
    """
    coverage = candidate_coverage(candidates, y_true, classes=classes)
    beta = candidate_beta(candidates)
    if coverage + beta == 0:
        return 0.0
    return float(2 * coverage * beta / (coverage + beta))


def single_label_accuracy(y_single, y_true):
    """Accuracy of single labels; a missing label (None or -1) counts as wrong.

    Examples
    --------
    >>> single_label_accuracy(["a", None, "b"], ["a", "a", "a"])
    0.3333333333333333
    """
    y_single = list(y_single)
    y_true = list(y_true)
    if len(y_single) != len(y_true):
        raise InvalidInputError(
            f"y_single has {len(y_single)} labels but y_true has {len(y_true)}."
        )
    if not y_true:
        raise InvalidInputError("no samples: y_single and y_true are empty.")
    hits = [a == b and a is not None for a, b in zip(y_single, y_true)]
    return float(np.mean(hits))


def candidate_report(candidates, y_true, *, classes=None):
    """All candidate-set statistics in one dict.

    Returns
    -------
    dict
        ``coverage``, ``mean_set_size``, ``beta``, ``f1`` and ``n_samples``.

    Examples
    --------
    >>> report = candidate_report([[1, 1], [0, 1]], ["a", "b"], classes=["a", "b"])
    >>> report["coverage"], report["mean_set_size"], report["beta"]
    (1.0, 1.5, 0.5)
    """
    dense, gold = _checked(candidates, y_true, classes)
    coverage = float(dense[np.arange(len(gold)), gold].mean())
    beta = candidate_beta(dense)
    f1 = 0.0 if coverage + beta == 0 else 2 * coverage * beta / (coverage + beta)
    return {
        "n_samples": int(dense.shape[0]),
        "coverage": coverage,
        "mean_set_size": mean_set_size(dense),
        "beta": beta,
        "f1": float(f1),
    }
