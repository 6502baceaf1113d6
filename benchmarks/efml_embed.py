"""ELMoForManyLangs embedding throughput: bilm beside ELMoForManyLangs' own PyTorch code.

One run, one CPU, the same model on both sides: ELMoForManyLangs' code writes a random-weight
model at its released shape (``cnn_50_100_512_4096_sample.json``: char CNN 50-d, filters
[[1,32] ... [7,1024]], 2 highways, 100-d words, LSTM 4096 with projection 512, 2 layers;
lexicons from the sentences' own characters and words) with ``benchmarks/efml_side.py
make-model``; bilm reads that folder (``--model``: converted once). Before any timing both
sides embed the first ``--check-sentences`` sentences from a fresh state and the run stops
unless every layer agrees to ``--tolerance``. Then, each side in its own process:

    efml   Embedder.sents2elmo(sentences, output_layer=-1)   as its users call it: its own
           batching (batch 64, length-sorted), ids, and the layer average
    bilm   BidirectionalLanguageModel.from_model(folder, stateful=False).embed_sentences(
           sentences, batch_size=64), each sentence's layers averaged (its -1); the token
           cache emptied before every pass

The protocol is DESIGN.md's: the first 512 sentences of ``../shared/corpus/kjv/heldout``, batch
64, 2 threads on both sides, a warm-up pass, then the median of ``--repeats`` passes. Tokens/s
counts the sentences' own tokens. The same run measures this CPU's fp32 ``tf.matmul`` ceiling
(4096^3, 2 threads, best of 5) and prints each side's fraction of it, with FLOPs per token the
LSTMs' (per direction and layer: 2 x 4C x 2P for the gates, 2 x C x P for the projection, at
every position with ``<bos>``/``<eos>``) plus the char CNN, highways, word concatenation and
projection once per distinct token (what bilm computes; ELMoForManyLangs computes the CNN for
every position).

    bash benchmarks/setup_efml_env.sh                   # once (~1 minute)
    python benchmarks/efml_embed.py                     # the released shape (~10 minutes)
    python benchmarks/efml_embed.py --json out.json     # the figures also as JSON

``--efml-python`` (or ``BILM_EFML_PYTHON``) points at another ELMoForManyLangs interpreter;
``--work-dir`` keeps the model and the sentences.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from embed_throughput import DEFAULT_DATA, read_sentences  # noqa: E402
from roofline import matmul_ceiling  # noqa: E402

EFML_PYTHON = HERE / ".envs" / "efml" / "bin" / "python"
C, P, N_LAYERS = 4096, 512, 2
FILTERS = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]
CHAR_DIM, WORD_DIM, N_HIGHWAY, MAX_CHARS = 50, 100, 2, 50


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: its own, not the parent's carried across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def count_flops(sentences: list[list[str]]) -> dict:
    """Useful FLOPs (2 per multiply-add) of embedding ``sentences`` (see the module doc)."""
    n_filters = sum(c for _, c in FILTERS)
    conv = sum(2 * (MAX_CHARS - w + 1) * w * CHAR_DIM * c for w, c in FILTERS)
    per_token = conv + N_HIGHWAY * 2 * 2 * n_filters * n_filters + 2 * (n_filters + WORD_DIM) * P
    per_position = 2 * N_LAYERS * (2 * 4 * C * 2 * P + 2 * C * P)
    positions = sum(len(s) + 2 for s in sentences)
    distinct = len({t for s in sentences for t in s}) + 2
    total = per_position * positions + per_token * distinct
    n_tokens = sum(len(s) for s in sentences)
    return {"total": total, "per_token": total / n_tokens, "tokens": n_tokens}


def run_json(command: list[str], what: str) -> dict:
    proc = subprocess.run(command, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if proc.returncode:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"{what} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ours_worker(args: argparse.Namespace) -> dict:
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from bilm import BidirectionalLanguageModel

    sentences = read_sentences(args.sentences_file, 10**9)
    n_tokens = sum(len(s) for s in sentences)
    lm = BidirectionalLanguageModel.from_model(args.model, stateful=False)
    if args.check:
        out = [x.tolist() for x in lm.embed_sentences(sentences, batch_size=args.batch_size)]
        return {"layers": out}
    rates = []
    for i in range(args.repeats + 1):
        lm.clear_token_cache()
        t0 = time.perf_counter()
        for emb in lm.embed_sentences(sentences, batch_size=args.batch_size):
            np.mean(emb, axis=0)  # sents2elmo(output_layer=-1)
        if i:  # the first pass is the warm-up
            rates.append(n_tokens / (time.perf_counter() - t0))
    return {"tokens_per_s": rates, "median": statistics.median(rates),
            "peak_rss_mb": peak_rss_mb()}


def check_equal(efml: str, model: Path, sentences_file: Path, args: argparse.Namespace) -> float:
    """Both sides' layers on the check sentences (fresh state): the largest difference."""
    import numpy as np

    theirs = run_json([efml, str(HERE / "efml_side.py"), "layers", str(model), "--sentences",
                       str(sentences_file)], "ELMoForManyLangs' layers")
    ours = run_json([sys.executable, __file__, "--worker", "--check", "--model", str(model),
                     "--sentences-file", str(sentences_file), "--threads", str(args.threads),
                     "--batch-size", str(args.batch_size)], "bilm's layers")
    return max(float(np.abs(np.array(a) - np.array(b)).max())
               for a, b in zip(ours["layers"], theirs["layers"], strict=True))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--n-sentences", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--check-sentences", type=int, default=8)
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--efml-python", default=os.environ.get("BILM_EFML_PYTHON", EFML_PYTHON))
    p.add_argument("--work-dir")
    p.add_argument("--json")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--sentences-file", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(ours_worker(args)))
        return
    if not Path(args.efml_python).exists():
        raise SystemExit(f"no ELMoForManyLangs environment at {args.efml_python}: run "
                         "bash benchmarks/setup_efml_env.sh")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="efml_embed_"))
    work.mkdir(parents=True, exist_ok=True)
    sentences = read_sentences(args.data, args.n_sentences)
    text = work / "sentences.txt"
    text.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
    check = work / "check.txt"
    check.write_text("".join(" ".join(s) + "\n" for s in sentences[: args.check_sentences]),
                     encoding="utf-8")
    model = work / "efml-model"
    if not (model / "encoder.pkl").exists():
        run_json([args.efml_python, str(HERE / "efml_side.py"), "make-model", str(model),
                  "--corpus", str(text)], "make-model")
    os.environ["BILM_CACHE"] = str(work / "cache")
    diff = check_equal(args.efml_python, model, check, args)
    print(f"check: {args.check_sentences} sentences, every layer, max |bilm - efml| = "
          f"{diff:.2e} (tolerance {args.tolerance:g})")
    if diff > args.tolerance:
        raise SystemExit("the two sides disagree: not timing")
    results: dict = {"date": time.strftime("%Y-%m-%d"), "check_max_diff": diff,
                     "sentences": len(sentences), "batch_size": args.batch_size,
                     "threads": args.threads}
    results["efml"] = run_json([args.efml_python, str(HERE / "efml_side.py"), "embed",
                                str(model), "--sentences", str(text), "--batch-size",
                                str(args.batch_size), "--repeats", str(args.repeats),
                                "--threads", str(args.threads)], "ELMoForManyLangs' side")
    results["bilm"] = run_json([sys.executable, __file__, "--worker", "--model", str(model),
                                "--sentences-file", str(text), "--threads", str(args.threads),
                                "--batch-size", str(args.batch_size), "--repeats",
                                str(args.repeats)], "bilm's side")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    ceiling = matmul_ceiling("float32", 4096, repeats=5)
    flops = count_flops(sentences)
    results.update(ceiling_gflops=ceiling, flops=flops)
    print(f"fp32 matmul ceiling (tf.matmul 4096^3, {args.threads} threads): {ceiling:.0f} "
          f"GFLOP/s; {flops['per_token'] / 1e6:.0f} MFLOP per token -> ceiling "
          f"{ceiling * 1e9 / flops['per_token']:,.0f} tokens/s")
    print(f"{'side':<6} {'tokens/s (median)':>18} {'passes':>28} {'peak RSS':>10} "
          f"{'of ceiling':>10}")
    for side in ("efml", "bilm"):
        r = results[side]
        fraction = r["median"] * flops["per_token"] / (ceiling * 1e9)
        r["fraction_of_ceiling"] = fraction
        passes = ", ".join(f"{x:,.0f}" for x in r["tokens_per_s"])
        print(f"{side:<6} {r['median']:>18,.0f} {passes:>28} {r['peak_rss_mb']:>8,.0f}MB "
              f"{fraction:>10.1%}")
    ratio = results["bilm"]["median"] / results["efml"]["median"]
    results["ratio"] = ratio
    print(f"bilm / ELMoForManyLangs: {ratio:.2f}x (goal >= 2x)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
