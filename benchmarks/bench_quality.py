"""Annotation quality: the CanDist paper's Table 2, Table 6 and a set-size sweep.

Teachers (``--teacher``):

- ``sim``: candidate sets simulated from the gold labels with instance-dependent
  errors (:func:`skcandist.datasets.simulate_candidates`), calibrated to the
  paper's GPT-3.5 statistics (Table 8) for TREC and Banking77, and to our own
  profiles for SST-2 and SMS spam;
- ``local`` / ``endpoint``: :class:`skcandist.CandidateAnnotator` with the
  "single", "add" and "all" prompts, against the embedded local LLM or any
  OpenAI-compatible endpoint (``--base-url``, ``--model``).

Methods, all from the same annotations: the teacher's single labels; the student
with ``loss="ce"`` on them (the paper's "Distillation"); cleanlab's
``CleanLearning`` and a plain logistic regression on them, over frozen MiniLM
embeddings; the student with the partial-label losses ``cc``, ``proden``, ``lws``,
``cavl`` on the "all" candidates; CanDist on the "add" and on the "all" candidates.
Annotation accuracy is the accuracy of a method's labels on the training texts
against the hidden gold labels; test accuracy is on the test split.

Parts (``--parts``): ``table2`` (the comparison), ``ablation`` (Table 6: refinery
components added one at a time, on TREC) and ``sweep`` (mean set size from 1 to 3
on TREC, with the correlation of the candidate sets' F1 and student accuracy, and
a plot). Results go to ``quality.json`` and ``quality.md`` in ``--out``
(default ``benchmarks/results``).

Examples::

    python benchmarks/bench_quality.py --datasets trec --seeds 3
    python benchmarks/bench_quality.py --quick
    python benchmarks/bench_quality.py --teacher endpoint \\
        --base-url https://api.openai.com/v1 --model gpt-3.5-turbo-0125

Two processes, one per core, then one result::

    python benchmarks/bench_quality.py --datasets trec banking77 --parts table2 \\
        ablation --out /tmp/q1 &
    python benchmarks/bench_quality.py --datasets sst2 sms_spam --parts table2 \\
        sweep --out /tmp/q2
    python benchmarks/bench_quality.py merge /tmp/q1 /tmp/q2
"""

import argparse
import inspect
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CACHE,
    RESULTS,
    environment,
    fmt,
    frozen_embeddings,
    load_split,
    mean_std,
    train_linear_head,
    write_json,
    write_text,
)

DATASETS = ("trec", "banking77", "sst2", "sms_spam")
PLL_LOSSES = ("cc", "proden", "lws", "cavl")

#: The paper's Table 2 (GPT-3.5 teacher, RoBERTa-base student):
#: method -> data set -> (annotation accuracy, test accuracy), in percent.
PAPER_TABLE2 = {
    "teacher_single": {"trec": (71.07, 77.20), "banking77": (66.08, 68.86)},
    "student_ce": {"trec": (76.04, 81.00), "banking77": (69.83, 72.40)},
    "candist_add": {"trec": (80.87, 83.13), "banking77": (72.92, 76.27)},
    "candist_all": {"trec": (79.73, 87.80), "banking77": (72.94, 75.97)},
}

#: The paper's Table 6 order of the refinery components, as the student's
#: boolean parameters (those the student lacks are reported as skipped).
#: ``small_loss_selection`` alone selects over all in-candidate samples at once;
#: ``classwise_selection`` then makes it per predicted class.
ABLATION_STEPS = (
    "renormalize",
    "filter_out_of_candidate",
    "small_loss_selection",
    "classwise_selection",
    "sharpen",
    "confident_targets",
    "consistency",
    "mixup",
)

METHOD_NAMES = {
    "teacher_single": "LLM teacher, single labels",
    "student_ce": "student, CE on single labels (Distillation)",
    "lr_single": "LogisticRegression on single labels (frozen MiniLM)",
    "cleanlab": "cleanlab CleanLearning(LogisticRegression) on single labels",
    "student_cc": "student, CC on 'all' candidates",
    "student_proden": "student, PRODEN on 'all' candidates",
    "student_lws": "student, LWS on 'all' candidates",
    "student_cavl": "student, CAVL on 'all' candidates",
    "candist_add": "CanDist, 'add' candidates",
    "candist_all": "CanDist, 'all' candidates",
    "candist_all_paper": "CanDist, 'all' candidates, the paper's refinery "
    "(teacher_model=None)",
}


# ---------------------------------------------------------------- the student
class _StandInStudent:
    """A frozen-MiniLM linear head used only while CanDistClassifier is absent."""

    def __init__(self, loss, embed, max_epochs, random_state):
        self.loss = loss
        self.embed = embed
        self.max_epochs = max_epochs
        self.random_state = random_state

    def fit(self, annotated):
        self.classes_ = np.asarray(annotated.classes)
        features = self.embed(annotated.texts)
        if self.loss == "ce":
            targets, loss = annotated.single, "ce"
        else:
            targets = annotated.candidates.toarray()
            loss = "cc" if self.loss == "cc" else "proden"
        self.proba_ = train_linear_head(
            features,
            targets,
            loss=loss,
            epochs=max(self.max_epochs, 1) * 10,
            seed=self.random_state,
        )
        return self

    def predict(self, texts):
        return self.classes_[self.proba_(self.embed(texts)).argmax(axis=1)]


def student_class():
    """The real ``CanDistClassifier``, or None where it is not importable."""
    try:
        from skcandist import CanDistClassifier
    except (ImportError, AttributeError):
        return None
    return CanDistClassifier


def make_student(loss, args, seed, embed, **params):
    """A student for ``loss``; unknown ``params`` are dropped (and reported)."""
    cls = student_class()
    if cls is None:
        return _StandInStudent(loss, embed, args.max_epochs, seed), {}
    accepted = set(inspect.signature(cls.__init__).parameters)
    kwargs = {"loss": loss, "random_state": seed}
    if args.max_epochs is not None:
        kwargs["max_epochs"] = args.max_epochs
    if args.student_lr is not None:
        kwargs["lr"] = args.student_lr
    for name in ("device", "encoder"):
        if getattr(args, name, None) is not None:
            kwargs[name] = getattr(args, name)
    kwargs.update(params)
    dropped = {k: v for k, v in kwargs.items() if k not in accepted}
    return cls(**{k: v for k, v in kwargs.items() if k in accepted}), dropped


def run_student(loss, annotated, train, test, args, seed, embed, **params):
    """Fit a student; its annotation and test accuracy."""
    student, dropped = make_student(loss, args, seed, embed, **params)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        student.fit(annotated)
    fit_s = time.perf_counter() - start
    annotation = float(np.mean(student.predict(train.texts) == train.labels))
    test_acc = float(np.mean(student.predict(test.texts) == test.labels))
    return {"annotation": annotation, "test": test_acc, "fit_s": fit_s}, dropped


# ---------------------------------------------------------------- the teachers
def sim_teacher(
    train,
    seed,
    dataset,
    size_profiles=None,
    errors="tfidf",
    profile="default",
    features=None,
):
    """Simulated "add" and "all" annotations (sharing one single label per text).

    ``errors``: where the teacher errs ("tfidf" or "embedding", the latter on
    ``features``, the student's own frozen embeddings); ``profile``: "default"
    (the paper's Table 8, our binary profiles) or "weak" (the weaker binary
    teachers of ``WEAK_TEACHERS``).
    """
    from skcandist.datasets._simulate import (
        TEACHER_PROFILES,
        WEAK_TEACHERS,
        _gold_indices,
        _oof_probabilities,
        simulate_candidates,
    )

    gold = _gold_indices(train.labels, train.classes)
    probs = _oof_probabilities(
        train.texts,
        gold,
        len(train.classes),
        5,
        seed,
        features=features if errors == "embedding" else None,
    )
    out = {}
    table = WEAK_TEACHERS if profile == "weak" else TEACHER_PROFILES
    profiles = size_profiles or {
        prompt: table[(dataset, prompt)] for prompt in ("add", "all")
    }
    for prompt, profile in profiles.items():
        out[prompt] = simulate_candidates(
            train.texts,
            train.labels,
            train.classes,
            random_state=seed,
            pred_probs=probs,
            **profile,
        )
    return out, probs


def _example_pool(train, args):
    """Labelled demonstrations from the train split, disjoint from ``train``."""
    full = load_split(train.name, "train", None)
    used = set(train.texts)
    rng = np.random.RandomState(0)
    order = rng.permutation(len(full))
    pool = [(full.texts[i], full.labels[i]) for i in order if full.texts[i] not in used]
    return pool[: args.pool_size]


def llm_teacher(train, args):
    """Annotations from ``CandidateAnnotator``.

    ``endpoint``: one chat request per text and prompt style ("single", "add",
    "all"), as in the paper. ``local``: the embedded Gemma 3 270M scored by
    label-name log-probabilities, one request per text; "add" keeps the labels
    with at least half the top label's probability and "all" the most probable
    labels up to 90% of the mass (the cached answers serve both).
    """
    try:
        from skcandist import CandidateAnnotator
    except (ImportError, AttributeError) as exc:
        raise SystemExit(
            f"--teacher {args.teacher} needs skcandist.CandidateAnnotator, which "
            f"is not importable here ({exc}); use --teacher sim."
        ) from exc
    cache = args.cache_dir / f"answers_{args.teacher}.sqlite"
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    common = dict(
        labels=dict(train.descriptions),
        examples=_example_pool(train, args),
        n_examples=args.n_examples,
        cache=str(cache),
        verbose=1 if args.verbose else 0,
    )
    texts = list(train.texts)
    if args.teacher == "local":
        from skcandist.llm.local import LocalLLMServer

        rules = {"add": {"proba_ratio": 0.5}, "all": {"proba_mass": 0.9}}
        out = {}
        with LocalLLMServer() as server:
            for prompt, rule in rules.items():
                annotator = CandidateAnnotator(
                    model=server.model,
                    base_url=server.base_url,
                    answer="logprobs",
                    top_logprobs=1000,
                    n_jobs=1,
                    **rule,
                    **common,
                )
                annotated = annotator.fit_transform(texts)
                out[prompt] = (annotated.candidates, annotated.single)
        return out
    out = {}
    for prompt in ("single", "add", "all"):
        annotator = CandidateAnnotator(
            model=args.model, base_url=args.base_url, prompt=prompt, **common
        )
        annotated = annotator.fit_transform(texts)
        out[prompt] = (annotated.candidates, annotated.single)
    single = out.pop("single")[1]
    return {p: (cand, single) for p, (cand, _) in out.items()}


# ---------------------------------------------------------------- the parts
def _teacher_for(train, seed, dataset, args, errors="tfidf", profile="default"):
    if args.teacher == "sim":
        features = None
        if errors == "embedding":
            features = frozen_embeddings(train, args.n_train, cache_dir=args.cache_dir)
        return sim_teacher(
            train, seed, dataset, errors=errors, profile=profile, features=features
        )[0]
    return llm_teacher(train, args)


def teacher_settings(dataset, args):
    """The (errors, profile) pairs to run on ``dataset``: weak profiles exist for
    the binary sets only; an LLM teacher is one setting."""
    from skcandist.datasets._simulate import WEAK_TEACHERS

    if args.teacher != "sim":
        return [("llm", "llm")]
    profiles = [
        p for p in args.profiles if p == "default" or (dataset, "all") in WEAK_TEACHERS
    ]
    return [(e, p) for e in args.teacher_errors for p in profiles]


def _annotated(train, candidates, single):
    from skcandist import AnnotatedTexts

    return AnnotatedTexts(list(train.texts), candidates, train.classes, single=single)


def _embedder(*splits):
    lookup = {}
    for data, vectors in splits:
        lookup.update(zip(data.texts, vectors))

    def embed(texts):
        return np.stack([lookup[t] for t in texts])

    return embed


def _sklearn_baselines(single, x_train, x_test, train, test, seed):
    from cleanlab.classification import CleanLearning
    from sklearn.linear_model import LogisticRegression

    classes = np.asarray(train.classes)
    out = {}
    # Labels never named by the teacher cannot be predicted: keep the column map.
    present = np.unique(single)
    remap = {c: i for i, c in enumerate(present)}
    y = np.array([remap[c] for c in single])
    for name in ("lr_single", "cleanlab"):
        model = LogisticRegression(max_iter=2000, C=10.0, random_state=seed)
        if name == "cleanlab":
            model = CleanLearning(model, seed=seed, verbose=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x_train, y)
        to_names = classes[present]
        out[name] = {
            "annotation": float(
                np.mean(to_names[model.predict(x_train)] == train.labels)
            ),
            "test": float(np.mean(to_names[model.predict(x_test)] == test.labels)),
        }
    return out


def _summarise(runs):
    """Per method, the mean and spread over the seeds of each accuracy its runs
    report (annotation, test)."""
    return {
        name: {
            key: mean_std([r[key] for r in results if key in r])
            for key in ("annotation", "test")
            if any(key in r for r in results)
        }
        for name, results in runs.items()
        if results
    }


def table2(dataset, args, log, errors="tfidf", profile="default"):
    """All methods on one data set and teacher setting, over the seeds."""
    from skcandist.metrics import candidate_report

    train = load_split(dataset, "train", args.n_train)
    test = load_split(dataset, "test", args.n_test)
    x_train = frozen_embeddings(train, args.n_train, cache_dir=args.cache_dir)
    x_test = frozen_embeddings(test, args.n_test, cache_dir=args.cache_dir)
    embed = _embedder((train, x_train), (test, x_test))
    classes = np.asarray(train.classes)
    runs = {name: [] for name in METHOD_NAMES}
    stats = {"add": [], "all": []}
    dropped_params = {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        teacher = _teacher_for(train, seed, dataset, args, errors, profile)
        single = teacher["all"][1]
        runs["teacher_single"].append(
            {"annotation": float(np.mean(classes[single] == train.labels))}
        )
        for prompt in ("add", "all"):
            report = candidate_report(
                teacher[prompt][0], train.labels, classes=train.classes
            )
            report["single_accuracy"] = runs["teacher_single"][-1]["annotation"]
            stats[prompt].append(report)
        for name, result in _sklearn_baselines(
            single, x_train, x_test, train, test, seed
        ).items():
            runs[name].append(result)
        jobs = [("student_ce", "ce", "all")]
        jobs += [(f"student_{loss}", loss, "all") for loss in PLL_LOSSES]
        jobs += [("candist_add", "candist", "add"), ("candist_all", "candist", "all")]
        jobs += [("candist_all_paper", "candist", "all")]
        for name, loss, prompt in jobs:
            if args.methods and name not in args.methods:
                continue
            annotated = _annotated(train, teacher[prompt][0], single)
            extra = {"finetune": True} if args.finetune else {}
            if name == "candist_all_paper":
                extra["teacher_model"] = None
            result, dropped = run_student(
                loss, annotated, train, test, args, seed, embed, **extra
            )
            result["candidate_f1"] = stats[prompt][-1]["f1"] if loss != "ce" else None
            dropped_params.update(dropped)
            runs[name].append(result)
            log(f"{dataset} seed {seed} {name}: {result}")
    summary = _summarise(runs)
    return {
        "dataset": dataset,
        "teacher_errors": errors,
        "profile": profile,
        "n_train": len(train),
        "n_test": len(test),
        "n_classes": len(classes),
        "teacher_stats": {
            prompt: {
                key: mean_std([r[key] for r in reports])
                for key in ("single_accuracy", "coverage", "mean_set_size", "f1")
            }
            for prompt, reports in stats.items()
        },
        "methods": summary,
        "runs": runs,
        "dropped_student_params": sorted(dropped_params),
        "seeds": list(range(args.first_seed, args.first_seed + args.seeds)),
    }


def ablation(args, log):
    """TREC, "all" candidates: refinery components switched on one at a time."""
    cls = student_class()
    accepted = set(inspect.signature(cls.__init__).parameters) if cls else set()
    steps = [s for s in ABLATION_STEPS if s in accepted]
    skipped = [s for s in ABLATION_STEPS if s not in accepted]
    train = load_split("trec", "train", args.n_train)
    test = load_split("trec", "test", args.n_test)
    embed = _embedder(
        (train, frozen_embeddings(train, args.n_train, cache_dir=args.cache_dir)),
        (test, frozen_embeddings(test, args.n_test, cache_dir=args.cache_dir)),
    )
    rows = []
    configs = [("CC (no refinery)", "cc", {})]
    paper = {"teacher_model": None} if "teacher_model" in accepted else {}
    for k in range(len(steps) + 1):
        params = {s: (i < k) for i, s in enumerate(steps)}
        label = "+ " + steps[k - 1] if k else "none (uniform targets over s)"
        configs.append((label, "candist", {**params, **paper}))
    if paper:
        configs.append(
            ("+ teacher_model='em' (beyond the paper; the default)", "candist", {})
        )
    teachers = [
        _teacher_for(train, seed, "trec", args) for seed in range(args.ablation_seeds)
    ]
    for label, loss, params in configs:
        results = []
        for seed, teacher in enumerate(teachers):
            annotated = _annotated(train, *teacher["all"])
            result, _ = run_student(
                loss, annotated, train, test, args, seed, embed, **params
            )
            results.append(result)
        row = {
            "config": label,
            "loss": loss,
            "params": params,
            "annotation": mean_std([r["annotation"] for r in results]),
            "test": mean_std([r["test"] for r in results]),
        }
        log(f"ablation {label}: {fmt(row['annotation'])} | {fmt(row['test'])}")
        rows.append(row)
    return {"steps": steps, "skipped_steps": skipped, "rows": rows}


def sweep_profiles(single_accuracy, sizes, scale=0.73):
    """Targets along a size sweep: coverage grows from the single-label accuracy
    towards 1 as ``1 - exp(-(size - 1) / scale)``; ``scale=0.73`` puts the paper's
    TREC "all" teacher (size 1.70, coverage 0.89) on the curve."""
    profiles = {}
    for size in sizes:
        gain = (1 - single_accuracy) * (1 - np.exp(-(size - 1) / scale))
        coverage = min(single_accuracy + gain, single_accuracy + size - 1)
        profiles[f"size_{size:.2f}"] = dict(
            single_accuracy=single_accuracy,
            coverage=float(coverage),
            mean_set_size=float(size),
        )
    return profiles


def sweep(args, log, extra_points):
    """TREC: student accuracy against mean set size, and F1 as a predictor."""
    from scipy.stats import pearsonr, spearmanr

    from skcandist.datasets._simulate import PAPER_TEACHERS
    from skcandist.metrics import candidate_report

    train = load_split("trec", "train", args.n_train)
    test = load_split("trec", "test", args.n_test)
    embed = _embedder(
        (train, frozen_embeddings(train, args.n_train, cache_dir=args.cache_dir)),
        (test, frozen_embeddings(test, args.n_test, cache_dir=args.cache_dir)),
    )
    acc = PAPER_TEACHERS[("trec", "all")]["single_accuracy"]
    profiles = sweep_profiles(acc, args.sweep_sizes)
    points = []
    for seed in range(args.sweep_seeds):
        teacher, _ = sim_teacher(train, seed, "trec", size_profiles=profiles)
        for key, (candidates, single) in teacher.items():
            report = candidate_report(candidates, train.labels, classes=train.classes)
            annotated = _annotated(train, candidates, single)
            for loss in args.sweep_losses:
                result, _ = run_student(loss, annotated, train, test, args, seed, embed)
                point = {
                    "profile": key,
                    "seed": seed,
                    "loss": loss,
                    **{k: report[k] for k in ("coverage", "mean_set_size", "f1")},
                    **result,
                }
                log(f"sweep {point}")
                points.append(point)
    all_points = points + extra_points

    def correlations(subset):
        f1 = [p["f1"] for p in subset]
        return {
            key: {
                "pearson": float(pearsonr(f1, [p[key] for p in subset])[0]),
                "spearman": float(spearmanr(f1, [p[key] for p in subset])[0]),
                "n_runs": len(subset),
            }
            for key in ("annotation", "test")
        }

    correlation = correlations(all_points) if len(all_points) >= 3 else {}
    per_loss = {}
    for loss in args.sweep_losses:
        mine = [p for p in points if p["loss"] == loss]
        if len(mine) >= 3:
            per_loss[loss] = correlations(mine)
    plot = _plot_sweep(points, args.out / "accuracy_vs_set_size.png")
    return {
        "profiles": profiles,
        "points": points,
        "extra_points_from_table2": len(extra_points),
        "f1_vs_accuracy_correlation": correlation,
        "f1_vs_accuracy_correlation_per_loss": per_loss,
        "plot": plot,
    }


def _plot_sweep(points, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("annotation", "test")):
        for loss in sorted({p["loss"] for p in points}):
            mine = [p for p in points if p["loss"] == loss]
            sizes = sorted({p["mean_set_size"] for p in mine})
            means = [
                np.mean([p[key] for p in mine if p["mean_set_size"] == s])
                for s in sizes
            ]
            ax.plot(sizes, np.array(means) * 100, marker="o", label=loss)
        ax.set_xlabel("mean candidate-set size")
        ax.set_ylabel(f"{key} accuracy (%)")
        ax.set_title(f"TREC, simulated teacher: {key} accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


# ---------------------------------------------------------------- reporting
PEERS = ("cleanlab", "student_ce", "lr_single")
#: Peers of the quality rule: annotation against the teacher's own labels and
#: every single-label learner; test against every single-label learner.
RULE_PEERS = {
    "annotation": ("teacher_single", "lr_single", "cleanlab", "student_ce"),
    "test": ("lr_single", "cleanlab", "student_ce"),
}
#: The rule (issue 9): never more than 0.5 point below the best peer; where the
#: sets carry information (>= 4 classes, coverage >= 0.8) at least 2 points
#: (annotation) and 1 point (test) above it.
NEVER_WORSE = -0.5
CLEAR_WIN = {"annotation": 2.0, "test": 1.0}


def setting_key(dataset, errors, profile):
    """``dataset`` alone for the default simulated teacher, else with its setting."""
    if (errors, profile) in (("tfidf", "default"), ("llm", "llm")):
        return dataset
    return f"{dataset}/{errors}" + ("" if profile == "default" else f"/{profile}")


def rule(res, method="candist_all"):
    """Margins of ``method`` over its best peer (in points) and the verdict."""
    methods = res["methods"]
    if method not in methods:
        return {}
    coverage = res["teacher_stats"]["all"]["coverage"]["mean"]
    informative = res["n_classes"] >= 4 and coverage >= 0.8
    out = {"method": method, "informative": informative, "pass": True}
    for key, peers in RULE_PEERS.items():
        values = {
            p: methods[p][key]["mean"] for p in peers if key in methods.get(p, {})
        }
        if not values or key not in methods[method]:
            continue
        best = max(values, key=values.get)
        margin = (methods[method][key]["mean"] - values[best]) * 100
        needed = CLEAR_WIN[key] if informative else NEVER_WORSE
        out[key] = {"best_peer": best, "margin": margin, "needed": needed}
        out["pass"] = out["pass"] and margin >= needed - 1e-9
    return out


def _margins(verdict):
    parts = [verdict.get(p) for p in ("annotation", "test")]
    if not all(parts):
        return "—"
    return " \\| ".join(f"{p['margin']:+.2f}" for p in parts) + (
        "" if verdict["pass"] else " (fails)"
    )


def rule_table(result):
    """The rule's verdict for every data set and teacher setting."""
    lines = [
        "## The quality rule, CanDist on 'all' sets with its defaults",
        "",
        "Margins in points over the best single-label peer (annotation: the "
        "teacher's labels, LogisticRegression, cleanlab, CE student; test: the "
        "three learners). Needed: >= -0.5 everywhere, >= +2 | +1 where the sets "
        "carry information (>= 4 classes and coverage >= 0.8).",
        "",
        "| data set / teacher | teacher acc | coverage | CanDist | best peer | "
        "margin | needed | pass | paper's refinery: margin |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, res in result.get("table2", {}).items():
        verdict = result.get("rule", {}).get(key) or {}
        paper = result.get("rule_paper", {}).get(key) or {}
        if "annotation" not in verdict:
            continue
        stats = res["teacher_stats"]["all"]
        methods = res["methods"]
        cells = []
        for part in ("annotation", "test"):
            v = verdict.get(part)
            if v is None:
                cells.append(("—", "—", "—", "—"))
                continue
            cells.append(
                (
                    fmt(methods["candist_all"][part]),
                    f"{fmt(methods[v['best_peer']][part])} ({v['best_peer']})",
                    f"{v['margin']:+.2f}",
                    f"{v['needed']:+.1f}",
                )
            )
        lines.append(
            f"| {key} | {fmt(stats['single_accuracy'])} | {fmt(stats['coverage'])} "
            f"| {cells[0][0]} \\| {cells[1][0]} | {cells[0][1]} \\| {cells[1][1]} "
            f"| {cells[0][2]} \\| {cells[1][2]} | {cells[0][3]} \\| {cells[1][3]} "
            f"| {'yes' if verdict['pass'] else '**no**'} | {_margins(paper)} |"
        )
    lines.append("")
    return lines


def _verdict(methods):
    """CanDist ('all') against the best single-label peer, in points."""
    if "candist_all" not in methods:
        return ""
    parts = []
    for key in ("annotation", "test"):
        peers = {p: methods[p][key]["mean"] for p in PEERS if key in methods.get(p, {})}
        if not peers:
            continue
        best = max(peers, key=peers.get)
        margin = (methods["candist_all"][key]["mean"] - peers[best]) * 100
        parts.append(f"{key} {margin:+.2f} points vs {best}")
    return "CanDist ('all') vs the best single-label peer: " + "; ".join(parts) + "."


def _seed_counts(table):
    """The numbers of seeds the table-2 entries ran (0 for an entry that does
    not record its seeds)."""
    return {len(res.get("seeds") or ()) for res in table.values()}


def markdown(result):
    lines = ["# Annotation quality (benchmarks/bench_quality.py)", ""]
    cfg = result["config"]
    # A merge of runs over other seeds may leave the settings with different
    # numbers of seeds; each section then says its own.
    mixed = len(_seed_counts(result.get("table2", {})) - {0}) > 1
    seeds = "seeds per data set in each section" if mixed else f"{cfg['seeds']} seed(s)"
    lines += [
        f"Teacher: `{cfg['teacher']}`; student: `{result['student']}`; "
        f"{seeds}; "
        f"{'fine-tuned' if cfg.get('finetune') else 'frozen'} "
        f"{cfg.get('encoder') or 'MiniLM'}; "
        f"max_epochs={cfg['max_epochs'] or 'default'}. "
        "Cells: annotation accuracy | test accuracy, mean ± std over seeds, in %. "
        "*Paper* columns are the paper's Table 2 (GPT-3.5 teacher, RoBERTa-base "
        "student), not our measurements.",
        "",
    ]
    if "full_size" in result:
        full = result["full_size"]
        lines += [f"Full-size run on a GPU ({full['gpu']}); {full['encoder']}.", ""]
    teacher = "Simulated teacher" if cfg["teacher"] == "sim" else "Teacher"
    lines += rule_table(result)
    for dataset, res in result.get("table2", {}).items():
        seed_note = (
            ", seeds " + ", ".join(str(seed) for seed in res["seeds"])
            if mixed and res.get("seeds")
            else ""
        )
        lines += [
            f"## {dataset} (train {res['n_train']}, test {res['n_test']}, "
            f"{res['n_classes']} classes{seed_note})",
            "",
            f"{teacher} statistics (training texts): "
            + "; ".join(
                f"{p}: single acc {fmt(s['single_accuracy'])}, coverage "
                f"{fmt(s['coverage'])}, mean size {s['mean_set_size']['mean']:.2f}, "
                f"F1 {fmt(s['f1'])}"
                for p, s in res["teacher_stats"].items()
            ),
            "",
            "| method | annotation | test | paper annotation | paper test |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, summary in res["methods"].items():
            paper = PAPER_TABLE2.get(name, {}).get(dataset)
            paper_cells = (
                [f"*{paper[0]:.2f}*", f"*{paper[1]:.2f}*"] if paper else ["", ""]
            )
            lines.append(
                f"| {METHOD_NAMES[name]} | {fmt(summary.get('annotation'))} | "
                f"{fmt(summary.get('test'))} | {paper_cells[0]} | {paper_cells[1]} |"
            )
        lines += ["", _verdict(res["methods"]), ""]
    if "ablation" in result:
        ab = result["ablation"]
        lines += [
            "## Ablation on TREC, simulated 'all' teacher (paper Table 6)",
            "",
            f"Components switched on in turn: {', '.join(ab['steps']) or 'none'}"
            + (
                f"; not exposed by the student: {', '.join(ab['skipped_steps'])}"
                if ab["skipped_steps"]
                else ""
            ),
            "",
            "The selection only decides which targets are sharpened, so it changes "
            "nothing until `sharpen` is on.",
            "",
            "| configuration | annotation | test |",
            "| --- | --- | --- |",
        ]
        for row in ab["rows"]:
            lines.append(
                f"| {row['config']} | {fmt(row['annotation'])} | {fmt(row['test'])} |"
            )
        lines.append("")
    if "sweep" in result:
        sw = result["sweep"]
        lines += [
            "## Candidate-set size sweep on TREC (simulated teacher)",
            "",
            f"![accuracy vs set size]({sw['plot']})",
            "",
            "| profile | loss | coverage | mean size | F1 | annotation | test |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        keys = sorted({(p["profile"], p["loss"]) for p in sw["points"]})
        for profile, loss in keys:
            mine = [
                p for p in sw["points"] if p["profile"] == profile and p["loss"] == loss
            ]
            lines.append(
                f"| {profile} | {loss} | {np.mean([p['coverage'] for p in mine]):.3f} "
                f"| {np.mean([p['mean_set_size'] for p in mine]):.2f} "
                f"| {np.mean([p['f1'] for p in mine]):.3f} "
                f"| {fmt(mean_std([p['annotation'] for p in mine]))} "
                f"| {fmt(mean_std([p['test'] for p in mine]))} |"
            )
        lines.append("")
        groups = [
            ("all runs (sweep and table above)", sw["f1_vs_accuracy_correlation"])
        ]
        groups += [
            (f"sweep runs of `{loss}`", corr)
            for loss, corr in sw.get("f1_vs_accuracy_correlation_per_loss", {}).items()
        ]
        for group, corrs in groups:
            for key, corr in corrs.items():
                lines.append(
                    f"- F1 of the candidate sets vs student {key} accuracy, {group}, "
                    f"{corr['n_runs']} runs: Pearson {corr['pearson']:.3f}, "
                    f"Spearman {corr['spearman']:.3f}"
                )
        lines.append("")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="table 2 runs seeds first-seed .. first-seed + seeds - 1 (one seed per "
        "process, then `merge` combines them)",
    )
    parser.add_argument(
        "--n-train", type=int, default=2000, help="0: the whole training split"
    )
    parser.add_argument("--n-test", type=int, default=500, help="0: the whole split")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--student-lr", type=float, default=None)
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["table2", "ablation", "sweep"],
        choices=["table2", "ablation", "sweep"],
    )
    parser.add_argument(
        "--methods",
        nargs="*",
        default=None,
        help="student methods to run (default: all)",
    )
    parser.add_argument("--ablation-seeds", type=int, default=None)
    parser.add_argument("--sweep-seeds", type=int, default=None)
    parser.add_argument(
        "--sweep-sizes",
        nargs="+",
        type=float,
        default=[1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0],
    )
    parser.add_argument("--sweep-losses", nargs="+", default=["candist", "proden"])
    parser.add_argument(
        "--teacher-errors",
        nargs="+",
        choices=["tfidf", "embedding"],
        default=["tfidf", "embedding"],
        help="simulated teacher: where its errors fall (features of its model)",
    )
    parser.add_argument(
        "--profiles",
        nargs="+",
        choices=["default", "weak"],
        default=["default", "weak"],
        help="simulated teacher: 'weak' adds the weaker binary profiles",
    )
    parser.add_argument(
        "--teacher", choices=["sim", "local", "endpoint"], default="sim"
    )
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument(
        "--pool-size", type=int, default=100, help="LLM teachers: labelled examples"
    )
    parser.add_argument(
        "--n-examples", type=int, default=10, help="LLM teachers: demonstrations"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny slices, one seed, few epochs (for the tests)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=CACHE,
        help="where frozen embeddings are cached as .npy",
    )
    parser.add_argument(
        "--finetune",
        action="store_true",
        help="students fine-tune the whole encoder (slow on a CPU: use a subsample)",
    )
    parser.add_argument(
        "--device", default=None, help="the students' device (default: theirs)"
    )
    parser.add_argument(
        "--encoder", default=None, help="the students' encoder (default: theirs)"
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.n_train, args.n_test = args.n_train or None, args.n_test or None
    if args.first_seed < 0:
        parser.error(f"--first-seed must be >= 0, not {args.first_seed}.")
    if args.quick:
        args.n_train, args.n_test, args.seeds = 150, 60, 1
        args.max_epochs = args.max_epochs or 2
        args.sweep_sizes = [1.0, 1.5, 2.0]
        args.sweep_losses = ["candist"]
        args.teacher_errors = args.teacher_errors[:1]
        args.profiles = args.profiles[:1]
        if args.datasets == list(DATASETS):
            args.datasets = ["trec"]
    args.ablation_seeds = args.ablation_seeds or args.seeds
    args.sweep_seeds = args.sweep_seeds or args.seeds
    if args.teacher == "endpoint" and not args.base_url:
        parser.error("--teacher endpoint needs --base-url (and usually --model).")
    if args.teacher != "sim" and set(args.parts) - {"table2"}:
        args.parts = ["table2"]
    return args


def _result_file(folder):
    """The one result of a run in ``folder``: ``quality.json``, or the single
    ``quality_<teacher>[_finetune].json`` there."""
    folder = Path(folder)
    if (folder / "quality.json").is_file():
        return folder / "quality.json"
    found = sorted(folder.glob("quality_*.json"))
    if len(found) != 1:
        raise SystemExit(
            f"{folder}: expected quality.json or one quality_*.json, found "
            f"{[f.name for f in found] or 'none'}"
        )
    return found[0]


def _merge_seeds(mine, theirs, key):
    """One table-2 entry from two runs of the same setting over other seeds."""
    seeds = mine.get("seeds"), theirs.get("seeds")
    if None in seeds or set(seeds[0]) & set(seeds[1]):
        raise SystemExit(
            f"{key}: both parts ran it, and their seeds are unknown or overlap "
            f"({seeds[0]} and {seeds[1]}); merge runs over disjoint seeds only."
        )
    for field in ("n_train", "n_test", "n_classes"):
        if mine[field] != theirs[field]:
            raise SystemExit(
                f"{key}: the parts differ in {field} ({mine[field]} vs "
                f"{theirs[field]})."
            )

    def joined(a, b):
        return mean_std(a["values"] + b["values"])

    merged = dict(mine, seeds=seeds[0] + seeds[1])
    merged["teacher_stats"] = {
        prompt: {
            k: joined(v, theirs["teacher_stats"][prompt][k]) for k, v in stats.items()
        }
        for prompt, stats in mine["teacher_stats"].items()
    }
    merged["runs"] = {
        name: runs + theirs["runs"].get(name, []) for name, runs in mine["runs"].items()
    }
    merged["methods"] = _summarise(merged["runs"])
    merged["dropped_student_params"] = sorted(
        set(mine["dropped_student_params"]) | set(theirs["dropped_student_params"])
    )
    return merged


def merge(folders, out):
    """Combine the results of runs over disjoint data sets, parts or seeds (e.g.
    two processes, one per core; or one seed per process) into one in ``out``.

    A setting found in several parts is combined seed by seed: every cell is
    recomputed from the runs of all its seeds, and the rule from those cells.
    """
    import json
    import shutil

    result, stem = None, None
    for folder in folders:
        path = _result_file(folder)
        if stem not in (None, path.stem):
            raise SystemExit(f"{path}: cannot merge {path.stem} with {stem}.")
        stem = path.stem
        part = json.loads(path.read_text("utf-8"))
        # Runs from before --first-seed existed ran seeds 0 .. seeds - 1.
        cfg = part.get("config", {})
        first = cfg.get("first_seed", 0)
        for res in part.get("table2", {}).values():
            if "seeds" not in res and isinstance(cfg.get("seeds"), int):
                res["seeds"] = list(range(first, first + cfg["seeds"]))
        if result is None:
            result = part
            result["merged_from"] = []
            continue
        table = result.setdefault("table2", {})
        for key, res in part.get("table2", {}).items():
            table[key] = _merge_seeds(table[key], res, key) if key in table else res
        for key in ("ablation", "sweep"):
            if key in part:
                result[key] = part[key]
        result["wall_s"] = result.get("wall_s", 0) + part.get("wall_s", 0)
    for folder in folders:  # the sweep's plot travels with it
        plot = Path(folder) / result.get("sweep", {}).get("plot", "-")
        if plot.is_file() and plot.parent.resolve() != out.resolve():
            out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plot, out / plot.name)

    # One order whatever the order of the parts: data set, then teacher setting.
    def order(item):
        res = item[1]
        known = res["dataset"] in DATASETS
        return (
            DATASETS.index(res["dataset"]) if known else len(DATASETS),
            res["dataset"],
            res.get("teacher_errors") != "tfidf",
            res.get("profile") != "default",
        )

    table = dict(sorted(result.get("table2", {}).items(), key=order))
    if table:
        result["table2"] = table
        result["rule"] = {key: rule(res) for key, res in table.items()}
        result["rule_paper"] = {
            key: rule(res, "candist_all_paper") for key, res in table.items()
        }
        counts = _seed_counts(table)
        if len(counts) == 1 and counts != {0}:
            result["config"]["seeds"] = counts.pop()
    result["merged_from"] = [str(f) for f in folders]
    result["config"]["datasets"] = sorted(
        {res["dataset"] for res in result.get("table2", {}).values()}
    )
    out.mkdir(parents=True, exist_ok=True)
    write_json(result, out / f"{stem}.json")
    write_text(markdown(result), out / f"{stem}.md")
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '.md')}")
    return result


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "merge":
        parser = argparse.ArgumentParser(description=merge.__doc__.split("\n")[0])
        parser.add_argument("command")
        parser.add_argument("folders", nargs="+", type=Path)
        parser.add_argument("--out", type=Path, default=RESULTS)
        merged = parser.parse_args(argv)
        return merge(merged.folders, merged.out)
    args = parse_args(argv)

    def log(message):
        if args.verbose:
            print(message, flush=True)

    cls = student_class()
    result = {
        "config": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
        },
        "student": "skcandist.CanDistClassifier" if cls else "stand-in linear head",
        "environment": environment(),
    }
    start = time.perf_counter()
    if "table2" in args.parts:
        result["table2"] = {
            setting_key(d, e, p): table2(d, args, log, e, p)
            for d in args.datasets
            for e, p in teacher_settings(d, args)
        }
        result["rule"] = {key: rule(res) for key, res in result["table2"].items()}
        result["rule_paper"] = {
            key: rule(res, "candist_all_paper") for key, res in result["table2"].items()
        }
    if "ablation" in args.parts:
        result["ablation"] = ablation(args, log)
    if "sweep" in args.parts:
        extra = [
            {"f1": r["candidate_f1"], "annotation": r["annotation"], "test": r["test"]}
            for res in result.get("table2", {}).values()
            if res["dataset"] == "trec"
            and res["teacher_errors"] in ("tfidf", "llm")
            and res["profile"] in ("default", "llm")
            for name, runs in res["runs"].items()
            if name.startswith(("candist", "student_")) and name != "student_ce"
            for r in runs
        ]
        result["sweep"] = sweep(args, log, extra)
    result["wall_s"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "quality" if args.teacher == "sim" else f"quality_{args.teacher}"
    if args.finetune:
        stem += "_finetune"
    write_json(result, args.out / f"{stem}.json")
    write_text(markdown(result), args.out / f"{stem}.md")
    print(f"wrote {args.out / (stem + '.json')} and {args.out / (stem + '.md')}")
    return result


if __name__ == "__main__":
    main()
