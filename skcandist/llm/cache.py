"""A persistent answer cache in SQLite.

Each answer is stored as JSON text (no pickle) under a key that is the SHA-256
of everything that changes the answer: endpoint URL, model, endpoint kind, the
messages or prompt, temperature, answer mode, response format and log-prob
settings (see :func:`request_key`). The API key is never part of it.

The database runs in WAL mode and commits after every answer, so that a run
killed midway keeps every answer it received and a rerun resumes from there.
One :class:`AnswerCache` may be shared by threads; several processes may open
the same file.
"""

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

__all__ = ["AnswerCache", "request_key", "default_cache_dir", "default_cache_path"]

ANSWERS_FILE = "answers.sqlite"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS answers ("
    "key TEXT PRIMARY KEY, answer TEXT NOT NULL, created REAL NOT NULL)"
)
# Batch API jobs submitted and not yet collected: a rerun resumes them.
_BATCH_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS batches ("
    "id TEXT PRIMARY KEY, identity TEXT NOT NULL, keys TEXT NOT NULL, "
    "created REAL NOT NULL, done INTEGER NOT NULL DEFAULT 0)"
)


def default_cache_dir():
    """The folder where skcandist keeps answers, models and built files.

    Returns
    -------
    pathlib.Path
        ``$SKCANDIST_CACHE_DIR`` if set (``$SKCANDIST_CACHE``, its older name,
        is read too), else ``$XDG_CACHE_HOME/skcandist``, else
        ``~/.cache/skcandist``. The folder is not created.

    Examples
    --------
    >>> import os
    >>> default_cache_dir().name == "skcandist" or any(
    ...     v in os.environ for v in ("SKCANDIST_CACHE_DIR", "SKCANDIST_CACHE"))
    True
    """
    for name in ("SKCANDIST_CACHE_DIR", "SKCANDIST_CACHE"):
        env = os.environ.get(name)
        if env:
            return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "skcandist"


def default_cache_path():
    """The answer cache used by default: ``default_cache_dir() / "answers.sqlite"``."""
    return default_cache_dir() / ANSWERS_FILE


def request_key(payload):
    """The cache key of a request: SHA-256 of its canonical JSON.

    Parameters
    ----------
    payload : dict
        JSON-serialisable description of the request (never the API key).

    Returns
    -------
    str
        64 hexadecimal characters.

    Examples
    --------
    >>> request_key({"model": "m", "x": 1}) == request_key({"x": 1, "model": "m"})
    True
    >>> len(request_key({"model": "m"}))
    64
    """
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class AnswerCache:
    """SQLite store of LLM answers, safe for threads and processes.

    Parameters
    ----------
    path : str or path-like
        The database file; its folder is created if needed.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     cache = AnswerCache(os.path.join(tmp, "answers.sqlite"))
    ...     cache.put("k", {"content": '["spam"]'})
    ...     found = cache.get_many(["k", "other"])
    ...     cache.close()
    >>> found
    {'k': {'content': '["spam"]'}}
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
            self._conn.execute(_BATCH_SCHEMA)
            self._conn.commit()

    def get(self, key):
        """The stored answer of ``key``, or None."""
        return self.get_many([key]).get(key)

    def get_many(self, keys):
        """A dict key -> answer for the keys that are stored."""
        keys = list(dict.fromkeys(keys))
        found = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, answer FROM answers WHERE key IN ({marks})", chunk
                ).fetchall()
                for key, answer in rows:
                    found[key] = json.loads(answer)
        return found

    def put(self, key, answer):
        """Store one answer (a JSON-serialisable dict) and commit at once."""
        text = json.dumps(answer, ensure_ascii=False)
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO answers (key, answer, created) "
                "VALUES (?, ?, ?)",
                (key, text, time.time()),
            )
            self._conn.commit()

    # -- Batch API jobs -----------------------------------------------------------
    def record_batch(self, batch_id, identity, keys):
        """Remember a submitted batch (its id and the cache keys it answers),
        committed at once: a run killed while it waits can resume it."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO batches (id, identity, keys, created, done) "
                "VALUES (?, ?, ?, ?, 0)",
                (str(batch_id), str(identity), json.dumps(list(keys)), time.time()),
            )
            self._conn.commit()

    def pending_batches(self, identity):
        """``[(batch id, [keys])]`` submitted for ``identity`` and not collected,
        oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, keys FROM batches WHERE identity = ? AND done = 0 "
                "ORDER BY created",
                (str(identity),),
            ).fetchall()
        return [(batch_id, json.loads(keys)) for batch_id, keys in rows]

    def finish_batch(self, batch_id):
        """Mark a batch collected (its answers are stored or will be retried)."""
        with self._lock:
            self._conn.execute(
                "UPDATE batches SET done = 1 WHERE id = ?", (str(batch_id),)
            )
            self._conn.commit()

    def __len__(self):
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self):
        """Close the database connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])
