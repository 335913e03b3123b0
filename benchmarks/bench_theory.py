"""Noise tolerance of top-1 labels vs top-2 candidate sets (the paper's Theorem 1).

Theorem 1 of the CanDist paper (App. C): a linear student on fixed features,
taught by a teacher whose labels follow class-conditional noise ``R``, recovers
the true labels from the teacher's top-1 labels only while
``R_cc' + sum_{i != c} R_ci < 1 - theta / (phi - theta)`` (a margin), but from its
top-2 candidate sets while the same sum stays below 1.

The simulation: Gaussian clusters, one per class, in ``--dim`` dimensions. For a
noise rate ``r`` the teacher, on a sample of class ``c``,

- ``pair`` noise: with probability ``r`` ranks the confusable class ``c + 1``
  (mod C) first and ``c`` second; otherwise ``c`` first and a random other label
  second (the LLM-like case: one systematic confusion per class);
- ``uniform`` noise: with probability ``r`` ranks a random wrong label first and
  ``c`` second; otherwise ``c`` first and a random other label second;
- in both, a share ``--miss`` (default 0.1) of the flipped samples has a second
  wrong label instead of ``c``, so the top-2 sets miss the true label on a share
  ``r * miss`` of the samples.

A softmax-regression student is trained full-batch on the top-1 labels
(cross-entropy) and on the top-2 sets (the CC and PRODEN partial-label losses).
Reported: annotation accuracy (the student's labels on the training points vs the
true ones) and test accuracy, mean ± std over seeds, for each rate. Output:
``theory.json``, ``theory.md`` and ``noise_tolerance.png`` in ``--out``.

Example::

    python benchmarks/bench_theory.py --seeds 3
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    RESULTS,
    environment,
    fmt,
    mean_std,
    train_linear_head,
    write_json,
    write_text,
)

METHODS = {
    "top1_ce": ("ce", "top-1 labels, cross-entropy"),
    "top2_cc": ("cc", "top-2 sets, CC"),
    "top2_proden": ("proden", "top-2 sets, PRODEN"),
}


def gaussian_clusters(n, n_classes, dim, separation, rng, means=None):
    """``n`` points, class ``c`` drawn from N(means[c], I); means at distance
    ``separation`` from the origin along random orthogonal directions."""
    if means is None:
        basis, _ = np.linalg.qr(rng.normal(size=(dim, n_classes)))
        means = separation * basis.T
    labels = rng.randint(n_classes, size=n)
    points = means[labels] + rng.normal(size=(n, dim))
    return points, labels, means


def noisy_teacher(labels, n_classes, rate, pattern, rng, miss=0.0):
    """The teacher's top-1 label and top-2 candidate matrix for each sample.

    A share ``miss`` of the flipped samples gets a second wrong label instead of
    the true one, so that the top-2 sets hold the true label with probability
    ``1 - rate * miss``.
    """
    n = len(labels)
    flipped = rng.rand(n) < rate
    missed = flipped & (rng.rand(n) < miss)
    others = (labels + rng.randint(1, n_classes, size=n)) % n_classes
    if pattern == "pair":
        wrong = (labels + 1) % n_classes
    elif pattern == "uniform":
        wrong = others
    else:
        raise ValueError(f"unknown noise pattern {pattern!r}")
    top1 = np.where(flipped, wrong, labels)
    top2 = np.where(flipped, labels, others)
    # The second wrong label: any label but the true one and the first.
    step = rng.randint(1, n_classes - 1, size=n) if n_classes > 2 else np.ones(n, int)
    second_wrong = (top1 + step) % n_classes
    second_wrong = np.where(
        second_wrong == labels, (second_wrong + 1) % n_classes, second_wrong
    )
    top2 = np.where(missed, second_wrong, top2)
    candidates = np.zeros((n, n_classes))
    candidates[np.arange(n), top1] = 1
    candidates[np.arange(n), top2] = 1
    return top1, candidates


def run(args):
    results = {pattern: [] for pattern in args.patterns}
    for pattern in args.patterns:
        for rate in args.rates:
            per_method = {name: {"annotation": [], "test": []} for name in METHODS}
            top1_acc, coverage = [], []
            for seed in range(args.seeds):
                rng = np.random.RandomState(seed)
                x, y, means = gaussian_clusters(
                    args.n_train, args.n_classes, args.dim, args.separation, rng
                )
                x_test, y_test, _ = gaussian_clusters(
                    args.n_test, args.n_classes, args.dim, args.separation, rng, means
                )
                top1, candidates = noisy_teacher(
                    y, args.n_classes, rate, pattern, rng, args.miss
                )
                top1_acc.append(float(np.mean(top1 == y)))
                coverage.append(float(candidates[np.arange(len(y)), y].mean()))
                for name, (loss, _) in METHODS.items():
                    targets = top1 if loss == "ce" else candidates
                    proba = train_linear_head(
                        x,
                        targets,
                        loss=loss,
                        epochs=args.epochs,
                        lr=args.lr,
                        weight_decay=args.weight_decay,
                        seed=seed,
                    )
                    per_method[name]["annotation"].append(
                        float(np.mean(proba(x).argmax(axis=1) == y))
                    )
                    per_method[name]["test"].append(
                        float(np.mean(proba(x_test).argmax(axis=1) == y_test))
                    )
            results[pattern].append(
                {
                    "rate": float(rate),
                    "teacher_top1_accuracy": mean_std(top1_acc),
                    "top2_coverage": mean_std(coverage),
                    "methods": {
                        name: {k: mean_std(v) for k, v in scores.items()}
                        for name, scores in per_method.items()
                    },
                }
            )
    return results


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4))
    axes = np.atleast_1d(axes)
    for ax, (pattern, rows) in zip(axes, results.items()):
        rates = [row["rate"] for row in rows]
        for name, (_, label) in METHODS.items():
            means = np.array([row["methods"][name]["test"]["mean"] for row in rows])
            stds = np.array([row["methods"][name]["test"]["std"] for row in rows])
            ax.errorbar(rates, means * 100, yerr=stds * 100, marker="o", label=label)
        teacher = [row["teacher_top1_accuracy"]["mean"] * 100 for row in rows]
        ax.plot(rates, teacher, "k--", label="teacher top-1 accuracy")
        ax.set_xlabel("teacher noise rate r")
        ax.set_ylabel("student test accuracy (%)")
        ax.set_title(f"{pattern} noise")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def markdown(result):
    cfg = result["config"]
    lines = [
        "# Noise tolerance, top-1 labels vs top-2 sets (benchmarks/bench_theory.py)",
        "",
        f"Gaussian clusters: {cfg['n_classes']} classes, {cfg['dim']} dimensions, "
        f"separation {cfg['separation']}, {cfg['n_train']} training and "
        f"{cfg['n_test']} test points; linear softmax student, {cfg['epochs']} "
        f"full-batch Adam steps; {cfg['seeds']} seed(s). Cells: annotation | test "
        "accuracy in %, mean ± std.",
        "",
        "With full-batch training, CC and PRODEN (weights re-normalised from the "
        "current model at every step) have the same gradient, so their columns "
        "coincide up to floating-point noise.",
        "",
        f"![noise tolerance]({result['plot']})",
        "",
    ]
    for pattern, rows in result["results"].items():
        lines += [
            f"## {pattern} noise",
            "",
            "| r | teacher top-1 | top-2 coverage | "
            + " | ".join(label for _, label in METHODS.values())
            + " |",
            "| --- | --- | --- | " + " | ".join("---" for _ in METHODS) + " |",
        ]
        for row in rows:
            cells = [
                f"{fmt(row['methods'][n]['annotation'])} \\| "
                f"{fmt(row['methods'][n]['test'])}"
                for n in METHODS
            ]
            lines.append(
                f"| {row['rate']:.2f} | {fmt(row['teacher_top1_accuracy'])} | "
                f"{fmt(row['top2_coverage'])} | " + " | ".join(cells) + " |"
            )
        lines.append("")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--n-classes", type=int, default=4)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--separation", type=float, default=2.5)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--miss", type=float, default=0.1)
    parser.add_argument(
        "--rates",
        nargs="+",
        type=float,
        default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    )
    parser.add_argument(
        "--patterns",
        nargs="+",
        default=["pair", "uniform"],
        choices=["pair", "uniform"],
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run for the tests")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.n_train, args.n_test, args.epochs = 1, 200, 200, 30
        args.rates = [0.0, 0.6]
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    results = run(args)
    result = {
        "config": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
        },
        "environment": environment(),
        "methods": {name: label for name, (_, label) in METHODS.items()},
        "results": results,
        "plot": plot(results, args.out / "noise_tolerance.png"),
        "wall_s": time.perf_counter() - start,
    }
    write_json(result, args.out / "theory.json")
    write_text(markdown(result), args.out / "theory.md")
    print(f"wrote {args.out / 'theory.json'} and {args.out / 'theory.md'}")
    return result


if __name__ == "__main__":
    main()
