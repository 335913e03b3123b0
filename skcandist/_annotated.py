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

    The candidates may be *deferred*: given ``annotate`` instead of
    ``candidates``, they are computed by ``annotate(texts)`` on first access of
    :attr:`candidates` (or :attr:`single`). This is how a fitted Pipeline predicts
    on new texts without sending a single request to the LLM: the student only
    reads :attr:`texts`.

    Parameters
    ----------
    texts : sequence of str
        The annotated texts.
    candidates : scipy.sparse matrix of shape (n_texts, n_classes), default=None
        0/1 candidate matrix; column j stands for ``classes[j]``.
    classes : array-like of shape (n_classes,)
        The label names of the columns.
    single : ndarray of shape (n_texts,), default=None
        The teacher's single (top) label index per text, -1 where it has none.
    annotate : callable, default=None
        ``annotate(texts) -> (candidates, single)`` or ``(candidates, single,
        info)``, called once on first access when ``candidates`` is None.
    info : dict, default=None
        What the annotation of these texts cost and left over: ``usage``,
        ``failures`` and ``label_proba`` (see the properties of the same names).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> out = AnnotatedTexts(["a", "b"], sp.csr_matrix([[1, 0], [1, 1]]), ["x", "y"])
    >>> len(out), out.texts[1], out.candidates.toarray().tolist()
    (2, 'b', [[1, 0], [1, 1]])
    >>> out[[1]].candidates.toarray().tolist()
    [[1, 1]]
    """

    def __init__(
        self,
        texts,
        candidates=None,
        classes=None,
        single=None,
        annotate=None,
        info=None,
    ):
        if candidates is None and annotate is None:
            raise ValueError("give either candidates or annotate.")
        self.texts = np.asarray(list(texts), dtype=object)
        self.classes = np.asarray(classes)
        self._annotate = annotate
        self._candidates = None
        self._single = None if single is None else np.asarray(single, dtype=int)
        self._info = {}
        if candidates is not None:
            self._set(candidates, single, info)

    def _set(self, candidates, single, info=None):
        import scipy.sparse as sp

        self._candidates = sp.csr_matrix(candidates)
        self._single = None if single is None else np.asarray(single, dtype=int)
        self._info = dict(info or {})
        self._annotate = None

    def _compute(self):
        self._set(*self._annotate(list(self.texts)))

    @property
    def usage(self):
        """Request counters of the call that annotated these texts, or None.

        The keys of :attr:`CandidateAnnotator.usage_`; None when the sets did
        not come from an annotator.
        """
        self.candidates  # noqa: B018 - computes a deferred annotation
        usage = self._info.get("usage")
        return None if usage is None else dict(usage)

    @property
    def failures(self):
        """Row -> reason for the rows whose annotation failed."""
        self.candidates  # noqa: B018
        return dict(self._info.get("failures") or {})

    @property
    def label_proba(self):
        """Label distributions of a log-probability answer mode, or None."""
        self.candidates  # noqa: B018
        return self._info.get("label_proba")

    @property
    def is_annotated(self):
        """Whether the candidate sets are computed already."""
        return self._candidates is not None

    @property
    def candidates(self):
        """The sparse 0/1 candidate matrix (computed on first access if deferred)."""
        if self._candidates is None:
            self._compute()
        return self._candidates

    @property
    def single(self):
        """The teacher's top label index per text (-1: none), or None if unknown."""
        if self._candidates is None:
            self.candidates  # noqa: B018 - computes both
        return self._single

    def __len__(self):
        return len(self.texts)

    def __iter__(self):
        return iter(self.texts)

    @property
    def shape(self):
        return (len(self.texts),)

    def __getitem__(self, index):
        if isinstance(index, tuple):
            # scikit-learn's _safe_indexing asks for X[rows, ...] on objects
            # that have a shape.
            if len(index) != 2 or index[1] is not Ellipsis:
                raise IndexError("AnnotatedTexts only supports indexing rows.")
            index = index[0]
        if isinstance(index, (int, np.integer)):
            return self.texts[index]
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if not self.is_annotated:
            return AnnotatedTexts(
                self.texts[index], classes=self.classes, annotate=self._annotate
            )
        return AnnotatedTexts(
            self.texts[index],
            self._candidates[index],
            self.classes,
            None if self._single is None else self._single[index],
        )

    def __repr__(self):
        if not self.is_annotated:
            return (
                f"AnnotatedTexts(n_texts={len(self)}, n_classes={len(self.classes)}, "
                "deferred)"
            )
        size = self._candidates.sum() / max(len(self), 1)
        return (
            f"AnnotatedTexts(n_texts={len(self)}, n_classes={len(self.classes)}, "
            f"mean_set_size={size:.2f})"
        )
