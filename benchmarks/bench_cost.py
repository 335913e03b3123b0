"""What annotating texts with CandidateAnnotator costs: money and wall time.

From the requests and tokens per text of each prompt style, as measured by
``bench_annotator_speed.py`` (read from ``results/annotator_speed.json``, or
measured afresh with ``--measure``), this computes, per prompt style:

- per 1,000 texts: requests, prompt and completion tokens, and the price at
  the given rates (``--price-prompt-per-1m``, ``--price-completion-per-1m``,
  in dollars per million tokens);
- the projected wall time of 1,000,000 texts under three limits, the slowest
  of which binds: a rate limit in requests per minute (``--rpm``), one in tokens
  per minute (``--tpm``), and the concurrency limit ``n_jobs / latency`` (with
  ``--n-jobs`` and ``--latency``), scaled by the efficiency measured for that
  ``n_jobs`` against the fake server (the ratio to the ideal, where measured).

The default prices and limits are EXAMPLE values to show the arithmetic, not
quotes from any provider: pass your own.

The token counts come from the test server, FakeLLMServer, which counts
whitespace-separated words, not a real tokenizer's tokens; a BPE tokenizer gives
roughly 1.3 tokens per English word. ``--tokens-per-word`` scales the counts
(default 1.0: the raw word counts).

It also plots the annotator's throughput against ``n_jobs`` (measured and ideal)
from the same JSON. Writes ``cost.json``, ``cost.md`` and
``throughput_vs_n_jobs.png`` to ``benchmarks/results/`` (or ``--out-dir``).
"""

import argparse
import json
import math
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
N_PROJECTED = 1_000_000


def measure(quick):
    """Run the prompt-style part of bench_annotator_speed.py afresh."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_annotator_speed as annotator_bench

    with annotator_bench.served(0.0) as base_url:
        styles = annotator_bench.bench_styles(base_url, quick)
    return {"styles": styles, "concurrency": [], "source": "measured (--measure)"}


def _display(path):
    """``path`` relative to the repository where it lies inside it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(RESULTS.parents[1]))
    except ValueError:
        return str(path)


def read(path):
    if not Path(path).exists():
        raise SystemExit(
            f"{path} not found: run benchmarks/bench_annotator_speed.py first, or "
            "pass --measure."
        )
    data = json.loads(Path(path).read_text())
    return {
        "styles": data["styles"],
        "concurrency": data.get("concurrency", []),
        "concurrency_by_latency": data.get("concurrency_by_latency", {}),
        "source": _display(path),
        "source_quick": data.get("quick"),
    }


def efficiency(concurrency, n_jobs):
    """The measured ratio to ideal throughput at ``n_jobs`` (1.0 if not measured)."""
    for row in concurrency:
        if row["n_jobs"] == n_jobs:
            return row["ratio_to_ideal"], True
    return 1.0, False


def cost_rows(styles, args, efficiency_ratio):
    rows = []
    per = 1000
    for s in styles:
        requests = s["requests_per_text"] * per
        prompt = s["prompt_tokens_per_text"] * args.tokens_per_word * per
        completion = s["completion_tokens_per_text"] * args.tokens_per_word * per
        price = (
            prompt * args.price_prompt_per_1m
            + completion * args.price_completion_per_1m
        ) / 1e6
        scale = N_PROJECTED / per
        limits_h = {
            "requests_per_minute": requests * scale / args.rpm / 60,
            "tokens_per_minute": (prompt + completion) * scale / args.tpm / 60,
            "concurrency": requests
            * scale
            * args.latency
            / (args.n_jobs * efficiency_ratio)
            / 3600,
        }
        binding = max(limits_h, key=limits_h.get)
        rows.append(
            {
                "style": s["style"],
                "requests_per_1k_texts": round(requests, 1),
                "prompt_tokens_per_1k_texts": round(prompt),
                "completion_tokens_per_1k_texts": round(completion),
                "price_per_1k_texts": round(price, 4),
                "price_per_1m_texts": round(price * scale, 2),
                "hours_per_1m_texts": {k: round(v, 2) for k, v in limits_h.items()},
                "binding_limit": binding,
                "projected_hours_per_1m_texts": round(limits_h[binding], 2),
            }
        )
    return rows


def markdown(results):
    a = results["assumptions"]
    lines = [
        "Token counts are FakeLLMServer's whitespace word counts, not a real "
        f"tokenizer's (scaled by tokens_per_word = {a['tokens_per_word']}); a BPE "
        "tokenizer gives roughly 1.3 tokens per English word.",
        f"Prices and limits are EXAMPLE values, not quotes: "
        f"${a['price_prompt_per_1m']} per 1M prompt tokens, "
        f"${a['price_completion_per_1m']} per 1M completion tokens; "
        f"{a['rpm']} requests/min, {a['tpm']} tokens/min; n_jobs {a['n_jobs']} at "
        f"{a['latency_s']} s per request (efficiency {a['efficiency']}"
        f"{' measured' if a['efficiency_measured'] else ' assumed'}); "
        f"about {a['n_jobs_to_reach_rpm']} jobs would reach the rpm limit.",
        f"Source of the per-text counts: {results['source']} "
        f"({results['texts_measured']} texts, 10 TF-IDF demonstrations).",
        "",
        "| style | requests / 1k texts | prompt tokens / 1k | completion tokens / 1k "
        "| price / 1k texts ($) | price / 1M texts ($) | hours / 1M: rpm | tpm "
        "| concurrency | projected hours / 1M (binding) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["styles"]:
        h = r["hours_per_1m_texts"]
        lines.append(
            f"| {r['style']} | {r['requests_per_1k_texts']:.0f} | "
            f"{r['prompt_tokens_per_1k_texts']} | "
            f"{r['completion_tokens_per_1k_texts']} | "
            f"{r['price_per_1k_texts']:.4f} | {r['price_per_1m_texts']:.2f} | "
            f"{h['requests_per_minute']:.1f} | {h['tokens_per_minute']:.1f} | "
            f"{h['concurrency']:.1f} | {r['projected_hours_per_1m_texts']:.1f} "
            f"({r['binding_limit']}) |"
        )
    if results["throughput"]:
        lines += [
            "",
            "Annotator throughput against a local fake endpoint "
            f"({results['throughput_latency_s']} s latency):",
            "",
            "| n_jobs | requests/s | ideal/s | ratio |",
            "|---:|---:|---:|---:|",
        ]
        for r in results["throughput"]:
            lines.append(
                f"| {r['n_jobs']} | {r['requests_per_s']} | {r['ideal_per_s']:.0f} "
                f"| {r['ratio_to_ideal']} |"
            )
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["throughput"]
    n_jobs = [r["n_jobs"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(n_jobs, [r["requests_per_s"] for r in rows], "o-", label="measured")
    ax.plot(
        n_jobs, [r["ideal_per_s"] for r in rows], "k--", label="ideal n_jobs/latency"
    )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(n_jobs, [str(n) for n in n_jobs])
    ax.set_xlabel("n_jobs")
    ax.set_ylabel("requests per second")
    latency = results["throughput_latency_s"]
    ax.set_title(f"CandidateAnnotator, FakeLLMServer, {latency} s latency")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--annotator-json",
        default=str(RESULTS / "annotator_speed.json"),
        help="results of bench_annotator_speed.py to read",
    )
    parser.add_argument(
        "--measure",
        action="store_true",
        help="measure the per-text counts afresh against FakeLLMServer",
    )
    parser.add_argument("--quick", action="store_true", help="with --measure: 10 texts")
    parser.add_argument(
        "--price-prompt-per-1m",
        type=float,
        default=0.50,
        help="example rate, $ per 1M prompt tokens (not a quote)",
    )
    parser.add_argument(
        "--price-completion-per-1m",
        type=float,
        default=1.50,
        help="example rate, $ per 1M completion tokens (not a quote)",
    )
    parser.add_argument(
        "--rpm", type=float, default=3500, help="example rate limit, requests/minute"
    )
    parser.add_argument(
        "--tpm", type=float, default=2_000_000, help="example rate limit, tokens/minute"
    )
    parser.add_argument("--n-jobs", type=int, default=16)
    parser.add_argument(
        "--latency", type=float, default=1.0, help="seconds per request (example)"
    )
    parser.add_argument("--tokens-per-word", type=float, default=1.0)
    parser.add_argument("--out-dir", default=str(RESULTS))
    args = parser.parse_args(argv)

    source = measure(args.quick) if args.measure else read(args.annotator_json)
    throughput = source["concurrency"]
    throughput_latency = None
    if not throughput and Path(args.annotator_json).exists():
        throughput = read(args.annotator_json)["concurrency"]
    if throughput and Path(args.annotator_json).exists():
        throughput_latency = json.loads(Path(args.annotator_json).read_text()).get(
            "latency_s"
        )
    # Prefer the efficiency measured at the latency being projected, if any.
    by_latency = source.get("concurrency_by_latency", {})
    for key, rows in by_latency.items():
        if float(key) == args.latency:
            throughput, throughput_latency = rows, args.latency
    ratio, measured = efficiency(throughput, args.n_jobs)
    results = {
        "benchmark": "cost",
        "source": source["source"],
        "texts_measured": source["styles"][0]["texts"] if source["styles"] else 0,
        "token_counts": "FakeLLMServer whitespace word counts, not tokenizer tokens",
        "assumptions": {
            "example_values_not_quotes": True,
            "price_prompt_per_1m": args.price_prompt_per_1m,
            "price_completion_per_1m": args.price_completion_per_1m,
            "rpm": args.rpm,
            "tpm": args.tpm,
            "n_jobs": args.n_jobs,
            "latency_s": args.latency,
            "efficiency": ratio,
            "efficiency_measured": measured,
            "tokens_per_word": args.tokens_per_word,
            "n_jobs_to_reach_rpm": math.ceil(args.rpm / 60 * args.latency / ratio),
            "projected_texts": N_PROJECTED,
        },
        "styles": cost_rows(source["styles"], args, ratio),
        "throughput": throughput,
        "throughput_latency_s": throughput_latency,
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cost.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (out / "cost.md").write_text(table)
    if throughput:
        plot(results, out / "throughput_vs_n_jobs.png")
    print(table)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
