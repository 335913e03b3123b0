"""Building requests: the prompt, the request parameters, and their cache key.

A request is a plain dict ``{"endpoint": "chat" | "completions", "params":
{...}, "logprobs": bool}`` whose ``params`` go to the ``openai`` client's
``create`` as keyword arguments. Its cache key (:func:`cache_key`) is the
SHA-256 of everything that changes the answer: the endpoint's identity, the
answer mode and the parameters. Nothing else -- in particular not the API key,
and not which other texts are annotated in the same call.

The endpoint's identity (:func:`endpoint_identity`) is the URL that the client
actually talks to, so that answers are never stored under another endpoint's
name. A server whose URL says nothing durable -- the embedded local LLM, on a
random port -- registers a stable identity for its URL while it runs
(:func:`register_endpoint`; the local server uses its model file's SHA-256).
"""

import os
import threading

from . import prompts
from .cache import request_key

__all__ = [
    "ANSWER_MODES",
    "LOGPROB_MODES",
    "RequestBuilder",
    "endpoint_identity",
    "register_endpoint",
    "unregister_endpoint",
    "cache_key",
    "estimated_tokens",
]

ANSWER_MODES = ("json", "text", "logprobs", "chat_logprobs")
LOGPROB_MODES = ("logprobs", "chat_logprobs")
_OPENAI_DEFAULT_URL = "https://api.openai.com/v1"
# The largest top_logprobs the chat endpoint accepts.
_CHAT_TOP_LOGPROBS = 20

_registry_lock = threading.Lock()
_registry = {}


def _normal_url(url):
    return str(url).strip().rstrip("/")


def register_endpoint(base_url, identity):
    """Cache answers from ``base_url`` under ``identity`` (until unregistered).

    Parameters
    ----------
    base_url : str
    identity : str
        A name that stays the same across runs for the same model and
        settings, e.g. ``"llama.cpp:sha256:<digest of the model file>"``.
    """
    with _registry_lock:
        _registry[_normal_url(base_url)] = str(identity)


def unregister_endpoint(base_url):
    """Forget the identity registered for ``base_url`` (if any)."""
    with _registry_lock:
        _registry.pop(_normal_url(base_url), None)


def endpoint_identity(base_url=None, client=None):
    """The name under which answers from this endpoint are cached.

    Parameters
    ----------
    base_url : str, default=None
        The annotator's ``base_url``; None is the client's own default
        (``OPENAI_BASE_URL``, else OpenAI's API).
    client : openai.OpenAI, default=None
        When given (a ``client_factory`` built it), the URL it talks to wins.

    Returns
    -------
    str

    Examples
    --------
    >>> endpoint_identity("http://127.0.0.1:8000/v1/")
    'http://127.0.0.1:8000/v1'
    """
    if client is not None and getattr(client, "base_url", None) is not None:
        url = client.base_url
    elif base_url:
        url = base_url
    else:
        url = os.environ.get("OPENAI_BASE_URL") or _OPENAI_DEFAULT_URL
    url = _normal_url(url)
    with _registry_lock:
        return _registry.get(url, url)


def cache_key(request, identity, answer):
    """The cache key of ``request`` sent to the endpoint named ``identity``."""
    return request_key(
        {
            "v": 1,
            "base_url": identity,
            "answer": answer,
            "endpoint": request["endpoint"],
            "params": request["params"],
        }
    )


class RequestBuilder:
    """Turn a text and its demonstrations into one request.

    Parameters
    ----------
    labels : dict
        Label name -> description (or None).
    model : str
    prompt : str
        A prompt style of :data:`skcandist.llm.prompts.PROMPT_STYLES` or a
        user template.
    task : str or None
    answer : {"json", "text", "logprobs", "chat_logprobs"}
    temperature : float or None
        None sends no temperature (reasoning models reject one).
    top_logprobs : int
    seed : int, default=None
        Sent as ``seed`` where given.
    max_tokens : int, default=None
        Sent as ``max_tokens`` in the chat answer modes; the log-probability
        modes always ask for one token.
    extra_body : dict, default=None
        Extra JSON fields of the request body (e.g. vLLM's ``guided_json``),
        passed through as the client's ``extra_body``.

    Examples
    --------
    >>> builder = RequestBuilder({"spam": None, "ham": None}, model="m",
    ...                          prompt="all", task=None, answer="text",
    ...                          temperature=None, top_logprobs=20, seed=7)
    >>> request = builder.build("win cash", [])
    >>> request["endpoint"], "temperature" in request["params"], request["params"]["seed"]
    ('chat', False, 7)
    """  # noqa: E501

    def __init__(
        self,
        labels,
        *,
        model,
        prompt,
        task,
        answer,
        temperature,
        top_logprobs,
        seed=None,
        max_tokens=None,
        extra_body=None,
    ):
        self.labels = dict(labels)
        self.model = model
        self.prompt = prompt
        self.task = task
        self.answer = answer
        self.temperature = temperature
        self.top_logprobs = top_logprobs
        self.seed = seed
        self.max_tokens = max_tokens
        self.extra_body = dict(extra_body) if extra_body else None

    def _common(self, params):
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.seed is not None:
            params["seed"] = self.seed
        if self.extra_body:
            params["extra_body"] = self.extra_body
        return params

    def build(self, text, demos):
        """The request for ``text`` with the demonstrations ``demos``."""
        labels = self.labels
        if self.answer == "logprobs":
            params = {
                "model": self.model,
                "prompt": prompts.render_completion_prompt(
                    text, labels, self.task, demos
                ),
                "max_tokens": 1,
                "logprobs": self.top_logprobs,
            }
            return {
                "endpoint": "completions",
                "params": self._common(params),
                "logprobs": True,
            }
        json_answer = self.answer != "chat_logprobs"
        params = {
            "model": self.model,
            "messages": prompts.render_messages(
                text, labels, self.prompt, self.task, demos, json_answer=json_answer
            ),
        }
        if self.answer == "json":
            params["response_format"] = prompts.answer_schema(list(labels))
        if self.answer == "chat_logprobs":
            params.update(
                logprobs=True,
                top_logprobs=min(self.top_logprobs, _CHAT_TOP_LOGPROBS),
                max_tokens=1,
            )
        elif self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        return {
            "endpoint": "chat",
            "params": self._common(params),
            "logprobs": not json_answer,
        }


def estimated_tokens(request, completion_tokens=None):
    """A rough token count of one request (prompt and answer), for rate limits
    and cost estimates: four characters per token, a few per chat message.

    Examples
    --------
    >>> estimated_tokens({"params": {"prompt": "x" * 40, "max_tokens": 1}})
    12
    """
    params = request["params"]
    if "messages" in params:
        chars = sum(len(str(m.get("content", ""))) for m in params["messages"])
        prompt = chars // 4 + 4 * len(params["messages"])
    else:
        prompt = len(str(params.get("prompt", ""))) // 4 + 1
    if completion_tokens is None:
        completion_tokens = params.get("max_tokens") or 16
    return int(prompt + completion_tokens)
