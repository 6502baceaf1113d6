"""Transformer ELMo embedding throughput: bilm beside AllenNLP's own PyTorch implementation.

One run, one CPU, the same weights on both sides: AllenNLP builds a random-weight (seeded)
``LanguageModel`` at the released Transformer ELMo shape (character CNN: embedding 262 x 16,
filters [[1,32],[2,32],[3,64],[4,128],[5,256],[6,512],[7,1024]], 2 highways, projection to
512 after the highways, layer norm; ``bidirectional_language_model_transformer`` 512/2048,
6 layers) and saves it as a ``model.tar.gz``; bilm imports that archive
(``bilm.io.allennlp.import_allennlp``) and exports it (``bilm.export.dump_weights``). Before
any timing both sides embed the first ``--check-sentences`` held-out sentences and the run
stops unless every layer agrees to ``--tolerance`` (1e-4; AllenNLP's character ids must equal
``Batcher``'s exactly). Then, each in a fresh process (so that each peak RSS is its own):

    bilm      model(ids)        ``BidirectionalLanguageModel(...)(Batcher ids)``, batch by
                                batch in file order (each batch's distinct tokens' CNN once)
    bilm      embed_sentences   the dataset path (``embed_sentences(batch_size=64)``: length-
                                grouped batches, each distinct token's CNN once per pass; the
                                token cache is emptied before every pass)
    allennlp  LanguageModel     AllenNLP's indexer, token embedder and contextualizer
                                (``return_all_layers``, eval, ``torch.no_grad()``), batch by
                                batch in file order, layers stacked as bilm's
                                ``lm_embeddings`` (see ``benchmarks/allennlp_side.py``)

The protocol is DESIGN.md's: the first 512 sentences of ``../shared/corpus/kjv/heldout``
(split on whitespace), batch 64, 2 threads on both sides (TensorFlow intra-op 2 / inter-op 1,
``torch.set_num_threads(2)`` / interop 1), a warm-up pass then the median of 3 passes.
Tokens/s counts the sentences' own tokens (no ``<S>``/``</S>``, no padding). The same run
measures this CPU's fp32 matmul ceiling (4096^3 ``tf.matmul`` and ``torch.matmul``, 2
threads, best of 5) and prints the fraction of it that each side's useful FLOPs reach, with
FLOPs per token counted as :func:`count_flops` says: per direction and layer, the Q/K/V/output
projections (8 d^2 per position), the FFN (4 d h), the attention scores and context over each
sentence's real positions (4 n d per position for a sentence of n positions, the full n x n as
both implementations compute it), all positions with ``<S>``/``</S>``; plus the character CNN,
highways and projection once per distinct token of the pass (at 50 character columns). The
same count serves both sides: the fraction is the useful work's, not what each side executes
(AllenNLP also convolves every padding position; bilm pads less).

Setting up and running. AllenNLP is never a dependency of bilm: it lives in its own
environment (allennlp 2.10.1 + allennlp-models 2.10.1 on a CPU torch, Python 3.11, ~1.7 GB,
about 2 minutes), which ``benchmarks/setup_allennlp_env.sh`` creates in the git-ignored
``benchmarks/.envs/allennlp`` (it says which packages and why). From the repository root, with
bilm's own environment active (``pip install -e ".[dev]"``) and ``../shared`` beside the
checkout:

    bash benchmarks/setup_allennlp_env.sh                  # once
    python benchmarks/transformer_embed.py --quick         # smoke test: tiny shape, ~1 minute
    python benchmarks/transformer_embed.py                 # the released shape (5-10 min
                                                           # on an idle 2-core machine)
    python benchmarks/transformer_embed.py --check-only    # the equality check alone (~2 min)
    python benchmarks/transformer_embed.py --ours-only     # bilm alone, bilm's random weights
    python benchmarks/transformer_embed.py --json out.json # the figures, also as JSON

``--allennlp-python`` (or ``BILM_ALLENNLP_PYTHON``) points at another AllenNLP interpreter;
``--work-dir`` keeps the archive, the exported weights and the sentences.
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

from embed_throughput import DEFAULT_DATA, run_pass
from roofline import FILTERS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
ALLENNLP_PYTHON = HERE / ".envs" / "allennlp" / "bin" / "python"
ALLENNLP_SIDE = HERE / "allennlp_side.py"

# (char embedding, filters, highways, width, FFN hidden, layers)
SHAPES = {
    "released": (16, FILTERS, 2, 512, 2048, 6),
    "quick": (4, [[1, 4], [2, 8], [3, 16], [4, 32]], 2, 32, 64, 6),  # the same layout, tiny
}
MAX_CHARS = 50  # ELMo's characters per token
PATHS = {  # our worker's path -> (embed_throughput.run_pass mode, label)
    "ids": ("stateful", "model(ids)"),  # file-order batches (stateless for a transformer)
    "dataset": ("fast", "embed_sentences"),
}


def allennlp_config(shape: str) -> dict:
    """An AllenNLP training config for a bidirectional Transformer LM at ``shape`` (the
    released Transformer ELMo's layout; the softmax is a small dense one, unused here)."""
    char_dim, filters, n_highway, width, hidden, n_layers = SHAPES[shape]
    return {
        "dataset_reader": {
            "type": "simple_language_modeling", "tokenizer": {"type": "whitespace"},
            "token_indexers": {"token_characters": {"type": "elmo_characters"}},
            "start_tokens": ["<S>"], "end_tokens": ["</S>"]},
        "model": {
            "type": "language_model", "bidirectional": True, "dropout": 0.1,
            "num_samples": 8, "sparse_embeddings": False,
            "text_field_embedder": {"token_embedders": {"token_characters": {
                "type": "character_encoding",
                "embedding": {"num_embeddings": 262, "embedding_dim": char_dim},
                "encoder": {"type": "cnn-highway", "activation": "relu",
                            "embedding_dim": char_dim, "filters": filters,
                            "num_highway": n_highway, "projection_dim": width,
                            "projection_location": "after_highway", "do_layer_norm": True}}}},
            "contextualizer": {"type": "bidirectional_language_model_transformer",
                               "input_dim": width, "hidden_dim": hidden,
                               "num_layers": n_layers, "dropout": 0.1, "input_dropout": 0.1}},
    }


def count_flops(shape: str, sentences: list[list[str]]) -> dict:
    """Useful FLOPs (2 per multiply-add) of embedding ``sentences`` at ``shape`` (see the
    module doc): the transformer over each sentence's n + 2 positions, and the character
    CNN + highways + projection once per distinct token (``<S>``/``</S>`` included)."""
    char_dim, filters, n_highway, width, hidden, n_layers = SHAPES[shape]
    n_filters = sum(count for _, count in filters)
    conv = sum(2 * (MAX_CHARS - w + 1) * w * char_dim * count for w, count in filters)
    highway = n_highway * 2 * (2 * n_filters * n_filters)  # transform and gate
    projection = 2 * n_filters * width
    per_position = 2 * n_layers * (8 * width * width + 4 * width * hidden)
    positions = sum(len(s) + 2 for s in sentences)
    attention = 2 * n_layers * sum(4 * (len(s) + 2) ** 2 * width for s in sentences)
    distinct = len({t for s in sentences for t in s} | {"<S>", "</S>"})
    n_tokens = sum(len(s) for s in sentences)
    token_encoder = distinct * (conv + highway + projection)
    total = per_position * positions + attention + token_encoder
    return {"per_token": total / n_tokens, "total": total, "n_tokens": n_tokens,
            "distinct_tokens": distinct, "positions": positions,
            "transformer_per_position": per_position, "attention": attention,
            "token_encoder_per_token": conv + highway + projection,
            "conv": conv, "highway": highway, "projection": projection}


def tf_matmul_gflops(n: int, repeats: int = 5) -> float:
    """Best of ``repeats`` fp32 ``tf.matmul`` n x n x n, in GFLOP/s."""
    import tensorflow as tf

    a = tf.random.normal((n, n), seed=1)
    b = tf.random.normal((n, n), seed=2)
    matmul = tf.function(lambda: tf.matmul(a, b))
    matmul().numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul().numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def peak_rss_mb() -> float:
    """This process's peak RSS. Linux's ``ru_maxrss`` carries the parent's peak across fork
    and exec, which would give each worker the orchestrating process's; ``VmHWM`` belongs to
    the process's own address space."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def configure_tf(threads: int, inter_threads: int) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_threads)


def read_sentences(path: str | os.PathLike[str], n: int | None = None) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        lines = f if n is None else (line for _, line in zip(range(n), f, strict=False))
        return [line.split() for line in lines]


def write_sentences(path: Path, sentences: list[list[str]]) -> None:
    path.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")


def run_json(command: list[str], what: str) -> dict:
    """Run a worker; its answer is the last line of its stdout, as JSON."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not proc.stdout.strip():
        sys.stderr.write(proc.stderr[-6000:])
        sys.exit(f"{what} failed (exit {proc.returncode}): {' '.join(command)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- our side ---------------------------------------------------------------------------------

def ours_worker(args: argparse.Namespace) -> dict:
    """One of our paths in this process: a warm-up pass, then ``--repeats`` timed passes."""
    configure_tf(args.threads, args.inter_threads)
    import tensorflow as tf

    from bilm import Batcher, BidirectionalLanguageModel

    model = BidirectionalLanguageModel(args.options, args.weights)
    sentences = read_sentences(args.sentences_file)
    mode = PATHS[args.worker][0]
    batcher = Batcher(None, MAX_CHARS)
    warm_up = run_pass(model, sentences, args.batch_size, mode, batcher)
    times = [run_pass(model, sentences, args.batch_size, mode, batcher)
             for _ in range(args.repeats)]
    return {"side": "bilm", "path": args.worker, "times": times, "warm_up": warm_up,
            "n_tokens": sum(len(s) for s in sentences), "peak_rss_mb": peak_rss_mb(),
            "tensorflow": tf.__version__}


def ours_random_weights(config: dict, work: Path) -> tuple[Path, Path]:
    """--ours-only: the same shape with bilm's own random initialisation."""
    from bilm.io.allennlp import options_from_config
    from bilm.io.weights import save_weights
    from bilm.model.encoder import BiLMEncoder
    from bilm.options import save_options

    options = options_from_config(config, n_softmax_rows=64)
    options_file, weight_file = work / "options.json", work / "weights.hdf5"
    save_options(options, options_file)
    save_weights(BiLMEncoder(options), weight_file)
    return options_file, weight_file


def check_equal(options_file: Path, weight_file: Path, reference: Path,
                sentences: list[list[str]], tolerance: float) -> dict:
    """Our layers (both paths) and character ids against AllenNLP's; exits when they differ."""
    import numpy as np

    from bilm import Batcher, BidirectionalLanguageModel

    model = BidirectionalLanguageModel(options_file, weight_file)
    ids = Batcher(None, MAX_CHARS).batch_sentences(sentences)
    batched = model(ids)["lm_embeddings"].numpy()
    dataset = list(model.embed_sentences(sentences, batch_size=len(sentences)))
    ref = np.load(reference)
    worst = {"model(ids)": np.zeros(batched.shape[1]), "embed_sentences": np.zeros(
        batched.shape[1])}
    ids_equal, scale = True, 0.0
    for i, s in enumerate(sentences):
        n = len(s)
        theirs = ref[f"layers/{i}"]  # (n_layers + 1, n, 2 * dim)
        ids_equal &= np.array_equal(ids[i, : n + 2], ref[f"ids/{i}"])
        scale = max(scale, float(np.abs(theirs).max()))
        for path, ours in (("model(ids)", batched[i, :, :n]), ("embed_sentences", dataset[i])):
            worst[path] = np.maximum(worst[path], np.abs(ours - theirs).max(axis=(1, 2)))
    result = {path: [float(x) for x in w] for path, w in worst.items()}
    result.update(ids_equal=bool(ids_equal), max_abs_value=scale, tolerance=tolerance,
                  n_sentences=len(sentences))
    print(f"# equality check, {len(sentences)} held-out sentences, max |AllenNLP - bilm| per "
          f"layer (token layer first; largest |value| {scale:.3g}); character ids "
          f"{'identical' if ids_equal else 'DIFFER'}")
    for path, w in worst.items():
        print(f"#   {path:<16} max {w.max():.2e}   " + " ".join(f"{x:.1e}" for x in w))
    ok = ids_equal and all(max(w) <= tolerance for w in result.values() if isinstance(w, list))
    if not ok:
        sys.exit(f"the two sides differ (tolerance {tolerance}): the comparison would be "
                 "meaningless; nothing timed")
    return result


# -- the run ----------------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke test: a tiny shape, 24 sentences, batch 8, 1024^3 matmul")
    p.add_argument("--ours-only", action="store_true",
                   help="bilm alone (bilm's random weights; no AllenNLP environment needed)")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--n-sentences", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="intra-op threads, both sides")
    p.add_argument("--inter-threads", type=int, default=1, help="inter-op threads, both sides")
    p.add_argument("--check-only", action="store_true",
                   help="stop after the equality check (nothing timed)")
    p.add_argument("--check-sentences", type=int, default=8)
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--matmul-size", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--allennlp-python",
                   default=os.environ.get("BILM_ALLENNLP_PYTHON", str(ALLENNLP_PYTHON)))
    p.add_argument("--work-dir", help="keep the archive, weights and sentences here")
    p.add_argument("--json", help="also write the figures to this file")
    # internal: one of our paths, in its own process
    p.add_argument("--worker", choices=list(PATHS), help=argparse.SUPPRESS)
    p.add_argument("--options", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--sentences-file", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(ours_worker(args)))
        return

    shape = "quick" if args.quick else "released"
    n_sentences = args.n_sentences or (24 if args.quick else 512)
    batch_size = args.batch_size or (8 if args.quick else 64)
    matmul_size = args.matmul_size or (1024 if args.quick else 4096)
    if not os.path.exists(args.data):
        sys.exit(f"data not found: {args.data} (needs ../shared beside the checkout)")
    if args.ours_only and args.check_only:
        sys.exit("--check-only compares with AllenNLP: it cannot go with --ours-only")
    if not args.ours_only and not os.path.exists(args.allennlp_python):
        sys.exit(f"no AllenNLP environment at {args.allennlp_python}: run "
                 "'bash benchmarks/setup_allennlp_env.sh' first (or pass --ours-only)")
    started, load = time.perf_counter(), os.getloadavg()[0]
    configure_tf(args.threads, args.inter_threads)
    import tensorflow as tf

    from bilm.export import dump_weights
    from bilm.io.allennlp import import_allennlp

    sentences = read_sentences(args.data, n_sentences)
    check = sentences[: args.check_sentences]
    flops = count_flops(shape, sentences)
    config = allennlp_config(shape)
    results: dict = {"shape": shape, "n_sentences": len(sentences),
                     "n_tokens": flops["n_tokens"], "batch_size": batch_size,
                     "threads": args.threads, "inter_threads": args.inter_threads,
                     "flops": flops, "tensorflow": tf.__version__}
    print(f"# {shape} shape, {len(sentences)} sentences, {flops['n_tokens']} tokens "
          f"({flops['distinct_tokens']} distinct), batch {batch_size}, {args.threads} threads, "
          f"median of {args.repeats} passes after a warm-up; TF {tf.__version__}")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        data_file, check_file = work / "sentences.txt", work / "check.txt"
        write_sentences(data_file, sentences)
        write_sentences(check_file, check)
        if args.ours_only:
            options_file, weight_file = ours_random_weights(config, work)
        else:
            config_file, archive = work / "config.json", work / "model.tar.gz"
            config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
            built = run_json([args.allennlp_python, str(ALLENNLP_SIDE), "build",
                              str(config_file), str(archive), "--seed", str(args.seed),
                              "--sentences", str(check_file),
                              "--reference", str(work / "reference.npz")], "AllenNLP build")
            print(f"# AllenNLP's LanguageModel: {built['parameters']:,} parameters "
                  f"(seed {args.seed}) -> {archive.name}; imported into bilm and exported")
            import_allennlp(archive, work / "run", overwrite=True)
            weight_file = work / "export" / "weights.hdf5"
            dump_weights(str(work / "run"), str(weight_file))
            options_file = weight_file.parent / "options.json"
            results["check"] = check_equal(options_file, weight_file,
                                           work / "reference.npz", check, args.tolerance)
            if args.check_only:
                if args.json:
                    Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
                return

        ceiling_tf = tf_matmul_gflops(matmul_size)
        results["matmul_gflops"] = {"tensorflow": ceiling_tf}
        rows = []
        for path in PATHS:
            r = run_json([sys.executable, __file__, "--worker", path, "--options",
                          str(options_file), "--weights", str(weight_file),
                          "--sentences-file", str(data_file), "--batch-size",
                          str(batch_size), "--repeats", str(args.repeats), "--threads",
                          str(args.threads), "--inter-threads", str(args.inter_threads)],
                         f"bilm {path}")
            rows.append(("bilm", PATHS[path][1], r))
        if not args.ours_only:
            r = run_json([args.allennlp_python, str(ALLENNLP_SIDE), "time", str(archive),
                          "--sentences", str(data_file), "--batch-size", str(batch_size),
                          "--repeats", str(args.repeats), "--threads", str(args.threads),
                          "--matmul-size", str(matmul_size)], "AllenNLP timing")
            results["matmul_gflops"]["torch"] = r["matmul_gflops"]
            rows.append(("allennlp", "LanguageModel", r))
            results["allennlp_versions"] = {k: r[k] for k in ("python", "torch", "allennlp",
                                                              "allennlp-models",
                                                              "transformers")}

    ceiling = max(results["matmul_gflops"].values())
    results["ceiling_gflops"] = ceiling
    print(f"# fp32 matmul {matmul_size}^3, {args.threads} threads: "
          + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in results["matmul_gflops"].items())
          + f"; ceiling taken: {ceiling:.0f}")
    print(f"# useful FLOPs per token: {flops['per_token'] / 1e6:.3g} M (transformer "
          f"{flops['transformer_per_position'] / 1e6:.3g} M per position, attention "
          f"{flops['attention'] / flops['n_tokens'] / 1e6:.3g} M per token, token encoder "
          f"{flops['token_encoder_per_token'] / 1e6:.3g} M per distinct token) -> at the "
          f"ceiling {ceiling * 1e9 / flops['per_token']:,.0f} tokens/s")
    print(f"{'side':<10}{'path':<18}{'tokens/s':>10}{'passes (s)':>24}{'peak RSS MB':>13}"
          f"{'of peak':>9}")
    table = []
    for side, label, r in rows:
        rate = r["n_tokens"] / statistics.median(r["times"])
        fraction = rate * flops["per_token"] / (ceiling * 1e9)
        passes = ", ".join(f"{t:.2f}" for t in r["times"])
        print(f"{side:<10}{label:<18}{rate:>10,.0f}{passes:>24}{r['peak_rss_mb']:>13,.0f}"
              f"{fraction:>9.1%}")
        table.append({**r, "side": side, "path": label, "tokens_per_s": rate,
                      "fraction_of_peak": fraction})
    results["rows"] = table
    theirs = [t["tokens_per_s"] for t in table if t["side"] == "allennlp"]
    if theirs:
        ratios = {t["path"]: t["tokens_per_s"] / theirs[0] for t in table
                  if t["side"] == "bilm"}
        results["ratios"] = ratios
        print("# ours / AllenNLP: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
              + " (goal >= 2x)")
    results["wall_s"] = time.perf_counter() - started
    results["load_average"] = [load, os.getloadavg()[0]]
    print(f"# whole run {results['wall_s']:.0f} s; 1-minute load average {load:.2f} at the start, "
          f"{results['load_average'][1]:.2f} at the end")
    if max(results["load_average"]) > 0.5:
        print("# WARNING: other processes were running: torch's OpenMP threads slow down much "
              "more than TensorFlow's when a core is taken; compare only runs on an idle "
              "machine")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
