"""Labelled text-classification data sets.

- :func:`load_sms_spam` reads the SMS Spam Collection bundled with the package
  (CC BY 4.0; see ``data/LICENSE_sms_spam.txt``), so examples run on a fresh clone.
- :func:`load_dataset` reads the sets of the project's shared data folder (TREC,
  Banking77, SMS spam, SST-2) from ``data_home``, the environment variable
  ``SKCANDIST_DATA``, or ``../shared/data`` beside the checkout, in that order.

Each loader returns a :class:`Dataset` with ``texts``, ``labels`` (names),
``classes`` and ``descriptions`` (label name -> one-line description).
"""

from ._loaders import DATASETS, Dataset, get_data_home, load_dataset, load_sms_spam

__all__ = ["DATASETS", "Dataset", "get_data_home", "load_dataset", "load_sms_spam"]
