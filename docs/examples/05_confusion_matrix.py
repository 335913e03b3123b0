"""
Teacher against student: confusion matrices
===========================================

Where does the student part ways with its teacher, and who is right? Three
confusion matrices on the same 400 training messages: the teacher's preferred
labels against the gold labels, the student's labels against the gold labels,
and the student's labels against the teacher's.

The teacher is simulated with :func:`skcandist.datasets.simulate_candidates` (a
weak one: right on 80% of messages, 1.3 labels per set, its errors on the
messages a TF-IDF model finds ambiguous); no LLM server is needed. The student
is :class:`~skcandist.CanDistClassifier`, trained on the candidate sets only.
"""

# %%
# Teacher and student
# -------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay, classification_report

from skcandist import AnnotatedTexts, CanDistClassifier
from skcandist.datasets import WEAK_TEACHERS, load_sms_spam, simulate_candidates

data = load_sms_spam("train").subset(400, random_state=0)
candidates, preferred = simulate_candidates(
    data.texts,
    data.labels,
    data.classes,
    random_state=0,
    **WEAK_TEACHERS[("sms_spam", "all")],
)
annotated = AnnotatedTexts(
    data.texts, candidates=candidates, classes=data.classes, single=preferred
)
student = CanDistClassifier(max_epochs=20, random_state=0).fit(annotated)

gold = np.asarray(data.labels)
teacher = np.asarray(data.classes)[preferred]
labels = student.predict(data.texts)

# %%
# Per-class scores
# ----------------
print("teacher (preferred label of each set)")
print(classification_report(gold, teacher, digits=3))
print("student")
print(classification_report(gold, labels, digits=3))

# %%
# The matrices
# ------------
# Rows are the first labelling, columns the second. The third matrix's
# off-diagonal cells are the messages where the student overrules the teacher.
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
pairs = [
    (gold, teacher, "teacher vs gold", "gold", "teacher"),
    (gold, labels, "student vs gold", "gold", "student"),
    (teacher, labels, "student vs teacher", "teacher", "student"),
]
for ax, (rows, columns, title, row_name, column_name) in zip(axes, pairs):
    ConfusionMatrixDisplay.from_predictions(
        rows, columns, labels=data.classes, ax=ax, colorbar=False, cmap="Blues"
    )
    ax.set_title(title)
    ax.set_ylabel(row_name)
    ax.set_xlabel(column_name)
fig.tight_layout()

# %%
# Of the messages where the two disagree, who is right?
overruled = labels != teacher
print("the student overrules the teacher on", overruled.sum(), "messages")
print("  student right:", (overruled & (labels == gold)).sum())
print("  teacher right:", (overruled & (teacher == gold)).sum())

# %%
# Accuracy is not the whole story on an imbalanced set like this one (most
# messages are ham): compare the per-class recall of teacher and student in
# the reports above before trusting a higher accuracy, and look at the
# ``spam`` row of the first two matrices.
