"""Client, retries and concurrency, through the real openai client."""

import random
import threading

import pytest

from skcandist.llm import requests as llm_requests
from skcandist.testing import FakeLLMServer

CHAT = {
    "endpoint": "chat",
    "params": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
}


@pytest.fixture(scope="module")
def shared_server():
    with FakeLLMServer(lambda r: '["a"]') as srv:
        yield srv


@pytest.fixture
def server(shared_server):
    shared_server.reset()
    shared_server.respond = lambda r: '["a"]'
    yield shared_server
    shared_server.clear_faults()


@pytest.fixture
def client(server):
    return llm_requests.make_client(server.base_url, timeout=0.5)


def call(client, request=CHAT, retries=3, sleeps=None):
    sleeps = [] if sleeps is None else sleeps
    return llm_requests.call_with_retries(
        lambda: llm_requests.send(client, request),
        retries,
        backoff=0.01,
        rng=random.Random(0),
        sleep=sleeps.append,
    )


def test_client_has_no_retries_of_its_own(client):
    assert client.max_retries == 0


def test_placeholder_key_only_for_loopback(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert llm_requests.make_client("http://127.0.0.1:9/v1").api_key
    assert llm_requests.make_client("http://localhost:9/v1").api_key
    with pytest.raises(Exception, match="api_key"):
        llm_requests.make_client("https://api.example.com/v1")


def test_send_returns_a_plain_record(client):
    record = llm_requests.send(client, CHAT)
    assert record["content"] == '["a"]' and record["top_logprobs"] is None
    assert set(record["usage"]) == {"prompt_tokens", "completion_tokens"}


def test_send_reads_top_logprobs_of_both_endpoints(server, client):
    server.respond = lambda r: {"content": "a", "top_logprobs": {" a": -0.1}}
    chat = llm_requests.send(client, dict(CHAT, logprobs=True))
    completion = llm_requests.send(
        client,
        {
            "endpoint": "completions",
            "params": {"model": "m", "prompt": "x", "max_tokens": 1, "logprobs": 5},
            "logprobs": True,
        },
    )
    assert chat["top_logprobs"] == completion["top_logprobs"] == {" a": -0.1}


def test_retry_after_is_honoured(server, client):
    server.inject("429", retry_after=0.25)
    sleeps = []
    record, retries = call(client, sleeps=sleeps)
    assert retries == 1 and sleeps == [0.25] and record["content"] == '["a"]'


def test_backoff_grows_with_jitter(server, client):
    server.inject("500", count=3)
    sleeps = []
    _, retries = call(client, sleeps=sleeps)
    assert retries == 3
    for k, delay in enumerate(sleeps):
        assert 0.5 * 0.01 * 2**k <= delay < 1.5 * 0.01 * 2**k


@pytest.mark.parametrize("kind", ["500", "malformed", "empty", "drop"])
def test_transient_faults(server, client, kind):
    server.inject(kind)
    _, retries = call(client)
    assert retries == 1 and server.n_requests == 2


def test_timeout_is_retried(server, client):
    server.inject("delay", seconds=1.0)
    _, retries = call(client)
    assert retries == 1


def test_gives_up_with_a_reason(server, client):
    server.inject("500", count=5)
    with pytest.raises(llm_requests.RequestFailed, match="HTTP 500") as info:
        call(client, retries=2)
    assert info.value.attempts == 3 and "gave up after 3" in info.value.reason


def test_a_factory_clients_own_retries_are_switched_off(server):
    """A client built with retries of its own would retry under ours: five 500s
    with our 2 retries must cost 3 requests, not 3 x 6."""
    import openai

    def factory():
        return openai.OpenAI(base_url=server.base_url, api_key="sk-x", max_retries=5)

    client = llm_requests.make_client(client_factory=factory)
    assert client.max_retries == 0
    server.inject("500", count=5)
    with pytest.raises(llm_requests.RequestFailed):
        call(client, retries=2)
    assert server.n_requests == 3


def test_client_errors_are_not_retried():
    import openai

    # The HTTP library this openai build uses (httpx, or its fork httpx2).
    http = getattr(openai._exceptions, "httpx2", None) or pytest.importorskip("httpx")
    request = http.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = http.Response(400, request=request)
    calls = []

    def bad_request():
        calls.append(1)
        raise openai.BadRequestError(
            "response_format is not supported", response=response, body=None
        )

    with pytest.raises(llm_requests.RequestFailed, match="HTTP 400: response_f"):
        llm_requests.call_with_retries(bad_request, 3, sleep=lambda s: None)
    assert calls == [1]


def test_other_exceptions_propagate(client):
    def broken():
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        llm_requests.call_with_retries(broken, 3)


def test_run_concurrently_hands_results_to_the_caller_thread():
    caller = threading.get_ident()
    seen = []

    def worker(item):
        if item == 3:
            raise llm_requests.RequestFailed("nope", 1)
        return item * 10

    def on_done(item, result, error):
        assert threading.get_ident() == caller
        seen.append((item, result, error and error.reason))

    llm_requests.run_concurrently(range(6), worker, on_done, n_jobs=3)
    assert sorted(seen, key=lambda s: s[0]) == [
        (0, 0, None),
        (1, 10, None),
        (2, 20, None),
        (3, None, "nope"),
        (4, 40, None),
        (5, 50, None),
    ]


def test_an_interrupted_run_keeps_what_finished():
    seen = []

    def on_done(item, result, error):
        seen.append(item)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        llm_requests.run_concurrently(range(50), lambda i: i, on_done, n_jobs=1)
    assert len(seen) == 2


def test_usage_counters_are_thread_safe():
    usage = llm_requests.Usage()
    threads = [
        threading.Thread(target=lambda: [usage.add(requests=1) for _ in range(500)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert usage.as_dict()["requests"] == 2000
