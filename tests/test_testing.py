"""The local OpenAI-compatible test server, exercised through the real client."""

import json

import openai
import pytest
from openai import OpenAI

from skcandist.testing import FakeLLMServer


def _client(server, **kwargs):
    kwargs.setdefault("max_retries", 0)
    return OpenAI(base_url=server.base_url, api_key="sk-test", **kwargs)


def _ask(client):
    return client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hello there"}]
    )


def test_answers_from_function_and_counts(llm_server):
    llm_server.respond = lambda req: req["messages"][0]["content"].upper()
    answer = _ask(_client(llm_server))
    assert answer.choices[0].message.content == "HELLO THERE"
    assert answer.usage.prompt_tokens == 2
    assert llm_server.n_requests == 1
    assert llm_server.requests[0]["model"] == "m"


def test_completions_endpoint_with_logprobs(llm_server):
    llm_server.respond = lambda req: {
        "content": " A",
        "top_logprobs": {" A": -0.1, " B": -2.0},
    }
    out = _client(llm_server).completions.create(model="m", prompt="x", logprobs=5)
    assert out.choices[0].text == " A"
    assert out.choices[0].logprobs.top_logprobs[0] == {" A": -0.1, " B": -2.0}


def test_chat_logprobs_format(llm_server):
    llm_server.respond = lambda req: {
        "content": "A",
        "top_logprobs": {"A": -0.1, "B": -2.0},
    }
    out = _ask(_client(llm_server))
    tops = out.choices[0].logprobs.content[0].top_logprobs
    assert [t.token for t in tops] == ["A", "B"]


def test_429_carries_retry_after(llm_server):
    llm_server.inject("429", retry_after=3)
    with pytest.raises(openai.RateLimitError) as info:
        _ask(_client(llm_server))
    assert info.value.response.headers["retry-after"] == "3"
    assert _ask(_client(llm_server)).choices[0].message.content == "[]"


def test_500_then_recovers(llm_server):
    llm_server.inject("500", count=2)
    client = _client(llm_server)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            _ask(client)
    _ask(client)
    assert llm_server.n_requests == 3


def test_delay_triggers_client_timeout(llm_server):
    llm_server.inject("delay", seconds=1.0)
    with pytest.raises(openai.APITimeoutError):
        _ask(_client(llm_server, timeout=0.2))


def test_malformed_body_and_drop(llm_server):
    llm_server.inject("malformed")
    llm_server.inject("drop")
    client = _client(llm_server)
    with pytest.raises(json.JSONDecodeError):
        _ask(client)  # the client fails to decode the 200 body
    with pytest.raises(openai.APIConnectionError):
        _ask(client)


def test_rejects_non_loopback_host():
    with pytest.raises(ValueError, match="loopback"):
        FakeLLMServer(host="0.0.0.0")


def test_unknown_fault_kind(llm_server):
    with pytest.raises(ValueError, match="unknown fault"):
        llm_server.inject("explode")


def test_reset_forgets_requests_and_pending_faults(llm_server):
    client = _client(llm_server)
    _ask(client)
    llm_server.inject("500")
    llm_server.reset()
    assert llm_server.n_requests == 0
    assert _ask(client).choices[0].message.content == "[]"
    assert llm_server.n_requests == 1
