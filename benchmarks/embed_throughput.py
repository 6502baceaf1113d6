"""Embedding throughput at the published ELMo shapes, with random weights.

Embeds the first ``--n-sentences`` sentences of ``../shared/corpus/kjv/heldout`` at batch 64 and
prints tokens/s (median of ``--repeats`` passes after a warm-up pass) and peak RSS.

    python benchmarks/embed_throughput.py                 # small, medium, original
    python benchmarks/embed_throughput.py --shapes small --mode stateful

Modes:
    fast      ``embed_sentences``: stateless, length-grouped batches, each distinct token's CNN
              computed once (the token cache is cleared before every pass, so each pass pays
              for its own CNN work).
    stateful  ``model(batcher.batch_sentences(batch))`` on consecutive batches, as bilm-tf ran.

Tokens are the sentences' own tokens (no <S>/</S>).
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

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "corpus" / "kjv" / "heldout" / "kjv.heldout.txt"

FILTERS = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]
SHAPES = {  # name: (lstm dim, projection dim, n_highway)
    "small": (1024, 128, 1),
    "medium": (2048, 256, 1),
    "original": (4096, 512, 2),
}


def shape_options(name: str) -> dict:
    dim, proj, n_highway = SHAPES[name]
    return {
        "lstm": {"dim": dim, "projection_dim": proj, "n_layers": 2, "cell_clip": 3,
                 "proj_clip": 3, "use_skip_connections": True},
        "char_cnn": {"filters": FILTERS, "n_highway": n_highway, "embedding": {"dim": 16},
                     "n_characters": 262, "max_characters_per_token": 50,
                     "activation": "relu"},
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_model(name: str, tmp: str, stateful: bool):
    from bilm.encoder import BiLMEncoder
    from bilm.model import BidirectionalLanguageModel
    from bilm.options import BiLMOptions
    from bilm.weights import save_weights

    raw = shape_options(name)
    options_file = os.path.join(tmp, f"{name}.json")
    weight_file = os.path.join(tmp, f"{name}.hdf5")
    with open(options_file, "w") as f:
        json.dump(raw, f)
    save_weights(BiLMEncoder(BiLMOptions.from_dict(raw)), weight_file)
    return BidirectionalLanguageModel(options_file, weight_file, stateful=stateful,
                                      max_batch_size=64)


def run_pass(model, sentences, batch_size: int, mode: str, batcher) -> float:
    start = time.perf_counter()
    if mode == "fast":
        model._token_cache.clear()
        model._token_cache_array = model._token_cache_array[:0]
        for _ in model.embed_sentences(sentences, batch_size=batch_size):
            pass
    else:
        model.reset_states()
        for i in range(0, len(sentences), batch_size):
            out = model(batcher.batch_sentences(sentences[i : i + batch_size]))
            out["lm_embeddings"].numpy()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--mode", default="fast", choices=["fast", "stateful"])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--n-sentences", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="TF intra/inter-op threads (0: TF)")
    args = p.parse_args()
    if not os.path.exists(args.data):
        sys.exit(f"data not found: {args.data} (needs ../shared beside the checkout)")

    import tensorflow as tf

    from bilm.data import Batcher

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    with open(args.data, encoding="utf-8") as f:
        sentences = [line.split() for _, line in zip(range(args.n_sentences), f)]
    n_tokens = sum(len(s) for s in sentences)
    batcher = Batcher(None, 50)
    gpus = tf.config.list_physical_devices("GPU")
    print(f"# {len(sentences)} sentences, {n_tokens} tokens, batch {args.batch_size}, "
          f"mode {args.mode}, device {'GPU' if gpus else 'CPU'}, TF {tf.__version__}")
    print(f"{'shape':<10}{'tokens/s':>12}{'runs (s)':>28}{'peak RSS MB':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.shapes:
            model = build_model(name, tmp, stateful=args.mode == "stateful")
            run_pass(model, sentences, args.batch_size, args.mode, batcher)  # warm-up
            times = [run_pass(model, sentences, args.batch_size, args.mode, batcher)
                     for _ in range(args.repeats)]
            median = statistics.median(times)
            runs = ", ".join(f"{t:.2f}" for t in times)
            print(f"{name:<10}{n_tokens / median:>12,.0f}{runs:>28}{peak_rss_mb():>14,.0f}",
                  flush=True)
            del model


if __name__ == "__main__":
    main()
