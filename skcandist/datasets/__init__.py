"""Labelled text-classification data sets.

- :func:`load_sms_spam` reads the SMS Spam Collection bundled with the package
  (CC BY 4.0; see ``data/LICENSE_sms_spam.txt``), so examples run on a fresh clone.
- :func:`load_dataset` reads the sets of the project's shared data folder (TREC,
  Banking77, SMS spam, SST-2) from ``data_home``, the environment variable
  ``SKCANDIST_DATA``, or ``../shared/data`` beside the checkout, in that order.

:func:`simulate_candidates` plays an LLM teacher from gold labels, with errors
that fall on the plausible labels of each text, calibrated to the candidate-set
statistics that the CanDist paper reports (``PAPER_TEACHERS``), with errors
placed by TF-IDF or by sentence-embedding features (``TEACHER_ERRORS``).

Each loader returns a :class:`Dataset` with ``texts``, ``labels`` (names),
``classes`` and ``descriptions`` (label name -> one-line description).
"""

from ._loaders import DATASETS, Dataset, get_data_home, load_dataset, load_sms_spam
from ._simulate import (
    OUR_TEACHERS,
    PAPER_TEACHERS,
    TEACHER_ERRORS,
    TEACHER_PROFILES,
    WEAK_TEACHERS,
    simulate_candidates,
)

__all__ = [
    "DATASETS",
    "Dataset",
    "get_data_home",
    "load_dataset",
    "load_sms_spam",
    "simulate_candidates",
    "PAPER_TEACHERS",
    "OUR_TEACHERS",
    "TEACHER_PROFILES",
    "WEAK_TEACHERS",
    "TEACHER_ERRORS",
]
