"""
Failure handling: retries, failed texts, a run that stops, resuming
===================================================================

Endpoints fail: they rate-limit, return errors or garbage, drop connections, or
refuse every request because a key is wrong or a quota is spent. This example
makes :class:`skcandist.testing.FakeLLMServer` misbehave in each of these ways
(:meth:`~skcandist.testing.FakeLLMServer.inject`) and shows what
:class:`~skcandist.CandidateAnnotator` does: what it retries, what fails one
text, what stops the whole run, and how a rerun resumes from the answer cache.
:doc:`/failure_handling` lists every rule.
"""

# %%
# A server and an annotator
# -------------------------
# The server answers every message with its gold label (the failures are the
# point here, not the answers). Short backoffs keep the page quick; the defaults
# are 5 retries from 0.5 s.
import tempfile
import warnings
from pathlib import Path

from skcandist import CandidateAnnotator
from skcandist.datasets import load_sms_spam
from skcandist.exceptions import AnnotationError, EndpointError
from skcandist.testing import FakeLLMServer, candidate_responder

data = load_sms_spam("train").subset(40, random_state=0)
oracle = candidate_responder(
    {text: [label] for text, label in zip(data.texts, data.labels)}
)
server = FakeLLMServer(oracle).start()
workdir = tempfile.TemporaryDirectory()  # the answer cache lives here
cache = Path(workdir.name) / "answers.sqlite"


def make_annotator(**params):
    return CandidateAnnotator(
        data.descriptions,
        model="fake-llm",
        base_url=server.base_url,
        cache=cache,
        n_jobs=4,
        max_retries=3,
        backoff=0.05,
        timeout=5.0,
        random_state=0,
        verbose=0,
        **params,
    )


def counters(usage):
    keys = ("texts", "requests", "retries", "cache_hits", "failures")
    return {key: usage[key] for key in keys}


# %%
# Transient faults are retried
# ----------------------------
# Two 429s (with ``Retry-After``), a 500, a body that is not JSON, a dropped
# connection and a reply without choices: each costs a retry, none loses a text.
server.inject("429", 2, retry_after=0.1)
server.inject("500")
server.inject("malformed")
server.inject("drop")
server.inject("empty")
annotator = make_annotator()
out = annotator.fit_transform(data.texts[:20])
print(counters(annotator.usage_))

# %%
# A text that keeps failing
# -------------------------
# Say the endpoint cuts off every answer about one message
# (``finish_reason="length"``): that answer is unusable, so it is retried, and
# when the retries run out the text has failed. The other texts are answered
# and cached first; then ``on_failure`` decides. The default raises one error
# that lists the failed texts.
hard = data.texts[25]


def cut_off_one(request):
    if hard in request["messages"][-1]["content"]:
        return {"content": '["h', "finish_reason": "length"}
    return oracle(request)


server.respond = cut_off_one
try:
    make_annotator().fit_transform(data.texts[20:30])
except AnnotationError as error:
    print(error)
    print("failed:", error.failures)

# %%
# With ``on_failure="abstain"`` the failed text gets an empty row (a student
# skips it) and the run goes on; the nine good answers now come from the cache.
# ``requests`` counts every attempt (here the failed text's four) and
# ``retries`` every attempt after a text's first (here three).
annotator = make_annotator(on_failure="abstain")
out = annotator.fit_transform(data.texts[20:30])
print(counters(annotator.usage_))
print("failures_:", annotator.failures_)
print("row of the failed text:", out.candidates[5].toarray())

# %%
# An answer that names no label is an answer, not a failure: it is cached and
# ``on_empty`` decides what it becomes (by default every label: no pruning).
server.respond = lambda request: '["no idea"]'
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out = make_annotator().fit_transform(["an odd message nobody has seen"])
print(out.candidates.toarray(), out.usage["unknown_labels"])
for warning in caught:
    print(f"{warning.category.__name__}: {warning.message}")
server.respond = oracle

# %%
# Errors that stop the run
# ------------------------
# A failure that every other request would meet too (401, 403, 404, or a 429
# whose code says the quota is spent) is not retried: the first one stops the
# run, no new request starts, and one :class:`~skcandist.exceptions.EndpointError`
# names the status and the fix. Here the quota runs out.
server.inject("status", -1, status=429, code="insufficient_quota")
before = server.n_requests
try:
    make_annotator().fit_transform(data.texts[30:40])
except EndpointError as error:
    print(error)
print("requests sent before the stop:", server.n_requests - before)

# %%
# Resuming
# --------
# Once the quota is back, the same call resumes: cached answers are not asked
# again, so only the texts never answered cost a request.
server.clear_faults()
annotator = make_annotator()
annotator.fit_transform(data.texts)
print(counters(annotator.usage_))
server.stop()
workdir.cleanup()
