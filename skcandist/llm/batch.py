"""The OpenAI Batch API, and batch files for offline engines.

A batch line is one request as the Batch API (and ``vllm run-batch``) reads
it::

    {"custom_id": <answer-cache key>, "method": "POST",
     "url": "/v1/chat/completions", "body": <the request sent online>}

The cache key is the ``custom_id``, so that answers are matched to requests by
key (a batch's output order is not promised) and land in the answer cache
exactly where an online answer would.

:func:`run_batches` submits what the cache lacks as one or more batches (at most
:data:`MAX_LINES` lines and :data:`MAX_BYTES` bytes each), records every batch
id in the answer cache the moment it exists, polls until the batches end, and
stores every usable answer. Lines that failed, lines of expired, cancelled or
failed batches, and answers that are not usable come back as *left over*, for
the caller to retry online under the same failure policy as any request. A rerun
after an interrupt (Ctrl-C, ``kill -9``, a closed laptop) finds the recorded
batches and resumes polling them instead of submitting the requests again.

:func:`write_batch_file` and :func:`read_batch_results` do the same through
files, for an engine run by hand (e.g. ``vllm run-batch -i in.jsonl -o
out.jsonl``).
"""

import json
import time

from ..exceptions import BatchPendingError, EndpointError, InvalidInputError
from . import requests as llm_requests

__all__ = [
    "MAX_LINES",
    "MAX_BYTES",
    "BatchSettings",
    "batch_line",
    "split_lines",
    "BatchSubmitter",
    "parse_results",
    "BatchJob",
    "run_batches",
    "resumable_batches",
    "collect_batches",
    "write_batch_file",
    "read_batch_results",
]

#: Limits of one Batch API input file (OpenAI's: 50,000 requests, 200 MB).
MAX_LINES = 50_000
MAX_BYTES = 200 * 1024 * 1024

_URLS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
_TERMINAL = ("completed", "failed", "expired", "cancelled")


class BatchSettings:
    """How :func:`run_batches` submits and waits.

    Parameters
    ----------
    poll_interval : float, default=60.0
        Seconds between two looks at the running batches.
    wait : bool, default=True
        False submits (or finds the batches still running) and raises
        :class:`~skcandist.exceptions.BatchPendingError` naming them.
    max_lines, max_bytes : int
        Split into several batches beyond these.
    """

    def __init__(
        self, poll_interval=60.0, wait=True, max_lines=MAX_LINES, max_bytes=MAX_BYTES
    ):
        self.poll_interval = float(poll_interval)
        self.wait = bool(wait)
        self.max_lines = int(max_lines)
        self.max_bytes = int(max_bytes)


def batch_line(key, request):
    """The batch line of one request (a dict; see the module docstring).

    Examples
    --------
    >>> request = {"endpoint": "chat", "params": {"model": "m", "messages": []}}
    >>> batch_line("k1", request)["url"]
    '/v1/chat/completions'
    """
    return {
        "custom_id": key,
        "method": "POST",
        "url": _URLS[request["endpoint"]],
        "body": request["params"],
    }


def split_lines(lines, max_lines=MAX_LINES, max_bytes=MAX_BYTES):
    """Group ``(key, encoded line)`` pairs into files within both limits.

    Examples
    --------
    >>> pairs = [(str(i), b"x" * 10 + b"\\n") for i in range(5)]
    >>> [len(group) for group in split_lines(pairs, max_lines=2)]
    [2, 2, 1]
    >>> [len(group) for group in split_lines(pairs, max_bytes=25)]
    [2, 2, 1]
    """
    groups, current, size = [], [], 0
    for key, data in lines:
        if len(data) > max_bytes:
            raise InvalidInputError(
                f"one batch line is {len(data)} bytes, above the {max_bytes}-byte "
                "limit of a batch file; shorten the prompt (fewer demonstrations)."
            )
        if current and (len(current) >= max_lines or size + len(data) > max_bytes):
            groups.append(current)
            current, size = [], 0
        current.append((key, data))
        size += len(data)
    if current:
        groups.append(current)
    return groups


def _encode(key, request):
    return (json.dumps(batch_line(key, request), ensure_ascii=False) + "\n").encode()


def _request_of(body):
    """A stand-in request for an answer whose request is not at hand."""
    kind = body.get("object") if isinstance(body, dict) else None
    return {"endpoint": "completions" if kind == "text_completion" else "chat"}


def parse_results(lines, requests_by_key, check):
    """Answers and failures from the lines of a Batch API output or error file.

    Parameters
    ----------
    lines : iterable of str or bytes
        JSON lines: ``{"custom_id", "response": {"status_code", "body"},
        "error"}``.
    requests_by_key : dict
        Key -> request, to read each answer as its request asked; a line whose
        key is not there is read leniently (its answer is still worth keeping).
    check : callable
        ``check(record)`` raises for an answer that is not usable.

    Returns
    -------
    answers : dict
        Key -> record, usable answers only.
    failures : dict
        Key -> reason, for failed lines and unusable answers.
    """
    answers, failures = {}, {}
    for number, raw in enumerate(lines, 1):
        raw = raw.decode() if isinstance(raw, bytes) else raw
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            key = line["custom_id"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InvalidInputError(
                f"line {number} of the batch results is not a Batch API output "
                f"line ({type(exc).__name__}: {exc})."
            ) from exc
        response = line.get("response") or {}
        status = response.get("status_code")
        body = response.get("body")
        error = line.get("error")
        if error or status != 200 or body is None:
            detail = (error or {}).get("message") if isinstance(error, dict) else error
            failures[key] = f"batch line failed (HTTP {status}): {detail or body}"
            continue
        request = requests_by_key.get(key) or _request_of(body)
        try:
            record = llm_requests.record_from_body(body, request)
            check(record)
        except (
            llm_requests.UnusableAnswerError,
            llm_requests.MalformedResponseError,
            llm_requests.UnsupportedResponseError,
        ) as exc:
            failures[key] = f"unusable batch answer: {llm_requests._short(exc)}"
            continue
        answers[key] = record
        failures.pop(key, None)
    return answers, failures


def _store(store, answers, write_errors):
    if store is None:
        return
    for key, record in answers.items():
        try:
            store.put(key, record)
        except Exception as exc:  # noqa: BLE001 - reported, answers still used
            write_errors.append(f"{type(exc).__name__}: {exc}")


def _call(what, identity, fn, **kwargs):
    """``fn(**kwargs)``, a Batch API call; an endpoint without the API, or
    refusing it, gets a clear error."""
    import openai

    try:
        return fn(**kwargs)
    except openai.NotFoundError as exc:
        raise EndpointError(
            f"{identity} has no Batch API ({what}: HTTP 404); use "
            "use_batch_api=False, or write_batch_file for an offline engine."
        ) from exc
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise EndpointError(
            f"{identity} refused the Batch API call ({what}): {exc}"
        ) from exc


class BatchSubmitter:
    """Submit requests as batches while they are built: lines go to a
    temporary file on disk, which is uploaded and submitted whenever the next
    line would pass :data:`MAX_LINES` or :data:`MAX_BYTES` (and at
    :meth:`flush`), so that memory does not grow with the job. Every batch id
    is recorded in ``store`` the moment the batch exists.
    """

    def __init__(self, client, store, identity, settings, usage):
        self.client = client
        self.store = store
        self.identity = identity
        self.settings = settings
        self.usage = usage
        self.jobs = []
        self._open = {}  # endpoint -> [file, keys, size]

    def add(self, key, request):
        import tempfile

        data = _encode(key, request)
        if len(data) > self.settings.max_bytes:
            split_lines([(key, data)], max_bytes=self.settings.max_bytes)  # raises
        endpoint = request["endpoint"]
        current = self._open.get(endpoint)
        if current is not None and (
            len(current[1]) >= self.settings.max_lines
            or current[2] + len(data) > self.settings.max_bytes
        ):
            self._send(endpoint)
            current = None
        if current is None:
            current = [tempfile.TemporaryFile(), [], 0]
            self._open[endpoint] = current
        current[0].write(data)
        current[1].append(key)
        current[2] += len(data)

    def flush(self):
        """Submit what is buffered; the ``[(batch id, keys)]`` of every batch."""
        for endpoint in list(self._open):
            self._send(endpoint)
        return self.jobs

    def _send(self, endpoint):
        handle, keys, _ = self._open.pop(endpoint)
        try:
            handle.seek(0)
            upload = _call(
                "files.create",
                self.identity,
                self.client.files.create,
                file=("skcandist-batch.jsonl", handle),
                purpose="batch",
            )
        finally:
            handle.close()
        batch = _call(
            "batches.create",
            self.identity,
            self.client.batches.create,
            input_file_id=upload.id,
            endpoint=_URLS[endpoint],
            completion_window="24h",
            metadata={"created_by": "skcandist"},
        )
        if self.store is not None:
            self.store.record_batch(batch.id, self.identity, keys)
        self.usage.add(batches=1, batch_requests=len(keys))
        self.jobs.append((batch.id, keys))


def _file_lines(client, file_id):
    if not file_id:
        return []
    return client.files.content(file_id).content.splitlines()


def resumable_batches(store, identity, keys):
    """``[(batch id, keys)]`` recorded in ``store`` for ``identity``, not yet
    collected, that answer at least one of ``keys``."""
    if store is None:
        return []
    keys = set(keys)
    return [
        (batch_id, batch_keys)
        for batch_id, batch_keys in store.pending_batches(identity)
        if keys.intersection(batch_keys)
    ]


def pending_error(jobs, identity):
    """The :class:`~skcandist.exceptions.BatchPendingError` of ``batch_wait=False``."""
    ids = [batch_id for batch_id, _ in jobs]
    return BatchPendingError(
        f"{len(ids)} batch(es) submitted or running at {identity}: "
        f"{', '.join(ids)}. Their ids are in the answer cache: call again with "
        "the same texts (batch_wait=True to wait) to collect the answers.",
        ids,
    )


def collect_batches(
    jobs,
    kinds,
    *,
    client,
    store,
    check,
    usage,
    identity,
    settings,
    verbose=0,
    sleep=time.sleep,
):
    """Poll ``jobs`` until they end and store their usable answers.

    With ``settings.wait=False``, look once: store what the batches that have
    ended hold, then raise :class:`~skcandist.exceptions.BatchPendingError`
    naming those still running, if any.

    Parameters
    ----------
    jobs : list of (str, list of str)
        Batch ids and the keys each answers.
    kinds : dict
        Key -> ``{"endpoint", "logprobs"}`` (the parts of a request that
        reading its answer needs), for the keys wanted now.

    Returns
    -------
    answers, left_over, write_errors
        As for :func:`run_batches`.
    """
    from tqdm.auto import tqdm

    answers, left_over, write_errors = {}, {}, []
    pending = dict(jobs)
    done_counts = {}
    total = sum(len(keys) for keys in pending.values())
    with tqdm(
        total=total, disable=verbose == 0, desc="batch", unit="request", leave=False
    ) as bar:
        while pending:
            for batch_id in list(pending):
                batch = _call(
                    "batches.retrieve",
                    identity,
                    client.batches.retrieve,
                    batch_id=batch_id,
                )
                counts = getattr(batch, "request_counts", None)
                if counts is not None:
                    done_counts[batch_id] = (counts.completed or 0) + (
                        counts.failed or 0
                    )
                    bar.n = min(total, sum(done_counts.values()))
                    bar.refresh()
                if batch.status not in _TERMINAL:
                    continue
                keys = pending.pop(batch_id)
                lines = _file_lines(client, batch.output_file_id)
                lines += _file_lines(client, batch.error_file_id)
                got, failed = parse_results(lines, kinds, check)
                _store(store, got, write_errors)
                for key in keys:
                    if key not in kinds:
                        continue
                    if key in got:
                        answers[key] = got[key]
                        usage.add(**got[key]["usage"])
                    else:
                        left_over[key] = failed.get(
                            key, f"no answer in batch {batch_id} ({batch.status})"
                        )
                if store is not None:
                    store.finish_batch(batch_id)
            if pending and not settings.wait:
                raise pending_error(list(pending.items()), identity)
            if pending:
                sleep(settings.poll_interval)
    return answers, left_over, write_errors


def kind_of(request):
    """What reading the answer of ``request`` needs (not its prompt)."""
    return {"endpoint": request["endpoint"], "logprobs": request.get("logprobs", False)}


class BatchJob:
    """One annotation call through the Batch API, fed chunk by chunk.

    :meth:`submit` takes the cached answers of a chunk of requests, resumes the
    recorded batches that answer the rest, and hands what is left to a
    :class:`BatchSubmitter`; :meth:`collect` then polls every batch of the
    call (:func:`collect_batches`).

    Parameters
    ----------
    get_client : callable
        Returns the ``openai`` client (called only when one is needed).
    store : AnswerCache or None
    identity : str
    settings : BatchSettings
    usage : skcandist.llm.requests.Usage
    verbose : int, default=0
    """

    def __init__(self, get_client, store, identity, settings, usage, verbose=0):
        self.get_client = get_client
        self.store = store
        self.identity = identity
        self.settings = settings
        self.usage = usage
        self.verbose = verbose
        self.jobs = []
        self.kinds = {}
        self.submitter = None

    def submit(self, requests):
        """Cached answers of ``requests``; submits (or resumes) the others."""
        cached = self.store.get_many(requests) if self.store is not None else {}
        self.usage.add(cache_hits=len(cached))
        missing = {
            k: r for k, r in requests.items() if k not in cached and k not in self.kinds
        }
        if not missing:
            return cached
        self.kinds.update((k, kind_of(r)) for k, r in missing.items())
        known = {batch_id for batch_id, _ in self.jobs}
        self.jobs += [
            job
            for job in resumable_batches(self.store, self.identity, missing)
            if job[0] not in known
        ]
        covered = {k for _, keys in self.jobs for k in keys}
        for key, request in missing.items():
            if key in covered:
                continue
            if self.submitter is None:
                self.submitter = BatchSubmitter(
                    self.get_client(),
                    self.store,
                    self.identity,
                    self.settings,
                    self.usage,
                )
            self.submitter.add(key, request)
        return cached

    def collect(self, check, sleep=time.sleep):
        """``(answers, left_over, write_errors)`` of the submitted batches, as
        for :func:`run_batches`."""
        if self.submitter is not None:
            self.jobs += self.submitter.flush()
            self.submitter = None
        if not self.jobs:
            return {}, {}, []
        return collect_batches(
            self.jobs,
            self.kinds,
            client=self.get_client(),
            store=self.store,
            check=check,
            usage=self.usage,
            identity=self.identity,
            settings=self.settings,
            verbose=self.verbose,
            sleep=sleep,
        )


def run_batches(
    requests_by_key,
    *,
    client,
    store,
    check,
    usage,
    identity,
    settings,
    verbose=0,
    sleep=time.sleep,
):
    """Answer ``requests_by_key`` through the Batch API: take what the cache
    holds, resume the recorded batches that answer some of the rest, submit
    what is left, poll, store (a :class:`BatchJob` fed one chunk).

    Returns
    -------
    answers : dict
        Key -> record, every usable answer (also stored in ``store``).
    left_over : dict
        Key -> reason, for the requests still without an answer: the caller
        retries them online.
    write_errors : list of str
        Answers that could not be written to ``store``.

    Raises
    ------
    BatchPendingError
        With ``settings.wait=False``, while batches are still running.
    EndpointError
        When the endpoint has no Batch API or refuses it.
    """
    job = BatchJob(lambda: client, store, identity, settings, usage, verbose)
    answers = job.submit(dict(requests_by_key))
    got, left_over, write_errors = job.collect(check, sleep=sleep)
    return {**answers, **got}, left_over, write_errors


def write_batch_file(requests, path):
    """Write one batch line per request to ``path`` (JSON lines); their count.

    ``requests`` is a dict key -> request, or an iterable of such dicts
    (written one after the other, so that the requests need not all be in
    memory at once).
    """
    from pathlib import Path

    if isinstance(requests, dict):
        requests = [requests]
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    count = 0
    with open(tmp, "wb") as handle:
        for chunk in requests:
            for key, request in chunk.items():
                handle.write(_encode(key, request))
                count += 1
    tmp.replace(path)
    return count


def read_batch_results(path, requests_by_key, check, store):
    """Store the usable answers of a Batch API output file; answers, failures."""
    with open(path, "rb") as handle:
        answers, failures = parse_results(handle, requests_by_key, check)
    write_errors = []
    _store(store, answers, write_errors)
    if write_errors:
        raise OSError(f"answers could not be stored: {write_errors[0]}")
    return answers, failures
