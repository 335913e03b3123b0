"""Throughput and cost of CandidateAnnotator against a local endpoint.

Against a :class:`~skcandist.testing.FakeLLMServer` with a fixed latency
(0.1 s per request) this measures:

1. requests per second at ``n_jobs`` 1, 4, 16 and 64, as a ratio to the ideal
   ``n_jobs / latency`` (target: at least 0.8);
2. texts per second of a fully cached rerun (no request sent);
3. requests and prompt/completion tokens per text for each prompt style
   (``single``, ``add``, ``all``, and the log-probability mode), with 10
   demonstrations retrieved by TF-IDF from the bundled SMS spam training split.
   Tokens are the fake server's whitespace counts (roughly 0.75 of a BPE count).

The server runs in its own process, as a real endpoint would, so that its
threads do not compete with the annotator's for the GIL, and with Nagle's
algorithm off (otherwise every keep-alive answer waits ~40 ms for a delayed
ACK, which the test server's split header/body writes trigger).

Writes ``benchmarks/results/annotator_speed.json`` and prints a markdown table.
Run ``python benchmarks/bench_annotator_speed.py`` (about a minute) or add
``--quick`` for a few seconds' smoke run.
"""

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from skcandist import CandidateAnnotator
from skcandist.datasets import load_sms_spam

LATENCY = 0.1
LABELS = {"spam": "unsolicited advertising or scams", "ham": "a normal message"}


def respond(request):
    if request["_endpoint"] == "completions":
        return {
            "content": " spam",
            "top_logprobs": {" spam": math.log(0.7), " ham": math.log(0.3)},
        }
    return '["spam", "ham"]'


def _serve(latency, ports, stop):
    from skcandist.testing import FakeLLMServer

    with FakeLLMServer(respond, latency=latency) as server:
        ports.put(server.port)
        stop.wait()


@contextlib.contextmanager
def served(latency):
    """The base_url of a FakeLLMServer running in a child process."""
    context = multiprocessing.get_context("spawn")
    ports, stop = context.Queue(), context.Event()
    process = context.Process(target=_serve, args=(latency, ports, stop))
    process.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=60)}/v1"
    finally:
        stop.set()
        process.join(timeout=10)


def annotator(base_url, **params):
    params.setdefault("verbose", 0)
    params.setdefault("retrieval", "tfidf")
    # Throughput is measured on fresh requests: no cache unless a part asks.
    params.setdefault("cache", None)
    return CandidateAnnotator(LABELS, base_url=base_url, **params)


def bench_concurrency(base_url, quick, latency):
    rows = []
    for n_jobs in (1, 4, 16, 64):
        waves = 2 if quick else 5
        n = n_jobs * waves if n_jobs > 1 else (5 if quick else 20)
        texts = [f"concurrency {n_jobs} text {i}" for i in range(n)]
        ann = annotator(base_url, n_jobs=n_jobs).fit()
        # Warm up: build the client and open n_jobs connections.
        ann.annotate([f"warm-up {n_jobs} {i}" for i in range(n_jobs)])
        start = time.perf_counter()
        ann.annotate(texts)
        seconds = time.perf_counter() - start
        throughput = n / seconds
        ideal = n_jobs / latency
        rows.append(
            {
                "n_jobs": n_jobs,
                "requests": n,
                "seconds": round(seconds, 3),
                "requests_per_s": round(throughput, 2),
                "ideal_per_s": ideal,
                "ratio_to_ideal": round(throughput / ideal, 3),
            }
        )
    return rows


def bench_cached(base_url, quick, folder):
    n = 200 if quick else 2000
    texts = [f"cached text {i}" for i in range(n)]
    cache = os.path.join(folder, "cache.sqlite")
    ann = annotator(base_url, n_jobs=64, cache=cache).fit()
    ann.annotate(texts)
    start = time.perf_counter()
    again = ann.annotate(texts)
    seconds = time.perf_counter() - start
    return {
        "texts": n,
        "seconds": round(seconds, 3),
        "texts_per_s": round(n / seconds, 1),
        "requests_sent": again.usage["requests"],
    }


def bench_growth(base_url, quick, folder):
    """Wall time and throughput as the data grows, with a persistent cache."""
    rows = []
    for n in (100, 200) if quick else (1000, 5000, 10000):
        texts = [f"growth {n} text {i}" for i in range(n)]
        cache = os.path.join(folder, f"growth-{n}.sqlite")
        ann = annotator(base_url, n_jobs=16, cache=cache).fit()
        start = time.perf_counter()
        ann.annotate(texts)
        first = time.perf_counter() - start
        start = time.perf_counter()
        ann.annotate(texts)
        cached = time.perf_counter() - start
        rows.append(
            {
                "texts": n,
                "seconds": round(first, 3),
                "texts_per_s": round(n / first, 1),
                "cached_rerun_seconds": round(cached, 3),
                "cached_texts_per_s": round(n / cached, 1),
                "cache_bytes": os.path.getsize(cache),
            }
        )
    return rows


def bench_styles(base_url, quick):
    train = load_sms_spam("train")
    pool = list(zip(train.texts[:200], train.labels[:200]))
    texts = list(load_sms_spam("test").texts[: 10 if quick else 50])
    rows = []
    settings = [
        ("single", {"prompt": "single"}),
        ("add", {"prompt": "add"}),
        ("all", {"prompt": "all"}),
        ("logprobs", {"answer": "logprobs"}),
    ]
    for name, params in settings:
        ann = annotator(base_url, examples=pool, n_examples=10, n_jobs=16, **params)
        ann.fit()
        estimate = ann.estimate(texts)
        usage = ann.annotate(texts).usage
        rows.append(
            {
                "style": name,
                "texts": len(texts),
                "requests_per_text": usage["requests"] / len(texts),
                "prompt_tokens_per_text": round(usage["prompt_tokens"] / len(texts), 1),
                "completion_tokens_per_text": round(
                    usage["completion_tokens"] / len(texts), 1
                ),
                "estimated_prompt_tokens_per_text": round(
                    estimate["prompt_tokens"] / len(texts), 1
                ),
            }
        )
    return rows


def markdown(results):
    lines = [
        "FakeLLMServer on 127.0.0.1, in its own process, answering after a fixed "
        "latency.",
        "",
        "| latency s | n_jobs | requests | seconds | requests/s | ideal/s | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for latency, rows in results["concurrency_by_latency"].items():
        for r in rows:
            lines.append(
                f"| {latency} | {r['n_jobs']} | {r['requests']} | {r['seconds']} | "
                f"{r['requests_per_s']} | {r['ideal_per_s']:.0f} | "
                f"{r['ratio_to_ideal']} |"
            )
    c = results["cached_rerun"]
    lines += [
        "",
        f"Cached rerun: {c['texts']} texts in {c['seconds']} s "
        f"({c['texts_per_s']} texts/s, {c['requests_sent']} requests sent)",
        "",
        "| style | requests/text | prompt tokens/text | completion tokens/text "
        "| estimated prompt tokens/text |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results["styles"]:
        lines.append(
            f"| {r['style']} | {r['requests_per_text']:.2f} | "
            f"{r['prompt_tokens_per_text']} | {r['completion_tokens_per_text']} | "
            f"{r['estimated_prompt_tokens_per_text']} |"
        )
    lines += [
        "",
        "Growth with the data (n_jobs 16, no latency: the client's own cost, "
        "SQLite cache on):",
        "",
        "| texts | seconds | texts/s | cached rerun s | cached texts/s | cache MB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results.get("growth", []):
        lines.append(
            f"| {r['texts']} | {r['seconds']} | {r['texts_per_s']} | "
            f"{r['cached_rerun_seconds']} | {r['cached_texts_per_s']} | "
            f"{r['cache_bytes'] / 1e6:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    parser.add_argument(
        "--out",
        default=str(Path(__file__).parent / "results" / "annotator_speed.json"),
        help="where to write the JSON results",
    )
    parser.add_argument(
        "--latencies",
        type=float,
        nargs="+",
        default=[LATENCY, 1.0],
        help="seconds the endpoint waits before each answer",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.latencies = args.latencies[:1]
    results = {
        "quick": args.quick,
        "latency_s": args.latencies[0],
        "python": sys.version.split()[0],
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    results["concurrency_by_latency"] = {}
    for latency in args.latencies:
        with served(latency) as base_url:
            rows = bench_concurrency(base_url, args.quick, latency)
        results["concurrency_by_latency"][str(latency)] = rows
    # the first latency's rows, under the key that bench_cost.py reads
    results["concurrency"] = results["concurrency_by_latency"][str(args.latencies[0])]
    with tempfile.TemporaryDirectory() as folder, served(0.0) as base_url:
        results["cached_rerun"] = bench_cached(base_url, args.quick, folder)
        results["styles"] = bench_styles(base_url, args.quick)
        results["growth"] = bench_growth(base_url, args.quick, folder)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"\nwritten to {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
