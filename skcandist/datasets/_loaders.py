"""Loaders of the labelled CSV data sets."""

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..exceptions import InvalidInputError

__all__ = ["DATASETS", "Dataset", "get_data_home", "load_dataset", "load_sms_spam"]

_BUNDLED = Path(__file__).parent / "data"

#: The data sets that :func:`load_dataset` knows, with their splits.
DATASETS = {
    "trec": ("train", "test"),
    "banking77": ("train", "test"),
    "sms_spam": ("train", "test"),
    "sst2": ("train", "dev", "test"),
}

# Descriptions shown to an LLM where the data set ships none of its own.
_DEFAULT_DESCRIPTIONS = {
    "sst2": {
        "negative": "the sentence expresses a negative opinion of the film",
        "positive": "the sentence expresses a positive opinion of the film",
    },
}


@dataclass
class Dataset:
    """Texts with gold labels.

    Attributes
    ----------
    texts : list of str
    labels : ndarray of str, shape (n_samples,)
        Gold label names.
    classes : list of str
        The sorted label names.
    descriptions : dict
        Label name -> one-line description (label names themselves where no
        description is known).
    name : str
    split : str
    """

    texts: list
    labels: np.ndarray
    classes: list
    descriptions: dict = field(default_factory=dict)
    name: str = ""
    split: str = ""

    def __len__(self):
        return len(self.texts)

    def subset(self, n, random_state=0):
        """A random subset of ``n`` samples (all of them if ``n`` is larger)."""
        if n is None or n >= len(self):
            return self
        rng = np.random.RandomState(random_state)
        idx = np.sort(rng.choice(len(self), size=n, replace=False))
        return Dataset(
            [self.texts[i] for i in idx],
            self.labels[idx],
            self.classes,
            self.descriptions,
            self.name,
            self.split,
        )


def get_data_home(data_home=None):
    """The folder holding the shared data sets.

    ``data_home`` if given, else the environment variable ``SKCANDIST_DATA``,
    else ``../shared/data`` beside the checkout of this package.
    """
    if data_home is not None:
        return Path(data_home)
    if os.environ.get("SKCANDIST_DATA"):
        return Path(os.environ["SKCANDIST_DATA"])
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _read_csv(path, text_column="text", label_column="label"):
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path} is not UTF-8 text: {exc}.") from exc
    if not rows:
        raise InvalidInputError(f"{path} holds no rows.")
    for column in (text_column, label_column):
        if column not in rows[0]:
            raise InvalidInputError(
                f"{path} has no column {column!r}; columns: {list(rows[0])}."
            )
    texts = [row[text_column] for row in rows]
    labels = np.array([row[label_column] for row in rows], dtype=object)
    return texts, labels


def _make(texts, labels, descriptions, name, split):
    classes = sorted(set(labels.tolist()) | set(descriptions))
    full = {c: descriptions.get(c, c) for c in classes}
    return Dataset(texts, labels, classes, full, name, split)


def load_sms_spam(split="train"):
    """The SMS Spam Collection bundled with the package (CC BY 4.0).

    Parameters
    ----------
    split : {"train", "test"}, default="train"
        4,459 training and 1,115 test messages (a fixed 80/20 split, seed 0).

    Returns
    -------
    Dataset

    Examples
    --------
    >>> data = load_sms_spam("test")
    >>> len(data), data.classes
    (1115, ['ham', 'spam'])
    """
    if split not in DATASETS["sms_spam"]:
        raise InvalidInputError(f"split must be 'train' or 'test', not {split!r}.")
    texts, labels = _read_csv(_BUNDLED / f"sms_spam_{split}.csv")
    descriptions = json.loads((_BUNDLED / "sms_spam_labels.json").read_text("utf-8"))
    return _make(texts, labels, descriptions, "sms_spam", split)


def load_dataset(
    name, split="train", *, data_home=None, n_samples=None, random_state=0
):
    """Load one of the shared labelled data sets.

    Parameters
    ----------
    name : {"trec", "banking77", "sms_spam", "sst2"}
    split : str, default="train"
        One of the splits listed in :data:`DATASETS` for that set.
    data_home : str or Path, default=None
        Folder holding one sub-folder per data set; see :func:`get_data_home`.
    n_samples : int, default=None
        Keep a random subset of this size (fixed by ``random_state``).
    random_state : int, default=0

    Returns
    -------
    Dataset

    Raises
    ------
    InvalidInputError
        For an unknown name or split.
    FileNotFoundError
        Where the data folder is absent; the message says how to point to it.
    """
    if name not in DATASETS:
        raise InvalidInputError(
            f"unknown data set {name!r}; choose one of {sorted(DATASETS)}."
        )
    if split not in DATASETS[name]:
        raise InvalidInputError(
            f"{name} has no split {split!r}; choose one of {DATASETS[name]}."
        )
    home = get_data_home(data_home)
    path = home / name / f"{split}.csv"
    if not path.exists():
        if name == "sms_spam":
            return load_sms_spam(split).subset(n_samples, random_state)
        raise FileNotFoundError(
            f"{path} not found: pass data_home= or set SKCANDIST_DATA to the folder "
            f"that holds {name}/{split}.csv."
        )
    texts, labels = _read_csv(path)
    descriptions = dict(_DEFAULT_DESCRIPTIONS.get(name, {}))
    labels_file = home / name / "labels.json"
    if labels_file.exists():
        descriptions.update(json.loads(labels_file.read_text("utf-8")))
    return _make(texts, labels, descriptions, name, split).subset(
        n_samples, random_state
    )
