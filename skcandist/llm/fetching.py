"""Fetching answers: the client and cache lifecycle, concurrency, stopping.

:class:`ClientHolder` keeps one ``openai`` client per endpoint setting and
builds a new one when ``base_url``, ``timeout`` or ``client_factory`` change,
so that a ``set_params`` is obeyed on the next call. :class:`CacheHolder` does
the same for the answer cache's file. :func:`fetch` sends what the cache lacks:

- answers are checked (:func:`skcandist.llm.decoding.check_usable`) before they
  count: an unusable one is a failed attempt, retried and never cached;
- every usable answer is written to the cache by the worker that received it,
  the moment it arrives, so that an interrupt or a crash loses none; a cache
  that cannot be written is reported (the answers are still returned);
- a failure that every request would meet (401, 403, 404, an exhausted quota)
  stops the run after the requests already in flight, with one
  :class:`~skcandist.exceptions.EndpointError` naming the status and the
  endpoint;
- Ctrl-C ends the run within seconds: waits are cut short, requests in flight
  get a short grace period, and the interrupt goes on;
- any other exception inside a worker fails that text only, with its reason.

:func:`first_tokens` asks a server's tokenizer route (vLLM's ``/tokenize``,
llama.cpp's ``/extras/tokenize``) for the first token of each label name, for
the log-probability answer modes.
"""

import json
import random
import sqlite3
import threading
import urllib.error
import urllib.request

from ..exceptions import EndpointError
from . import requests as llm_requests
from .building import estimated_tokens
from .cache import AnswerCache

__all__ = ["ClientHolder", "CacheHolder", "FetchResult", "fetch", "first_tokens"]

_HINTS = {
    401: "check the API key (OPENAI_API_KEY or client_factory)",
    403: "the key has no access to this model or endpoint",
    404: "check the model name and base_url",
}


class ClientHolder:
    """One client per ``(base_url, timeout, client_factory)``, thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._spec = None
        self._client = None

    def get(self, base_url, timeout, client_factory):
        """The client for these settings (built on first use or after a change)."""
        spec = (base_url, timeout, client_factory)
        with self._lock:
            if self._client is None or self._spec != spec:
                self._client = llm_requests.make_client(
                    base_url, timeout, client_factory
                )
                self._spec = spec
            return self._client

    def discard(self, client):
        """Close ``client`` if it is ours (not a factory's) and forget it."""
        with self._lock:
            if self._client is client:
                factory = self._spec[2] if self._spec else None
                self._client, self._spec = None, None
                if factory is None:
                    try:
                        client.close()
                    except Exception:  # noqa: BLE001 - closing is best effort
                        pass


class CacheHolder:
    """The open :class:`AnswerCache` of a path (reopened when the path changes)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._store = None

    def get(self, path):
        """The cache at ``path``, or None for no cache."""
        if path is None:
            return None
        with self._lock:
            if self._store is None or self._store.path != str(path):
                self._store = AnswerCache(path)
            return self._store


class FetchResult:
    """Answers by cache key, failure reasons by key, and cache-write errors."""

    def __init__(self, answers, failures, write_errors):
        self.answers = answers
        self.failures = failures
        self.write_errors = write_errors


def fetch(
    requests_by_key,
    *,
    get_client,
    store,
    check,
    usage,
    identity,
    n_jobs=4,
    max_retries=5,
    backoff=0.5,
    random_state=None,
    verbose=0,
    discard_client=None,
    limiter=None,
):
    """Answers for ``requests_by_key``: from ``store``, else from the endpoint.

    Parameters
    ----------
    requests_by_key : dict
        Cache key -> request (see :mod:`skcandist.llm.building`).
    get_client : callable
        Returns the ``openai`` client (called once, when something is missing).
    store : AnswerCache or None
    check : callable
        ``check(record)`` raises :class:`~skcandist.llm.requests.
        UnusableAnswerError` for an answer that is not one.
    usage : skcandist.llm.requests.Usage
        Counters to add to.
    identity : str
        The endpoint's name, for messages.
    n_jobs, max_retries, backoff, random_state, verbose
        As on :class:`~skcandist.CandidateAnnotator`.
    discard_client : callable, default=None
        ``discard_client(client)`` on an interrupt, to close the connections
        of requests still in flight (e.g. :meth:`ClientHolder.discard`).
    limiter : skcandist.llm.requests.RateLimiter, default=None
        Paces the online requests (shared by all workers).

    Returns
    -------
    FetchResult

    Raises
    ------
    EndpointError
        When the endpoint refuses in a way no request can get past; every
        answer received before is in ``store``.
    """
    unique = dict(requests_by_key)
    answers = store.get_many(unique) if store is not None else {}
    usage.add(cache_hits=len(answers))
    missing = [key for key in unique if key not in answers]
    failures = {}
    write_errors = []
    if not missing:
        return FetchResult(answers, failures, write_errors)
    client = get_client()
    rng = random.Random(random_state)
    stop = threading.Event()

    def attempt(request):
        if limiter is not None:
            limiter.acquire(estimated_tokens(request), stop=stop)
        record = llm_requests.send(client, request)
        check(record)
        return record

    def worker(key):
        request = unique[key]
        try:
            record, retries = llm_requests.call_with_retries(
                lambda: attempt(request),
                max_retries,
                backoff=backoff,
                rng=rng,
                on_attempt=lambda: usage.add(requests=1),
                stop=stop,
            )
        except llm_requests.RequestFailed as exc:
            # The retries spent on a request that failed count too.
            usage.add(retries=max(0, exc.attempts - 1))
            raise
        except llm_requests.Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - one text fails, not the run
            raise llm_requests.RequestFailed(
                f"unexpected {type(exc).__name__}: {llm_requests._short(exc)}", 1
            ) from exc
        usage.add(retries=retries)
        if store is not None:
            # Stored by the worker, so that an answer that arrives while the
            # caller is being interrupted is kept too.
            try:
                store.put(key, record)
            except (sqlite3.Error, OSError) as exc:
                write_errors.append(f"{type(exc).__name__}: {exc}")
        return record

    def on_done(key, record, error):
        if error is not None:
            failures[key] = error.reason
            return
        answers[key] = record
        usage.add(**record["usage"])

    from tqdm.auto import tqdm

    try:
        with tqdm(
            total=len(missing),
            disable=verbose == 0,
            desc="annotating",
            unit="request",
            leave=False,
        ) as bar:
            llm_requests.run_concurrently(
                missing, worker, on_done, n_jobs=n_jobs, progress=bar, stop=stop
            )
    except llm_requests.FatalRequestError as exc:
        sent = usage.as_dict()["requests"]
        status = next((s for s in _HINTS if f"HTTP {s}" in exc.reason), None)
        hint = _HINTS.get(status, "check the account's quota and billing")
        raise EndpointError(
            f"{identity} refused the request: {exc.reason}. The run stopped "
            f"(every other request would fail the same way) after {sent} "
            f"request(s) in all; {len(answers)} answer(s) were received"
            f"{' and cached' if store is not None else ''}. Fix: {hint}."
        ) from exc
    except BaseException:
        # Interrupted: abort the requests still in flight.
        if discard_client is not None:
            discard_client(client)
        raise
    return FetchResult(answers, failures, write_errors)


def _post_json(url, body, timeout, api_key=None):
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers=headers
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def _root(base_url):
    url = str(base_url).rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def first_tokens(base_url, model, names, *, timeout=10.0, api_key=None):
    """The first token piece(s) of each label name, from the server's tokenizer.

    Tries vLLM's ``POST /tokenize`` (``return_token_strs``), then llama.cpp's
    ``POST /extras/tokenize`` and ``/extras/detokenize``. Each name is
    tokenized with and without a leading space (a completion continues after a
    space; a chat answer starts without one).

    Parameters
    ----------
    base_url : str
        The endpoint (its ``/v1`` suffix is dropped for these routes).
    model : str
    names : list of str
    timeout : float, default=10.0
    api_key : str, default=None

    Returns
    -------
    list of set of str, or None
        None when the server has neither route.
    """
    if not base_url:
        return None
    root = _root(base_url)
    variants = [[" " + name, name] for name in names]

    def vllm(text):
        out = _post_json(
            f"{root}/tokenize",
            {
                "model": model,
                "prompt": text,
                "add_special_tokens": False,
                "return_token_strs": True,
            },
            timeout,
            api_key,
        )
        pieces = out.get("token_strs")
        if not pieces:
            raise KeyError("token_strs")
        return pieces[0]

    bos = []

    def llama(text):
        ids = _post_json(f"{root}/extras/tokenize", {"input": text}, timeout)["tokens"]
        if not bos:
            empty = _post_json(f"{root}/extras/tokenize", {"input": ""}, timeout)
            bos.append(empty["tokens"][0] if empty["tokens"] else None)
        if ids and ids[0] == bos[0]:
            ids = ids[1:]
        body = {"tokens": ids[:1]}
        return _post_json(f"{root}/extras/detokenize", body, timeout)["text"]

    for route in (vllm, llama):
        try:
            return [{route(text) for text in pair} for pair in variants]
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError):
            continue
    return None
