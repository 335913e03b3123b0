"""Encoder loading, mean pooling and the embedding cache."""

import numpy as np
import pytest

from skcandist import encoders
from skcandist.exceptions import InvalidInputError

TEXTS = ["How far is the moon ?", "Who wrote Hamlet ?", "What is a virus ?"]


def test_resolve_encoder_default_is_the_offline_minilm():
    path = encoders.resolve_encoder(None)
    assert path == encoders.resolve_encoder("all-MiniLM-L6-v2")
    assert encoders.resolve_encoder("some/model") == "some/model"
    with pytest.raises(InvalidInputError, match="encoder"):
        encoders.resolve_encoder(3)


def test_encode_shape_norm_and_order():
    emb = encoders.encode(TEXTS)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    again = encoders.encode(TEXTS[::-1])
    assert np.allclose(again, emb[::-1], atol=1e-6)


def test_encode_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(encoders.resolve_encoder(None), device="cpu")
    reference = model.encode(TEXTS, normalize_embeddings=True)
    assert np.allclose(encoders.encode(TEXTS), reference, atol=1e-4)


def test_memory_cache_avoids_reencoding(monkeypatch):
    encoders.encode(TEXTS)
    calls = []
    original = encoders._encode_uncached

    def counting(texts, *args):
        calls.append(list(texts))
        return original(texts, *args)

    monkeypatch.setattr(encoders, "_encode_uncached", counting)
    encoders.encode(TEXTS + ["A brand new question ?"])
    assert calls == [["A brand new question ?"]]


def test_cache_key_depends_on_max_length(monkeypatch):
    calls = []
    original = encoders._encode_uncached

    def counting(texts, *args):
        calls.append(len(texts))
        return original(texts, *args)

    monkeypatch.setattr(encoders, "_encode_uncached", counting)
    encoders.encode(TEXTS[:1], max_length=4)
    encoders.encode(TEXTS[:1], max_length=4)
    encoders.encode(TEXTS[:1], max_length=5)
    assert calls == [1, 1]


def test_disk_cache_survives_clearing_memory(tmp_path, monkeypatch):
    first = encoders.encode(TEXTS, cache_dir=tmp_path)
    assert (tmp_path / "embeddings.sqlite").exists()
    encoders.clear_memory_cache()

    def fail(*args, **kwargs):
        raise AssertionError("should read the disk cache")

    monkeypatch.setattr(encoders, "_encode_uncached", fail)
    assert np.array_equal(encoders.encode(TEXTS, cache_dir=tmp_path), first)


def test_disk_cache_holds_no_pickle(tmp_path):
    import sqlite3

    encoders.encode(TEXTS[:1], cache_dir=tmp_path)
    with sqlite3.connect(tmp_path / "embeddings.sqlite") as db:
        (blob,) = db.execute("SELECT vector FROM embeddings").fetchone()
    assert len(blob) == 384 * 4


def test_encode_rejects_non_text():
    with pytest.raises(InvalidInputError, match="strings"):
        encoders.encode(["ok", 3])


def test_mean_pool_ignores_padding():
    torch = pytest.importorskip("torch")
    states = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [100.0, 100.0]]])
    pooled = encoders.mean_pool(states, torch.tensor([[1, 1, 0]]), normalize=False)
    assert torch.allclose(pooled, torch.tensor([[1.0, 1.0]]))
