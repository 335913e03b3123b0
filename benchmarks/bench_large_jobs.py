"""Large jobs: online against the Batch API, rate-limit pacing, peak memory.

Everything runs against the project's test server (FakeLLMServer on
127.0.0.1), so the figures measure skcandist's own overheads under a
*simulated* endpoint, not any provider:

- ``online_vs_batch``: annotate N distinct texts (default 10,000) once online
  (``n_jobs`` requests in flight, each answered after ``--latency`` seconds)
  and once through the Batch API (the fake batch completes ``--batch-delay``
  seconds after it is created; polled every ``--poll`` seconds): requests
  sent, batches created, wall time.
- ``cost``: the money for 1,000,000 texts at the per-text tokens measured in
  the same run, at online prices and at Batch prices (half the online price,
  the Batch API's discount); the default prices are EXAMPLE values, not a
  quote: pass your own.
- ``pacing``: with ``max_requests_per_minute`` set, the request rate achieved
  (it should sit just below the limit, with every thread sharing one limiter).
- ``memory``: peak resident memory of a fresh process annotating
  ``--memory-texts`` (default 100,000) distinct texts with 10 TF-IDF
  demonstrations each, prompts built in chunks (the default) and, for
  comparison, all at once.

Writes ``large_jobs.json`` and ``large_jobs.md`` to ``benchmarks/results/``
(or ``--out-dir``). ``--quick`` runs small sizes (what the tests run).

    python benchmarks/bench_large_jobs.py
"""

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, environment  # noqa: E402

LABELS = ["ham", "spam"]


def _texts(n, salt=""):
    words = ["win", "cash", "prize", "lunch", "meeting", "call", "free", "today"]
    return [
        f"{salt}message {i}: {words[i % 8]} {words[(i * 7) % 8]} {words[(i * 3) % 8]}"
        for i in range(n)
    ]


def _respond(request):
    content = str(request.get("messages", [{}])[-1].get("content", ""))
    return '["spam"]' if "cash" in content.rsplit("Text:", 1)[-1] else '["ham"]'


def _annotator(server, cache, **params):
    from skcandist import CandidateAnnotator

    return CandidateAnnotator(
        LABELS,
        model="bench",
        base_url=server.base_url,
        n_examples=0,
        retrieval="tfidf",
        cache=str(cache),
        verbose=0,
        **params,
    )


def online_vs_batch(n, latency, batch_delay, poll, n_jobs, workdir):
    from skcandist.testing import FakeLLMServer

    texts = _texts(n)
    rows = {}
    with FakeLLMServer(_respond, latency=latency) as server:
        server.batch_delay = batch_delay
        start = time.perf_counter()
        online = _annotator(server, workdir / "online.sqlite", n_jobs=n_jobs)
        online.fit_transform(texts)
        rows["online"] = {
            "wall_s": round(time.perf_counter() - start, 1),
            "requests": server.n_requests,
            "batches": 0,
            **{k: online.usage_[k] for k in ("prompt_tokens", "completion_tokens")},
        }
        sent = server.n_requests
        start = time.perf_counter()
        batched = _annotator(
            server,
            workdir / "batch.sqlite",
            use_batch_api=True,
            batch_poll_interval=poll,
        )
        batched.fit_transform(texts)
        rows["batch"] = {
            "wall_s": round(time.perf_counter() - start, 1),
            "requests": server.n_requests - sent,
            "batches": server.n_batches,
            "batch_lines": len(server.batch_requests),
            **{k: batched.usage_[k] for k in ("prompt_tokens", "completion_tokens")},
        }
    return rows


def cost(rows, n_texts, price_in, price_out, n_projected=1_000_000):
    per_text_in = rows["online"]["prompt_tokens"] / n_texts
    per_text_out = rows["online"]["completion_tokens"] / n_texts
    online = n_projected * (per_text_in * price_in + per_text_out * price_out) / 1e6
    return {
        "texts": n_projected,
        "prompt_tokens_per_text": round(per_text_in, 1),
        "completion_tokens_per_text": round(per_text_out, 2),
        "price_prompt_per_1m": price_in,
        "price_completion_per_1m": price_out,
        "online_usd": round(online, 2),
        "batch_usd": round(online / 2, 2),
    }


def pacing(n, rpm, n_jobs, workdir):
    from skcandist.testing import FakeLLMServer

    with FakeLLMServer(_respond) as server:
        annotator = _annotator(
            server,
            workdir / "pacing.sqlite",
            n_jobs=n_jobs,
            max_requests_per_minute=rpm,
        )
        start = time.perf_counter()
        annotator.fit_transform(_texts(n, salt="paced "))
        wall = time.perf_counter() - start
        achieved = server.n_requests / wall * 60
    return {
        "requests": n,
        "limit_rpm": rpm,
        "n_jobs": n_jobs,
        "wall_s": round(wall, 1),
        "achieved_rpm": round(achieved, 1),
        "ratio_to_limit": round(achieved / rpm, 3),
    }


_SERVER_SCRIPT = """
import sys, time
sys.path.insert(0, {bench!r})
from bench_large_jobs import _respond
from skcandist.testing import FakeLLMServer
server = FakeLLMServer(_respond).start()
server._record = lambda body: None  # keep no request bodies
print(server.base_url, flush=True)
time.sleep(24 * 3600)
"""

_MEMORY_SCRIPT = """
import json, resource, sys, time
sys.path.insert(0, {bench!r})
import skcandist._annotator as module
from bench_large_jobs import _texts
from skcandist import CandidateAnnotator
if {chunk} is not None:
    module._PLAN_CHUNK = {chunk}
pool = [(t, "spam" if "cash" in t else "ham") for t in _texts(1000, salt="pool ")]
annotator = CandidateAnnotator(
    {labels!r}, model="bench", base_url={base_url!r}, examples=pool,
    n_examples=10, retrieval="tfidf", cache={cache!r}, n_jobs=8, verbose=0)
start = time.perf_counter()
out = annotator.fit_transform(_texts({n}, salt="memory "))
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"peak_rss_mb": round(peak / 1024, 1), "wall_s": round(wall, 1),
                  "requests": annotator.usage_["requests"],
                  "rows": out.candidates.shape[0]}}))
"""


def memory(n, workdir, chunk=None):
    """Peak RSS of a fresh annotating process; the test server runs in its
    own process, so that its threads and bookkeeping are not counted."""
    bench = str(Path(__file__).resolve().parent)
    server = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_SERVER_SCRIPT.format(bench=bench))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = server.stdout.readline().strip()
        script = _MEMORY_SCRIPT.format(
            bench=bench,
            chunk=chunk,
            labels=LABELS,
            base_url=base_url,
            cache=str(workdir / f"memory-{chunk}.sqlite"),
            n=n,
        )
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        server.kill()
        server.wait()
    return json.loads(done.stdout.strip().splitlines()[-1])


def write(results, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "large_jobs.json").write_text(json.dumps(results, indent=2))
    a = results["assumptions"]
    rows = results["online_vs_batch"]
    c = results["cost"]
    p = results["pacing"]
    lines = [
        "# Large jobs (benchmarks/bench_large_jobs.py)",
        "",
        f"Command: `{results['command']}`. Against FakeLLMServer on 127.0.0.1: a "
        "simulated endpoint, so these measure skcandist's own behaviour, not a "
        "provider's speed.",
        "",
        f"## {a['texts']:,} texts online vs the Batch API",
        "",
        f"Online: {a['n_jobs']} requests in flight, {a['latency']} s per answer. "
        f"Batch: the fake batch completes {a['batch_delay']} s after creation, "
        f"polled every {a['poll']} s.",
        "",
        "| path | requests sent | batches | wall time (s) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['requests']:,} | {row['batches']} | {row['wall_s']} |"
        )
    lines += [
        "",
        f"## {c['texts']:,} texts: cost at online and Batch prices",
        "",
        f"{c['prompt_tokens_per_text']} prompt and {c['completion_tokens_per_text']} "
        "completion tokens per text as the test server counts them (whitespace "
        "words, no demonstrations); EXAMPLE prices "
        f"${c['price_prompt_per_1m']} / ${c['price_completion_per_1m']} per "
        "million prompt / completion tokens; the Batch API at half the price.",
        "",
        "| path | cost (USD) |",
        "| --- | ---: |",
        f"| online | {c['online_usd']:,} |",
        f"| batch | {c['batch_usd']:,} |",
        "",
        "## Rate-limit pacing",
        "",
        f"{p['requests']} requests, `max_requests_per_minute={p['limit_rpm']}`, "
        f"{p['n_jobs']} threads sharing one limiter: {p['achieved_rpm']} requests "
        f"per minute achieved ({p['ratio_to_limit']} of the limit) in "
        f"{p['wall_s']} s.",
        "",
        "## Peak memory",
        "",
        f"A fresh process annotating {results['memory']['texts']:,} distinct texts, "
        "10 TF-IDF demonstrations each from a pool of 1,000, answer cache on disk:",
        "",
        "| prompts built | peak RSS (MB) | wall time (s) |",
        "| --- | ---: | ---: |",
    ]
    for name, row in results["memory"]["runs"].items():
        lines.append(f"| {name} | {row['peak_rss_mb']} | {row['wall_s']} |")
    env = results["environment"]
    lines += [
        "",
        f"Machine: {env['cpus']} CPUs ({env['machine']}), Python {env['python']}, "
        f"{env['date']}.",
    ]
    (out_dir / "large_jobs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--n-jobs", type=int, default=8)
    parser.add_argument("--batch-delay", type=float, default=10.0)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--price-prompt-per-1m", type=float, default=0.5)
    parser.add_argument("--price-completion-per-1m", type=float, default=1.5)
    parser.add_argument("--pacing-requests", type=int, default=300)
    parser.add_argument("--rpm", type=float, default=1200.0)
    parser.add_argument("--memory-texts", type=int, default=100_000)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="small sizes (tests)")
    args = parser.parse_args(argv)
    if args.quick:
        args.texts, args.latency, args.batch_delay, args.poll = 60, 0.0, 0.2, 0.05
        args.pacing_requests, args.rpm, args.memory_texts = 20, 1200.0, 300
    workdir = Path(tempfile.mkdtemp(prefix="skcandist-large-jobs-"))
    rows = online_vs_batch(
        args.texts, args.latency, args.batch_delay, args.poll, args.n_jobs, workdir
    )
    results = {
        "command": "python benchmarks/bench_large_jobs.py"
        + (" --quick" if args.quick else ""),
        "assumptions": {
            "texts": args.texts,
            "latency": args.latency,
            "n_jobs": args.n_jobs,
            "batch_delay": args.batch_delay,
            "poll": args.poll,
        },
        "online_vs_batch": rows,
        "cost": cost(
            rows, args.texts, args.price_prompt_per_1m, args.price_completion_per_1m
        ),
        "pacing": pacing(args.pacing_requests, args.rpm, args.n_jobs, workdir),
        "memory": {
            "texts": args.memory_texts,
            "runs": {
                "in chunks (default)": memory(args.memory_texts, workdir),
                "all at once": memory(args.memory_texts, workdir, chunk=10**9),
            },
        },
        "environment": environment(),
    }
    write(results, args.out_dir)


if __name__ == "__main__":
    main()
