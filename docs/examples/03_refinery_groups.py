"""
The distribution refinery, epoch by epoch
=========================================

After its warm-up, :class:`~skcandist.CanDistClassifier` sorts the training
texts into groups at the start of every epoch (see :doc:`/method`):

- **selected** (``n_selected``): within each predicted class, the fraction
  ``delta`` of in-candidate texts with the smallest loss; their targets are
  sharpened;
- **confident out-of-candidate** (``n_confident_out``): the student's arg-max
  lies outside the candidate set with a probability above ``tau``; the text is
  trained towards that label, the only way a label outside the set becomes a
  target;
- **ignored** (``n_ignored``): the arg-max lies outside the set without that
  confidence; the text contributes nothing that epoch.

The other texts keep their re-normalised targets. The group sizes are logged in
``net_.history``, skorch's per-epoch log, beside the training loss.

We train two students on the same candidate sets: the paper's refinery
(``teacher_model=None``) and the default, which first learns a model of the
teacher by EM and lets a class that model finds plausible pass the
out-of-candidate filter. The sets come straight from
:func:`skcandist.datasets.simulate_candidates` (a weak teacher: right on 80% of
messages, 1.3 labels per set), without an LLM server.
"""

# %%
# Candidate sets and two students
# -------------------------------
import matplotlib.pyplot as plt
import numpy as np

from skcandist import CanDistClassifier
from skcandist.datasets import WEAK_TEACHERS, load_sms_spam, simulate_candidates

data = load_sms_spam("train").subset(400, random_state=0)
candidates, single = simulate_candidates(
    data.texts,
    data.labels,
    data.classes,
    random_state=0,
    **WEAK_TEACHERS[("sms_spam", "all")],
)
students = {}
for name, teacher_model in [("paper's refinery", None), ("default (EM)", "em")]:
    student = CanDistClassifier(
        max_epochs=30, warmup_epochs=10, teacher_model=teacher_model, random_state=0
    )
    students[name] = student.fit(data.texts, candidates, classes=data.classes)
    accuracy = student.score(data.texts, data.labels)
    print(f"{name}: annotation accuracy {accuracy:.3f}")

# %%
# What the history holds
# ----------------------
# One row per epoch; the refinery adds its three group sizes to skorch's
# columns.
history = students["paper's refinery"].net_.history
keys = ["epoch", "train_loss", "n_selected", "n_confident_out", "n_ignored"]
print(" ".join(f"{key:>15}" for key in keys))
for row in history[::3]:
    print(" ".join(f"{row[key]:>15.4g}" for key in keys))

# %%
# The groups per epoch
# --------------------
# Nothing is selected or set apart during the warm-up (10 epochs). Then the
# selection takes about ``delta`` (half) of each predicted class. With the
# paper's refinery, the texts whose set the student's arg-max leaves are set
# apart (ignored), and the few it becomes sure of turn into confident
# out-of-candidate targets. With the EM teacher model, a class that the
# model's posterior finds plausible passes the filter: on this binary task no
# text is set apart, and the student is free to leave a set where the evidence
# is strong (the last cell counts those texts).
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
for ax, (name, student) in zip(axes, students.items()):
    history = student.net_.history
    epochs = history[:, "epoch"]
    for key, label in [
        ("n_selected", "selected (small loss)"),
        ("n_confident_out", "confident out-of-candidate"),
        ("n_ignored", "ignored (out-of-candidate)"),
    ]:
        ax.plot(epochs, history[:, key], marker=".", label=label)
    ax.axvline(10.5, color="grey", linestyle=":", label="end of warm-up")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_xlabel("epoch")
    ax.set_title(name)
axes[0].set_ylabel(f"texts (of {len(data)})")
axes[1].legend(fontsize="small", loc="center right")
fig.tight_layout()

# %%
# The training loss of both students:
fig, ax = plt.subplots(figsize=(5, 3))
for name, student in students.items():
    history = student.net_.history
    ax.plot(history[:, "epoch"], history[:, "train_loss"], marker=".", label=name)
ax.axvline(10.5, color="grey", linestyle=":")
ax.set_xlabel("epoch")
ax.set_ylabel("training loss")
ax.legend()
fig.tight_layout()

# %%
# Where a student ends up outside the teacher's set, the set is usually the
# one that missed the gold label:
dense = candidates.toarray()
rows = np.arange(len(data))
for name, student in students.items():
    predicted = student.predict_proba(data.texts).argmax(axis=1)
    gold = np.searchsorted(student.classes_, data.labels)
    leaves = dense[rows, predicted] == 0
    print(f"{name}: the label leaves the candidate set of {leaves.sum()} texts;")
    print("  the set misses the gold label:", (leaves & (dense[rows, gold] == 0)).sum())
    print(
        "  the student's label is the gold one:", (leaves & (predicted == gold)).sum()
    )
