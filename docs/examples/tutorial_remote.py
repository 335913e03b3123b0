"""Annotate SMS messages with an LLM behind an OpenAI-compatible endpoint, then
distil the candidate sets into a student.

Run it with an endpoint and a model in the environment, for example::

    OPENAI_API_KEY=... SKCANDIST_BASE_URL=https://api.openai.com/v1 \
    SKCANDIST_MODEL=gpt-4o-mini python docs/examples/tutorial_remote.py

``SKCANDIST_TUTORIAL_N`` sets how many messages are annotated (default 1000).
"""

import os

from skcandist import CandidateAnnotator, CanDistClassifier, metrics
from skcandist.datasets import load_sms_spam

n_texts = int(os.environ.get("SKCANDIST_TUTORIAL_N", 1000))
max_epochs = int(os.environ.get("SKCANDIST_TUTORIAL_EPOCHS", 30))

# 1. Data: unlabelled messages to annotate, a small labelled pool of
#    demonstrations (the paper uses a pool of 100), and a test split.
train = load_sms_spam("train")
texts = train.subset(n_texts, random_state=0)
pool = load_sms_spam("train").subset(100, random_state=1)
examples = [(t, y) for t, y in zip(pool.texts, pool.labels) if t not in texts.texts]
test = load_sms_spam("test").subset(max(n_texts // 2, 50), random_state=0)

# 2. The teacher: ask for every plausible label ("all" prompt), 10 demonstrations
#    retrieved per text, every answer cached on disk.
annotator = CandidateAnnotator(
    texts.descriptions,  # label name -> description, shown to the LLM
    model=os.environ.get("SKCANDIST_MODEL", "gpt-4o-mini"),
    base_url=os.environ.get("SKCANDIST_BASE_URL"),
    prompt="all",
    task="Classify SMS messages as spam or ordinary (ham) messages.",
    examples=examples,
    n_examples=10,
    cache="tutorial-answers.sqlite",
    verbose=0,
)
print("before sending anything:", annotator.fit(texts.texts).estimate(texts.texts))
annotated = annotator.fit_transform(texts.texts)
report = metrics.candidate_report(
    annotated.candidates, texts.labels, classes=annotator.classes_
)
teacher = [annotator.classes_[i] if i >= 0 else None for i in annotated.single]
print(
    "teacher single-label accuracy:",
    metrics.single_label_accuracy(teacher, texts.labels),
)
print("candidate sets:", report)
print("usage:", annotator.usage_)

# 3. The student: trained on the candidate sets only (no gold label), it then
#    labels the training texts and new texts without the LLM.
student = CanDistClassifier(max_epochs=max_epochs, random_state=0).fit(annotated)
print("student annotation accuracy:", student.score(texts.texts, texts.labels))
print("student test accuracy:", student.score(test.texts, test.labels))
