"""Speed and memory of the student, CanDistClassifier, on CPU.

Measured against the bare encoder (all-MiniLM-L6-v2, the student's default):

1. frozen mode (``finetune=False``, the default parameters, 30 epochs), for each
   data size (banking77 training texts, 1k, 5k and 10k by default):

   - the bare encoder's pass over the texts (``skcandist.encoders.encode`` with
     an empty embedding cache), in seconds and texts per second;
   - ``fit`` with an empty embedding cache (the encoder pass inside ``fit`` is
     counted), as a ratio to the bare pass, and ``fit`` again with the cache warm
     (the head's training alone);
   - ``predict_proba`` with an empty cache (encoder + head) and a warm one (head
     alone); the cold throughput as a ratio to the bare encoder's;
   - the peak resident memory (``ru_maxrss``) of a process that does only the
     encoder pass, and of one that does all of the above;

2. a grid search (``GridSearchCV``, 4 refinery settings x 3 folds, then the
   refit): how many texts the folds ask the encoder for, against how many it
   actually encodes (the in-process embedding cache encodes each text once);

3. fine-tune mode (``finetune=True``): the time of one epoch on a small
   subsample, extrapolated to 1,000 texts;

4. the frozen-mode ratio of issue 12 (``--ratio-dataset``, TREC by default,
   3,000 training texts): a default ``fit`` with an empty embedding cache over
   the bare encoder pass of the same texts, both in one process, with the
   fit's breakdown (the encoder pass inside it, the teacher model, the head's
   training: the epochs' ``history[:, "dur"]`` and the whole ``partial_fit``),
   the head's time per optimisation step, and the floor of that training: a
   bare torch loop of the same head, the same epochs and steps, the row counts
   of the three views (plain, consistency, mixup: the samples with a target,
   read from the fit's history) in one pass, AdamW (fused where torch has it),
   with torch's ``nn.Dropout`` and with the head's own training pass. Wall and
   CPU seconds are both recorded: on a loaded machine they part.
   ``--only-frozen-ratio`` runs this part alone and merges it into the existing
   JSON and markdown; ``--ratio-label`` files the runs under a name (e.g. to
   compare a copy of an older package, put first on ``PYTHONPATH``): runs of
   the same label and the same ``_student.py`` add up, a changed file replaces
   them.

Every measurement runs in its own subprocess, so that its peak memory is its own
and no cache or loaded model leaks between measurements. Torch runs with a fixed
number of threads (``--threads``, default 1; the JSON records it), because its
default oversubscribes a loaded machine. Each size runs ``--repeats`` times
(default 1) and the medians are reported: on a busy machine the ratios, taken
within one run, are steadier than the seconds. Candidate sets come from a
simple noise process (gold label kept with probability 0.8, replaced by a random
one otherwise, plus one random extra label with probability 0.5); they do not
change the amount of work.

Writes ``student_speed.json``, ``student_speed.md`` and ``fit_time_vs_size.png``
to ``benchmarks/results/`` (or ``--out-dir``). Run
``python benchmarks/bench_student_speed.py`` (about ten minutes on two cores),
``--sizes 1000,5000`` for part of the sweep, or ``--quick`` for a smoke run.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).resolve().parent / "results"
MARK = "@@result "
WARM_UP = [f"warm-up sentence number {i} for the encoder" for i in range(64)]


# ------------------------------------------------------------------ workers
def _load(dataset, n, seed):
    """Texts, gold label indices, classes and noisy candidate sets."""
    from skcandist.datasets import load_dataset

    data = load_dataset(dataset, "train", n_samples=n, random_state=seed)
    classes = list(data.classes)
    lookup = {c: i for i, c in enumerate(classes)}
    gold = np.array([lookup[label] for label in data.labels])
    rng = np.random.RandomState(seed)
    n_texts, n_classes = len(gold), len(classes)
    cands = np.zeros((n_texts, n_classes), dtype=np.float32)
    first = np.where(
        rng.rand(n_texts) < 0.8, gold, rng.randint(n_classes, size=n_texts)
    )
    cands[np.arange(n_texts), first] = 1
    extra = rng.rand(n_texts) < 0.5
    cands[np.flatnonzero(extra), rng.randint(n_classes, size=int(extra.sum()))] = 1
    return list(data.texts), gold, classes, cands


def _peak_rss_mb():
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _timed(func, *args, **kwargs):
    start = time.perf_counter()
    value = func(*args, **kwargs)
    return value, time.perf_counter() - start


def _cold_encoder():
    """Empty the embedding cache, then load the encoder (not timed)."""
    from skcandist.encoders import clear_memory_cache, encode

    clear_memory_cache()
    encode(WARM_UP)


def _encode_task(cfg):
    from skcandist.encoders import encode

    texts = _load(cfg["dataset"], cfg["n"], cfg["seed"])[0]
    _cold_encoder()
    _, seconds = _timed(encode, texts)
    return {"n": len(texts), "encoder_pass_s": seconds}


def _student(cfg, **params):
    from skcandist import CanDistClassifier

    return CanDistClassifier(random_state=cfg["seed"], **params)


def _fit_predict_task(cfg):
    from skcandist.encoders import encode

    texts, _, classes, cands = _load(cfg["dataset"], cfg["n"], cfg["seed"])
    _cold_encoder()
    _, encoder_s = _timed(encode, texts)
    _cold_encoder()
    clf = _student(cfg)
    _, fit_cold_s = _timed(clf.fit, texts, cands, classes=classes)
    durations = [row["dur"] for row in clf.net_.history]
    _, fit_warm_s = _timed(_student(cfg).fit, texts, cands, classes=classes)
    _cold_encoder()
    _, predict_cold_s = _timed(clf.predict_proba, texts)
    _, predict_warm_s = _timed(clf.predict_proba, texts)
    return {
        "n": len(texts),
        "encoder_pass_s": encoder_s,
        "fit_cold_s": fit_cold_s,
        "fit_warm_s": fit_warm_s,
        "epochs": len(durations),
        "head_epoch_s": float(np.mean(durations)),
        "predict_cold_s": predict_cold_s,
        "predict_warm_s": predict_warm_s,
    }


def _finetune_task(cfg):
    from skcandist.encoders import encode

    texts, _, classes, cands = _load(cfg["dataset"], cfg["n"], cfg["seed"])
    _cold_encoder()
    _, encoder_s = _timed(encode, texts)
    clf = _student(cfg, finetune=True, max_epochs=1)
    _, fit_s = _timed(clf.fit, texts, cands, classes=classes)
    epoch_s = clf.net_.history[-1, "dur"]
    return {
        "n": len(texts),
        "epochs": 1,
        "max_length": clf.max_length,
        "batch_size": clf.batch_size,
        "encoder_pass_s": encoder_s,
        "fit_s": fit_s,
        "epoch_s": epoch_s,
    }


def _grid_task(cfg):
    from sklearn.model_selection import GridSearchCV, KFold

    import skcandist._student as student_module
    import skcandist.encoders as encoders
    from skcandist import AnnotatedTexts

    texts, gold, classes, cands = _load(cfg["dataset"], cfg["n"], cfg["seed"])
    X = AnnotatedTexts(texts, cands, classes)
    y = np.asarray(classes)[gold]
    counts = {"requested": 0, "encoded": 0, "encoder_calls": 0, "encoder_s": 0.0}
    # Count at the two ends of the cache: what the student asks for (``encode``
    # as _student calls it) and what reaches the model (``_encode_uncached``).
    requested, uncached = student_module.encode, encoders._encode_uncached

    def counting_encode(texts, *args, **kwargs):
        counts["requested"] += len(texts)
        return requested(texts, *args, **kwargs)

    def counting_uncached(texts, *args, **kwargs):
        counts["encoded"] += len(texts)
        counts["encoder_calls"] += 1
        value, seconds = _timed(uncached, texts, *args, **kwargs)
        counts["encoder_s"] += seconds
        return value

    grid = {"delta": [0.3, 0.5], "gamma": [0.7, 0.85]}
    search = GridSearchCV(
        _student(cfg, max_epochs=cfg["max_epochs"]),
        grid,
        cv=KFold(3, shuffle=True, random_state=cfg["seed"]),
        n_jobs=1,
    )
    _cold_encoder()  # the model loads outside the count
    student_module.encode = counting_encode
    encoders._encode_uncached = counting_uncached
    try:
        _, seconds = _timed(search.fit, X, y)
    finally:
        student_module.encode, encoders._encode_uncached = requested, uncached
    return {
        "n": len(texts),
        "settings": len(search.cv_results_["params"]),
        "folds": 3,
        "grid": grid,
        "max_epochs": cfg["max_epochs"],
        "texts_requested": counts["requested"],
        "texts_encoded": counts["encoded"],
        "encoder_calls": counts["encoder_calls"],
        "encoder_s": counts["encoder_s"],
        "total_s": seconds,
    }


def _clocked(func, *args, **kwargs):
    """``func``'s value, wall seconds and CPU seconds of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = func(*args, **kwargs)
    return value, time.perf_counter() - wall, time.process_time() - cpu


def _fused_adamw():
    import torch

    try:
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)], fused=True)
    except (RuntimeError, ValueError, TypeError):
        return False
    return True


def _head_floor(dim, n_classes, n, batch_size, view_rows, seed, own_pass):
    """Seconds of a bare torch loop training the student's head.

    ``view_rows[e]`` gives, for epoch ``e``, the rows of one step's pass for a
    batch of ``b`` texts (the plain view only, or the three views). The loss is
    a soft cross-entropy on every row; AdamW is fused where torch has it.
    ``own_pass`` runs the head's ``classify`` (its training pass), else torch's
    ``nn.Dropout`` layers in sequence.
    """
    import torch

    from skcandist._student import _Head

    torch.manual_seed(seed)
    head = _Head(dim, n_classes)
    head.train()
    optimizer = torch.optim.AdamW(
        head.parameters(), lr=3e-3, weight_decay=0.01, fused=_fused_adamw()
    )
    if own_pass:
        forward = head.classify
    else:

        def forward(x):
            return head.out(head.body(head.dropout(x)))

    x_all = torch.randn(max(n, 3 * batch_size), dim)
    q_all = torch.softmax(torch.randn(len(x_all), n_classes), dim=1)
    sizes = [min(batch_size, n - start) for start in range(0, n, batch_size)]
    wall = time.perf_counter()
    for rows_of in view_rows:
        for b in sizes:
            rows = rows_of(b)
            optimizer.zero_grad()
            logits = forward(x_all[:rows])
            loss = -(q_all[:rows] * torch.log_softmax(logits, dim=1)).sum(1).mean()
            loss.backward()
            optimizer.step()
            loss.item()
    return time.perf_counter() - wall


def _frozen_ratio_task(cfg):
    import hashlib

    import skcandist
    import skcandist._student as student_module
    from skcandist.encoders import encode

    package = Path(skcandist.__file__).resolve().parent
    texts, _, classes, cands = _load(cfg["dataset"], cfg["n"], cfg["seed"])
    load_start = os.getloadavg()[0]
    _cold_encoder()
    _, encoder_s, encoder_cpu_s = _clocked(encode, texts)
    # The fit's parts, timed where _student calls them.
    parts = {"encode": 0.0, "teacher": 0.0, "training": 0.0}
    net_class = student_module._RefineryNet
    real = {
        "encode": student_module.encode,
        "teacher": student_module.fit_teacher_model,
        "training": net_class.partial_fit,
    }

    def timed(name):
        def call(*args, **kwargs):
            value, seconds, _ = _clocked(real[name], *args, **kwargs)
            parts[name] += seconds
            return value

        return call

    student_module.encode = timed("encode")
    student_module.fit_teacher_model = timed("teacher")
    net_class.partial_fit = timed("training")
    _cold_encoder()
    clf = _student(cfg)
    try:
        _, fit_s, fit_cpu_s = _clocked(clf.fit, texts, cands, classes=classes)
    finally:
        student_module.encode = real["encode"]
        student_module.fit_teacher_model = real["teacher"]
        net_class.partial_fit = real["training"]
    history = clf.net_.history
    durations = [row["dur"] for row in history]
    steps_per_epoch = history[-1, "train_batch_count"]
    steps = int(sum(history[:, "train_batch_count"]))
    head_s = float(np.sum(durations))
    # The floor: the fit's epochs, each step one pass over the rows of its views
    # (the plain one alone while the extra terms weigh 0).
    ramp, n = clf.ramp_epochs, len(texts)
    view_rows = []
    for epoch, row in enumerate(history, start=1):
        eta = 1.0 if ramp <= 0 else min(1.0, (epoch - 1) / ramp)
        extras = eta > 0 and (clf.consistency or clf.mixup)
        share = (n - row["n_ignored"]) / n if clf.mixup else 0.0
        view_rows.append(
            (lambda b, c=clf.consistency, s=share: b * (1 + c) + round(b * s))
            if extras
            else (lambda b: b)
        )
    dim, n_classes = clf.n_features_in_, len(clf.classes_)
    floors = {
        name: _head_floor(
            dim, n_classes, n, clf.batch_size, view_rows, cfg["seed"], own_pass
        )
        for name, own_pass in (("dropout", False), ("own_pass", True))
    }
    return {
        "n": n,
        "classes": n_classes,
        "package": str(package),
        "student_sha256": hashlib.sha256(
            (package / "_student.py").read_bytes()
        ).hexdigest()[:12],
        "fused_adamw_available": _fused_adamw(),
        "encoder_pass_s": encoder_s,
        "encoder_pass_cpu_s": encoder_cpu_s,
        "fit_cold_s": fit_s,
        "fit_cold_cpu_s": fit_cpu_s,
        "fit_ratio_to_encoder": fit_s / encoder_s,
        "fit_encode_s": parts["encode"],
        "fit_teacher_s": parts["teacher"],
        "fit_training_s": parts["training"],
        "fit_head_epochs_s": head_s,
        "fit_other_s": fit_s - parts["encode"] - parts["teacher"] - parts["training"],
        "epochs": len(durations),
        "steps_per_epoch": int(steps_per_epoch),
        "steps": steps,
        "head_ms_per_step": 1e3 * head_s / steps,
        "floor_head_s": floors["own_pass"],
        "floor_head_dropout_s": floors["dropout"],
        "floor_ms_per_step": 1e3 * floors["own_pass"] / steps,
        "floor_dropout_ms_per_step": 1e3 * floors["dropout"] / steps,
        "head_to_floor": head_s / floors["own_pass"],
        # The ratio were the head's epochs at the floor, and with no head at all.
        "ratio_at_floor": (fit_s - head_s + floors["own_pass"]) / encoder_s,
        "ratio_without_head": (fit_s - parts["training"]) / encoder_s,
        "mean_rows_per_step": float(
            np.mean([rows(clf.batch_size) for rows in view_rows])
        ),
        "load_average_1min_start": load_start,
        "load_average_1min_end": os.getloadavg()[0],
    }


TASKS = {
    "encode": _encode_task,
    "fit_predict": _fit_predict_task,
    "finetune": _finetune_task,
    "grid": _grid_task,
    "frozen_ratio": _frozen_ratio_task,
}


def _worker(task, cfg):
    import torch

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    result = TASKS[task](cfg)
    result["torch_threads"] = torch.get_num_threads()
    result["peak_rss_mb"] = _peak_rss_mb()
    print(MARK + json.dumps(result), flush=True)


def run_task(task, cfg):
    """Run one measurement in a fresh Python process; its result dict."""
    threads = str(cfg["threads"])
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            task,
            "--worker-config",
            json.dumps(cfg),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker {task} failed:\n{done.stderr[-3000:]}")
    line = [row for row in done.stdout.splitlines() if row.startswith(MARK)][-1]
    return json.loads(line[len(MARK) :])


# ------------------------------------------------------------------ report
def _row(encode_only, fit_predict):
    n = fit_predict["n"]
    enc = fit_predict["encoder_pass_s"]
    return {
        "n": n,
        "encoder_pass_s": round(enc, 3),
        "encoder_texts_per_s": round(n / enc, 1),
        "fit_cold_s": round(fit_predict["fit_cold_s"], 3),
        "fit_warm_s": round(fit_predict["fit_warm_s"], 3),
        "fit_ratio_to_encoder": round(fit_predict["fit_cold_s"] / enc, 3),
        "epochs": fit_predict["epochs"],
        "head_epoch_s": round(fit_predict["head_epoch_s"], 4),
        "predict_cold_s": round(fit_predict["predict_cold_s"], 3),
        "predict_warm_s": round(fit_predict["predict_warm_s"], 4),
        "predict_texts_per_s": round(n / fit_predict["predict_cold_s"], 1),
        "predict_warm_texts_per_s": round(n / fit_predict["predict_warm_s"], 1),
        "predict_ratio_to_encoder": round(enc / fit_predict["predict_cold_s"], 3),
        "peak_rss_mb_encoder_only": round(encode_only["peak_rss_mb"], 1),
        "peak_rss_mb_fit_predict": round(fit_predict["peak_rss_mb"], 1),
        "encoder_only_pass_s": round(encode_only["encoder_pass_s"], 3),
    }


def _median(runs):
    """The median of each measurement over repeated runs (each ratio per run)."""
    row = {key: float(np.median([run[key] for run in runs])) for key in runs[0]}
    row.update(n=runs[0]["n"], epochs=runs[0]["epochs"], repeats=len(runs))
    return row


_RATIO_KEYS = (
    "encoder_pass_s",
    "fit_cold_s",
    "fit_ratio_to_encoder",
    "fit_encode_s",
    "fit_teacher_s",
    "fit_training_s",
    "fit_head_epochs_s",
    "head_ms_per_step",
    "floor_ms_per_step",
    "floor_dropout_ms_per_step",
    "head_to_floor",
    "ratio_at_floor",
    "ratio_without_head",
    "encoder_pass_cpu_s",
    "fit_cold_cpu_s",
    "load_average_1min_start",
    "load_average_1min_end",
)


def _ratio_summary(runs):
    """The median of each measurement over the runs of one label."""
    summary = {key: float(np.median([run[key] for run in runs])) for key in _RATIO_KEYS}
    first = runs[0]
    summary.update(
        runs=len(runs),
        student_sha256=first["student_sha256"],
        package=first["package"],
        steps=first["steps"],
        epochs=first["epochs"],
        mean_rows_per_step=first["mean_rows_per_step"],
    )
    return summary


def _merge_ratio(results, previous, label, runs, cfg):
    """File ``runs`` under ``label`` and the thread count, next to ``previous``
    labels' (a JSON's ``frozen_ratio``): runs of the same ``_student.py`` add
    up, others go."""
    section = dict(previous or {})
    section.pop("threads", None)
    labels = dict(section.get("labels", {}))
    threads = cfg["threads"]
    label = f"{label}, {threads} thread{'s' if threads > 1 else ''}"
    old = labels.get(label, {}).get("runs", [])
    sha = runs[0]["student_sha256"]
    kept = [run for run in old if run["student_sha256"] == sha]
    merged = kept + runs
    labels[label] = {"median": _ratio_summary(merged), "runs": merged}
    section.update(dataset=cfg["dataset"], n=cfg["n"], seed=cfg["seed"], labels=labels)
    results["frozen_ratio"] = section
    return results


def _ratio_markdown(section):
    lines = [
        f"### Frozen encoder in one process: fit / bare encoder pass "
        f"({section['dataset']}, {section['n']} training texts, default "
        "parameters)",
        "",
        "| label, torch threads | _student.py | runs | encoder pass s "
        "| fit s (cold cache) "
        "| fit / encoder | in fit: encoder s / teacher model s / training s "
        "(head epochs s) | head ms / step | floor ms / step (head's pass / "
        "nn.Dropout) | head / floor | fit / encoder at the floor | fit / encoder "
        "without the head | CPU s (encoder / fit) | load average (start / end) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, entry in section["labels"].items():
        m = entry["median"]
        lines.append(
            f"| {label} | {m['student_sha256']} | {m['runs']} | "
            f"{m['encoder_pass_s']:.2f} | {m['fit_cold_s']:.2f} | "
            f"{m['fit_ratio_to_encoder']:.2f} | {m['fit_encode_s']:.2f} / "
            f"{m['fit_teacher_s']:.2f} / {m['fit_training_s']:.2f} "
            f"({m['fit_head_epochs_s']:.2f}) | {m['head_ms_per_step']:.2f} | "
            f"{m['floor_ms_per_step']:.2f} / {m['floor_dropout_ms_per_step']:.2f} | "
            f"{m['head_to_floor']:.2f} | {m['ratio_at_floor']:.2f} | "
            f"{m['ratio_without_head']:.2f} | {m['encoder_pass_cpu_s']:.2f} / "
            f"{m['fit_cold_cpu_s']:.2f} | {m['load_average_1min_start']:.1f} / "
            f"{m['load_average_1min_end']:.1f} |"
        )
    some = next(iter(section["labels"].values()))["median"]
    lines += [
        "",
        f"Medians over the runs of each label. The head trains {some['epochs']} "
        f"epochs, {some['steps']} optimisation steps; the floor is a bare torch "
        "loop of the same head over the same steps, each one pass over the rows "
        "of the step's views (the plain one in the first epoch, then plain + "
        "consistency + the mixed rows of the samples with a target: "
        f"{some['mean_rows_per_step']:.0f} rows per full batch on average), a "
        "soft cross-entropy and AdamW (fused where torch has it), through the "
        "head's own training pass or torch's nn.Dropout. 'fit / encoder at the "
        "floor' replaces the head epochs by the floor; 'without the head' drops "
        "the whole training. CPU seconds are the process's (at most threads x "
        "wall); the load average is the machine's, this process's threads "
        "included.",
    ]
    return lines


def markdown(results):
    if "sizes" not in results:
        section = results.get("frozen_ratio")
        return "\n".join(_ratio_markdown(section) if section else []) + "\n"
    lines = [
        f"Student speed on CPU: {results['dataset']} training texts, encoder "
        f"{results['encoder']}, torch threads {results['threads']}, "
        f"load average {results['load_average_1min_start']:.1f} at the start "
        f"(machine with {results['environment']['cpus']} CPUs). Median of "
        f"{results['repeats']} run(s) per size (each ratio taken within a run); "
        "the encoder pass of a separate process shows the run-to-run spread.",
        "",
        "### Frozen encoder (default parameters, "
        f"{results['student_params']['max_epochs']} epochs)",
        "",
        "| texts | encoder pass s (same / separate process) | fit s (cold cache) "
        "| fit / encoder | fit s (warm cache: head only) | s / head epoch "
        "| predict s (cold) | predict texts/s | predict / encoder throughput "
        "| predict s (warm) | peak RSS MB (encoder only / fit+predict) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["sizes"]:
        lines.append(
            f"| {r['n']} | {r['encoder_pass_s']:.2f} / "
            f"{r['encoder_only_pass_s']:.2f} | {r['fit_cold_s']:.2f} | "
            f"{r['fit_ratio_to_encoder']:.2f} | {r['fit_warm_s']:.2f} | "
            f"{r['head_epoch_s']:.3f} | {r['predict_cold_s']:.2f} | "
            f"{r['predict_texts_per_s']:.0f} | {r['predict_ratio_to_encoder']:.2f} | "
            f"{r['predict_warm_s']:.3f} | {r['peak_rss_mb_encoder_only']:.0f} / "
            f"{r['peak_rss_mb_fit_predict']:.0f} |"
        )
    if results["skipped_sizes"]:
        lines += ["", f"Not run: {results['skipped_sizes']}."]
    g = results.get("grid_search")
    if g:
        lines += [
            "",
            f"### Grid search ({g['settings']} settings x {g['folds']} folds + refit, "
            f"{g['n']} texts, {g['max_epochs']} epochs per fit)",
            "",
            "| texts in data | texts requested by the folds | texts encoded | "
            "encoded / data | encoder s | total s |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {g['n']} | {g['texts_requested']} | {g['texts_encoded']} | "
            f"{g['encoded_per_text']:.2f} | {g['encoder_s']:.2f} | "
            f"{g['total_s']:.1f} |",
        ]
    f = results.get("finetune")
    if f:
        lines += [
            "",
            f"### Fine-tuning (finetune=True, {f['n']} texts, 1 epoch, "
            f"max_length {f['max_length']}, batch {f['batch_size']})",
            "",
            "| texts | epoch s | s per 1k texts per epoch (extrapolated) | "
            "epoch / frozen encoder pass | fit s (with model load) | peak RSS MB |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {f['n']} | {f['epoch_s']:.2f} | {f['epoch_s_per_1k_texts']:.1f} | "
            f"{f['epoch_ratio_to_encoder']:.1f} | {f['fit_s']:.2f} | "
            f"{f['peak_rss_mb']:.0f} |",
        ]
    if results.get("frozen_ratio"):
        lines += ["", *_ratio_markdown(results["frozen_ratio"])]
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["sizes"]
    n = [r["n"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    series = [
        ("fit_cold_s", "fit, cold embedding cache", "o-"),
        ("encoder_pass_s", "bare encoder pass", "s--"),
        ("predict_cold_s", "predict, cold cache", "^-"),
        ("fit_warm_s", "fit, warm cache (head only)", "d:"),
    ]
    for key, label, style in series:
        ax.plot(n, [r[key] for r in rows], style, label=label)
    ax.set_xlabel("training texts")
    ax.set_ylabel("seconds")
    ax.set_title(
        f"CanDistClassifier (frozen {results['encoder']}), "
        f"{results['threads']} torch thread(s)"
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _available(dataset):
    from skcandist.datasets import load_dataset

    try:
        return len(load_dataset(dataset, "train"))
    except FileNotFoundError as exc:
        print(f"{dataset} not found ({exc}); using the bundled sms_spam instead.")
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    parser.add_argument(
        "--sizes", default="1000,5000,10000", help="comma-separated text counts"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per size (medians reported)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--dataset", default="banking77")
    parser.add_argument("--grid-size", type=int, default=1000)
    parser.add_argument("--finetune-size", type=int, default=200)
    parser.add_argument("--out-dir", default=str(RESULTS))
    parser.add_argument(
        "--only-frozen-ratio",
        action="store_true",
        help="run only the frozen-mode ratio (part 4); merge it into the "
        "existing JSON and markdown",
    )
    parser.add_argument(
        "--ratio-label", default="current", help="name the ratio's runs go under"
    )
    parser.add_argument("--ratio-dataset", default="trec")
    parser.add_argument("--ratio-size", type=int, default=3000)
    parser.add_argument("--worker", choices=sorted(TASKS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, json.loads(args.worker_config))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import environment

    out = Path(args.out_dir)
    ratio_cfg = {
        "dataset": args.ratio_dataset,
        "n": args.ratio_size,
        "seed": args.seed,
        "threads": args.threads,
    }
    if args.quick:
        ratio_cfg["n"] = 200

    def frozen_ratio(results, previous):
        print(f"frozen-mode ratio ({args.ratio_label}) ...", flush=True)
        runs = [run_task("frozen_ratio", ratio_cfg) for _ in range(args.repeats)]
        return _merge_ratio(results, previous, args.ratio_label, runs, ratio_cfg)

    if args.only_frozen_ratio:
        path = out / "student_speed.json"
        results = json.loads(path.read_text()) if path.exists() else {}
        results = frozen_ratio(results, results.get("frozen_ratio"))
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
        table = markdown(results)
        (out / "student_speed.md").write_text(table)
        print(table)
        print(f"written to {out}")
        return

    sizes = [int(s) for s in args.sizes.split(",") if s]
    grid_n, finetune_n, grid_epochs = args.grid_size, args.finetune_size, 10
    if args.quick:
        sizes, grid_n, finetune_n, grid_epochs = [100], 60, 16, 2
    dataset = args.dataset
    available = _available(dataset)
    if available is None:
        dataset = "sms_spam"
        available = _available(dataset)
    skipped = [n for n in sizes if n > available]
    if skipped:
        print(f"{dataset} has {available} training texts; skipping sizes {skipped}.")
    cfg = {"dataset": dataset, "seed": args.seed, "threads": args.threads}
    results = {
        "benchmark": "student_speed",
        "quick": args.quick,
        "seed": args.seed,
        "repeats": args.repeats,
        "threads": args.threads,
        "dataset": dataset,
        "dataset_size": available,
        "encoder": "all-MiniLM-L6-v2",
        "student_params": {
            k: v
            for k, v in _student_params().items()
            if k in ("loss", "max_epochs", "batch_size", "max_length", "hidden_size")
        },
        "environment": environment(),
        "load_average_1min_start": os.getloadavg()[0],
        "skipped_sizes": skipped,
        "sizes": [],
    }
    for n in [n for n in sizes if n <= available]:
        print(f"size {n} ...", flush=True)
        runs = [
            _row(
                run_task("encode", dict(cfg, n=n)),
                run_task("fit_predict", dict(cfg, n=n)),
            )
            for _ in range(args.repeats)
        ]
        results["sizes"].append(dict(_median(runs), runs=runs))
    print("grid search ...", flush=True)
    grid = run_task("grid", dict(cfg, n=grid_n, max_epochs=grid_epochs))
    grid["encoded_per_text"] = grid["texts_encoded"] / grid["n"]
    grid["requested_per_text"] = grid["texts_requested"] / grid["n"]
    results["grid_search"] = grid
    print("fine-tuning ...", flush=True)
    tune = run_task("finetune", dict(cfg, n=finetune_n))
    tune["epoch_s_per_1k_texts"] = tune["epoch_s"] * 1000 / tune["n"]
    tune["epoch_ratio_to_encoder"] = tune["epoch_s"] / tune["encoder_pass_s"]
    results["finetune"] = tune
    previous = out / "student_speed.json"
    previous = (
        json.loads(previous.read_text()).get("frozen_ratio")
        if previous.exists() and not args.quick
        else None
    )
    results = frozen_ratio(results, previous)
    results["load_average_1min_end"] = os.getloadavg()[0]

    out.mkdir(parents=True, exist_ok=True)
    (out / "student_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (out / "student_speed.md").write_text(table)
    if results["sizes"]:
        plot(results, out / "fit_time_vs_size.png")
    print(table)
    print(f"written to {out}")


def _student_params():
    from skcandist import CanDistClassifier

    return CanDistClassifier().get_params()


if __name__ == "__main__":
    main()
