"""Probe for the quality issue: how much should the annotation trust the teacher?

For each of the 12 rule settings of ``bench_quality.py`` (4 sets x 2 kinds of
simulated teacher, weak binary profiles; 2,000 training texts), this fits the
package's EM teacher model (:func:`skcandist.teacher_model.fit_teacher_model`,
defaults) and scores, against gold, labellings of the *training* texts that
weigh the teacher's answer against the out-of-fold model on frozen MiniLM
embeddings: ``argmax(alpha * log p_oof + log likelihood)`` for several
``alpha`` (1 is the EM posterior of ``feature_view="oof"``; "inf" is the
out-of-fold model alone), the posterior with the *true* answer rates (an
oracle, from gold) for reference, and the posterior of
``feature_view="lda"`` after 1 (the default), 3, 10 and 100 EM iterations.
Each cell is the margin in points over the best single-label peer
of the rule (teacher, LogisticRegression, cleanlab; annotation side).

It shows whether one fixed trust weight can pass everywhere (it cannot, on
these settings), which is what a gold-free default would have to do. The
defaults ``feature_view="lda"`` and ``lda_iter=1`` rest on its columns (gold
labels of the shared sets, read here at development time; the package reads
none at fit time): one iteration is the best in sum over the 12 settings and
the most cautious where the scores carry nothing (see the teacher-model
tests).

    python benchmarks/probe_teacher_trust.py --seeds 0

``--quick`` runs two settings on 200 texts (what the tests run).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_quality as bq  # noqa: E402
from _common import CACHE, RESULTS  # noqa: E402
from probe_student_heads import (  # noqa: E402
    QUICK_SETTINGS,
    SETTINGS,
    load_setting,
    teacher_and_peers,
)

ALPHAS = [1, 1.5, 2, 3, 5, "inf"]
LDA_ITERS = [1, 3, 10, 100]


def _margins(tm, truth, best):
    from skcandist.teacher_model import _role_shares

    lp = np.log(np.maximum(tm.oof_probs, 1e-12))
    ll = np.log(np.maximum(tm.likelihood, 1e-12))
    out = {}
    for alpha in ALPHAS:
        score = lp if alpha == "inf" else alpha * lp + ll
        out[f"alpha={alpha}"] = 100 * (np.mean(score.argmax(1) == truth) - best)
    roles = tm.roles
    share = _role_shares(roles)
    theta = np.bincount(roles[np.arange(len(truth)), truth], minlength=4) / len(truth)
    oracle = tm.oof_probs * theta[roles] / share
    out["oracle rates"] = 100 * (np.mean(oracle.argmax(1) == truth) - best)
    return out, theta


def _lda_margins(tm, truth, best):
    """The posterior of feature_view="lda" after 1 (the default), 3, 10 and 100
    EM iterations, from the same out-of-fold rounds (what fit_teacher_model
    computes after them)."""
    from skcandist.teacher_model import _lda_em, _lda_scores

    out = {}
    for n_iter in LDA_ITERS:
        post, _ = _lda_em(
            _lda_scores(tm.oof_probs),
            tm.posterior,
            tm.roles,
            n_iter=n_iter,
            shrinkage=0.1,
        )
        out[f"lda {n_iter}"] = 100 * (np.mean(post.argmax(1) == truth) - best)
    return out


def run(seeds, out, quick=False):
    from skcandist.teacher_model import fit_teacher_model

    args = bq.parse_args(["--n-test", "1000"])
    args.cache_dir = CACHE
    settings = SETTINGS
    if quick:
        settings, args.n_train, args.n_test = QUICK_SETTINGS, 200, 100
        args.cache_dir = out / "cache"
    rows = []
    for dataset, errors, profile in settings:
        splits = load_setting(dataset, args)
        train, x_train = splits[0], splits[2]
        classes = list(train.classes)
        truth = np.array([classes.index(label) for label in train.labels])
        for seed in seeds:
            candidates, single, best, _ = teacher_and_peers(
                splits, seed, dataset, args, errors, profile
            )
            dense = candidates.toarray()
            tm = fit_teacher_model(
                x_train, dense, single, random_state=seed, feature_view="oof"
            )
            margins, theta = _margins(tm, truth, best)
            margins.update(_lda_margins(tm, truth, best))
            row = {
                "setting": bq.setting_key(dataset, errors, profile),
                "seed": seed,
                "best_peer": round(100 * best, 2),
                "theta_em": [round(float(t), 3) for t in tm.theta],
                "theta_true": [round(float(t), 3) for t in theta],
                **{k: round(v, 2) for k, v in margins.items()},
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table(rows, out):
    keys = [f"alpha={a}" for a in ALPHAS] + ["oracle rates"]
    keys += [f"lda {n}" for n in LDA_ITERS]
    lines = [
        "# Teacher-trust probe (benchmarks/probe_teacher_trust.py)",
        "",
        "Annotation of the training texts by `argmax(alpha * log p_oof + log "
        "likelihood)` from the EM teacher model with feature_view='oof' (alpha=1: "
        "its posterior; inf: "
        "the out-of-fold model alone; oracle rates: the posterior with the true "
        "answer rates, from gold; lda k: the posterior of feature_view='lda' "
        "after k EM iterations, the scores' class-conditional Gaussians learnt "
        "with the rates; 1 is the default). Margins in points over the best "
        "single-label peer (teacher, LR, cleanlab), mean over the seeds shown; "
        "the rule needs >= -0.5 (binary) and >= +2 (trec, banking77). "
        "theta = shares of texts "
        "whose true class is the sole / primary / other candidate / outside "
        "the set: EM's estimate, then the truth.",
        "",
        "| setting | seeds | " + " | ".join(keys) + " | theta EM | theta true |",
        "| --- | --- | " + " | ".join("---" for _ in keys) + " | --- | --- |",
    ]
    for setting in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == setting]
        cells = [f"{np.mean([r[k] for r in mine]):+.2f}" for k in keys]
        lines.append(
            f"| {setting} | {len(mine)} | " + " | ".join(cells)
            + f" | {mine[0]['theta_em']} | {mine[0]['theta_true']} |"
        )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "teacher_trust.json").write_text(json.dumps(rows, indent=1))
    (out / "teacher_trust.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="two settings (tests)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    table(run(args.seeds, args.out, quick=args.quick), args.out)
    print(f"done in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
