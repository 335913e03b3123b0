"""The annotator's pieces on their own: retrieval, building, decoding, policies,
and the client / cache holders of fetching."""

import math
import warnings

import numpy as np
import openai
import pytest

from skcandist.exceptions import AnnotationError, EmptyAnswerWarning
from skcandist.llm import building, decoding, fetching, policies
from skcandist.llm.requests import UnusableAnswerError
from skcandist.llm.retrieval import DemoRetriever

POOL = [
    ("free cash prize now", "spam"),
    ("lunch at noon today", "ham"),
    ("win a free prize", "spam"),
    ("see you at lunch", "ham"),
]
LABELS = {"spam": "ads", "ham": None}


# -- retrieval ---------------------------------------------------------------------
def test_tfidf_retrieval_puts_the_nearest_last_and_skips_the_query_itself():
    retriever = DemoRetriever(POOL, k=2, method="tfidf").fit()
    demos = retriever.select(["win a free prize", "lunch today?"])
    assert ("win a free prize", "spam") not in demos[0]  # never its own demo
    assert demos[0][-1] == ("free cash prize now", "spam")
    assert len(demos[1]) == 2 and demos[1][-1][1] == "ham"


def test_random_retrieval_depends_on_the_text_and_seed_only():
    retriever = DemoRetriever(POOL, k=2, method="random", random_state=3).fit()
    alone = retriever.select(["hello"])[0]
    in_company = retriever.select(["other", "hello", "more"])[1]
    assert alone == in_company
    other_seed = DemoRetriever(POOL, k=4, method="random", random_state=4).fit()
    assert sorted(other_seed.select(["hello"])[0]) == sorted(POOL)


def test_no_pool_or_k_zero_gives_no_demonstrations():
    assert DemoRetriever([], k=5).fit().select(["a", "b"]) == [[], []]
    assert DemoRetriever(POOL, k=0).fit().select(["a"]) == [[]]


# -- building ----------------------------------------------------------------------
def builder(**params):
    base = dict(model="m", prompt="all", task=None, answer="json", temperature=0.3)
    base.update(top_logprobs=50)
    base.update(params)
    return building.RequestBuilder(LABELS, **base)


def test_request_modes_and_pass_through_settings():
    chat = builder(seed=3, max_tokens=20, extra_body={"top_k": 2}).build("x", [])
    assert chat["endpoint"] == "chat" and "response_format" in chat["params"]
    assert chat["params"]["seed"] == 3 and chat["params"]["max_tokens"] == 20
    assert chat["params"]["extra_body"] == {"top_k": 2}
    logprobs = builder(answer="logprobs", max_tokens=20).build("x", [])
    assert logprobs["endpoint"] == "completions" and logprobs["logprobs"]
    assert logprobs["params"]["max_tokens"] == 1  # one token, whatever is asked
    chat_lp = builder(answer="chat_logprobs").build("x", [])
    assert chat_lp["params"]["top_logprobs"] == 20  # the chat endpoint's cap
    assert "temperature" not in builder(temperature=None).build("x", [])["params"]


def test_cache_keys_follow_identity_mode_and_body():
    request = builder().build("x", [])
    key = building.cache_key(request, "http://a/v1", "json")
    assert key == building.cache_key(builder().build("x", []), "http://a/v1", "json")
    assert key != building.cache_key(request, "http://b/v1", "json")
    assert key != building.cache_key(request, "http://a/v1", "text")
    assert key != building.cache_key(
        builder(seed=1).build("x", []), "http://a/v1", "json"
    )


def test_endpoint_identity(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert building.endpoint_identity(None) == "https://api.openai.com/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env-host:1/v1/")
    assert building.endpoint_identity(None) == "http://env-host:1/v1"
    client = openai.OpenAI(base_url="http://client-host:2/v1", api_key="k")
    assert building.endpoint_identity("http://other/v1", client=client) == (
        "http://client-host:2/v1"
    )
    building.register_endpoint("http://127.0.0.1:9/v1", "stable-name")
    try:
        assert building.endpoint_identity("http://127.0.0.1:9/v1/") == "stable-name"
    finally:
        building.unregister_endpoint("http://127.0.0.1:9/v1")
    assert building.endpoint_identity("http://127.0.0.1:9/v1") != "stable-name"


# -- decoding ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "record, answer, usable",
    [
        ({"content": '["spam"]', "finish_reason": "stop"}, "json", True),
        ({"content": "[]", "finish_reason": "stop"}, "json", True),
        ({"content": "spam", "finish_reason": "stop"}, "json", False),
        ({"content": "spam", "finish_reason": "stop"}, "text", True),
        ({"content": "  ", "finish_reason": "stop"}, "text", False),
        ({"content": "spam", "finish_reason": "length"}, "text", False),
        ({"content": "", "finish_reason": "length"}, "logprobs", True),
        ({"content": "x", "finish_reason": "content_filter"}, "logprobs", False),
        ({"content": '["ham"]', "refusal": "no"}, "json", False),
    ],
)
def test_check_usable(record, answer, usable):
    if usable:
        decoding.check_usable(record, answer)
    else:
        with pytest.raises(UnusableAnswerError):
            decoding.check_usable(record, answer)


def test_decoder_text_modes():
    decoder = decoding.AnswerDecoder(LABELS, "json")
    out = decoder.decode([{"content": '["ham", "spam"]'}, None, {"content": '["x"]'}])
    assert out.candidates.tolist() == [[1, 1], [0, 0], [0, 0]]
    assert out.single.tolist() == [1, -1, -1]
    assert out.empty == [2] and out.unknown == ["x"]
    first = decoding.AnswerDecoder(LABELS, "json", first_only=True)
    assert first.decode([{"content": '["ham", "spam"]'}]).candidates.tolist() == [
        [0, 1]
    ]


def test_decoder_logprob_mode_with_a_reference():
    top = {" spam": math.log(0.6), " ham": math.log(0.4)}
    decoder = decoding.AnswerDecoder(LABELS, "logprobs", proba_ratio=0.9)
    plain = decoder.decode([{"top_logprobs": top}, None, {"top_logprobs": {" x": 0.0}}])
    np.testing.assert_allclose(plain.proba[0], [0.6, 0.4])
    assert np.isnan(plain.proba[1]).all() and plain.empty == [2]
    calibrated = decoder.decode([{"top_logprobs": top}], reference=np.array([0.6, 0.4]))
    np.testing.assert_allclose(calibrated.proba[0], [0.5, 0.5], atol=1e-3)
    assert calibrated.candidates.tolist() == [[1, 1]]


# -- policies ----------------------------------------------------------------------
def test_empty_policies():
    for policy, row in (("all", [1, 1]), ("abstain", [0, 0])):
        candidates = np.zeros((2, 2), dtype=np.int8)
        failures = {}
        with pytest.warns(EmptyAnswerWarning):
            policies.apply_empty([1], candidates, failures, policy)
        assert candidates.tolist() == [[0, 0], row] and failures == {}
    failures = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        policies.apply_empty([0], np.zeros((1, 2)), failures, "error")
    assert failures == {0: "the answer named no valid label"}


def test_failure_policies():
    candidates = np.array([[1, 0], [0, 0]], dtype=np.int8)
    single = np.array([0, 1])
    with pytest.raises(AnnotationError, match="1 of 2") as info:
        policies.apply_failures(
            candidates, single, {1: "timeout"}, "raise", cached=True
        )
    assert info.value.failures == {1: "timeout"}
    policies.apply_failures(candidates, single, {1: "timeout"}, "all", cached=False)
    assert candidates.tolist() == [[1, 0], [1, 1]] and single.tolist() == [0, -1]


# -- fetching: holders -------------------------------------------------------------
def test_client_holder_rebuilds_on_a_change(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    holder = fetching.ClientHolder()
    one = holder.get("http://a:1/v1", 5.0, None)
    assert holder.get("http://a:1/v1", 5.0, None) is one
    two = holder.get("http://b:1/v1", 5.0, None)
    assert two is not one and str(two.base_url).startswith("http://b:1")
    three = holder.get("http://b:1/v1", 9.0, None)
    assert three is not two and three.timeout == 9.0
    made = []

    def factory():
        made.append(1)
        return openai.OpenAI(base_url="http://c:1/v1", api_key="k", max_retries=7)

    four = holder.get("http://b:1/v1", 9.0, factory)
    assert made == [1] and four.max_retries == 0  # its own retries are off


def test_cache_holder_reopens_on_a_new_path(tmp_path):
    holder = fetching.CacheHolder()
    assert holder.get(None) is None
    first = holder.get(tmp_path / "a.sqlite")
    assert holder.get(tmp_path / "a.sqlite") is first
    assert holder.get(tmp_path / "b.sqlite").path == str(tmp_path / "b.sqlite")
