"""Exceptions and warnings raised by skcandist."""

__all__ = [
    "SkcandistError",
    "InvalidInputError",
    "AnnotationError",
    "EndpointError",
    "BatchPendingError",
    "SkcandistWarning",
    "UnknownLabelWarning",
    "EmptyAnswerWarning",
    "CacheWriteWarning",
]


class SkcandistError(Exception):
    """Base class of the errors raised by skcandist."""


class InvalidInputError(SkcandistError, ValueError):
    """The data or parameters handed to an estimator are not usable.

    The message names the bad value and, where there is one, the fix.
    """


class AnnotationError(SkcandistError, RuntimeError):
    """Some texts could not be annotated.

    Attributes
    ----------
    failures : dict
        Maps the index of each failed text to the reason it failed.
    """

    def __init__(self, message, failures=None):
        super().__init__(message)
        self.failures = dict(failures or {})


class EndpointError(SkcandistError, RuntimeError):
    """The LLM endpoint cannot be reached or refuses every request."""


class BatchPendingError(SkcandistError, RuntimeError):
    """Batch API jobs were submitted (or are still running) and not waited for.

    Raised with ``batch_wait=False``: the batch ids are recorded in the answer
    cache, so calling again later with the same texts collects their answers.

    Attributes
    ----------
    batch_ids : list of str
    """

    def __init__(self, message, batch_ids=()):
        super().__init__(message)
        self.batch_ids = list(batch_ids)


class SkcandistWarning(UserWarning):
    """Base class of the warnings issued by skcandist."""


class UnknownLabelWarning(SkcandistWarning):
    """An LLM answer named labels outside the label set; they were dropped."""


class EmptyAnswerWarning(SkcandistWarning):
    """An LLM answer held no valid label; the ``on_empty`` policy was applied."""


class CacheWriteWarning(SkcandistWarning):
    """Answers were received but could not be written to the answer cache.

    They are used in the call that received them; a rerun asks for them again.
    """
