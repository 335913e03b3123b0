"""The object that carries texts and their candidate sets through a Pipeline."""

import numpy as np

__all__ = ["AnnotatedTexts"]


class AnnotatedTexts:
    """Texts together with their candidate-label matrix.

    :meth:`CandidateAnnotator.transform` returns this object so that, inside a
    scikit-learn ``Pipeline``, the student receives both the raw texts (which it
    encodes) and the candidate sets (which it learns from). It behaves like a
    sequence of texts (``len``, indexing, iteration), so that scikit-learn's
    splitters and any text-consuming step can use it directly.

    Parameters
    ----------
    texts : sequence of str
        The annotated texts.
    candidates : scipy.sparse matrix of shape (n_texts, n_classes)
        0/1 candidate matrix; column j stands for ``classes[j]``.
    classes : array-like of shape (n_classes,)
        The label names of the columns.
    single : ndarray of shape (n_texts,), default=None
        The teacher's single (top) label index per text, -1 where it has none.
        Used by ``loss="ce"``.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> out = AnnotatedTexts(["a", "b"], sp.csr_matrix([[1, 0], [1, 1]]), ["x", "y"])
    >>> len(out), out.texts[1], out.candidates.toarray().tolist()
    (2, 'b', [[1, 0], [1, 1]])
    >>> out[[1]].candidates.toarray().tolist()
    [[1, 1]]
    """

    def __init__(self, texts, candidates, classes, single=None):
        import scipy.sparse as sp

        self.texts = np.asarray(list(texts), dtype=object)
        self.candidates = sp.csr_matrix(candidates)
        self.classes = np.asarray(classes)
        self.single = None if single is None else np.asarray(single, dtype=int)

    def __len__(self):
        return len(self.texts)

    def __iter__(self):
        return iter(self.texts)

    @property
    def shape(self):
        return (len(self.texts),)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.texts[index]
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return AnnotatedTexts(
            self.texts[index],
            self.candidates[index],
            self.classes,
            None if self.single is None else self.single[index],
        )

    def __repr__(self):
        return (
            f"AnnotatedTexts(n_texts={len(self)}, n_classes={len(self.classes)}, "
            f"mean_set_size={self.candidates.sum() / max(len(self), 1):.2f})"
        )
