"""Sending requests: the client, retries with backoff, concurrency, usage.

- :func:`make_client` builds an ``openai.OpenAI`` client lazily, with the
  client's own retries off (``max_retries=0``): retries are ours.
- :func:`send` performs one request and returns a plain JSON-able record
  ``{"content", "top_logprobs", "usage"}`` (what the cache stores).
- :func:`call_with_retries` retries only what can succeed on a second try:
  HTTP 429 (honouring ``Retry-After``), 5xx, timeouts, connection errors,
  malformed bodies (a 200 that is not JSON, or that has no choices) and
  unusable answers (:class:`UnusableAnswerError`). A 400 or an unknown API
  error fails that request at once; what no request can get past (401, 403,
  404, an exhausted quota) raises :class:`FatalRequestError`, on which the
  caller stops the whole run. Waits are cut short by a ``stop`` event.
- :func:`run_concurrently` keeps ``n_jobs`` requests in flight and hands each
  finished result to a callback in the calling thread, as it arrives; on an
  interrupt or a fatal error it stops the workers without waiting out their
  backoff.
"""

import json
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed, wait

__all__ = [
    "MalformedResponseError",
    "UnsupportedResponseError",
    "UnusableAnswerError",
    "RequestFailed",
    "FatalRequestError",
    "Cancelled",
    "Usage",
    "make_client",
    "send",
    "call_with_retries",
    "run_concurrently",
]

logger = logging.getLogger("skcandist.llm")

_PLACEHOLDER_KEY = "no-key-needed"
_MAX_RETRY_AFTER = 120.0


class MalformedResponseError(Exception):
    """A 200 answer that carries no usable choice (retryable)."""


class UnsupportedResponseError(Exception):
    """The endpoint answered, but without what the answer mode needs."""


class UnusableAnswerError(Exception):
    """A 200 answer that cannot be used (empty, refused, cut off, not JSON).

    Retried like a transient error, and never cached.
    """


class RequestFailed(Exception):
    """A request that failed for good; ``reason`` says why, for the user."""

    def __init__(self, reason, attempts):
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


class FatalRequestError(RequestFailed):
    """A failure that every other request would meet too (bad key, no access,
    unknown model or route, exhausted quota): the run stops."""


class Cancelled(Exception):
    """The run was stopped (an interrupt or a fatal error elsewhere)."""


# Error codes of a 429 that waiting does not cure.
_FATAL_CODES = (
    "insufficient_quota",
    "billing_hard_limit_reached",
    "billing_not_active",
)


class Usage:
    """Thread-safe counters of one annotator's traffic.

    Examples
    --------
    >>> usage = Usage()
    >>> usage.add(requests=2, prompt_tokens=10)
    >>> usage.as_dict()["requests"], usage.as_dict()["prompt_tokens"]
    (2, 10)
    """

    FIELDS = (
        "texts",
        "requests",
        "retries",
        "cache_hits",
        "prompt_tokens",
        "completion_tokens",
        "failures",
        "unknown_labels",
        "empty_answers",
        "batches",
        "batch_requests",
    )

    def __init__(self, counts=None):
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.FIELDS, 0)
        self._counts.update(counts or {})

    def add(self, **counts):
        """Add to the named counters."""
        with self._lock:
            for name, value in counts.items():
                self._counts[name] += int(value)

    def as_dict(self):
        """A copy of the counters."""
        with self._lock:
            return dict(self._counts)


class RateLimiter:
    """Requests and tokens per minute, shared by all the threads of a run.

    Two token buckets, refilled continuously at ``per_minute / 60`` a second;
    each holds at most one second's budget (at least one request, and at
    least the largest request seen) and starts with one request and no
    tokens, so the pace stays smooth rather than a burst at the start of
    every minute. :meth:`acquire` waits until both buckets hold enough, then
    takes it.

    Parameters
    ----------
    requests_per_minute : float or None
    tokens_per_minute : float or None
        None does not limit that quantity.
    clock : callable, default=time.monotonic
    sleep : callable, default=None
        ``sleep(seconds)``; None waits on the ``stop`` event given to
        :meth:`acquire` (or ``time.sleep``). Both are for tests.

    Examples
    --------
    >>> now = [0.0]
    >>> limiter = RateLimiter(120, clock=lambda: now[0],
    ...                       sleep=lambda s: now.__setitem__(0, now[0] + s))
    >>> for _ in range(5):
    ...     limiter.acquire()
    >>> round(now[0], 2)  # 2 requests a second: the first at once, then 0.5 s each
    2.0
    """

    def __init__(
        self,
        requests_per_minute=None,
        tokens_per_minute=None,
        *,
        clock=None,
        sleep=None,
    ):
        for name, value in (
            ("max_requests_per_minute", requests_per_minute),
            ("max_tokens_per_minute", tokens_per_minute),
        ):
            if value is not None and not (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and value > 0
            ):
                raise ValueError(
                    f"{name} must be a positive number or None, not {value!r}."
                )
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._clock = clock or time.monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last = self._clock()
        # Start with one request's allowance, not a full second's: a run that
        # starts and stops within a minute never passes the limit either.
        self._requests = None if requests_per_minute is None else 1.0
        self._tokens = None if tokens_per_minute is None else 0.0
        self._largest = 0.0

    @staticmethod
    def _capacity(per_minute, floor):
        return None if per_minute is None else max(per_minute / 60.0, floor)

    def _refill(self, now):
        elapsed = max(0.0, now - self._last)
        self._last = now
        if self._requests is not None:
            top = self._capacity(self.requests_per_minute, 1.0)
            self._requests = min(
                top, self._requests + elapsed * self.requests_per_minute / 60
            )
        if self._tokens is not None:
            top = max(self._capacity(self.tokens_per_minute, 0.0), self._largest)
            self._tokens = min(
                top, self._tokens + elapsed * self.tokens_per_minute / 60
            )

    def acquire(self, tokens=0, stop=None):
        """Wait until one request of ``tokens`` tokens may go, then take it.

        Raises :class:`Cancelled` when ``stop`` is set while waiting.
        """
        while True:
            with self._lock:
                self._largest = max(self._largest, float(tokens))
                self._refill(self._clock())
                wait = 0.0
                if self._requests is not None and self._requests < 1.0:
                    wait = (1.0 - self._requests) * 60 / self.requests_per_minute
                if self._tokens is not None and self._tokens < tokens:
                    wait = max(
                        wait, (tokens - self._tokens) * 60 / self.tokens_per_minute
                    )
                if wait <= 0:
                    if self._requests is not None:
                        self._requests -= 1.0
                    if self._tokens is not None:
                        self._tokens -= tokens
                    return
            if stop is not None and stop.is_set():
                raise Cancelled()
            if self._sleep is not None:
                self._sleep(wait)
            elif stop is not None:
                if stop.wait(wait):
                    raise Cancelled()
            else:
                time.sleep(wait)


def _is_local(base_url):
    if not base_url:
        return False
    host = str(base_url).split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    return host in ("localhost", "[::1]", "::1") or host.startswith("127.")


def make_client(base_url=None, timeout=60.0, client_factory=None):
    """Build the ``openai.OpenAI`` client (the key is read from the environment).

    Parameters
    ----------
    base_url : str, default=None
        None: the client's own default (``OPENAI_BASE_URL`` or api.openai.com).
    timeout : float, default=60.0
        Seconds per request.
    client_factory : callable, default=None
        Called with no argument to build the client instead. Its own retries are
        switched off (``with_options(max_retries=0)``): retries are done here, and
        the client's would multiply them.

    Returns
    -------
    openai.OpenAI

    Notes
    -----
    The API key comes from ``OPENAI_API_KEY`` (read by the client itself). For a
    loopback ``base_url`` with no key set, a placeholder key is used, since
    local servers need none and the client refuses to start without one.
    """
    if client_factory is not None:
        client = client_factory()
        with_options = getattr(client, "with_options", None)
        return with_options(max_retries=0) if callable(with_options) else client
    import openai

    kwargs = {"base_url": base_url, "timeout": timeout, "max_retries": 0}
    if not os.environ.get("OPENAI_API_KEY") and _is_local(base_url):
        kwargs["api_key"] = _PLACEHOLDER_KEY
    return openai.OpenAI(**kwargs)


def _usage_dict(usage):
    if usage is None:
        return {"prompt_tokens": 0, "completion_tokens": 0}
    return {
        "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
        "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
    }


def send(client, request):
    """Perform one request; return the record that the cache stores.

    Parameters
    ----------
    client : openai.OpenAI
    request : dict
        ``{"endpoint": "chat" or "completions", "params": {...}, "logprobs":
        bool}``; ``params`` go to ``create`` as keyword arguments.

    Returns
    -------
    dict
        ``content`` (str), ``top_logprobs`` (dict token -> log-probability of
        the first generated token, or None), ``finish_reason``, ``refusal``
        (the chat message's refusal text, or None) and ``usage``.
    """
    params = request["params"]
    if request["endpoint"] == "chat":
        response = client.chat.completions.create(**params)
    else:
        response = client.completions.create(**params)
    return record_from_response(response, request)


def record_from_body(body, request):
    """The cache record of a response given as its JSON body (a dict), e.g. a
    line of a Batch API output file; see :func:`send`."""
    import pydantic
    from openai.types import Completion
    from openai.types.chat import ChatCompletion

    kind = ChatCompletion if request["endpoint"] == "chat" else Completion
    try:
        response = kind.model_validate(body)
    except pydantic.ValidationError as exc:
        raise MalformedResponseError(
            f"the answer is not a {kind.__name__}: {_short(exc)}"
        ) from exc
    return record_from_response(response, request)


def record_from_response(response, request):
    """The cache record of an ``openai`` response object; see :func:`send`."""
    want_logprobs = request.get("logprobs", False)
    if not getattr(response, "choices", None):
        raise MalformedResponseError("the answer has no choices")
    choice = response.choices[0]
    top = None
    if request["endpoint"] == "chat":
        content = choice.message.content if choice.message else None
        content_logprobs = getattr(choice.logprobs, "content", None)
        if content_logprobs:
            top = {t.token: t.logprob for t in content_logprobs[0].top_logprobs or []}
    else:
        content = choice.text
        table = getattr(choice.logprobs, "top_logprobs", None)
        if table:
            top = dict(table[0] or {})
    if want_logprobs and not top:
        raise UnsupportedResponseError(
            "the endpoint returned no top log-probabilities; use a server that "
            "supports logprobs, or answer='json'"
        )
    refusal = None
    if request["endpoint"] == "chat" and choice.message is not None:
        refusal = getattr(choice.message, "refusal", None)
    return {
        "content": content or "",
        "top_logprobs": top,
        "finish_reason": getattr(choice, "finish_reason", None),
        "refusal": refusal or None,
        "usage": _usage_dict(response.usage),
    }


def _classify(exc):
    """``(kind, reason, retry_after)`` of an exception; kind is "retry", "fail"
    (this request only) or "fatal" (every request would fail the same way)."""
    import openai

    code = getattr(exc, "code", None)
    if isinstance(exc, openai.RateLimitError):
        if code in _FATAL_CODES:
            return "fatal", f"HTTP 429 {code}: {_short(exc.message)}", None
        return "retry", "HTTP 429 rate limited", _retry_after(exc.response)
    if isinstance(exc, openai.APITimeoutError):
        return "retry", "timeout", None
    if isinstance(exc, openai.APIConnectionError):
        return "retry", "connection error", None
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status >= 500 or status in (408, 409):
            return "retry", f"HTTP {status}", _retry_after(exc.response)
        reason = f"HTTP {status}: {_short(exc.message)}"
        if status in (401, 403, 404) or code in _FATAL_CODES:
            return "fatal", reason, None
        return "fail", reason, None
    if isinstance(exc, json.JSONDecodeError):
        return "retry", "malformed response body (not JSON)", None
    if isinstance(exc, MalformedResponseError):
        return "retry", f"malformed response ({exc})", None
    if isinstance(exc, UnusableAnswerError):
        return "retry", f"unusable answer ({exc})", None
    if isinstance(exc, UnsupportedResponseError):
        return "fail", str(exc), None
    # Any other openai.APIError subclass (a new one, or a server's odd body).
    return "fail", f"{type(exc).__name__}: {_short(exc)}", None


def _short(text, limit=200):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _retry_after(response):
    if response is None:
        return None
    headers = response.headers
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, min(float(value) * scale, _MAX_RETRY_AFTER))
        except ValueError:
            continue
    return None


def _openai_errors():
    import openai

    return (openai.APIError, json.JSONDecodeError, MalformedResponseError,
            UnsupportedResponseError, UnusableAnswerError)  # fmt: skip


def call_with_retries(
    fn,
    max_retries=5,
    *,
    backoff=0.5,
    max_backoff=30.0,
    rng=None,
    sleep=None,
    on_attempt=None,
    stop=None,
):
    """Call ``fn()`` and retry transient failures with backoff and jitter.

    Parameters
    ----------
    fn : callable
        Performs one request.
    max_retries : int, default=5
        Retries after the first attempt.
    backoff : float, default=0.5
        The wait before retry ``k`` (from 0) is ``backoff * 2**k`` times a
        jitter factor drawn uniformly in [0.5, 1.5), at most ``max_backoff``.
        A 429 or 5xx with a ``Retry-After`` header waits that long instead.
    max_backoff : float, default=30.0
    rng : random.Random, default=None
        Source of the jitter.
    sleep : callable, default=None
        ``sleep(seconds)``; None waits on ``stop`` (or ``time.sleep``).
    on_attempt : callable, default=None
        Called with no argument before every attempt (to count requests).
    stop : threading.Event, default=None
        When set, no further attempt is made and a wait ends at once, raising
        :class:`Cancelled`.

    Returns
    -------
    result, int
        ``fn()``'s result and the number of retries used.

    Raises
    ------
    FatalRequestError
        When no request can succeed (401, 403, 404, an exhausted quota).
    RequestFailed
        When the error is not transient or the retries are spent.
    Cancelled
        When ``stop`` was set.

    Examples
    --------
    >>> calls = []
    >>> def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise MalformedResponseError("no choices")
    ...     return "ok"
    >>> call_with_retries(flaky, 5, backoff=0.0)
    ('ok', 2)
    """
    rng = rng or random.Random()
    errors = _openai_errors()
    attempt = 0
    while True:
        if stop is not None and stop.is_set():
            raise Cancelled()
        if on_attempt is not None:
            on_attempt()
        try:
            return fn(), attempt
        except errors as exc:
            kind, reason, retry_after = _classify(exc)
            if kind == "fatal":
                raise FatalRequestError(reason, attempt + 1) from exc
            if kind == "fail":
                raise RequestFailed(reason, attempt + 1) from exc
            if attempt >= max_retries:
                raise RequestFailed(
                    f"{reason} (gave up after {attempt + 1} attempts)", attempt + 1
                ) from exc
            if retry_after is not None:
                delay = retry_after
            else:
                delay = min(max_backoff, backoff * 2**attempt * (0.5 + rng.random()))
            logger.debug("retrying after %s in %.2f s", reason, delay)
            if sleep is not None:
                sleep(delay)
            elif stop is not None:
                if stop.wait(delay):
                    raise Cancelled() from None
            else:
                time.sleep(delay)
            attempt += 1


def run_concurrently(
    items, worker, on_done, n_jobs=4, progress=None, stop=None, grace=2.0
):
    """Run ``worker(item)`` for every item with ``n_jobs`` in flight.

    ``on_done(item, result, error)`` runs in the calling thread as each item
    finishes (``error`` is a :class:`RequestFailed` or None), so that results
    can be stored at once. A :class:`FatalRequestError` sets ``stop``: no new
    item starts, the items in flight finish (and are handed over), and the
    error is raised. If the calling thread is interrupted, ``stop`` is set, the
    workers' waits end at once, finished items have been handed over, items
    still in flight get ``grace`` seconds to finish (a worker that must keep
    its result stores it itself), and the interrupt goes on.

    Parameters
    ----------
    items : list
    worker : callable
        ``worker(item)``; it should pass ``stop`` to
        :func:`call_with_retries` so that its waits can be cut short.
    on_done : callable
    n_jobs : int, default=4
    progress : tqdm-like, default=None
        Its ``update(1)`` is called per finished item.
    stop : threading.Event, default=None
        Created if None.
    grace : float, default=2.0
        Seconds an interrupted run waits for requests already in flight.

    Raises
    ------
    FatalRequestError
        The first fatal failure, after the requests in flight have finished.
    """
    items = list(items)
    if not items:
        return
    stop = stop if stop is not None else threading.Event()
    n_jobs = max(1, min(int(n_jobs), len(items)))
    pool = ThreadPoolExecutor(max_workers=n_jobs, thread_name_prefix="skcandist")
    fatal = None
    futures = {}
    interrupted = False

    def guarded(item):
        # The worker that meets a fatal error stops the others itself: waiting
        # for the calling thread to notice would let them start more requests.
        if stop.is_set():
            raise Cancelled()
        try:
            return worker(item)
        except FatalRequestError:
            stop.set()
            raise

    try:
        futures = {pool.submit(guarded, item): item for item in items}
        for future in as_completed(futures):
            if future.cancelled():
                continue
            try:
                result, error = future.result(), None
            except Cancelled:
                continue
            except FatalRequestError as exc:
                if fatal is None:
                    fatal = exc
                    stop.set()
                    for other in futures:
                        other.cancel()
                continue
            except RequestFailed as exc:
                result, error = None, exc
            on_done(futures[future], result, error)
            if progress is not None:
                progress.update(1)
    except BaseException:
        interrupted = True
        stop.set()
        for other in futures:
            other.cancel()
        # Requests in flight store their own answers (the worker does): give
        # them a moment to arrive; the waits of the others end at once.
        pending = [f for f in futures if not f.done()]
        if pending:
            wait(pending, timeout=grace)
        raise
    finally:
        pool.shutdown(wait=not interrupted, cancel_futures=True)
    if fatal is not None:
        raise fatal
