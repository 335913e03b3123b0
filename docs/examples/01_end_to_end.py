"""
End to end: annotate, inspect the candidate sets, distil, compare
==================================================================

The whole CanDist job on 400 messages of the SMS Spam Collection (bundled with
the package): an LLM behind an OpenAI-compatible endpoint proposes a *candidate
set* of labels for every message, we look at what it answered, a student learns
from those sets without a single gold label, and we compare the student with its
teacher.

So that this page runs anywhere, the "LLM" is
:class:`skcandist.testing.FakeLLMServer`: a real HTTP server on 127.0.0.1, spoken
to by the real ``openai`` client. It answers like a fallible teacher: its answers
come from :func:`skcandist.datasets.simulate_candidates`, right on 92% of the
messages, naming both labels where a TF-IDF model finds a message ambiguous, and
wrong where that model is misled (a profile we chose, not one measured on an
LLM). For a real run, drop the server and give ``base_url=`` and ``model=`` of
your endpoint (the key comes from ``OPENAI_API_KEY``).
"""

# %%
# The data
# --------
# Messages to annotate, a small labelled pool of demonstrations (the paper uses
# a pool of 100; none of them is among the messages to annotate) and a test
# split. The gold labels of the messages to annotate serve for scoring only.
import tempfile
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from skcandist import CandidateAnnotator, CanDistClassifier, metrics
from skcandist.datasets import OUR_TEACHERS, load_sms_spam, simulate_candidates
from skcandist.testing import FakeLLMServer, candidate_responder

train = load_sms_spam("train")
data = train.subset(400, random_state=0)
pool = train.subset(100, random_state=1)
examples = [(t, y) for t, y in zip(pool.texts, pool.labels) if t not in data.texts]
test = load_sms_spam("test").subset(200, random_state=0)
print(f"{len(data)} messages to annotate, {len(examples)} demonstrations")
print("classes:", data.descriptions)

# %%
# A stand-in for the LLM
# ----------------------
# The simulated teacher decides an answer for every message in advance; the
# server then answers each request with the JSON list of the message it quotes,
# the teacher's preferred label first.
profile = OUR_TEACHERS[("sms_spam", "all")]
print("teacher profile:", profile)
sets, preferred = simulate_candidates(
    data.texts, data.labels, data.classes, random_state=0, **profile
)
answers = {}
for i, text in enumerate(data.texts):
    others = [data.classes[j] for j in sets[i].indices if j != preferred[i]]
    answers[text] = [data.classes[preferred[i]], *others]

server = FakeLLMServer(candidate_responder(answers)).start()
workdir = tempfile.TemporaryDirectory()  # the answer cache lives here

# %%
# The teacher: ask for every plausible label
# ------------------------------------------
# The ``"all"`` prompt asks for all possible labels; 4 demonstrations are
# retrieved per message (``retrieval="tfidf"`` here for speed; the default,
# ``"embedding"``, is the paper's); every answer is cached in SQLite as it
# arrives. :meth:`~skcandist.CandidateAnnotator.estimate` says what the run will
# cost before anything is sent.
annotator = CandidateAnnotator(
    data.descriptions,
    model="fake-llm",
    base_url=server.base_url,
    prompt="all",
    task="Classify SMS messages as spam or ordinary (ham) messages.",
    examples=examples,
    n_examples=4,
    retrieval="tfidf",
    cache=Path(workdir.name) / "answers.sqlite",
    verbose=0,
)
print("before sending anything:", annotator.fit(data.texts).estimate(data.texts))
annotated = annotator.fit_transform(data.texts)
print("usage:", annotator.usage_)

# %%
# The request about the first message, as the LLM saw it: the system message,
# the demonstrations (each with a single-label answer) and the message to
# annotate last.
query = f"Text: {data.texts[0]}"
request = next(r for r in server.requests if r["messages"][-1]["content"] == query)
print("model:", request["model"], "| temperature:", request["temperature"])
for message in request["messages"]:
    content = message["content"]
    if message["role"] != "system" and len(content) > 70:
        content = content[:70] + "..."
    print(f"--- {message['role']}: {content}")

# %%
# Inspect the candidate sets
# --------------------------
# ``annotated`` is an :class:`~skcandist.AnnotatedTexts`: the texts, with a sparse
# n x C candidate matrix and the teacher's preferred (``single``) label.
classes = list(annotator.classes_)


def as_set(row):
    return "{" + ", ".join(classes[j] for j in annotated.candidates[row].indices) + "}"


for i in range(6):
    print(f"{as_set(i):13} gold={data.labels[i]:5} {data.texts[i][:60]!r}")

# %%
# Against the gold labels: the paper's coverage (share of sets that hold the
# gold label), beta (how much of the label space the sets prune) and their F1.
teacher = np.array([classes[i] for i in annotated.single])
report = metrics.candidate_report(annotated.candidates, data.labels, classes=classes)
teacher_accuracy = metrics.single_label_accuracy(teacher, data.labels)
print("teacher single-label accuracy:", round(teacher_accuracy, 3))
print("candidate sets:", {k: round(v, 3) for k, v in report.items()})

kinds = Counter((as_set(i), data.labels[i]) for i in range(len(data)))
names = sorted({kind for kind, _ in kinds})
fig, ax = plt.subplots(figsize=(6, 3))
left = np.zeros(len(names))
for gold in classes:
    counts = np.array([kinds[(name, gold)] for name in names])
    ax.barh(names, counts, left=left, label=f"gold: {gold}")
    left += counts
ax.set_xlabel("messages")
ax.set_title("What the teacher answered")
ax.legend()
fig.tight_layout()

# %%
# A rerun is answered from the cache: not one request is sent.
before = server.n_requests
again = annotator.annotate(data.texts)
print("requests sent by the rerun:", server.n_requests - before)
print("cache hits:", again.usage["cache_hits"])

# %%
# Distil: train the student on the candidate sets
# -----------------------------------------------
# The student reads the messages through a frozen MiniLM encoder and learns from
# the candidate sets with the distribution refinery; it never sees a gold label.
# 20 epochs here to keep the page quick (the default is the paper's 50).
student = CanDistClassifier(max_epochs=20, random_state=0).fit(annotated)
print("student annotation accuracy:", round(student.score(data.texts, data.labels), 3))
print("student test accuracy:", round(student.score(test.texts, test.labels), 3))

# %%
# Compare with the teacher
# ------------------------
# The student's label is its arg-max over all classes, so it can overrule the
# teacher, even outside a candidate set.
labels = student.predict(data.texts)
gold = np.asarray(data.labels)
changed = labels != teacher
print("teacher single-label accuracy:", round(teacher_accuracy, 3))
print("student annotation accuracy:  ", round(float((labels == gold).mean()), 3))
print(f"the student overrules the teacher on {changed.sum()} messages:")
print("  student right, teacher wrong:", int((changed & (labels == gold)).sum()))
print("  teacher right, student wrong:", int((changed & (teacher == gold)).sum()))

# %%
# New messages: the student alone
# -------------------------------
# Predicting needs no LLM. The server is stopped first to prove it.
server.stop()
workdir.cleanup()
print(student.predict(["WINNER! Claim your free prize, text WIN now", "see you at 6"]))
