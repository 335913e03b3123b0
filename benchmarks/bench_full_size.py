"""The paper's full-size setting, fine-tuned on a GPU (stops where there is none).

What the CanDist paper runs for its Table 2 (Xia et al., ACL 2025, App. A.3):
the whole training split, a fine-tuned transformer student, 50 epochs, batch 32,
AdamW at lr 3e-5, max length 128, 3 seeds; here with the simulated teachers of
``bench_quality.py`` (calibrated to the paper's GPT-3.5 statistics, Table 8) on
TREC (5,452 training texts) and Banking77 (10,003), both test splits whole.
The student is RoBERTa-base, the paper's, where it loads offline (a Hugging Face
cache or ``--encoder PATH``), else the offline all-MiniLM-L6-v2; the result
says which. Methods: the teacher's single labels, CE on them ("Distillation"),
PRODEN and CanDist on the "all" sets, CanDist on the "add" sets, and the
logistic-regression and cleanlab peers on frozen MiniLM embeddings.

Fine-tuning for 50 epochs on a CPU would take days, so without CUDA the script
says so and exits with status 3, running nothing. On a GPU, the student trains
with mixed precision (``torch.autocast``, see ``CanDistClassifier``)::

    python benchmarks/bench_full_size.py               # about 2-4 h on one GPU
    python benchmarks/bench_full_size.py --seeds 1 --max-epochs 10

It writes ``quality_finetune.json`` / ``.md`` to ``--out`` (default
``benchmarks/results/full_size``) with ``bench_quality.py``'s tables.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_quality as bq  # noqa: E402
from _common import RESULTS  # noqa: E402

#: Exit status where no CUDA device is present.
NO_GPU = 3
PAPER_ENCODER = "roberta-base"
METHODS = ["student_ce", "student_proden", "candist_add", "candist_all"]


def gpu_name():
    """The first CUDA device's name, or None where torch sees none."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def pick_encoder(requested=None):
    """``(encoder, note)``: the requested one, RoBERTa-base where it loads
    offline, else the package's default (None: all-MiniLM-L6-v2)."""
    if requested:
        return requested, f"encoder {requested} (given)"
    try:
        from transformers import AutoConfig

        AutoConfig.from_pretrained(PAPER_ENCODER, local_files_only=True)
    except (OSError, ValueError):
        return None, (
            f"{PAPER_ENCODER} (the paper's student) is not available offline here; "
            "the student is all-MiniLM-L6-v2"
        )
    return PAPER_ENCODER, f"encoder {PAPER_ENCODER} (the paper's)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["trec", "banking77"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=50)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--encoder", default=None, help="default: RoBERTa-base")
    parser.add_argument("--out", type=Path, default=RESULTS / "full_size")
    args = parser.parse_args(argv)
    name = gpu_name()
    if name is None:
        print(
            "bench_full_size.py fine-tunes on the full training splits for "
            f"{args.max_epochs} epochs and needs a CUDA GPU; torch sees none "
            "here, so nothing was run.",
            file=sys.stderr,
        )
        return NO_GPU
    encoder, note = pick_encoder(args.encoder)
    print(f"GPU: {name}; {note}", flush=True)
    argv = [
        "--datasets", *args.datasets,
        "--parts", "table2",
        "--teacher-errors", "tfidf",
        "--profiles", "default",
        "--n-train", "0",
        "--n-test", "0",
        "--seeds", str(args.seeds),
        "--max-epochs", str(args.max_epochs),
        "--student-lr", str(args.lr),
        "--finetune",
        "--device", "cuda",
        "--methods", *METHODS,
        "--out", str(args.out),
        "--verbose",
    ]  # fmt: skip
    if encoder is not None:
        argv += ["--encoder", encoder]
    result = bq.main(argv)
    result["full_size"] = {"gpu": name, "encoder": note}
    bq.write_json(result, args.out / "quality_finetune.json")
    bq.write_text(bq.markdown(result), args.out / "quality_finetune.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
