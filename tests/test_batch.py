"""Large jobs: the Batch API, batch files for offline engines, rate limits.

Everything goes through the real ``openai`` client against FakeLLMServer on
127.0.0.1 (its files and batches routes), so no test needs a network.
"""

import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from _llm import make_annotator

from skcandist.exceptions import BatchPendingError, EndpointError, InvalidInputError
from skcandist.llm import batch as llm_batch
from skcandist.llm.cache import AnswerCache
from skcandist.llm.requests import RateLimiter, Usage
from skcandist.testing import FakeLLMServer, candidate_responder, run_batch_file

LABELS = ["ham", "spam"]
TEXTS = [f"message number {i}: {'win cash' if i % 3 else 'see you'}" for i in range(24)]
ANSWERS = {t: (["spam"] if i % 3 else ["ham", "spam"]) for i, t in enumerate(TEXTS)}


@pytest.fixture
def server():
    with FakeLLMServer(candidate_responder(ANSWERS)) as srv:
        yield srv


def _batch_annotator(server, cache, **params):
    params.setdefault("batch_poll_interval", 0.05)
    return make_annotator(
        server, LABELS, use_batch_api=True, cache=str(cache), n_examples=0, **params
    )


def _sets(annotated):
    classes = np.asarray(annotated.classes)
    return [set(classes[row.astype(bool)]) for row in annotated.candidates.toarray()]


def _expected(texts=TEXTS):
    return [set(ANSWERS[t]) for t in texts]


def test_batch_job_end_to_end_with_shuffled_output_and_failing_lines(server, tmp_path):
    server.batch_delay = 0.3
    server.batch_error_lines = 4
    annotator = _batch_annotator(server, tmp_path / "c.sqlite")
    out = annotator.fit_transform(TEXTS)
    assert _sets(out) == _expected()
    assert server.n_batches == 1
    (batch,) = server.batches.values()
    assert batch["status"] == "completed"
    assert batch["endpoint"] == "/v1/chat/completions"
    # one line per request, the cache key as custom_id, the online body
    (upload,) = [f for f in server.files.values() if f["purpose"] == "batch"]
    lines = [json.loads(x) for x in upload["data"].splitlines()]
    assert len(lines) == len(TEXTS)
    keys = {r["key"] for r in annotator.build_requests(TEXTS)}
    assert {x["custom_id"] for x in lines} == keys
    assert all(x["method"] == "POST" and "messages" in x["body"] for x in lines)
    # the output came back in another order than the input
    output = server.files[batch["output_file_id"]]["data"].splitlines()
    order = [json.loads(x)["custom_id"] for x in output]
    assert order != [x["custom_id"] for x in lines[4:]]
    # the 4 failed lines were retried online, and only they
    assert server.n_requests == 4 and len(server.batch_requests) == len(TEXTS) - 4
    usage = annotator.usage_
    assert (usage["batches"], usage["batch_requests"], usage["requests"]) == (1, 24, 4)
    assert usage["failures"] == 0


def test_a_cached_rerun_creates_no_batch_and_sends_no_request(server, tmp_path):
    cache = tmp_path / "c.sqlite"
    _batch_annotator(server, cache).fit_transform(TEXTS)
    batches, sent = server.n_batches, server.n_requests
    out = _batch_annotator(server, cache).fit_transform(TEXTS[::-1])
    assert _sets(out) == _expected(TEXTS[::-1])
    assert (server.n_batches, server.n_requests) == (batches, sent)


@pytest.mark.parametrize("outcome", ["expired", "cancelled", "failed"])
def test_lines_of_an_unfinished_batch_are_retried_online(server, tmp_path, outcome):
    server.inject_batch(outcome)
    annotator = _batch_annotator(server, tmp_path / "c.sqlite")
    out = annotator.fit_transform(TEXTS)
    assert _sets(out) == _expected()
    answered_in_batch = 0 if outcome == "failed" else len(TEXTS) // 2
    assert len(server.batch_requests) == answered_in_batch
    assert server.n_requests == len(TEXTS) - answered_in_batch
    assert server.n_batches == 1


def test_batch_answers_that_are_unusable_are_retried_and_never_cached(tmp_path):
    def respond(request):
        return {"content": "", "finish_reason": "length"}

    with FakeLLMServer(respond) as srv:
        annotator = _batch_annotator(srv, tmp_path / "c.sqlite", max_retries=0)
        annotator.set_params(on_failure="abstain")
        out = annotator.fit_transform(TEXTS[:3])
    assert len(srv.batch_requests) == 3 and srv.n_requests == 3
    assert len(out.failures) == 3
    assert len(AnswerCache(tmp_path / "c.sqlite")) == 0


def test_batch_wait_false_names_the_batches_and_a_later_call_collects(server, tmp_path):
    server.batch_delay = 60.0  # still running when the first call returns
    cache = tmp_path / "c.sqlite"
    with pytest.raises(BatchPendingError) as info:
        _batch_annotator(server, cache, batch_wait=False).fit_transform(TEXTS)
    (batch_id,) = info.value.batch_ids
    assert batch_id in str(info.value) and batch_id in server.batches
    with pytest.raises(BatchPendingError):  # still running: no second batch
        _batch_annotator(server, cache, batch_wait=False).fit_transform(TEXTS)
    assert server.n_batches == 1
    server._batch_state[batch_id]["delay"] = 0.0  # the batch ends
    # a script that never waits collects once the batch has ended
    out = _batch_annotator(server, cache, batch_wait=False).fit_transform(TEXTS)
    assert _sets(out) == _expected()
    assert (server.n_batches, server.n_requests) == (1, 0)


def test_kill_9_while_polling_then_a_rerun_resumes_the_recorded_batch(server, tmp_path):
    server.batch_delay = 3.0
    cache = tmp_path / "c.sqlite"
    script = textwrap.dedent(
        f"""
        from skcandist import CandidateAnnotator
        annotator = CandidateAnnotator(
            {LABELS!r}, base_url={server.base_url!r}, use_batch_api=True,
            batch_poll_interval=0.1, cache={str(cache)!r}, n_examples=0,
            retrieval="tfidf", verbose=0)
        annotator.fit_transform({TEXTS!r})
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.n_batches and AnswerCache(cache).pending_batches(
            f"{server.base_url}"
        ):
            break
        assert process.poll() is None, "the job ended before it was killed"
        time.sleep(0.05)
    time.sleep(0.3)  # polling
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert server.n_batches == 1
    out = _batch_annotator(server, cache).fit_transform(TEXTS)
    assert _sets(out) == _expected()
    assert (server.n_batches, server.n_requests) == (1, 0)
    assert AnswerCache(cache).pending_batches(server.base_url) == []


def test_large_jobs_are_split_into_several_batches(server, tmp_path):
    annotator = _batch_annotator(server, tmp_path / "c.sqlite").fit()
    requests = annotator._uncached(TEXTS)
    store = AnswerCache(tmp_path / "c.sqlite")
    settings = llm_batch.BatchSettings(0.05, max_lines=10)
    usage = Usage()
    answers, left_over, _ = llm_batch.run_batches(
        requests,
        client=annotator._get_client(),
        store=store,
        check=lambda record: None,
        usage=usage,
        identity=server.base_url,
        settings=settings,
    )
    assert server.n_batches == 3 and len(answers) == len(TEXTS) and not left_over
    sizes = sorted(b["request_counts"]["total"] for b in server.batches.values())
    assert sizes == [4, 10, 10] and usage.as_dict()["batches"] == 3
    big = {"endpoint": "chat", "params": {"messages": "x" * 100}}
    line = ("k", llm_batch._encode("k", big))
    with pytest.raises(InvalidInputError, match="above the 50-byte limit"):
        llm_batch.split_lines([line], max_bytes=50)


def test_an_endpoint_without_the_batch_api_gets_a_clear_error(server, tmp_path):
    server.batch_api = False
    with pytest.raises(EndpointError, match="has no Batch API"):
        _batch_annotator(server, tmp_path / "c.sqlite").fit_transform(TEXTS[:2])
    assert server.n_requests == 0


# -- batch files for offline engines --------------------------------------------
def test_batch_file_written_answered_offline_read_back_then_no_request(
    server, tmp_path
):
    cache = tmp_path / "c.sqlite"
    annotator = make_annotator(server, LABELS, cache=str(cache), n_examples=0).fit()
    assert annotator.write_batch_file(TEXTS + TEXTS[:3], tmp_path / "in.jsonl") == 24
    assert server.n_requests == 0
    lines = [json.loads(x) for x in open(tmp_path / "in.jsonl")]
    assert {x["url"] for x in lines} == {"/v1/chat/completions"}
    # what `vllm run-batch -i in.jsonl -o out.jsonl` does, here offline
    answered = run_batch_file(
        tmp_path / "in.jsonl", tmp_path / "out.jsonl", server.respond
    )
    assert answered == 24
    report = annotator.read_batch_results(tmp_path / "out.jsonl")
    assert report == {"stored": 24, "failed": {}}
    out = annotator.fit_transform(TEXTS)
    assert _sets(out) == _expected() and server.n_requests == 0
    # nothing is left to write once everything is cached
    assert annotator.write_batch_file(TEXTS, tmp_path / "again.jsonl") == 0


def test_read_batch_results_reports_failed_lines_and_refuses_garbage(server, tmp_path):
    annotator = make_annotator(server, LABELS, cache=str(tmp_path / "c.sqlite"))
    annotator.set_params(n_examples=0).fit()
    good = {"id": "1", "custom_id": "a", "error": None, "response": {
        "status_code": 200, "body": {"id": "x", "object": "chat.completion",
        "created": 0, "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": '["spam"]'}}]}}}  # fmt: skip
    bad = {"id": "2", "custom_id": "b", "error": {"message": "boom"}, "response": None}
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    report = annotator.read_batch_results(path)
    assert report["stored"] == 1 and list(report["failed"]) == ["b"]
    assert "boom" in report["failed"]["b"]
    path.write_text("this is not json\n")
    with pytest.raises(InvalidInputError, match="line 1 of the batch results"):
        annotator.read_batch_results(path)


# -- rate limits -----------------------------------------------------------------
class _FakeClock:
    def __init__(self):
        self.now = 0.0
        self.waits = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.waits.append(seconds)
        self.now += seconds


def test_rate_limiter_paces_requests_and_tokens():
    clock = _FakeClock()
    limiter = RateLimiter(60, clock=clock, sleep=clock.sleep)  # 1 a second
    for _ in range(10):
        limiter.acquire()
    assert clock.now == pytest.approx(9.0)
    clock = _FakeClock()
    limiter = RateLimiter(None, 600, clock=clock, sleep=clock.sleep)  # 10 tokens/s
    for _ in range(4):
        limiter.acquire(tokens=10)
    assert clock.now == pytest.approx(4.0)
    # a request above a second's budget waits for it instead of hanging
    clock = _FakeClock()
    limiter = RateLimiter(None, 60, clock=clock, sleep=clock.sleep)
    limiter.acquire(tokens=5)
    limiter.acquire(tokens=5)
    assert clock.now == pytest.approx(10.0, abs=1e-6)
    # the two limits together: the slower one sets the pace
    clock = _FakeClock()
    limiter = RateLimiter(600, 600, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        limiter.acquire(tokens=10)
    assert clock.now == pytest.approx(3.0)


@pytest.mark.parametrize("bad", [0, -5, "fast", True])
def test_rate_limits_must_be_positive(server, bad):
    with pytest.raises(InvalidInputError, match="max_requests_per_minute"):
        make_annotator(server, LABELS, max_requests_per_minute=bad).fit()


def test_a_rate_limited_run_answers_everything(server, tmp_path):
    annotator = make_annotator(
        server, LABELS, cache=None, n_examples=0, max_requests_per_minute=6000,
        max_tokens_per_minute=10**6, n_jobs=4,
    )  # fmt: skip
    out = annotator.fit_transform(TEXTS)
    assert _sets(out) == _expected() and server.n_requests == len(TEXTS)


def test_cli_batch_and_rpm(server, tmp_path, capsys):
    import csv

    from skcandist.cli import main

    data = tmp_path / "d.csv"
    with open(data, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerows([t] for t in TEXTS)
    argv = ["annotate", str(data), "--labels", "ham,spam"]
    argv += ["--out", str(tmp_path / "o.csv")]
    argv += ["--base-url", server.base_url, "--model", "m", "--n-examples", "0"]
    argv += ["--cache", str(tmp_path / "c.sqlite"), "--max-epochs", "2", "--quiet"]
    argv += ["--batch", "--batch-poll-interval", "0.05", "--rpm", "6000"]
    assert main(argv) == 0, capsys.readouterr().err
    assert server.n_batches == 1 and server.n_requests == 0
    assert len(server.batch_requests) == len(TEXTS)


def test_prompts_are_built_in_chunks_and_batches_still_fill_up(
    server, tmp_path, monkeypatch
):
    import skcandist._annotator as annotator_module
    from skcandist.llm import retrieval

    monkeypatch.setattr(annotator_module, "_PLAN_CHUNK", 5)
    sizes = []
    select = retrieval.DemoRetriever.select

    def spy(self, texts):
        sizes.append(len(list(texts)))
        return select(self, texts)

    monkeypatch.setattr(retrieval.DemoRetriever, "select", spy)
    pool = [("win cash now", "spam"), ("see you at noon", "ham")]
    online = make_annotator(server, LABELS, cache=None, examples=pool, n_examples=1)
    assert _sets(online.fit_transform(TEXTS)) == _expected()
    assert max(sizes) == 5 and sum(sizes) == len(TEXTS)
    assert server.n_requests == len(TEXTS)
    batched = _batch_annotator(server, tmp_path / "c.sqlite", examples=pool)
    batched.set_params(n_examples=1)
    assert _sets(batched.fit_transform(TEXTS)) == _expected()
    # 5 chunks of prompts, one batch of 24 lines
    assert server.n_batches == 1 and len(server.batch_requests) == len(TEXTS)


def test_polling_shows_the_batches_request_counts(server, tmp_path, capsys):
    server.batch_delay = 0.6
    annotator = _batch_annotator(server, tmp_path / "c.sqlite", verbose=1)
    annotator.fit_transform(TEXTS)
    err = capsys.readouterr().err
    assert "batch" in err and f"/{len(TEXTS)}" in err
    # counts grew while the batch ran (the fake batch reports progress)
    shown = {
        int(x.split("/")[0].split()[-1])
        for x in err.split("\r")
        if f"/{len(TEXTS)}" in x
    }
    assert len(shown) >= 2


def test_test_server_batches_can_be_cancelled_through_the_client(server):
    from openai import OpenAI

    server.batch_delay = 60.0
    client = OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    lines = [
        {"custom_id": f"k{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "m", "messages": [{"role": "user", "content": t}]}}
        for i, t in enumerate(TEXTS[:6])
    ]  # fmt: skip
    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
    upload = client.files.create(file=("in.jsonl", data), purpose="batch")
    assert client.files.retrieve(upload.id).purpose == "batch"
    batch = client.batches.create(
        input_file_id=upload.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    assert client.batches.retrieve(batch.id).status == "in_progress"
    assert client.batches.cancel(batch.id).status == "cancelled"
    done = client.batches.retrieve(batch.id)
    assert done.request_counts.total == 6 and done.request_counts.completed == 3
    out = client.files.content(done.output_file_id).content.splitlines()
    assert sorted(json.loads(x)["custom_id"] for x in out) == ["k0", "k1", "k2"]
