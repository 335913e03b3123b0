"""Shared fixtures: a local OpenAI-compatible endpoint and the shared data."""

import os
from pathlib import Path

import pytest

from skcandist.testing import FakeLLMServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path_factory, monkeypatch):
    """Each test gets its own default cache folder (never the user's).

    The annotator caches answers by default; a shared folder would let one
    test's answers serve another's requests.
    """
    folder = tmp_path_factory.mktemp("skcandist-cache")
    monkeypatch.setenv("SKCANDIST_CACHE_DIR", str(folder))
    yield folder


@pytest.fixture
def llm_server():
    """Start a FakeLLMServer on 127.0.0.1 for one test, and stop it after."""
    server = FakeLLMServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def shared_data():
    """The folder of ../shared/data, or a skip saying it is absent."""
    root = Path(
        os.environ.get(
            "SKCANDIST_DATA",
            Path(__file__).resolve().parents[1] / ".." / "shared" / "data",
        )
    )
    if not (root / "trec" / "train.csv").exists():
        pytest.skip(f"shared data not found at {root} (set SKCANDIST_DATA)")
    return root
