"""The annotator's trust defects (issue 10), each through the real openai client
against FakeLLMServer on 127.0.0.1: nothing lost, nothing mixed up, nothing wasted."""

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import openai
import pytest

from skcandist import CandidateAnnotator
from skcandist.exceptions import (
    AnnotationError,
    CacheWriteWarning,
    EmptyAnswerWarning,
    EndpointError,
)
from skcandist.llm import building
from skcandist.llm.cache import AnswerCache, default_cache_path
from skcandist.testing import FakeLLMServer

sys.path.insert(0, str(Path(__file__).parent))
from _llm import interruptible, make_annotator, query_text  # noqa: E402

LABELS = ["spam", "ham"]
TEXTS = ["WIN CASH NOW", "see you at dinner", "free prize, maybe a scam?"]


def make(server, **params):
    return make_annotator(server, LABELS, **params)


@pytest.fixture
def two_servers():
    with (
        FakeLLMServer(lambda r: '["spam"]') as a,
        FakeLLMServer(lambda r: '["ham"]') as b,
    ):
        yield a, b


def cached_count(path):
    store = AnswerCache(path)
    try:
        return len(store)
    finally:
        store.close()


# -- defect 1: a changed endpoint is used, and its answers are its own -------------
def test_set_params_base_url_sends_to_the_new_endpoint(two_servers, tmp_path):
    a, b = two_servers
    annotator = make(a, cache=tmp_path / "c.sqlite")
    first = annotator.fit_transform(["hello"])
    assert first.candidates.toarray().tolist() == [[1, 0]]
    annotator.set_params(base_url=b.base_url)
    second = annotator.transform(["hello"])
    assert second.candidates.toarray().tolist() == [[0, 1]]  # B's answer
    assert (a.n_requests, b.n_requests) == (1, 1)
    # Back to A: A's answer comes from the cache, under A's name, not B's.
    annotator.set_params(base_url=a.base_url)
    third = annotator.annotate(["hello"])
    assert third.candidates.toarray().tolist() == [[1, 0]]
    assert third.usage["cache_hits"] == 1 and (a.n_requests, b.n_requests) == (1, 1)


def test_set_params_timeout_is_obeyed(tmp_path):
    with FakeLLMServer(lambda r: '["spam"]', latency=1.0) as slow:
        annotator = make(slow, cache=None, max_retries=0, on_failure="abstain")
        assert annotator.fit_transform(["a"]).failures == {}
        annotator.set_params(timeout=0.2)
        out = annotator.annotate(["b"])
        assert "timeout" in out.failures[0]


def test_client_factory_answers_are_cached_under_its_url(two_servers, tmp_path):
    a, b = two_servers

    def factory_for(server):
        return lambda: openai.OpenAI(base_url=server.base_url, api_key="k")

    # base_url says A, the factory talks to B: B's answers are B's.
    annotator = make(a, cache=tmp_path / "c.sqlite", client_factory=factory_for(b))
    assert annotator.fit_transform(["hello"]).candidates.toarray().tolist() == [[0, 1]]
    assert (a.n_requests, b.n_requests) == (0, 1)
    annotator.set_params(client_factory=factory_for(a))
    assert annotator.annotate(["hello"]).candidates.toarray().tolist() == [[1, 0]]
    assert (a.n_requests, b.n_requests) == (1, 1)
    # A plain annotator on A finds A's answer cached (same identity, the URL).
    plain = make(a, cache=tmp_path / "c.sqlite")
    assert plain.fit_transform(["hello"]).usage["cache_hits"] == 1
    assert a.n_requests == 1


def test_a_registered_identity_survives_a_new_port(tmp_path):
    """The mechanism the embedded local LLM uses (its test is in test_llm_local)."""
    cache = tmp_path / "c.sqlite"
    usages = []
    for _ in range(2):
        with FakeLLMServer(lambda r: '["spam"]') as server:
            building.register_endpoint(server.base_url, "model-file-digest")
            try:
                usages.append(make(server, cache=cache).fit_transform(["x"]).usage)
            finally:
                building.unregister_endpoint(server.base_url)
    assert usages[0]["requests"] == 1 and usages[1]["requests"] == 0


# -- defect 3: the default keeps every answer ---------------------------------------
def test_default_cache_is_persistent_and_written_as_answers_arrive(
    _private_cache_dir,
):
    with FakeLLMServer(lambda r: '["spam"]') as server:
        server.inject("delay", 2)  # two answers arrive, then every request fails
        server.inject("status", -1, status=500)
        annotator = make(server, max_retries=1)
        assert annotator.cache == "auto"
        with pytest.raises(AnnotationError):
            annotator.fit_transform(TEXTS)
        path = default_cache_path()
        assert path.parent == _private_cache_dir
        assert cached_count(path) == 2  # kept, though the run failed
        server.clear_faults()
        before = server.n_requests
        rerun = make(server).fit_transform(TEXTS)  # a fresh annotator
        assert server.n_requests - before == 1
        assert rerun.usage["cache_hits"] == 2


def test_cache_none_keeps_nothing(_private_cache_dir):
    with FakeLLMServer(lambda r: '["spam"]') as server:
        make(server, cache=None).fit_transform(TEXTS)
        make(server, cache=None).fit_transform(TEXTS)
        assert server.n_requests == 6
    assert not default_cache_path().exists()


# -- defect 4: unusable answers are failed attempts, never cached ------------------
UNUSABLE = [
    ({"content": ""}, "empty reply"),
    ({"content": "I think it is spam"}, "not JSON"),
    ({"content": "", "refusal": "I can't help with that."}, "refused"),
    ({"content": '["sp', "finish_reason": "length"}, "token limit"),
    ({"content": '["spam"]', "finish_reason": "content_filter"}, "content filter"),
]


@pytest.mark.parametrize("bad, reason", UNUSABLE)
def test_unusable_answers_are_retried_and_never_cached(bad, reason, tmp_path):
    calls = []

    def respond(request):
        calls.append(1)
        return bad if len(calls) == 1 else '["spam"]'

    cache = tmp_path / "c.sqlite"
    with FakeLLMServer(respond) as server:
        out = make(server, cache=cache).fit_transform(["x"])
        assert out.candidates.toarray().tolist() == [[1, 0]]
        assert out.usage["retries"] == 1 and server.n_requests == 2
    assert AnswerCache(cache).get_many([k for k in _keys(cache)]) and _contents(
        cache
    ) == ['["spam"]']


@pytest.mark.parametrize("bad, reason", UNUSABLE)
def test_answers_that_stay_unusable_are_failures(bad, reason, tmp_path):
    cache = tmp_path / "c.sqlite"
    with FakeLLMServer(lambda r: bad) as server:
        annotator = make(server, cache=cache, max_retries=2, on_failure="abstain")
        out = annotator.fit_transform(["x"])
        assert reason in annotator.failures_[0] and reason in out.failures[0]
        assert out.candidates.toarray().tolist() == [[0, 0]]
        assert server.n_requests == 3
        # the retries spent on a text that failed for good are counted
        assert (annotator.usage_["requests"], annotator.usage_["retries"]) == (3, 2)
        assert cached_count(cache) == 0
        annotator.annotate(["x"])  # nothing cached: asked again
        assert server.n_requests == 6


def test_a_valid_answer_naming_no_label_is_an_answer(tmp_path):
    cache = tmp_path / "c.sqlite"
    with FakeLLMServer(lambda r: "[]") as server:
        with pytest.warns(EmptyAnswerWarning):
            out = make(server, cache=cache).fit_transform(["x"])
        assert out.candidates.toarray().tolist() == [[1, 1]]  # on_empty="all"
        assert server.n_requests == 1 and cached_count(cache) == 1


def test_text_mode_accepts_free_text(tmp_path):
    with FakeLLMServer(lambda r: "It is spam.") as server:
        out = make(server, answer="text", cache=None).fit_transform(["x"])
        assert out.candidates.toarray().tolist() == [[1, 0]]
        assert server.n_requests == 1


def _keys(path):
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT key FROM answers")]


def _contents(path):
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT answer FROM answers").fetchall()
    return [json.loads(row[0])["content"] for row in rows]


# -- defect 5: fatal errors stop the run ---------------------------------------------
@pytest.mark.parametrize(
    "status, code, shown",
    [
        (401, "invalid_api_key", "HTTP 401"),
        (403, None, "HTTP 403"),
        (404, "model_not_found", "HTTP 404"),
        (429, "insufficient_quota", "insufficient_quota"),
    ],
)
def test_fatal_errors_stop_after_the_first_requests(status, code, shown, tmp_path):
    texts = [f"text number {i}" for i in range(60)]
    with FakeLLMServer(lambda r: '["spam"]') as server:
        server.inject("status", -1, status=status, code=code)
        annotator = make(server, cache=tmp_path / "c.sqlite", n_jobs=4)
        with pytest.raises(EndpointError) as info:
            annotator.fit_transform(texts)
        message = str(info.value)
        assert shown in message and server.base_url in message
        assert server.n_requests <= 8  # the requests in flight, not 60


def test_a_plain_rate_limit_is_still_retried(tmp_path):
    with FakeLLMServer(lambda r: '["spam"]') as server:
        server.inject("status", 2, status=429, code="rate_limit_exceeded")
        out = make(server, cache=None).fit_transform(["x"])
        assert out.candidates.toarray().tolist() == [[1, 0]]
        assert out.usage["retries"] == 2


def test_a_fatal_error_keeps_the_answers_received(tmp_path):
    cache = tmp_path / "c.sqlite"
    with FakeLLMServer(lambda r: '["spam"]') as server:
        server.inject("delay", 3)
        server.inject("status", -1, status=401)
        with pytest.raises(EndpointError, match="3 answer"):
            make(server, cache=cache, n_jobs=1).fit_transform(
                [f"t{i}" for i in range(10)]
            )
    assert cached_count(cache) == 3


# -- defect 6: Ctrl-C does not wait out the backoff ---------------------------------
INTERRUPTED_RUN = textwrap.dedent(
    """
    import sys
    from skcandist import CandidateAnnotator
    annotator = CandidateAnnotator(
        ["spam", "ham"], base_url=sys.argv[1], cache=sys.argv[2], n_jobs=2,
        retrieval="tfidf", verbose=0, max_retries=5)
    print("start", flush=True)
    annotator.fit_transform([f"text {i}" for i in range(8)])
    """
)


def test_ctrl_c_ends_a_run_within_seconds_and_keeps_the_answers(tmp_path):
    cache = tmp_path / "c.sqlite"
    script = tmp_path / "run.py"
    script.write_text(INTERRUPTED_RUN)
    with FakeLLMServer(lambda r: '["spam"]') as server:
        server.inject("delay", 3)  # three answers, then 429s asking for 30 s
        server.inject("429", -1, retry_after=30)
        proc = subprocess.Popen(
            [sys.executable, str(script), server.base_url, str(cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=interruptible,
        )
        try:
            deadline = time.monotonic() + 60
            while server.n_requests < 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.n_requests >= 5  # both workers now wait 30 s
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            # Far less than the 30 s the server asked to wait.
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr = proc.stderr.read().decode()
    assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
    assert cached_count(cache) == 3


# -- defect 7: crashes inside a worker -----------------------------------------------
class OddAPIError(openai.APIError):
    """An APIError subclass the retry code does not know."""


def _odd_error():
    # The client's own HTTP request type: openai 3 reads the request's headers
    # when the error is made (``request=None`` raised AttributeError there).
    from openai import _exceptions

    http = getattr(_exceptions, "httpx", None) or _exceptions.httpx2
    request = http.Request("POST", "http://127.0.0.1/v1/chat/completions")
    return OddAPIError("weird body", request=request, body=None)


def test_unknown_api_error_fails_one_text_not_the_run(monkeypatch):
    from openai.resources.chat import completions as chat_module

    real = chat_module.Completions.create

    def create(self, **params):
        if "odd one" in params["messages"][-1]["content"]:
            raise _odd_error()
        return real(self, **params)

    monkeypatch.setattr(chat_module.Completions, "create", create)
    with FakeLLMServer(lambda r: '["spam"]') as server:
        annotator = make(server, cache=None, on_failure="abstain")
        out = annotator.fit_transform(["fine", "the odd one", "also fine"])
    assert list(out.failures) == [1] and "OddAPIError" in out.failures[1]
    assert out.candidates.toarray().tolist() == [[1, 0], [0, 0], [1, 0]]


def test_an_unexpected_exception_in_a_worker_fails_that_text(monkeypatch):
    from skcandist.llm import requests as llm_requests

    real = llm_requests.send

    def send(client, request):
        if "broken" in json.dumps(request["params"]["messages"][-1]):
            raise TypeError("'NoneType' object is not subscriptable")
        return real(client, request)

    monkeypatch.setattr(llm_requests, "send", send)
    with FakeLLMServer(lambda r: '["spam"]') as server:
        with pytest.raises(AnnotationError, match="unexpected TypeError") as info:
            make(server, cache=None).fit_transform(["ok", "broken text"])
    assert list(info.value.failures) == [1]


def test_a_cache_that_cannot_be_written_warns_and_keeps_the_answers(
    tmp_path, monkeypatch
):
    def put(self, key, answer):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(AnswerCache, "put", put)
    with FakeLLMServer(lambda r: '["spam"]') as server:
        with pytest.warns(CacheWriteWarning, match="disk I/O error"):
            out = make(server, cache=tmp_path / "c.sqlite").fit_transform(TEXTS)
    assert out.candidates.toarray()[:, 0].tolist() == [1, 1, 1]
    assert out.failures == {}


# -- defect 9: parsing that does not guess -------------------------------------------
@pytest.mark.parametrize(
    "labels, answer, expected",
    [
        (["Sci", "Sci/Tech"], '["Sci/Tech (technology)"]', [[0, 1]]),
        (["spam", "not spam"], '["No."]', [[1, 1]]),  # no guess: on_empty="all"
        (["spam", "not spam"], '{"spam": true, "not spam": false}', [[1, 0]]),
        (["spam", "not spam"], '{"spam": 0.2, "not spam": 0.8}', [[0, 1]]),
        (["spam", "not spam"], '["spam", null]', [[1, 0]]),
    ],
)
def test_json_answers_are_read_without_guessing(labels, answer, expected):
    with FakeLLMServer(lambda r: answer) as server:
        annotator = CandidateAnnotator(
            labels, base_url=server.base_url, cache=None, verbose=0, retrieval="tfidf"
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = annotator.fit_transform(["some text"])
        assert out.candidates.toarray().tolist() == expected
        assert out.usage["unknown_labels"] == (1 if answer == '["No."]' else 0)
        assert not any("None" in str(w.message) for w in caught)


def test_negated_label_in_free_text_is_not_a_vote():
    with FakeLLMServer(lambda r: "This is not positive at all; negative.") as server:
        annotator = CandidateAnnotator(
            ["positive", "negative"], base_url=server.base_url, answer="text",
            cache=None, verbose=0, retrieval="tfidf",
        )  # fmt: skip
        out = annotator.fit_transform(["meh"])
    assert out.candidates.toarray().tolist() == [[0, 1]]


def test_labels_differing_only_in_punctuation_are_rejected_at_fit():
    from skcandist.exceptions import InvalidInputError

    with pytest.raises(InvalidInputError, match="punctuation"):
        CandidateAnnotator(["Sci/Tech", "Sci-Tech", "World"]).fit()


def _pieces(text):
    """A toy tokenizer: " business" -> [" bus", "iness"]; other words whole."""
    pieces = []
    for i, word in enumerate(text.split(" ")):
        word = (" " if i or text.startswith(" ") else "") + word
        if not word.strip():
            continue
        pieces += [word[:4], word[4:]] if len(word.strip()) > 6 else [word]
    return pieces


def test_logprob_tokens_must_be_a_labels_exact_first_token(tmp_path):
    top = {" b": math.log(0.5), " bus": math.log(0.3), " sports": math.log(0.2)}
    labels = ["business", "sports"]
    with FakeLLMServer(
        lambda r: {"content": " b", "top_logprobs": top}, tokenizer=_pieces
    ) as server:
        annotator = CandidateAnnotator(
            labels, base_url=server.base_url, answer="logprobs", cache=None,
            verbose=0, retrieval="tfidf",
        )  # fmt: skip
        out = annotator.fit_transform(["stocks fell"])
        assert annotator.label_tokens_[0] >= {" bus"}
        # " b" is a prefix of "business" but not its first token: no mass.
        np.testing.assert_allclose(out.label_proba, [[0.6, 0.4]])
        assert server.tokenize_requests  # asked the server's tokenizer
        # Given explicitly, no tokenizer route is needed.
        given = annotator.set_params(label_tokens={"business": " b", "sports": " s"})
        np.testing.assert_allclose(given.fit_transform(["x"]).label_proba, [[1, 0]])


def test_without_a_tokenizer_route_the_prefix_rule_is_kept():
    top = {" bus": math.log(0.75), " sports": math.log(0.25)}
    with FakeLLMServer(lambda r: {"content": " bus", "top_logprobs": top}) as server:
        annotator = CandidateAnnotator(
            ["business", "sports"], base_url=server.base_url, answer="logprobs",
            cache=None, verbose=0, retrieval="tfidf",
        )  # fmt: skip
        out = annotator.fit_transform(["x"])
    assert annotator.label_tokens_ is None
    np.testing.assert_allclose(out.label_proba, [[0.75, 0.25]])


def test_batch_calibration_does_not_depend_on_the_company_a_text_keeps():
    dists = {
        "a": {" spam": math.log(0.9), " ham": math.log(0.1)},
        "b": {" spam": math.log(0.6), " ham": math.log(0.4)},
        "c": {" spam": math.log(0.5), " ham": math.log(0.5)},
    }

    def respond(request):
        top = dists[query_text(dict(request, _endpoint="completions"))]
        return {"content": " spam", "top_logprobs": top}

    with FakeLLMServer(respond) as server:
        annotator = CandidateAnnotator(
            LABELS, base_url=server.base_url, answer="logprobs", calibration="batch",
            proba_ratio=0.5, cache=None, verbose=0, retrieval="tfidf",
        )  # fmt: skip
        together = annotator.fit_transform(["a", "b", "c"])
        alone = annotator.annotate(["b"])
        np.testing.assert_allclose(alone.label_proba, together.label_proba[[1]])
        np.testing.assert_allclose(
            annotator.calibration_reference_, [(0.9 + 0.6 + 0.5) / 3, 0.5 / 1.5]
        )
        # One text alone no longer gets every label.
        single = annotator.annotate(["a"])
        assert single.candidates.toarray().tolist() == [[1, 0]]
        with pytest.raises(Exception, match="fit\\(X\\)"):
            annotator.fit()


# -- defect 10: settings modern endpoints need ----------------------------------------
def test_temperature_none_seed_max_tokens_and_extra_body():
    with FakeLLMServer(lambda r: '["spam"]') as server:
        make(
            server, cache=None, temperature=None, seed=11, max_tokens=64,
            extra_body={"guided_choice": ["spam", "ham"]},
        ).fit_transform(["x"])  # fmt: skip
        body = server.requests[-1]
        assert "temperature" not in body
        assert body["seed"] == 11 and body["max_tokens"] == 64
        assert body["guided_choice"] == ["spam", "ham"]
        make(server, cache=None).fit_transform(["x"])
        assert server.requests[-1]["temperature"] == 0.3
        assert "seed" not in server.requests[-1]


def test_new_settings_are_part_of_the_cache_key(tmp_path):
    cache = tmp_path / "c.sqlite"
    with FakeLLMServer(lambda r: '["spam"]') as server:
        for params in ({}, {"seed": 1}, {"extra_body": {"top_k": 5}}, {"seed": 1}):
            make(server, cache=cache, **params).fit_transform(["x"])
        assert server.n_requests == 3  # the last one repeats the second


@pytest.mark.parametrize(
    "params, match",
    [
        ({"seed": 1.5}, "seed"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"extra_body": ["x"]}, "extra_body"),
        ({"extra_body": {"f": object()}}, "JSON"),
        ({"cache": 3}, "cache"),
        ({"label_tokens": {"spam": " s"}}, "no token for label 'ham'"),
    ],
)
def test_new_parameters_are_validated(params, match):
    from skcandist.exceptions import InvalidInputError

    with pytest.raises(InvalidInputError, match=match):
        CandidateAnnotator(LABELS, **params).fit()


# -- defect 11: transform leaves the fitted state alone --------------------------------
def test_transform_does_not_rewrite_fitted_attributes(tmp_path):
    with FakeLLMServer(lambda r: '["spam"]') as server:
        annotator = make(server, cache=tmp_path / "c.sqlite")
        annotator.fit_transform(TEXTS)
        fitted = dict(annotator.usage_)
        assert fitted["requests"] == 3 and fitted["texts"] == 3
        server.inject("status", -1, status=500)
        out = annotator.set_params(on_failure="abstain").transform(["new text"])
        assert out.usage["texts"] == 1 and out.usage["failures"] == 1
        assert annotator.usage_ == fitted and annotator.failures_ == {}


def test_one_fitted_annotator_serves_several_threads(tmp_path):
    answers = {f"text {i}": '["spam"]' if i % 2 else '["ham"]' for i in range(40)}

    def respond(request):
        time.sleep(0.01)
        return answers[query_text(request)]

    with FakeLLMServer(respond) as server:
        annotator = make(server, cache=tmp_path / "c.sqlite", n_jobs=2).fit()
        chunks = [list(answers)[i::4] for i in range(4)]
        results = [None] * 4

        def work(j):
            results[j] = annotator.annotate(chunks[j])

        threads = [threading.Thread(target=work, args=(j,)) for j in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for chunk, out in zip(chunks, results):
        expected = [[0, 1] if answers[t] == '["ham"]' else [1, 0] for t in chunk]
        assert out.candidates.toarray().tolist() == expected
        assert out.usage["texts"] == len(chunk) == out.usage["requests"]
    assert server.n_requests == 40
    assert os.path.getsize(tmp_path / "c.sqlite") > 0
