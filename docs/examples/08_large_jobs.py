"""
Large jobs: the Batch API, resuming, batch files, rate limits
=============================================================

A large annotation job goes through the OpenAI Batch API at half the online
price. This example runs that path against
:class:`skcandist.testing.FakeLLMServer`, whose files and batches routes behave
like the real ones: a batch completes some time after it is created, its output
comes back in another order than the input, and some lines can fail.
:doc:`/large_jobs` describes every option.
"""

# %%
# A batch job
# -----------
# ``use_batch_api=True`` turns every request the answer cache lacks into one
# line of a JSON-lines file, uploads it, creates a batch and polls it. Here the
# fake batch takes 1.5 s and 5 of its lines fail: those are sent again online.
import json
import tempfile
from pathlib import Path

from skcandist import CandidateAnnotator
from skcandist.datasets import load_sms_spam
from skcandist.exceptions import BatchPendingError
from skcandist.testing import FakeLLMServer, candidate_responder, run_batch_file

data = load_sms_spam("train").subset(60, random_state=0)
oracle = candidate_responder(
    {text: [label] for text, label in zip(data.texts, data.labels)}
)
server = FakeLLMServer(oracle).start()
server.batch_delay = 1.5
server.batch_error_lines = 5
workdir = Path(tempfile.mkdtemp())


def make_annotator(cache_name, **params):
    return CandidateAnnotator(
        data.descriptions,
        model="fake-llm",
        base_url=server.base_url,
        cache=workdir / cache_name,
        n_examples=0,
        batch_poll_interval=0.2,
        verbose=0,
        **params,
    )


def counters(usage):
    keys = ("texts", "batches", "batch_requests", "requests", "cache_hits")
    return {key: usage[key] for key in keys}


annotator = make_annotator("answers.sqlite", use_batch_api=True)
out = annotator.fit_transform(data.texts)
print(counters(annotator.usage_))
print("batches created:", server.n_batches)
print("online requests (the failed lines):", server.n_requests)

# %%
# Each line's ``custom_id`` is the answer-cache key, so answers are matched to
# requests whatever order the output file has. The first input line, and where
# the first output lines stood in the input:
batch = next(iter(server.batches.values()))
lines = [
    json.loads(x) for x in server.files[batch["input_file_id"]]["data"].splitlines()
]
print({k: lines[0][k][:24] for k in ("custom_id", "method", "url")})
position = {line["custom_id"]: i for i, line in enumerate(lines)}
output = server.files[batch["output_file_id"]]["data"].splitlines()
print("input positions of the first output lines:",
      [position[json.loads(x)["custom_id"]] for x in output[:8]])  # fmt: skip

# %%
# A rerun costs nothing
# ---------------------
# The answers are in the cache: no batch, no request.
before = (server.n_batches, server.n_requests)
make_annotator("answers.sqlite", use_batch_api=True).fit_transform(data.texts)
print("new batches, new requests:", server.n_batches - before[0],
      server.n_requests - before[1])  # fmt: skip

# %%
# Submit now, collect later
# -------------------------
# ``batch_wait=False`` submits and raises at once, naming the batches; their ids
# are recorded in the answer cache, so a later call with the same texts (after
# a restart, or a ``kill -9``) collects them instead of submitting again.
server.batch_delay = 60.0  # this one takes a while
texts = load_sms_spam("test").subset(30, random_state=0).texts
oracle_test = candidate_responder({t: ["ham"] for t in texts})
server.respond = lambda request: oracle_test(request)
waiting = make_annotator("later.sqlite", use_batch_api=True, batch_wait=False)
try:
    waiting.fit_transform(texts)
except BatchPendingError as pending:
    print("pending:", pending.batch_ids)
    batch_id = pending.batch_ids[0]
server._batch_state[batch_id]["delay"] = 0.0  # ... time passes, the batch ends
out = waiting.fit_transform(texts)
print("collected rows:", out.candidates.shape[0], "| batches in all:", server.n_batches)

# %%
# Batch files for an offline engine
# ---------------------------------
# For a model run in batch mode on a GPU machine (``vllm run-batch``),
# ``write_batch_file`` writes the same lines, and ``read_batch_results`` reads
# the engine's output into the cache. ``run_batch_file`` plays the engine here.
offline = make_annotator("offline.sqlite").fit()
written = offline.write_batch_file(texts, workdir / "requests.jsonl")
run_batch_file(workdir / "requests.jsonl", workdir / "answers.jsonl", oracle_test)
print("lines written:", written, "| read back:",
      offline.read_batch_results(workdir / "answers.jsonl"))  # fmt: skip
before = server.n_requests
offline.fit_transform(texts)
print("requests after reading the file:", server.n_requests - before)

# %%
# Rate limits
# -----------
# ``max_requests_per_minute`` (and ``max_tokens_per_minute``) pace the online
# requests, one limiter for all threads. 20 requests at 600 a minute take about
# two seconds (the first goes at once, then one every 0.1 s).
import time  # noqa: E402

paced = make_annotator("paced.sqlite", max_requests_per_minute=600, n_jobs=4)
start = time.perf_counter()
paced.fit_transform(texts[:20])
print(f"20 requests in {time.perf_counter() - start:.1f} s")
server.stop()
