"""Cross-validation and grid search over both steps of an annotation Pipeline.

Gold labels are passed to ``cross_val_score`` and ``GridSearchCV`` for *scoring*
only: the annotator never sees them, and the student learns from the LLM's
candidate sets. With a persistent cache, every text is sent to the LLM at most
once per prompt style, across all folds and grid points.
"""

import os

from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline

from skcandist import CandidateAnnotator, CanDistClassifier
from skcandist.datasets import load_sms_spam

n_texts = int(os.environ.get("SKCANDIST_TUTORIAL_N", 500))
max_epochs = int(os.environ.get("SKCANDIST_TUTORIAL_EPOCHS", 30))
data = load_sms_spam("train").subset(n_texts, random_state=0)

pipe = Pipeline(
    [
        (
            "annotate",
            CandidateAnnotator(
                data.descriptions,
                model=os.environ.get("SKCANDIST_MODEL", "gpt-4o-mini"),
                base_url=os.environ.get("SKCANDIST_BASE_URL"),
                cache="model-selection-answers.sqlite",
                verbose=0,
            ),
        ),
        ("student", CanDistClassifier(max_epochs=max_epochs, random_state=0)),
    ]
)
cv = KFold(5, shuffle=True, random_state=0)
scores = cross_val_score(pipe, data.texts, data.labels, cv=cv)
print("accuracy per fold:", scores.round(3), "mean:", scores.mean().round(3))

grid = GridSearchCV(
    pipe,
    {"annotate__prompt": ["add", "all"], "student__delta": [0.4, 0.6]},
    cv=KFold(3, shuffle=True, random_state=0),
)
grid.fit(data.texts, data.labels)
print("best:", grid.best_params_, round(grid.best_score_, 3))
