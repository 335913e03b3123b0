"""A test-side teacher: instance-dependent candidate sets built from gold labels.

The wrong labels are *plausible*: they are the confusions of an out-of-fold
TF-IDF + logistic-regression model, and the hardest texts (by that model) are the
ones whose top label is wrong, as with an LLM teacher. Targets (TREC):
single-label accuracy ~0.71, coverage ~0.88, mean set size ~1.7.
"""

import numpy as np
import scipy.sparse as sp


def simulate_teacher(
    texts,
    labels,
    classes,
    *,
    top_wrong=0.29,
    coverage=0.88,
    mean_size=1.7,
    random_state=0,
):
    """Candidate sets and top labels from gold labels, with plausible errors.

    Returns
    -------
    candidates : csr_matrix of shape (n, C)
    single : ndarray of shape (n,)
        The teacher's top label index.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    rng = np.random.RandomState(random_state)
    classes = list(classes)
    gold = np.array([classes.index(v) for v in labels])
    n, n_classes = len(gold), len(classes)
    features = TfidfVectorizer(ngram_range=(1, 2), min_df=1).fit_transform(texts)
    probs = cross_val_predict(
        LogisticRegression(C=2.0, max_iter=1000),
        features,
        gold,
        cv=5,
        method="predict_proba",
    )
    # Smooth, then pick wrong labels in proportion to the model's confusion.
    confusion = probs + 0.02
    confusion[np.arange(n), gold] = 0.0
    confusion /= confusion.sum(axis=1, keepdims=True)

    def draw_wrong(i, exclude):
        p = confusion[i].copy()
        p[list(exclude)] = 0.0
        return rng.choice(n_classes, p=p / p.sum())

    hardness = 1.0 - probs[np.arange(n), gold] + rng.uniform(0, 0.5, size=n)
    wrong_top = np.zeros(n, dtype=bool)
    wrong_top[np.argsort(-hardness)[: int(round(top_wrong * n))]] = True
    n_wrong = wrong_top.sum()
    # Share of wrong-top sets that still hold the true label, for the coverage.
    keep_true = 1.0 - (1.0 - coverage) * n / max(n_wrong, 1)
    cands = np.zeros((n, n_classes), dtype=np.int8)
    single = gold.copy()
    extra_second = 0.5
    for i in np.flatnonzero(wrong_top):
        top = draw_wrong(i, [gold[i]])
        single[i] = top
        cands[i, top] = 1
        if rng.rand() < keep_true:
            cands[i, gold[i]] = 1
        elif rng.rand() < extra_second:
            cands[i, draw_wrong(i, [gold[i], top])] = 1
    right = np.flatnonzero(~wrong_top)
    cands[right, gold[right]] = 1
    size_so_far = cands.sum()
    target_extra = max(mean_size * n - size_so_far, 0)
    share = min(target_extra / max(len(right), 1), 1.0)
    # The harder a correctly-labelled text, the likelier a plausible extra label.
    order = right[np.argsort(-hardness[right])]
    chosen = order[: int(round(share * len(right)))]
    for i in chosen:
        cands[i, draw_wrong(i, [gold[i]])] = 1
    return sp.csr_matrix(cands), single


def teacher_stats(candidates, single, labels, classes):
    """Coverage, mean set size and single-label accuracy of a teacher."""
    classes = list(classes)
    gold = np.array([classes.index(v) for v in labels])
    dense = candidates.toarray()
    return {
        "coverage": float(dense[np.arange(len(gold)), gold].mean()),
        "mean_size": float(dense.sum(axis=1).mean()),
        "single_accuracy": float((single == gold).mean()),
    }
