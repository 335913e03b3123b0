"""A local OpenAI-compatible endpoint for tests, docs and benchmarks.

:class:`FakeLLMServer` is a real HTTP server on 127.0.0.1 that speaks the parts of
the OpenAI REST API that skcandist uses (``POST /v1/chat/completions`` and
``POST /v1/completions``, and the files and batches routes of the Batch API).
It answers from a function you provide, counts and records every request, and
can inject faults (delays, 429 with ``Retry-After``, 500, malformed bodies,
dropped connections; for batches a completion delay, shuffled output, failing
lines, expired, cancelled or failed batches), so that the real ``openai``
client is exercised end to end without any network beyond the loopback
interface.

Examples
--------
>>> from openai import OpenAI
>>> with FakeLLMServer(lambda request: '["spam"]') as server:
...     client = OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
...     answer = client.chat.completions.create(
...         model="m", messages=[{"role": "user", "content": "hi"}])
...     print(answer.choices[0].message.content, server.n_requests)
["spam"] 1
"""

import collections
import json
import random
import re
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FakeLLMServer", "Fault", "candidate_responder", "run_batch_file"]

_FAULT_DOC = """One injected fault (see :meth:`FakeLLMServer.inject`).

Parameters
----------
kind : {"delay", "429", "500", "malformed", "drop", "empty", "status"}
seconds : float
    The sleep before answering ("delay") or before failing.
retry_after : float or None
    The Retry-After header of a 429.
status : int or None
    The HTTP status of a "status" fault.
code : str or None
    The ``error.code`` of a "status" fault's body (e.g.
    ``"insufficient_quota"``).
"""

Fault = collections.namedtuple(
    "Fault", ["kind", "seconds", "retry_after", "status", "code"],
    defaults=(None, None),
)  # fmt: skip
Fault.__doc__ = _FAULT_DOC

_FAULT_KINDS = {"delay", "429", "500", "malformed", "drop", "empty", "status"}


def _count_tokens(text):
    return max(1, len(str(text).split()))


class FakeLLMServer:
    """An OpenAI-compatible HTTP endpoint on 127.0.0.1, answering from a function.

    Parameters
    ----------
    respond : callable, default=None
        Called as ``respond(request)`` with the decoded JSON body (plus the key
        ``"_endpoint"``: ``"chat"`` or ``"completions"``). It returns either the
        answer text, or a dict with ``"content"`` and optionally
        ``"top_logprobs"`` (a dict token -> log-probability for the first
        generated token), ``"usage"``, ``"finish_reason"`` (default
        ``"stop"``) and ``"refusal"`` (chat only). None answers ``"[]"``.
    latency : float, default=0.0
        Seconds every request waits before it is answered.
    host : str, default="127.0.0.1"
        Only loopback addresses are allowed.
    port : int, default=0
        0 picks a free port.
    tokenizer : callable, default=None
        ``tokenizer(text) -> list of str`` (the token pieces of ``text``). When
        given, the server also answers vLLM's ``POST /tokenize`` (token ids
        and, with ``return_token_strs``, the pieces); without it that route is
        a 404, as on endpoints that have no tokenizer route.

    Attributes
    ----------
    requests : list of dict
        Every completion request body received, in arrival order.
    tokenize_requests : list of dict
        The bodies of ``/tokenize`` requests (not counted in ``n_requests``).
    batch_delay : float
        Seconds from ``batches.create`` until a batch is completed (its
        ``request_counts`` grow with the time elapsed meanwhile). Default 0.
    batch_error_lines : int
        The first this many lines of every new batch fail (they go to the
        batch's error file with HTTP 500). Default 0.
    batch_shuffle : bool
        Write batch output lines in a random order (the Batch API promises no
        order). Default True.
    batch_api : bool
        False answers the files and batches routes with 404, like an
        endpoint without the Batch API. Default True.
    files : dict
        Uploaded and generated files: id -> ``{"filename", "purpose",
        "data"}``.
    batches : dict
        Batch id -> the batch object as last served.
    batch_requests : list of dict
        Every request body answered inside a batch (not in ``requests``).
    """

    def __init__(
        self, respond=None, *, latency=0.0, host="127.0.0.1", port=0, tokenizer=None
    ):
        if not host.startswith("127.") and host not in ("localhost", "::1"):
            raise ValueError(f"FakeLLMServer serves on loopback only, not {host!r}.")
        self.respond = respond
        self.latency = latency
        self.host = host
        self.port = port
        self.requests = []
        self._faults = collections.deque()
        self._sticky = None
        self.tokenizer = tokenizer
        self.tokenize_requests = []
        self.batch_delay = 0.0
        self.batch_error_lines = 0
        self.batch_shuffle = True
        self.batch_api = True
        self.files = {}
        self.batches = {}
        self.batch_requests = []
        self._batch_outcomes = collections.deque()
        self._batch_state = {}
        self._ids = 0
        self._lock = threading.Lock()
        self._httpd = None
        self._thread = None

    # -- life cycle --------------------------------------------------------
    def start(self):
        """Start serving in a background thread; returns self."""
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self):
        """Stop serving and free the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def base_url(self):
        """The ``base_url`` to give the openai client, ending in ``/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def n_requests(self):
        """Number of requests received so far (faulty ones included)."""
        with self._lock:
            return len(self.requests)

    # -- faults ------------------------------------------------------------
    def inject(
        self, kind, count=1, *, seconds=0.0, retry_after=None, status=None, code=None
    ):
        """Make the next ``count`` requests fail (or wait) in the given way.

        Parameters
        ----------
        kind : {"delay", "429", "500", "malformed", "drop", "empty", "status"}
            ``delay`` answers normally after ``seconds``; ``429`` answers Too Many
            Requests with a ``Retry-After`` header when ``retry_after`` is set;
            ``500`` an internal error; ``malformed`` a 200 whose body is not JSON;
            ``drop`` closes the connection without answering; ``empty`` a 200
            whose answer has no choices; ``status`` answers the HTTP ``status``
            given, with an OpenAI-style error body whose ``code`` is ``code``
            (e.g. ``status=401``, or ``status=429, code="insufficient_quota"``).
        count : int, default=1
            The number of requests to fail; ``-1`` fails every request from now
            on, until :meth:`clear_faults`.
        seconds : float, default=0.0
        retry_after : float, default=None
        status : int, default=None
            Required for ``kind="status"``.
        code : str, default=None
        """
        if kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; use one of {_FAULT_KINDS}.")
        if kind == "status" and not (isinstance(status, int) and 400 <= status < 600):
            raise ValueError(
                f"a 'status' fault needs an HTTP error status; got {status!r}."
            )
        fault = Fault(kind, seconds, retry_after, status, code)
        with self._lock:
            if count == -1:
                self._sticky = fault
                return
            for _ in range(count):
                self._faults.append(fault)

    def inject_batch(self, outcome, count=1):
        """Make the next ``count`` batches end otherwise than completed.

        Parameters
        ----------
        outcome : {"expired", "cancelled", "failed"}
            ``expired`` and ``cancelled`` answer the first half of the lines
            (in input order) and leave the rest without an answer; ``failed``
            fails validation: no line is answered.
        count : int, default=1
        """
        if outcome not in ("expired", "cancelled", "failed"):
            raise ValueError(f"unknown batch outcome {outcome!r}.")
        with self._lock:
            self._batch_outcomes.extend([outcome] * count)

    @property
    def n_batches(self):
        """Number of batches created so far."""
        with self._lock:
            return len(self.batches)

    # -- the Batch API -------------------------------------------------------
    def _new_id(self, prefix):
        with self._lock:
            self._ids += 1
            return f"{prefix}-{self._ids}"

    def _store_file(self, filename, purpose, data):
        file_id = self._new_id("file")
        with self._lock:
            self.files[file_id] = {
                "filename": filename,
                "purpose": purpose,
                "data": data,
            }
        return self._file_object(file_id)

    def _file_object(self, file_id):
        entry = self.files[file_id]
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(entry["data"]),
            "created_at": int(time.time()),
            "filename": entry["filename"],
            "purpose": entry["purpose"],
            "status": "processed",
        }

    def _create_batch(self, body):
        file_id = body.get("input_file_id")
        if file_id not in self.files:
            return 404, {"error": {"message": f"no file {file_id}"}}
        lines = [
            json.loads(raw)
            for raw in self.files[file_id]["data"].splitlines()
            if raw.strip()
        ]
        batch_id = self._new_id("batch")
        now = time.time()
        with self._lock:
            outcome = (
                self._batch_outcomes.popleft() if self._batch_outcomes else "completed"
            )
            self._batch_state[batch_id] = {
                "lines": lines,
                "created": now,
                "outcome": outcome,
                "error_lines": self.batch_error_lines,
                "delay": self.batch_delay,
            }
            self.batches[batch_id] = {
                "id": batch_id,
                "object": "batch",
                "endpoint": body.get("endpoint"),
                "errors": None,
                "input_file_id": file_id,
                "completion_window": body.get("completion_window", "24h"),
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": int(now),
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "metadata": body.get("metadata"),
            }
            return 200, dict(self.batches[batch_id])

    def _retrieve_batch(self, batch_id, cancel=False):
        with self._lock:
            batch = self.batches.get(batch_id)
            state = self._batch_state.get(batch_id)
        if batch is None:
            return 404, {"error": {"message": f"no batch {batch_id}"}}
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            return 200, dict(batch)
        if cancel:
            state["outcome"] = "cancelled"
            state["delay"] = 0.0
        elapsed = time.time() - state["created"]
        total = len(state["lines"])
        if elapsed < state["delay"]:
            done = int(total * elapsed / state["delay"])
            with self._lock:
                batch["status"] = "cancelling" if cancel else "in_progress"
                batch["request_counts"] = {
                    "total": total,
                    "completed": done,
                    "failed": 0,
                }
                return 200, dict(batch)
        self._finish_batch(batch, state)
        return 200, dict(batch)

    def _finish_batch(self, batch, state):
        lines, outcome = state["lines"], state["outcome"]
        if outcome == "failed":
            answered, failing = [], []
            batch["errors"] = {
                "object": "list",
                "data": [{"code": "invalid_request", "message": "injected failure"}],
            }
        else:
            n = len(lines) if outcome == "completed" else len(lines) // 2
            failing = lines[: min(state["error_lines"], n)]
            answered = lines[len(failing) : n]
        out, errors = [], []
        for line in answered:
            with self._lock:
                self.batch_requests.append(line["body"])
            body = self._answer(line["body"], _line_endpoint(line))
            out.append(_output_line(line, 200, body, f"response-{len(out)}"))
        for line in failing:
            body = {"error": {"message": "injected line failure"}}
            errors.append(
                _output_line(line, 500, body, f"response-error-{len(errors)}")
            )
        if self.batch_shuffle:
            random.Random(batch["id"]).shuffle(out)

        def jsonl(rows):
            return "".join(json.dumps(r) + "\n" for r in rows).encode()

        output_id = (
            self._store_file("output.jsonl", "batch_output", jsonl(out))["id"]
            if out
            else None
        )
        error_id = (
            self._store_file("errors.jsonl", "batch_output", jsonl(errors))["id"]
            if errors
            else None
        )
        with self._lock:
            batch.update(
                status=outcome,
                output_file_id=output_id,
                error_file_id=error_id,
                request_counts={
                    "total": len(lines),
                    "completed": len(out),
                    "failed": len(errors),
                },
            )
            batch[f"{outcome}_at"] = int(time.time())

    def clear_faults(self):
        """Forget the faults not yet served."""
        with self._lock:
            self._faults.clear()
            self._sticky = None

    def reset(self):
        """Forget the recorded requests and the faults not yet served.

        Lets one server serve several tests (a module-scoped fixture) with a
        clean count for each.
        """
        with self._lock:
            self._faults.clear()
            self._sticky = None
            self.requests.clear()

    def _next_fault(self):
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            return self._sticky

    def _record(self, body):
        with self._lock:
            self.requests.append(body)

    # -- answers -------------------------------------------------------------
    def _answer(self, body, endpoint):
        body = dict(body, _endpoint=endpoint)
        result = "[]" if self.respond is None else self.respond(body)
        if isinstance(result, str):
            result = {"content": result}
        content = result.get("content", "")
        top = result.get("top_logprobs")
        finish_reason = result.get("finish_reason", "stop")
        refusal = result.get("refusal")
        if endpoint == "chat":
            prompt = " ".join(
                str(m.get("content", "")) for m in body.get("messages", [])
            )
        else:
            prompt = body.get("prompt", "")
        usage = result.get("usage") or {
            "prompt_tokens": _count_tokens(prompt),
            "completion_tokens": _count_tokens(content),
        }
        usage = dict(usage)
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        model = body.get("model", "fake")
        # the generated token: the most probable one offered, else the content
        first = max(top, key=top.get) if top else content
        if endpoint == "chat":
            logprobs = None
            if top is not None:
                logprobs = {
                    "content": [
                        {
                            "token": first,
                            "logprob": top.get(first, 0.0),
                            "bytes": None,
                            "top_logprobs": [
                                {"token": t, "logprob": lp, "bytes": None}
                                for t, lp in sorted(top.items(), key=lambda kv: -kv[1])
                            ],
                        }
                    ]
                }
            choice = {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": refusal,
                },
                "finish_reason": finish_reason,
                "logprobs": logprobs,
            }
            kind = "chat.completion"
        else:
            logprobs = None
            if top is not None:
                logprobs = {
                    "tokens": [first],
                    "token_logprobs": [top.get(first, 0.0)],
                    "top_logprobs": [dict(top)],
                    "text_offset": [0],
                }
            choice = {
                "index": 0,
                "text": content,
                "finish_reason": finish_reason,
                "logprobs": logprobs,
            }
            kind = "text_completion"
        return {
            "id": f"fake-{self.n_requests}",
            "object": kind,
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "usage": usage,
        }


def _make_handler(server):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; without this, Nagle's
        # algorithm and the client's delayed ACK add ~40 ms to every answer.
        disable_nagle_algorithm = True

        def log_message(self, *args):  # keep test output clean
            pass

        def _send(self, status, payload, headers=None, content_type=None):
            data = (
                payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            )
            self.send_response(status)
            self.send_header("Content-Type", content_type or "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (e.g. its timeout fired); nothing to answer.
                self.close_connection = True

        def _no_batch_api(self, path):
            if server.batch_api or not re.match(r"(?:/v1)?/(files|batches)", path):
                return False
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return True

        def do_GET(self):
            path = self.path.split("?")[0].rstrip("/")
            if self._no_batch_api(path):
                return
            match = re.fullmatch(r"(?:/v1)?/files/([\w-]+)(/content)?", path)
            if match and match.group(1) in server.files:
                file_id, content = match.groups()
                if content:
                    self._send(
                        200,
                        server.files[file_id]["data"],
                        content_type=("application/octet-stream"),
                    )
                else:
                    self._send(200, server._file_object(file_id))
                return
            match = re.fullmatch(r"(?:/v1)?/batches/([\w-]+)", path)
            if match:
                self._send(*server._retrieve_batch(match.group(1)))
                return
            self._send(404, {"error": {"message": f"no route {self.path}"}})

        def _upload(self, raw):
            ctype = self.headers.get("Content-Type", "")
            message = BytesParser(policy=HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
            )
            fields, filename, data = {}, "upload.jsonl", b""
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True) or b""
                if part.get_filename() is not None or name == "file":
                    filename, data = part.get_filename() or filename, payload
                else:
                    fields[name] = payload.decode()
            self._send(200, server._store_file(filename, fields.get("purpose"), data))

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            path = self.path.split("?")[0].rstrip("/")
            if self._no_batch_api(path):
                return
            if re.fullmatch(r"(?:/v1)?/files", path):
                self._upload(raw)
                return
            match = re.fullmatch(r"(?:/v1)?/batches/([\w-]+)/cancel", path)
            if match:
                self._send(*server._retrieve_batch(match.group(1), cancel=True))
                return
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                self._send(400, {"error": {"message": "request body is not JSON"}})
                return
            if re.fullmatch(r"(?:/v1)?/batches", path):
                self._send(*server._create_batch(body))
                return
            if self.path.rstrip("/") == "/tokenize" and server.tokenizer:
                with server._lock:
                    server.tokenize_requests.append(body)
                pieces = list(server.tokenizer(str(body.get("prompt", ""))))
                answer = {
                    "tokens": [abs(hash(p)) % 50000 for p in pieces],
                    "count": len(pieces),
                    "max_model_len": 2048,
                }
                if body.get("return_token_strs"):
                    answer["token_strs"] = pieces
                self._send(200, answer)
                return
            if self.path.endswith("/chat/completions"):
                endpoint = "chat"
            elif self.path.endswith("/completions"):
                endpoint = "completions"
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            server._record(body)
            fault = server._next_fault()
            wait = server.latency + (fault.seconds if fault else 0.0)
            if wait:
                time.sleep(wait)
            if fault is None or fault.kind == "delay":
                self._send(200, server._answer(body, endpoint))
            elif fault.kind == "429":
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(fault.retry_after)
                err = {"error": {"message": "rate limited", "type": "rate_limit"}}
                self._send(429, err, headers)
            elif fault.kind == "status":
                err = {
                    "error": {
                        "message": f"injected HTTP {fault.status}",
                        "type": fault.code or "error",
                        "code": fault.code,
                    }
                }
                self._send(fault.status, err)
            elif fault.kind == "500":
                self._send(500, {"error": {"message": "internal error"}})
            elif fault.kind == "malformed":
                self._send(200, b"{not json at all")
            elif fault.kind == "empty":
                answer = server._answer(body, endpoint)
                answer["choices"] = []
                self._send(200, answer)
            elif fault.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(2)

    return Handler


def candidate_responder(answers, default="[]"):
    """A ``respond`` function that answers each text with fixed candidates.

    Parameters
    ----------
    answers : dict
        Text -> list of label names to answer with (as a JSON list).
    default : str, default="[]"
        The answer for a request that quotes none of the texts.

    Returns
    -------
    callable
        For :class:`FakeLLMServer`: finds the text the request asks about (the
        known text that ends last in the last message, or in the prompt of a
        completions request) and answers its candidates.

    Examples
    --------
    >>> respond = candidate_responder({"win cash": ["spam"], "hi mum": ["ham"]})
    >>> respond({"messages": [{"role": "user", "content": "Text: hi mum"}]})
    '["ham"]'
    """

    def respond(request):
        if "messages" in request:
            prompt = str(request["messages"][-1].get("content", ""))
        else:
            prompt = str(request.get("prompt", ""))
        # The query is quoted last; a shorter known text inside it ends no
        # later, so the latest end wins, then the longest text.
        best, rank = None, (-1, -1)
        for text in answers:
            position = prompt.rfind(text)
            if position >= 0 and (position + len(text), len(text)) > rank:
                best, rank = text, (position + len(text), len(text))
        return default if best is None else json.dumps(list(answers[best]))

    return respond


def _line_endpoint(line):
    """ "chat" or "completions": the endpoint a batch input line asks."""
    return "chat" if line["url"].endswith("/chat/completions") else "completions"


def _output_line(line, status, body, line_id):
    """The Batch API output line answering input ``line``."""
    return {
        "id": line_id,
        "custom_id": line["custom_id"],
        "response": {
            "status_code": status,
            "request_id": f"req-{line_id}",
            "body": body,
        },
        "error": None,
    }


def run_batch_file(input_path, output_path, respond=None):
    """Answer a batch input file offline, as ``vllm run-batch`` does.

    Reads Batch API input lines from ``input_path`` and writes one output line
    per request to ``output_path``, answered by ``respond`` (as for
    :class:`FakeLLMServer`), for tests and examples of
    :meth:`skcandist.CandidateAnnotator.write_batch_file` and
    :meth:`~skcandist.CandidateAnnotator.read_batch_results`.

    Returns
    -------
    int
        The number of lines answered.
    """
    server = FakeLLMServer(respond)
    rows = []
    with open(input_path, encoding="utf-8") as handle:
        for raw in handle:
            if not raw.strip():
                continue
            line = json.loads(raw)
            body = server._answer(line["body"], _line_endpoint(line))
            rows.append(_output_line(line, 200, body, f"vllm-{len(rows)}"))
    with open(output_path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return len(rows)
