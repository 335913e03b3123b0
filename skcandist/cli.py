"""The ``skcandist`` command line.

Four commands:

``skcandist annotate DATA.csv --labels ... --out OUT.csv``
    Ask the LLM for candidate sets, train the student on them, and write per row
    the candidate set, the student's label and its probability. ``--save-model
    PATH`` keeps the trained student; ``--dry-run`` prints what the LLM phase
    would send and cost (``--price-in`` / ``--price-out``) and sends nothing.
``skcandist evaluate DATA.csv --labels ... --gold-column label``
    The same, then compare the teacher's single labels and the student's labels
    with the gold column (the paper's metrics, as a table).
``skcandist predict MODEL DATA.csv --out OUT.csv``
    Label new texts with a saved student alone: no LLM, no endpoint. A model
    file is a pickle, and loading one runs code: load only files you trust.
``skcandist demo``
    ``evaluate`` on a slice of the bundled SMS Spam Collection with the embedded
    local LLM: no configuration, no network.

With no endpoint configured (``--base-url``, ``SKCANDIST_BASE_URL`` or
``OPENAI_BASE_URL``), the embedded local LLM (llama.cpp server with Gemma 3 270M)
is started on 127.0.0.1 and stopped afterwards. Every LLM answer goes to a
persistent cache as it arrives, so an interrupted run loses nothing and a rerun
sends no request twice.
"""

import argparse
import csv
import json
import logging
import os
import sys
import time
from pathlib import Path

from .exceptions import SkcandistError

__all__ = ["main", "build_parser"]

_LOG = logging.getLogger("skcandist")


class CommandError(SkcandistError):
    """A problem with the command's input, reported in one line."""


# -- input -------------------------------------------------------------------
def read_table(path, text_column, gold_column=None):
    """Read a CSV file and return (rows, fieldnames)."""
    path = Path(path)
    if not path.exists():
        raise CommandError(f"{path}: no such file.")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            fields = reader.fieldnames or []
    except UnicodeDecodeError as exc:
        raise CommandError(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "convert it, e.g. with `iconv -t utf-8`."
        ) from exc
    except csv.Error as exc:
        raise CommandError(f"{path} is not a readable CSV file: {exc}.") from exc
    if not fields:
        raise CommandError(f"{path} is empty: it needs a header row and data rows.")
    if not rows:
        raise CommandError(f"{path} has a header but no data rows.")
    for flag, column in (
        ("--text-column", text_column),
        ("--gold-column", gold_column),
    ):
        if column is not None and column not in fields:
            raise CommandError(
                f"{path} has no column {column!r} (columns: {', '.join(fields)}); "
                f"choose one with {flag}."
            )
    empty = [
        i + 2 for i, row in enumerate(rows) if not (row[text_column] or "").strip()
    ]
    if empty:
        raise CommandError(
            f"{path}: empty text in column {text_column!r} on line(s) "
            f"{', '.join(map(str, empty[:10]))}."
        )
    return rows, fields


def parse_labels(spec):
    """Labels from a comma-separated list, a text file (one per line), or a JSON
    file (a list of names, or an object name -> description)."""
    if spec is None:
        raise CommandError("no labels: pass --labels a,b,c or --labels FILE.")
    path = Path(spec)
    if path.suffix.lower() in (".json", ".txt") or path.exists():
        if not path.exists():
            raise CommandError(f"labels file {path} not found.")
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            try:
                labels = json.loads(text)
            except json.JSONDecodeError as exc:
                raise CommandError(
                    f"labels file {path} is not valid JSON: {exc}."
                ) from exc
            if not isinstance(labels, (list, dict)):
                raise CommandError(
                    f"labels file {path} must hold a list of names or an object "
                    "name -> description."
                )
            return labels
        return [line.strip() for line in text.splitlines() if line.strip()]
    return [name.strip() for name in spec.split(",") if name.strip()]


# -- the job ------------------------------------------------------------------
def _endpoint(args):
    base_url = (
        args.base_url
        or os.environ.get("SKCANDIST_BASE_URL")
        or os.environ.get("OPENAI_BASE_URL")
    )
    return base_url


def check_reachable(base_url, timeout=10.0):
    """Fail fast, in one line, when nothing answers at ``base_url``.

    Any HTTP answer counts as reachable (some servers have no ``/models``
    route); only a refused connection or a timeout does not.
    """
    import openai

    client = openai.OpenAI(
        base_url=base_url,
        api_key=os.environ.get("OPENAI_API_KEY") or "unused",
        max_retries=0,
        timeout=timeout,
    )
    try:
        client.models.list()
    except (openai.APIConnectionError, openai.APITimeoutError) as exc:
        raise CommandError(
            f"no endpoint reachable at {base_url} ({type(exc).__name__}); start the "
            "server or fix --base-url / SKCANDIST_BASE_URL."
        ) from exc
    except openai.APIStatusError:
        pass
    finally:
        client.close()


def _build_annotator(args, labels, examples, base_url, model, local):
    from ._annotator import CandidateAnnotator

    params = dict(
        labels=labels,
        model=model,
        base_url=base_url,
        prompt=args.prompt,
        task=args.task,
        examples=examples,
        n_examples=args.n_examples,
        retrieval=args.retrieval,
        n_jobs=args.n_jobs,
        cache=args.cache,
        use_batch_api=getattr(args, "batch", False),
        batch_poll_interval=getattr(args, "batch_poll_interval", 60.0),
        max_requests_per_minute=getattr(args, "rpm", None),
        random_state=args.seed,
        verbose=0 if args.quiet else 1,
    )
    if local or args.answer == "logprobs":
        params["answer"] = "logprobs"
        if local:
            # The llama.cpp server ranks the whole vocabulary anyway, so asking
            # for 1000 top tokens costs what 20 cost and rarely misses a label.
            params["top_logprobs"] = 1000
    elif args.answer:
        params["answer"] = args.answer
    return CandidateAnnotator(**params)


def _load_examples(args, labels):
    if not args.examples:
        return None
    rows, _ = read_table(args.examples, args.text_column, args.examples_label_column)
    names = set(labels if isinstance(labels, list) else labels.keys())
    bad = sorted({r[args.examples_label_column] for r in rows} - names)
    if bad:
        raise CommandError(
            f"{args.examples} names labels that are not in --labels: {bad[:5]}."
        )
    return [(r[args.text_column], r[args.examples_label_column]) for r in rows]


def _check_gold(rows, args, names, evaluate):
    if evaluate and not args.gold_column:
        raise CommandError("evaluate needs --gold-column, the column of gold labels.")
    if args.gold_column:
        unknown = sorted({r[args.gold_column] for r in rows} - set(names))
        if unknown:
            raise CommandError(
                f"column {args.gold_column!r} holds labels that are not in --labels: "
                f"{unknown[:5]}; add them to --labels or fix the data."
            )


def _check_save_path(path):
    """Fail before any request when the model could not be written."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise CommandError(f"--save-model {path} is a folder; give a file name.")
    if not path.parent.exists():
        raise CommandError(
            f"--save-model {path}: the folder {path.parent} does not exist."
        )
    return path


def run_job(args, evaluate=False, out=None):
    """Annotate, distil, write, and (with ``evaluate``) compare with gold labels.

    With ``args.dry_run``, only plan: print what the LLM phase would cost and
    return that plan, sending no request.
    """
    import numpy as np

    from . import metrics

    out = sys.stdout if out is None else out
    started = time.perf_counter()
    labels = parse_labels(args.labels)
    rows, fields = read_table(args.data, args.text_column, args.gold_column)
    names = list(labels if isinstance(labels, list) else labels.keys())
    _check_gold(rows, args, names, evaluate)
    save_path = _check_save_path(getattr(args, "save_model", None))
    texts = [r[args.text_column] for r in rows]
    examples = _load_examples(args, labels)

    base_url = _endpoint(args)
    model = args.model or os.environ.get("SKCANDIST_MODEL")
    if base_url is not None and model is None:
        raise CommandError(
            "an endpoint is configured but no model: pass --model or set "
            "SKCANDIST_MODEL."
        )
    if getattr(args, "dry_run", False):
        return dry_run(args, labels, examples, texts, base_url, model, out=out)
    server = None
    if base_url is None:
        from .llm.local import LocalLLMServer

        _LOG.info("no endpoint configured: starting the embedded local LLM")
        server = LocalLLMServer(verbose=not args.quiet)
        server.start()
        base_url, model = server.base_url, server.model
    else:
        check_reachable(base_url)
    try:
        annotator = _build_annotator(
            args, labels, examples, base_url, model, local=server is not None
        )
        _say(args, f"LLM phase: {len(texts)} texts, {base_url}, model {model}")
        annotated = annotator.fit_transform(texts)
    finally:
        if server is not None:
            server.stop()
    usage = dict(annotator.usage_)

    from ._student import CanDistClassifier

    _say(args, "student phase: training on the candidate sets")
    student = CanDistClassifier(loss=args.loss, random_state=args.seed)
    if args.max_epochs:
        student.set_params(max_epochs=args.max_epochs)
    if not args.quiet:
        from ._progress import EpochProgress

        student.set_params(callbacks=[EpochProgress()])
    student.fit(annotated)
    proba = student.predict_proba(annotated.texts)
    classes = student.classes_
    final = classes[proba.argmax(axis=1)]
    if save_path is not None:
        save_model(student, save_path)
        _say(args, f"student saved to {save_path}")

    candidates = annotated.candidates.toarray().astype(bool)
    if args.out:
        _write_output(args.out, rows, fields, final, proba, classes, candidates)
    elapsed = time.perf_counter() - started
    summary = {
        "texts": len(texts),
        "requests": usage.get("requests", 0),
        "cache_hits": usage.get("cache_hits", 0),
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "completion_tokens": usage.get("completion_tokens", 0),
        "failures": usage.get("failures", 0),
        "mean_set_size": metrics.mean_set_size(candidates),
        "seconds": round(elapsed, 1),
    }
    report = {"summary": summary}
    if args.gold_column:
        gold = np.array([r[args.gold_column] for r in rows], dtype=object)
        single = annotated.single
        teacher = [classes[i] if i >= 0 else None for i in single]
        report["metrics"] = {
            "teacher_single_label_accuracy": metrics.single_label_accuracy(
                teacher, gold
            ),
            "candidate_coverage": metrics.candidate_coverage(
                candidates, gold, classes=classes
            ),
            "candidate_beta": metrics.candidate_beta(candidates),
            "candidate_f1": metrics.candidate_f1(candidates, gold, classes=classes),
            "student_accuracy": float(np.mean(final == gold)),
            # what always answering the most frequent gold label would score
            "majority_class_accuracy": float(
                np.unique(gold, return_counts=True)[1].max() / len(gold)
            ),
        }
    _print_report(out, report)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


# -- dry run ------------------------------------------------------------------
#: Where the dry run of the embedded local LLM says its answers come from: no
#: server is started, so the model file's identity is registered for this URL.
_DRY_RUN_LOCAL_URL = "http://127.0.0.1:1/v1"


def dry_run(args, labels, examples, texts, base_url, model, out=None):
    """What the LLM phase would send and cost; sends nothing.

    Returns the plan as a dict (``requests``, ``cached``, estimated tokens and,
    with ``--price-in`` / ``--price-out``, ``estimated_cost``).
    """
    from .llm.building import register_endpoint, unregister_endpoint

    out = sys.stdout if out is None else out
    local = base_url is None
    if local:
        from .llm.local import LocalLLMServer, model_identity, model_path

        base_url, model = _DRY_RUN_LOCAL_URL, LocalLLMServer().model
        register_endpoint(base_url, model_identity(model_path()))
    try:
        annotator = _build_annotator(
            args, labels, examples, base_url, model, local=local
        )
        # No tokenizer call: label tokens change what is parsed, not the cost.
        annotator.set_params(label_tokens=None).fit()
        plan = annotator.estimate(texts)
        sample = annotator.build_requests(texts[:1])[0]["body"]
    finally:
        if local:
            unregister_endpoint(base_url)
    report = {
        "endpoint": "embedded local LLM" if local else base_url,
        "model": model,
        **plan,
    }
    prices = (getattr(args, "price_in", None), getattr(args, "price_out", None))
    if any(p is not None for p in prices):
        price_in, price_out = (p or 0.0 for p in prices)
        report["estimated_cost"] = round(
            plan["prompt_tokens"] / 1e6 * price_in
            + plan["completion_tokens"] / 1e6 * price_out,
            6,
        )
    lines = ["dry run: no request was sent.", "| quantity | value |", "| --- | --- |"]
    for key, value in report.items():
        lines.append(f"| {key.replace('_', ' ')} | {value} |")
    lines += ["", "the request of the first text:", json.dumps(sample, indent=2)]
    print("\n".join(lines), file=out)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


# -- the student: progress, saving, loading -----------------------------------
def save_model(student, path):
    """Write the fitted student to ``path`` with joblib (atomically)."""
    import joblib

    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        joblib.dump(student, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def load_model(path):
    """The student saved by ``--save-model``; a clear error for anything else.

    Loading a pickle runs code from the file: load only files you trust.
    """
    import joblib

    from ._student import CanDistClassifier

    path = Path(path)
    if not path.is_file():
        raise CommandError(f"{path}: no such model file.")
    try:
        model = joblib.load(path)
    except Exception as exc:  # a pickle can fail in many ways
        raise CommandError(
            f"{path} is not a skcandist model file (written by --save-model): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(model, CanDistClassifier) or not hasattr(model, "net_"):
        raise CommandError(
            f"{path} holds a {type(model).__name__}, not a fitted skcandist "
            "CanDistClassifier (write one with --save-model)."
        )
    return model


def run_predict(args, out=None):
    """Label the texts of a CSV file with a saved student; no LLM is involved."""
    out = sys.stdout if out is None else out
    model = load_model(args.model_file)
    rows, fields = read_table(args.data, args.text_column)
    texts = [r[args.text_column] for r in rows]
    _say(args, f"predicting {len(texts)} texts with {args.model_file}")
    proba = model.predict_proba(texts)
    classes = model.classes_
    final = classes[proba.argmax(axis=1)]
    _write_output(args.out, rows, fields, final, proba)
    counts = {str(c): int((final == c).sum()) for c in classes}
    report = {
        "summary": {"texts": len(texts), **{f"label {c}": n for c, n in counts.items()}}
    }
    _print_report(out, report)
    return report


def _write_output(path, rows, fields, final, proba, classes=None, candidates=None):
    """Every input column, then the candidate set (where known), the student's
    label and its probability; written to a side file, then renamed."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    extra = ["label", "probability"]
    if candidates is not None:
        extra = ["candidates"] + extra
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields) + extra)
        writer.writeheader()
        for i, (row, label, p) in enumerate(zip(rows, final, proba)):
            values = dict(row, label=label, probability=f"{p.max():.4f}")
            if candidates is not None:
                values["candidates"] = "|".join(str(c) for c in classes[candidates[i]])
            writer.writerow(values)
    os.replace(tmp, path)


def _say(args, message):
    if not args.quiet:
        print(message, file=sys.stderr)


def _print_report(out, report):
    lines = ["| quantity | value |", "| --- | --- |"]
    for section in ("metrics", "summary"):
        for key, value in report.get(section, {}).items():
            if key == "seconds":
                shown = f"{value:.1f}"
            elif isinstance(value, float):
                shown = f"{value:.4f}"
            else:
                shown = str(value)
            lines.append(f"| {key.replace('_', ' ')} | {shown} |")
    print("\n".join(lines), file=out)


# -- demo -----------------------------------------------------------------------
def run_demo(args, out=None):
    """Evaluate on a slice of the bundled SMS Spam Collection, local LLM."""
    import tempfile

    from .datasets import load_sms_spam

    out = sys.stdout if out is None else out
    data = load_sms_spam("test").subset(args.n, random_state=args.seed)
    pool = load_sms_spam("train").subset(args.n_pool, random_state=args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="skcandist-demo-"))
    data_csv, pool_csv = workdir / "texts.csv", workdir / "examples.csv"
    labels_json = workdir / "labels.json"
    for path, subset in ((data_csv, data), (pool_csv, pool)):
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(zip(subset.texts, subset.labels))
    labels_json.write_text(json.dumps(data.descriptions), encoding="utf-8")
    print(
        f"demo: {len(data)} SMS messages (SMS Spam Collection, CC BY 4.0), "
        f"{len(pool)} labelled examples to retrieve demonstrations from",
        file=out,
    )
    ns = argparse.Namespace(
        **{
            **vars(args),
            "data": str(data_csv),
            "labels": str(labels_json),
            "text_column": "text",
            "gold_column": "label",
            "examples": str(pool_csv),
            "examples_label_column": "label",
            "out": str(workdir / "annotated.csv"),
        }
    )
    report = run_job(ns, evaluate=True, out=out)
    print(f"annotated file: {ns.out}", file=out)
    return report


# -- parser -----------------------------------------------------------------------
_PICKLE_WARNING = (
    "A model file is a pickle: loading one runs code stored in it. Only load "
    "model files you wrote yourself or otherwise trust."
)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in --help, without "(default: None)" noise."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _add_job_options(p):
    p.add_argument("--labels", help="comma-separated names, or a .txt / .json file")
    p.add_argument("--text-column", default="text", help="column holding the texts")
    p.add_argument("--gold-column", default=None, help="column of gold labels")
    p.add_argument("--examples", default=None, help="CSV of labelled demonstrations")
    p.add_argument(
        "--examples-label-column", default="label", help="label column of --examples"
    )
    p.add_argument(
        "--base-url",
        default=None,
        help="OpenAI-compatible endpoint (else SKCANDIST_BASE_URL, OPENAI_BASE_URL, "
        "else the embedded local LLM)",
    )
    p.add_argument(
        "--model", default=None, help="model name at the endpoint (or SKCANDIST_MODEL)"
    )
    p.add_argument(
        "--prompt",
        default=os.environ.get("SKCANDIST_PROMPT", "all"),
        choices=["single", "add", "all"],
        help="prompt style: one label, add labels when unsure, or all plausible",
    )
    p.add_argument("--task", default=None, help="one-line task description")
    p.add_argument(
        "--answer",
        default=None,
        choices=["json", "text", "logprobs", "chat_logprobs"],
        help="how the LLM answers (default: json; logprobs for the local LLM)",
    )
    p.add_argument(
        "--n-examples", type=int, default=10, help="demonstrations per prompt"
    )
    p.add_argument(
        "--retrieval",
        default="embedding",
        choices=["embedding", "tfidf", "random"],
        help="how demonstrations are chosen from --examples",
    )
    p.add_argument(
        "--n-jobs",
        type=int,
        default=int(os.environ.get("SKCANDIST_N_JOBS", 4)),
        help="concurrent requests",
    )
    p.add_argument(
        "--cache",
        default=os.environ.get(
            "SKCANDIST_CACHE_FILE", ".skcandist_cache/answers.sqlite"
        ),
        help="persistent answer cache (SQLite)",
    )
    p.add_argument(
        "--batch",
        action="store_true",
        help="send through the OpenAI Batch API (half price, answers within 24 h); "
        "an interrupted run resumes its batches",
    )
    p.add_argument(
        "--batch-poll-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="with --batch: seconds between two looks at the running batches",
    )
    p.add_argument(
        "--rpm",
        type=float,
        default=None,
        help="at most this many requests per minute (all --n-jobs together)",
    )
    p.add_argument(
        "--loss",
        default="candist",
        choices=["candist", "proden", "cc", "lws", "cavl", "ce"],
        help="the student's training loss",
    )
    p.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="the student's training epochs (default: the student's own, 50)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the whole run")
    p.add_argument("--report", default=None, help="also write the report as JSON")
    p.add_argument(
        "--save-model",
        default=None,
        metavar="PATH",
        help="write the trained student there (joblib), for `skcandist predict`",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the requests' number, estimated tokens and cost; send nothing",
    )
    p.add_argument(
        "--price-in",
        type=float,
        default=None,
        metavar="USD",
        help="with --dry-run: price per million prompt tokens",
    )
    p.add_argument(
        "--price-out",
        type=float,
        default=None,
        metavar="USD",
        help="with --dry-run: price per million completion tokens",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")


def build_parser():
    """The argument parser of the ``skcandist`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="skcandist",
        description="LLM candidate annotation distilled into a student (CanDist).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"skcandist {__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "annotate", help="annotate a CSV file", formatter_class=_HelpFormatter
    )
    p.add_argument("data", help="CSV file with a header row")
    p.add_argument("--out", default=None, help="output CSV (required unless --dry-run)")
    _add_job_options(p)
    p = sub.add_parser(
        "evaluate",
        help="annotate and compare with a gold column",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("data", help="CSV file with a header row")
    p.add_argument("--out", default=None, help="output CSV")
    _add_job_options(p)
    p = sub.add_parser(
        "predict",
        help="label a CSV file with a saved student (no LLM)",
        description="Label the texts of a CSV file with a student saved by "
        "--save-model; no LLM and no endpoint are needed. " + _PICKLE_WARNING,
        formatter_class=_HelpFormatter,
    )
    p.add_argument("model_file", metavar="MODEL", help="a file written by --save-model")
    p.add_argument("data", help="CSV file with a header row")
    p.add_argument("--out", required=True, help="output CSV")
    p.add_argument("--text-column", default="text", help="column holding the texts")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p = sub.add_parser(
        "demo",
        help="run on the bundled SMS spam set, local LLM",
        formatter_class=_HelpFormatter,
    )
    _add_job_options(p)
    p.add_argument("--n", type=int, default=80, help="texts to annotate")
    p.add_argument("--n-pool", type=int, default=100, help="labelled examples")
    # What works best for the small local base model (../shared/LOCAL_LLM.md):
    # 8 demonstrations, the nearest by TF-IDF similarity.
    p.set_defaults(n_examples=8, retrieval="tfidf")
    return parser


def main(argv=None):
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Our own progress messages only: the root logger (and so httpx's line per
    # request) stays as the user configured it.
    if not _LOG.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("skcandist: %(message)s"))
        _LOG.addHandler(handler)
    _LOG.setLevel(logging.WARNING if args.quiet else logging.INFO)
    _LOG.propagate = False
    try:
        if args.command == "demo":
            run_demo(args)
        elif args.command == "predict":
            run_predict(args)
        else:
            if args.command == "annotate" and not (args.out or args.dry_run):
                raise CommandError("annotate needs --out FILE.csv (or --dry-run).")
            if not args.dry_run and (args.price_in or args.price_out) is not None:
                raise CommandError("--price-in and --price-out need --dry-run.")
            run_job(args, evaluate=args.command == "evaluate")
    except KeyboardInterrupt:
        print(
            f"skcandist: interrupted; every answer received is in the cache "
            f"{args.cache}: rerun the same command to resume."
            if hasattr(args, "cache")
            else "skcandist: interrupted.",
            file=sys.stderr,
        )
        return 130
    except (SkcandistError, OSError) as exc:
        print(f"skcandist: error: {exc}", file=sys.stderr)
        return 2
    return 0
