"""Input checks shared by the estimators and the encoders."""

import numpy as np

from ._annotated import AnnotatedTexts
from .exceptions import InvalidInputError

__all__ = ["check_texts"]


def check_texts(X, name="X", *, allow_empty=False):
    """Return ``X`` as a list of str, or raise naming the bad entries.

    Parameters
    ----------
    X : sequence of str or AnnotatedTexts
    name : str, default="X"
        How the error messages call ``X``.
    allow_empty : bool, default=False
        Whether an empty sequence is acceptable.

    Returns
    -------
    list of str

    Examples
    --------
    >>> check_texts(("a", "b"))
    ['a', 'b']
    >>> check_texts("a single string")
    Traceback (most recent call last):
    ...
    skcandist.exceptions.InvalidInputError: X must be a list of texts, not a single string; wrap it: ['a single string'].
    """  # noqa: E501
    import scipy.sparse as sp

    if isinstance(X, AnnotatedTexts):
        X = X.texts
    if isinstance(X, (str, bytes)):
        shown = X if len(X) <= 40 else X[:37] + "..."
        raise InvalidInputError(
            f"{name} must be a list of texts, not a single string; wrap it: "
            f"[{shown!r}]."
        )
    if sp.issparse(X):
        raise InvalidInputError(f"{name} must be a sequence of texts, not a matrix.")
    if hasattr(X, "ndim") and getattr(X, "ndim", 1) != 1:
        raise InvalidInputError(
            f"{name} must be a 1-D sequence of texts; got shape {X.shape}."
        )
    try:
        texts = list(X)
    except TypeError as exc:
        raise InvalidInputError(
            f"{name} must be a list of texts; got {type(X).__name__}."
        ) from exc
    if not texts and not allow_empty:
        raise InvalidInputError(f"{name} holds no texts.")
    missing, wrong = [], []
    for i, text in enumerate(texts):
        if text is None or (isinstance(text, float) and np.isnan(text)):
            missing.append(i)
        elif not isinstance(text, str):
            wrong.append(i)
    if missing:
        raise InvalidInputError(
            f"{name} holds missing texts (None or NaN) at items "
            f"{missing[:10]}{' ...' if len(missing) > 10 else ''}; drop or fill them."
        )
    if wrong:
        kinds = sorted({type(texts[i]).__name__ for i in wrong})
        raise InvalidInputError(
            f"{name} holds non-string entries ({', '.join(kinds)}) at items "
            f"{wrong[:10]}{' ...' if len(wrong) > 10 else ''}; texts must be strings."
        )
    return texts
