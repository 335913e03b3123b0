"""
Model selection: cross-validation and a grid search over both steps
====================================================================

A :class:`~sklearn.pipeline.Pipeline` of :class:`~skcandist.CandidateAnnotator`
and :class:`~skcandist.CanDistClassifier` is an ordinary scikit-learn estimator,
so :func:`~sklearn.model_selection.cross_val_score` and
:class:`~sklearn.model_selection.GridSearchCV` work over both steps: here the
prompt style of the teacher (``"add"`` or ``"all"``) and the student's
``teacher_model`` (the EM model of the teacher, or the paper's refinery).

Gold labels are passed for *scoring* only: the annotator never sees them and the
student learns from the candidate sets. With a cache, every message is sent to
the LLM at most once per prompt style, over all folds and grid points.

The LLM is :class:`skcandist.testing.FakeLLMServer` on 127.0.0.1, answering as a
*weak* simulated teacher (right on 80% of messages,
:data:`skcandist.datasets.WEAK_TEACHERS`): the ``"add"`` prompt gets small sets,
the ``"all"`` prompt larger ones that hold the gold label more often, with the
same preferred label first.
"""

# %%
# The data and the stand-in LLM
# -----------------------------
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline

from skcandist import CandidateAnnotator, CanDistClassifier, metrics
from skcandist.datasets import WEAK_TEACHERS, load_sms_spam, simulate_candidates
from skcandist.testing import FakeLLMServer, candidate_responder

data = load_sms_spam("train").subset(400, random_state=0)

responders = {}
for style in ("add", "all"):
    sets, preferred = simulate_candidates(
        data.texts,
        data.labels,
        data.classes,
        random_state=0,
        **WEAK_TEACHERS[("sms_spam", style)],
    )
    report = metrics.candidate_report(sets, data.labels, classes=data.classes)
    teacher = [data.classes[j] for j in preferred]
    accuracy = metrics.single_label_accuracy(teacher, data.labels)
    print(f"{style}: teacher accuracy {accuracy:.3f},", end=" ")
    print(", ".join(f"{k} {v:.3f}" for k, v in report.items() if k != "n_samples"))
    answers = {}
    for i, text in enumerate(data.texts):
        others = [data.classes[j] for j in sets[i].indices if j != preferred[i]]
        answers[text] = [data.classes[preferred[i]], *others]
    responders[style] = candidate_responder(answers)


def respond(request):
    """Answer as the teacher would for the prompt style the request uses."""
    system = request["messages"][0]["content"]
    style = "all" if "all possible choices" in system else "add"
    return responders[style](request)


server = FakeLLMServer(respond).start()
workdir = tempfile.TemporaryDirectory()  # the answer cache lives here
cache = Path(workdir.name) / "answers.sqlite"

# %%
# The pipeline
# ------------
pipe = Pipeline(
    [
        (
            "annotate",
            CandidateAnnotator(
                data.descriptions,
                model="fake-llm",
                base_url=server.base_url,
                prompt="all",
                cache=cache,
                verbose=0,
            ),
        ),
        ("student", CanDistClassifier(max_epochs=15, random_state=0)),
    ]
)

# %%
# Cross-validation
# ----------------
# Each fold annotates its training texts (``fit``) and scores the student on
# its held-out texts against the gold labels. Scoring sends no request:
# ``predict`` reads the held-out texts, never their candidates. Over the folds,
# every message is asked once.
scores = cross_val_score(
    pipe, data.texts, data.labels, cv=KFold(3, shuffle=True, random_state=0)
)
print("accuracy per fold:", scores.round(3), "mean:", scores.mean().round(3))
print("requests so far:", server.n_requests)

# %%
# Grid search over the prompt and the student
# -------------------------------------------
# A new prompt style is a new question: it is asked once per message. The
# student's settings change nothing on the LLM side.
grid = GridSearchCV(
    pipe,
    {
        "annotate__prompt": ["add", "all"],
        "student__teacher_model": ["em", None],
    },
    cv=KFold(3, shuffle=True, random_state=0),
)
grid.fit(data.texts, data.labels)
print("best:", grid.best_params_, round(grid.best_score_, 3))
print("requests in all:", server.n_requests, "for", len(set(data.texts)), "messages")
server.stop()
workdir.cleanup()

# %%
# Every grid point, with the spread over the folds:
results = grid.cv_results_
for params, mean, std in zip(
    results["params"], results["mean_test_score"], results["std_test_score"]
):
    print(f"{params}: {mean:.3f} +- {std:.3f}")

fig, ax = plt.subplots(figsize=(6, 3))
labels = [
    f"{p['annotate__prompt']} / {p['student__teacher_model'] or 'paper'}"
    for p in results["params"]
]
ax.bar(
    labels,
    results["mean_test_score"],
    yerr=results["std_test_score"],
    color="tab:blue",
    capsize=4,
)
low = np.min(results["mean_test_score"] - results["std_test_score"])
ax.set_ylim(max(0.0, low - 0.05), 1.0)
ax.set_xlabel("prompt / teacher_model")
ax.set_ylabel("accuracy (3 folds)")
ax.set_title("GridSearchCV over both steps")
fig.tight_layout()
