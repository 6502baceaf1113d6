"""Embedding throughput at the published ELMo shapes against the roofline, beside bilm-tf.

Embeds the first ``--n-sentences`` sentences of ``../shared/corpus/kjv/heldout`` at batch 64
with random-weight models and prints, per shape and path: tokens/s (median of ``--repeats``
passes after a warm-up pass), peak RSS, useful GFLOP/s and the fraction of this machine's
matmul ceiling, measured in the same run (see ``roofline.py`` for what counts as useful), and
the ratio to bilm-tf when bilm-tf is set up (``benchmarks/setup_bilmtf_env.sh``).

    python benchmarks/embed_throughput.py                     # small, medium, original
    python benchmarks/embed_throughput.py --shapes small --paths stateful fast
    python benchmarks/embed_throughput.py --precision bfloat16 --paths fast

Paths (each runs in its own process, so its peak RSS is its own):
    bilm-tf   bilm-tf 0.1.post5's BidirectionalLanguageModel on TF1-compat, stateful, batches
              of 64 in file order (``bilmtf_side.py``); skipped when not set up.
    stateful  ``model(batcher.batch_sentences(batch))`` on the same batches: what ported
              bilm-tf code calls.
    fast      ``embed_sentences``: stateless, length-grouped batches, each distinct token's CNN
              computed once (the token cache is cleared before every pass).

Tokens are the sentences' own tokens (no <S>/</S>). ``--precision bfloat16`` runs our paths
with bf16 matmuls (``BidirectionalLanguageModel(precision="bfloat16")``); the ceiling is then
measured in bf16 too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "corpus" / "kjv" / "heldout" / "kjv.heldout.txt"
DEFAULT_VOCAB = ROOT.parent / "shared" / "corpus" / "kjv" / "vocab.txt"

SHAPES = {  # name: (lstm dim, projection dim, n_highway)
    "small": (1024, 128, 1),
    "medium": (2048, 256, 1),
    "original": (4096, 512, 2),
}
PATHS = ["bilm-tf", "stateful", "fast"]


def shape_options(name: str) -> dict:
    from roofline import FILTERS

    dim, proj, n_highway = SHAPES[name]
    return {
        "lstm": {"dim": dim, "projection_dim": proj, "n_layers": 2, "cell_clip": 3,
                 "proj_clip": 3, "use_skip_connections": True},
        "char_cnn": {"filters": FILTERS, "n_highway": n_highway, "embedding": {"dim": 16},
                     "n_characters": 262, "max_characters_per_token": 50,
                     "activation": "relu"},
    }


def write_model(name: str, tmp: str) -> tuple[str, str]:
    """Random-weight options and HDF5 weights of a shape (bilm-tf's file formats)."""
    from bilm.io.weights import save_weights
    from bilm.model.encoder import BiLMEncoder
    from bilm.options import BiLMOptions

    raw = shape_options(name)
    options_file = os.path.join(tmp, f"{name}.json")
    weight_file = os.path.join(tmp, f"{name}.hdf5")
    with open(options_file, "w") as f:
        json.dump(raw, f)
    save_weights(BiLMEncoder(BiLMOptions.from_dict(raw)), weight_file)
    return options_file, weight_file


def read_sentences(path: str, n: int) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        return [line.split() for _, line in zip(range(n), f, strict=False)]


def run_pass(model, sentences: list[list[str]], batch_size: int, mode: str, batcher) -> float:
    """Seconds of one pass of ``model`` over ``sentences``: ``stateful`` batches in file order
    through ``model(ids)`` (states reset first), or ``fast`` through ``embed_sentences`` (the
    token cache cleared first)."""
    start = time.perf_counter()
    if mode == "stateful":
        model.reset_states()
        for i in range(0, len(sentences), batch_size):
            model(batcher.batch_sentences(sentences[i : i + batch_size]))["lm_embeddings"].numpy()
    else:
        model.clear_token_cache()
        for _ in model.embed_sentences(sentences, batch_size=batch_size):
            pass
    return time.perf_counter() - start


def time_ours(args) -> dict:
    """One path of ours, in this process: warm-up, then ``repeats`` timed passes."""
    import tensorflow as tf

    from bilm.data import Batcher
    from bilm.inference.language_model import BidirectionalLanguageModel

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    sentences = read_sentences(args.data, args.n_sentences)
    stateful = args.one == "stateful"
    model = BidirectionalLanguageModel(args.options, args.weights, stateful=stateful,
                                       max_batch_size=args.batch_size, precision=args.precision)
    batcher = Batcher(None, 50)

    def one_pass() -> float:
        return run_pass(model, sentences, args.batch_size, args.one, batcher)

    one_pass()
    times = [one_pass() for _ in range(args.repeats)]
    return {"times": times, "peak_rss_mb": resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--paths", nargs="+", default=PATHS, choices=PATHS)
    p.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                   help="our paths' matmul precision (bilm-tf is float32)")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--vocab", default=str(DEFAULT_VOCAB), help="bilm-tf's Batcher needs one")
    p.add_argument("--n-sentences", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="TF intra/inter-op threads")
    p.add_argument("--one", choices=["stateful", "fast"], help=argparse.SUPPRESS)
    p.add_argument("--options", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not os.path.exists(args.data):
        sys.exit(f"data not found: {args.data} (needs ../shared beside the checkout)")
    sys.path.insert(0, str(HERE))
    if args.one:  # a child: one path of ours
        print(json.dumps(time_ours(args)))
        return

    import bilmtf_side
    import tensorflow as tf
    from roofline import matmul_ceiling, useful_flops

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    sentences = read_sentences(args.data, args.n_sentences)
    n_tokens = sum(len(s) for s in sentences)
    ceiling = matmul_ceiling(args.precision)
    paths = list(args.paths)
    if "bilm-tf" in paths and not bilmtf_side.available():
        print(f"# bilm-tf not set up in {bilmtf_side.BILMTF_DIR} "
              "(benchmarks/setup_bilmtf_env.sh): skipped")
        paths.remove("bilm-tf")
    gpus = tf.config.list_physical_devices("GPU")
    print(f"# {time.strftime('%Y-%m-%d')}, {len(sentences)} sentences, {n_tokens} tokens, "
          f"batch {args.batch_size}, {args.threads} threads, device {'GPU' if gpus else 'CPU'}, "
          f"TF {tf.__version__}, our precision {args.precision}")
    print(f"# matmul ceiling ({args.precision}, 4096^3, best of 7, at the start of this run): "
          f"{ceiling:,.0f} GFLOP/s; fractions below use the higher of this and the end's")
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        sentence_file = os.path.join(tmp, "sentences.txt")
        with open(sentence_file, "w", encoding="utf-8") as f:
            f.writelines(" ".join(s) + "\n" for s in sentences)
        for name in args.shapes:
            options_file, weight_file = write_model(name, tmp)
            dim, proj, n_highway = SHAPES[name]
            flops_per_token = useful_flops(sentences, dim, proj, n_highway) / n_tokens
            reference = None
            rows = []
            for path in paths:
                if path == "bilm-tf":
                    result = bilmtf_side.run_side(
                        [sys.executable, str(HERE / "bilmtf_side.py"), "embed", options_file,
                         weight_file, "--vocab", args.vocab, "--sentences", sentence_file,
                         "--batch-size", str(args.batch_size), "--repeats", str(args.repeats),
                         "--threads", str(args.threads)], bilm_tf=True)
                else:
                    result = bilmtf_side.run_side(
                        [sys.executable, __file__, "--one", path, "--options", options_file,
                         "--weights", weight_file, "--data", sentence_file,
                         "--n-sentences", str(len(sentences)), "--batch-size",
                         str(args.batch_size), "--repeats", str(args.repeats),
                         "--threads", str(args.threads), "--precision", args.precision])
                rate = n_tokens / statistics.median(result["times"])
                if path == "bilm-tf":
                    reference = rate
                gflops = rate * flops_per_token / 1e9
                runs = ", ".join(f"{t:.2f}" for t in result["times"])
                ratio = f"{rate / reference:.2f}x" if reference else "-"
                rows.append((f"{name:<10}{path:<10}{rate:>10,.0f}{runs:>22}"
                             f"{result['peak_rss_mb']:>8,.0f}{gflops:>9.1f}", ratio, gflops))
                print(f"  ({name}, {path}: {rate:,.0f} tokens/s)", file=sys.stderr, flush=True)
            table.append((name, flops_per_token, rows))
    ceiling = max(ceiling, matmul_ceiling(args.precision))
    print(f"# matmul ceiling, the higher of the start's and the end's: {ceiling:,.0f} GFLOP/s")
    print(f"{'shape':<10}{'path':<10}{'tokens/s':>10}{'runs (s)':>22}{'RSS MB':>8}"
          f"{'GFLOP/s':>9}{'ceiling':>9}{'vs bilm-tf':>11}")
    for name, flops_per_token, rows in table:
        for line, ratio, gflops in rows:
            print(f"{line}{gflops / ceiling:>9.1%}{ratio:>11}")
        print(f"# {name}: {flops_per_token / 1e6:.1f} useful MFLOP per token")


if __name__ == "__main__":
    main()
