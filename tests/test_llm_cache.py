"""The SQLite answer cache: keys, persistence, threads, processes, no pickle."""

import pickle
import sqlite3
import subprocess
import sys
import threading

from skcandist.llm.cache import AnswerCache, request_key


def test_key_is_canonical_and_sensitive():
    base = {"base_url": "u", "params": {"model": "m", "temperature": 0.3}}
    assert request_key(base) == request_key(
        {"params": {"temperature": 0.3, "model": "m"}, "base_url": "u"}
    )
    changed = {"base_url": "u", "params": {"model": "m", "temperature": 0.0}}
    assert request_key(changed) != request_key(base)


def test_put_get_and_persist(tmp_path):
    path = tmp_path / "sub" / "answers.sqlite"
    cache = AnswerCache(path)
    cache.put("k1", {"content": '["a"]', "top_logprobs": None, "usage": {}})
    cache.put("k1", {"content": '["b"]'})
    assert cache.get("k1") == {"content": '["b"]'}
    assert cache.get("nope") is None
    assert len(cache) == 1
    cache.close()
    again = AnswerCache(path)
    assert again.get_many(["k1", "x"]) == {"k1": {"content": '["b"]'}}
    again.close()


def test_stored_as_json_text_in_wal_mode(tmp_path):
    path = tmp_path / "a.sqlite"
    cache = AnswerCache(path)
    cache.put("k", {"content": "ü"})
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        (text,) = conn.execute("SELECT answer FROM answers").fetchone()
    assert text == '{"content": "ü"}'
    cache.close()


def test_many_threads_write_at_once(tmp_path):
    cache = AnswerCache(tmp_path / "a.sqlite")

    def write(start):
        for i in range(start, start + 50):
            cache.put(f"k{i}", {"i": i})

    threads = [threading.Thread(target=write, args=(s,)) for s in range(0, 400, 50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 400
    assert len(cache.get_many([f"k{i}" for i in range(600)])) == 400
    cache.close()


def test_another_process_sees_committed_answers(tmp_path):
    path = tmp_path / "a.sqlite"
    code = (
        "from skcandist.llm.cache import AnswerCache;"
        f"c = AnswerCache({str(path)!r}); c.put('k', {{'content': 'x'}})"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert AnswerCache(path).get("k") == {"content": "x"}


def test_pickles_as_its_path(tmp_path):
    cache = AnswerCache(tmp_path / "a.sqlite")
    cache.put("k", {"v": 1})
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.path == cache.path and copy.get("k") == {"v": 1}
