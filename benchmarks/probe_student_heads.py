"""Probe for the quality issue: does the student's head capacity decide the rule?

Runs CanDist on the "all" sets (defaults otherwise) with the heads of
``HEADS`` -- the default, a linear head (``hidden_size=0``, also with a
larger learning rate), several dropouts with and without the averaged weights,
the paper's consistency means -- on the same 12
settings, teachers, baselines and rule as ``bench_quality.py`` (4 sets x 2
kinds of simulated teacher, weak binary profiles, 2,000 training and 1,000 test
texts), or on those named with ``--settings``, and reports each head's margin
over the best single-label peer (annotation | test, points).

This is a development probe: it reads the gold labels of the shared sets to
score the heads (the package reads none at fit time).

Each run writes ``student_heads_<part>.json``; ``table`` combines the parts
found in ``--out`` into ``student_heads.md``. Two processes, one per core::

    python benchmarks/probe_student_heads.py run --seeds 0 1 --part a &
    python benchmarks/probe_student_heads.py run --seeds 2 --part b
    python benchmarks/probe_student_heads.py table

``--quick`` runs two settings on 120 texts for a few epochs (what the tests
run, so that the script cannot rot).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_quality as bq  # noqa: E402
from _common import CACHE, RESULTS, frozen_embeddings, load_split  # noqa: E402

HEADS = {
    "default": {},
    "linear": {"hidden_size": 0},
    "dropout_0.3": {"dropout": 0.3},
    # The paper's consistency means (App. A.2) instead of one over the batch.
    "separate_means": {"consistency_means": "separate"},
    # The defaults before December 2026 (the last step's weights, no moving
    # average), dropout 0.3 with and without the average, and dropout 0.5.
    "dropout_0.1_no_ema": {"ema_decay": 0.0},
    "dropout_0.3_no_ema": {"dropout": 0.3, "ema_decay": 0.0},
    "dropout_0.5": {"dropout": 0.5},
    # A linear head trained faster: is the linear head's edge on the weak
    # binary teachers its capacity or its being stopped short of convergence?
    "linear_lr_0.01": {"hidden_size": 0, "lr": 0.01},
    # Components of the refinery switched off one at a time: does one of them
    # cost the binary settings without paying on the multi-class ones?
    "no_mixup": {"mixup": False},
    "no_consistency": {"consistency": False},
    "no_filter": {"filter_out_of_candidate": False},
}
SETTINGS = [
    (dataset, errors, profile)
    for dataset in bq.DATASETS
    for errors in ("tfidf", "embedding")
    for profile in ("default", "weak")
    if profile == "default" or dataset in ("sst2", "sms_spam")
]


#: ``--quick``: two settings on a slice, a few epochs (for the tests).
QUICK_SETTINGS = [("trec", "tfidf", "default"), ("sms_spam", "embedding", "weak")]


def load_setting(dataset, args):
    """The train and test splits of ``dataset`` and their frozen embeddings."""
    train = load_split(dataset, "train", args.n_train)
    test = load_split(dataset, "test", args.n_test)
    x_train = frozen_embeddings(train, args.n_train, cache_dir=args.cache_dir)
    x_test = frozen_embeddings(test, args.n_test, cache_dir=args.cache_dir)
    return train, test, x_train, x_test


def teacher_and_peers(splits, seed, dataset, args, errors, profile):
    """The simulated "all" teacher and the best single-label peers of the rule:
    ``(candidates, single, best annotation, best test)``, as fractions."""
    train, test, x_train, x_test = splits
    teacher = bq._teacher_for(train, seed, dataset, args, errors, profile)
    candidates, single = teacher["all"]
    peers = bq._sklearn_baselines(single, x_train, x_test, train, test, seed)
    teacher_acc = float(np.mean(np.asarray(train.classes)[single] == train.labels))
    best_annotation = max(teacher_acc, *(p["annotation"] for p in peers.values()))
    best_test = max(p["test"] for p in peers.values())
    return candidates, single, best_annotation, best_test


def run(seeds, heads, out, part, quick=False, only=None):
    # The sizes of the committed quality.md run (--n-test 1000; TREC has 500).
    args = bq.parse_args(["--n-test", "1000"])
    args.cache_dir = CACHE
    settings = SETTINGS
    if quick:
        settings = QUICK_SETTINGS
        args.n_train, args.n_test, args.max_epochs = 120, 60, 3
        args.cache_dir = out / "cache"
    if only:
        settings = [s for s in settings if bq.setting_key(*s) in only]
    rows = []
    for dataset, errors, profile in settings:
        splits = load_setting(dataset, args)
        train, test, x_train, x_test = splits
        embed = bq._embedder((train, x_train), (test, x_test))
        for seed in seeds:
            candidates, single, best_annotation, best_test = teacher_and_peers(
                splits, seed, dataset, args, errors, profile
            )
            for head in heads:
                annotated = bq._annotated(train, candidates, single)
                result, _ = bq.run_student(
                    "candist", annotated, train, test, args, seed, embed, **HEADS[head]
                )
                row = {
                    "setting": bq.setting_key(dataset, errors, profile),
                    "seed": seed,
                    "head": head,
                    "annotation": result["annotation"],
                    "test": result["test"],
                    "margin_annotation": 100 * (result["annotation"] - best_annotation),
                    "margin_test": 100 * (result["test"] - best_test),
                    "fit_s": round(result["fit_s"], 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"student_heads_{part}.json").write_text(json.dumps(rows, indent=1))


def table(out):
    rows = []
    for path in sorted(out.glob("student_heads_*.json")):
        rows += json.loads(path.read_text())
    if not rows:
        raise SystemExit(f"no student_heads_*.json in {out}; run the probe first.")
    heads = [h for h in HEADS if any(r["head"] == h for r in rows)]
    seen = {r["setting"] for r in rows}
    settings = [k for k in (bq.setting_key(*s) for s in SETTINGS) if k in seen]
    lines = [
        "# Student heads probe (benchmarks/probe_student_heads.py)",
        "",
        "CanDist on 'all' sets, defaults except the head; margins in points over "
        "the best single-label peer (annotation: teacher, LR, cleanlab; test: LR, "
        "cleanlab), mean over the seeds shown (a cell names its own where its head "
        "ran fewer). A cell meets the quality rule at "
        ">= -0.5 | -0.5, or >= +2 | +1 where the sets carry information "
        "(trec and banking77 here).",
        "",
        "| setting | seeds | " + " | ".join(heads) + " |",
        "| --- | --- | " + " | ".join("---" for _ in heads) + " |",
    ]
    passed = dict.fromkeys(heads, 0)
    sums = {head: [0.0, 0.0] for head in heads}
    for key in settings:
        cells = []
        seeds = sorted({r["seed"] for r in rows if r["setting"] == key})
        for head in heads:
            mine = [r for r in rows if r["setting"] == key and r["head"] == head]
            if not mine:
                cells.append("")
                continue
            ann = np.mean([r["margin_annotation"] for r in mine])
            test = np.mean([r["margin_test"] for r in mine])
            rich = key.split("/")[0] in ("trec", "banking77")
            need = (2.0, 1.0) if rich else (-0.5, -0.5)
            ok = ann >= need[0] and test >= need[1]
            passed[head] += ok
            sums[head][0] += ann
            sums[head][1] += test
            # A head that ran fewer seeds than the row's count says how many.
            n = len(mine)
            fewer = f" ({n} seed{'s' if n > 1 else ''})" if n < len(seeds) else ""
            cells.append(f"{ann:+.2f} \\| {test:+.2f}{'' if ok else ' (fails)'}{fewer}")
        lines.append(f"| {key} | {len(seeds)} | " + " | ".join(cells) + " |")
    lines += ["", "Settings meeting the rule: " + ", ".join(
        f"{head} {passed[head]}/{len(settings)}" for head in heads
    ) + "."]  # fmt: skip
    lines += ["", "Margins summed over the settings (annotation | test): " + ", ".join(
        f"{head} {sums[head][0]:+.2f} | {sums[head][1]:+.2f}" for head in heads
    ) + "."]  # fmt: skip
    (out / "student_heads.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "table"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--heads", nargs="+", choices=list(HEADS), default=list(HEADS))
    parser.add_argument("--part", default="all")
    keys = [bq.setting_key(*s) for s in SETTINGS + QUICK_SETTINGS]
    parser.add_argument(
        "--settings", nargs="+", choices=sorted(set(keys)), help="default: all 12"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--quick", action="store_true", help="two settings on a slice (tests)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.command == "run":
        run(
            args.seeds,
            args.heads,
            args.out,
            args.part,
            quick=args.quick,
            only=args.settings,
        )
    else:
        table(args.out)
    print(f"done in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
