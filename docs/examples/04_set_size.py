"""
Accuracy against the size of the candidate sets
================================================

How large should the teacher's candidate sets be? A larger set holds the gold
label more often (coverage) but says less about it. This example sweeps the mean
set size of a simulated teacher from 1 (single labels) to 1.5 labels per message,
with the same single labels throughout (right on 80% of messages), and trains a
student on each: the full refinery (``loss="candist"``) and re-normalised
targets alone (``loss="proden"``). A student trained with cross-entropy on the
teacher's single labels (``loss="ce"``) is the reference.

Coverage grows with the size as in ``benchmarks/bench_quality.py``'s sweep on
TREC: ``coverage = acc + (1 - acc) (1 - exp(-(size - 1) / 0.73))``. The
candidate sets come from :func:`skcandist.datasets.simulate_candidates`; no LLM
server is needed.
"""

# %%
# The teachers
# ------------
import matplotlib.pyplot as plt
import numpy as np

from skcandist import AnnotatedTexts, CanDistClassifier, metrics
from skcandist.datasets import load_sms_spam, simulate_candidates

data = load_sms_spam("train").subset(400, random_state=0)
test = load_sms_spam("test").subset(200, random_state=0)
single_accuracy = 0.8
sizes = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5]

teachers = {}
for size in sizes:
    gain = (1 - single_accuracy) * (1 - np.exp(-(size - 1) / 0.73))
    coverage = min(single_accuracy + gain, single_accuracy + size - 1)
    teachers[size] = simulate_candidates(
        data.texts,
        data.labels,
        data.classes,
        single_accuracy=single_accuracy,
        coverage=coverage,
        mean_set_size=size,
        random_state=0,
    )
    report = metrics.candidate_report(
        teachers[size][0], data.labels, classes=data.classes
    )
    print(f"size {size:.1f}: coverage {report['coverage']:.3f}, F1 {report['f1']:.3f}")

# %%
# The students
# ------------
# An :class:`~skcandist.AnnotatedTexts` carries the texts, the candidate sets and
# the teacher's preferred label, as the annotator would return them.
results = {"candist": [], "proden": []}
for size in sizes:
    candidates, preferred = teachers[size]
    annotated = AnnotatedTexts(
        data.texts, candidates=candidates, classes=data.classes, single=preferred
    )
    for loss in results:
        student = CanDistClassifier(loss=loss, max_epochs=20, random_state=0)
        student.fit(annotated)
        results[loss].append(
            (
                student.score(data.texts, data.labels),
                student.score(test.texts, test.labels),
            )
        )
        annotation, test_accuracy = results[loss][-1]
        print(f"size {size:.1f} {loss:8}: {annotation:.3f} | {test_accuracy:.3f}")

candidates, preferred = teachers[1.0]
annotated = AnnotatedTexts(
    data.texts, candidates=candidates, classes=data.classes, single=preferred
)
ce = CanDistClassifier(loss="ce", max_epochs=20, random_state=0).fit(annotated)
ce_scores = (ce.score(data.texts, data.labels), ce.score(test.texts, test.labels))
print(f"single labels, ce: {ce_scores[0]:.3f} | {ce_scores[1]:.3f}")

# %%
# The plot
# --------
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
for k, (ax, title) in enumerate(
    zip(axes, ["annotation (training messages)", "test messages"])
):
    for loss, scores in results.items():
        ax.plot(sizes, [s[k] for s in scores], marker="o", label=f"{loss} on the sets")
    ax.axhline(ce_scores[k], color="grey", linestyle="--", label="ce, single labels")
    ax.set_xlabel("mean candidate-set size")
    ax.set_title(f"Accuracy, {title}")
    ax.grid(alpha=0.3)
axes[0].axhline(single_accuracy, color="black", linestyle=":", label="teacher")
axes[0].set_ylabel("accuracy")
axes[0].legend(fontsize="small")
fig.tight_layout()

# %%
# Reading the plot: at size 1 every set is the teacher's single label, so the
# gap between the CanDist curve and the CE line there is what the rest of the
# refinery (selection, consistency, mixup, the teacher model) adds; the slope
# of each curve is what larger sets add. This is one seed on 400 messages of a
# binary task: read differences of a point or two as noise. The measured sweep
# on TREC (6 classes, 2,000 texts, the paper's GPT-3.5 statistics) is in
# ``benchmarks/results/quality.md``.
