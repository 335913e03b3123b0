"""From answer records to candidate sets, and what makes an answer usable.

- :func:`check_usable` decides, before anything is cached, whether a 200
  answer is an answer at all: an empty reply, a refusal, a reply cut off by
  the token limit or the content filter, or (in the JSON mode) a reply that is
  not JSON is a failed attempt (:class:`~skcandist.llm.requests.
  UnusableAnswerError`), retried like a transient error and never cached. A
  valid answer that names no label *is* an answer: the empty policy decides
  what it becomes.
- :class:`AnswerDecoder` turns the records of a batch of texts into the
  candidate matrix, the teacher's top label and, in the log-probability
  modes, the (calibrated) label distributions.
"""

import json
from dataclasses import dataclass, field

import numpy as np

from . import parsing
from .building import LOGPROB_MODES
from .requests import UnusableAnswerError, _short

__all__ = ["check_usable", "Decoded", "AnswerDecoder"]


def check_usable(record, answer):
    """Raise :class:`UnusableAnswerError` if ``record`` is not an answer.

    Parameters
    ----------
    record : dict
        What :func:`skcandist.llm.requests.send` returned.
    answer : {"json", "text", "logprobs", "chat_logprobs"}
        The answer mode: a one-token reply stops on ``"length"`` by design in
        the log-probability modes, and its text may be blank.

    Examples
    --------
    >>> check_usable({"content": '["spam"]', "finish_reason": "stop"}, "json")
    >>> check_usable({"content": '["sp', "finish_reason": "length"}, "json")
    Traceback (most recent call last):
    ...
    skcandist.llm.requests.UnusableAnswerError: cut off by the token limit (finish_reason 'length')
    """  # noqa: E501
    finish = record.get("finish_reason")
    if record.get("refusal"):
        raise UnusableAnswerError(f"refused: {_short(record['refusal'])}")
    if finish == "content_filter":
        raise UnusableAnswerError("stopped by the content filter")
    if answer in LOGPROB_MODES:
        return
    if finish == "length":
        raise UnusableAnswerError("cut off by the token limit (finish_reason 'length')")
    content = (record.get("content") or "").strip()
    if not content:
        raise UnusableAnswerError("empty reply")
    if answer == "json":
        try:
            json.loads(content)
        except ValueError:
            raise UnusableAnswerError(
                f"not JSON in the JSON mode: {_short(content, 80)!r}"
            ) from None


@dataclass
class Decoded:
    """Candidate sets of a batch of texts (before the empty/failure policies).

    Attributes
    ----------
    candidates : ndarray of shape (n, C), int8
    single : ndarray of shape (n,)
        The teacher's top label (-1: none).
    proba : ndarray of shape (n, C) or None
        The label distributions of a log-probability mode (NaN rows: no answer).
    empty : list of int
        Rows whose answer named no valid label.
    unknown : list of str
        Answer items that named no label (dropped).
    """

    candidates: np.ndarray
    single: np.ndarray
    proba: object = None
    empty: list = field(default_factory=list)
    unknown: list = field(default_factory=list)


class AnswerDecoder:
    """Decode answer records into candidate sets.

    Parameters
    ----------
    labels : dict
        Label name -> description.
    answer : {"json", "text", "logprobs", "chat_logprobs"}
    first_only : bool, default=False
        Keep only the first label an answer names (the "single" prompt).
    proba_mass, proba_ratio : float
        The candidate rule of the log-probability modes
        (:func:`skcandist.llm.parsing.candidates_from_proba`).
    first_tokens : list of set of str, default=None
        Log-probability modes: the first token(s) of each label name; None
        falls back on the prefix rule of
        :func:`skcandist.llm.parsing.label_distribution`.
    """

    def __init__(
        self,
        labels,
        answer,
        *,
        first_only=False,
        proba_mass=0.9,
        proba_ratio=None,
        first_tokens=None,
    ):
        self.names = list(labels)
        self.matcher = parsing.LabelMatcher(labels)
        self.answer = answer
        self.first_only = first_only
        self.proba_mass = proba_mass
        self.proba_ratio = proba_ratio
        self.first_tokens = first_tokens

    @property
    def logprob_mode(self):
        return self.answer in LOGPROB_MODES

    def distribution(self, record):
        """The label distribution of one log-probability answer."""
        return parsing.label_distribution(
            record.get("top_logprobs") or {},
            self.names,
            first_tokens=self.first_tokens,
        )

    def distributions(self, records):
        """Stacked distributions; a NaN row where ``records[i]`` is None."""
        proba = np.full((len(records), len(self.names)), np.nan)
        for i, record in enumerate(records):
            if record is not None:
                proba[i] = self.distribution(record)
        return proba

    def decode(self, records, reference=None):
        """Decode one record per text (None: the text has no answer).

        Parameters
        ----------
        records : list of dict or None
        reference : ndarray of shape (C,), default=None
            Log-probability modes: the calibration reference (the content-free
            input's distribution, or the one estimated at fit); None: none.

        Returns
        -------
        Decoded
        """
        n, n_classes = len(records), len(self.names)
        candidates = np.zeros((n, n_classes), dtype=np.int8)
        single = np.full(n, -1, dtype=int)
        out = Decoded(candidates, single)
        if self.logprob_mode:
            proba = self.distributions(records)
            if reference is not None and np.max(reference) > 0:
                ok = ~np.isnan(proba).any(axis=1)
                proba[ok] = parsing.calibrate(proba[ok], reference)
            ok = ~np.isnan(proba).any(axis=1)
            candidates[ok] = parsing.candidates_from_proba(
                proba[ok], self.proba_mass, self.proba_ratio
            )
            for i in np.flatnonzero(ok):
                if proba[i].max() > 0:
                    single[i] = int(np.argmax(proba[i]))
                else:
                    out.empty.append(int(i))
            out.proba = proba
            return out
        for i, record in enumerate(records):
            if record is None:
                continue
            parsed = parsing.parse_answer(record.get("content"), self.matcher)
            out.unknown.extend(parsed.unknown)
            indices = parsed.indices[:1] if self.first_only else parsed.indices
            if indices:
                candidates[i, indices] = 1
                single[i] = indices[0]
            else:
                out.empty.append(i)
        return out
