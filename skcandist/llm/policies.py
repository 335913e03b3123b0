"""What an empty answer and a failed text become.

- An *empty* answer is a valid answer that names no label of the set.
  ``on_empty``: ``"all"`` gives it every label (no pruning, the safe choice for
  a partial-label student), ``"abstain"`` an empty row (the text abstains; the
  student skips it), ``"error"`` turns it into a failure of that text.
- A *failed* text got no usable answer after the retries (or its answer was
  empty under ``on_empty="error"``). ``on_failure``: ``"raise"`` raises one
  :class:`~skcandist.exceptions.AnnotationError` listing them, after every
  other answer was received and cached; ``"all"`` / ``"abstain"`` fill their
  rows as above. The failures are reported in every case.

Neither policy ever guesses a label.
"""

import warnings

from ..exceptions import AnnotationError, EmptyAnswerWarning

__all__ = ["ON_EMPTY", "ON_FAILURE", "apply_empty", "apply_failures"]

ON_EMPTY = ("all", "abstain", "error")
ON_FAILURE = ("raise", "all", "abstain")


def apply_empty(rows, candidates, failures, on_empty, stacklevel=4):
    """Apply ``on_empty`` to the rows whose answer named no label.

    Parameters
    ----------
    rows : list of int
    candidates : ndarray of shape (n, C)
        Filled in place.
    failures : dict
        Row -> reason; ``on_empty="error"`` adds the rows here.
    on_empty : {"all", "abstain", "error"}
    """
    if not rows:
        return
    if on_empty == "error":
        for i in rows:
            failures[i] = "the answer named no valid label"
        return
    candidates[rows] = 1 if on_empty == "all" else 0
    what = "every label" if on_empty == "all" else "an empty row"
    warnings.warn(
        f"{len(rows)} answer(s) named no valid label; on_empty={on_empty!r} gave "
        f"them {what}.",
        EmptyAnswerWarning,
        stacklevel=stacklevel,
    )


def apply_failures(candidates, single, failures, on_failure, *, cached, hint=""):
    """Apply ``on_failure`` to the failed rows (``failures``: row -> reason).

    Raises
    ------
    AnnotationError
        With ``on_failure="raise"`` and at least one failure.
    """
    if not failures:
        return
    rows = sorted(failures)
    if on_failure == "raise":
        shown = {i: failures[i] for i in rows[:5]}
        raise AnnotationError(
            f"{len(failures)} of {len(candidates)} text(s) could not be annotated, "
            f"e.g. {shown}. Every other answer was kept"
            f"{' in the cache' if cached else ''}; rerun to retry them, or set "
            f"on_failure='all' or 'abstain'.{hint}",
            failures=dict(sorted(failures.items())),
        )
    candidates[rows] = 1 if on_failure == "all" else 0
    single[rows] = -1
