"""LSTM vs Transformer biLM at equal wall-clock time: held-out perplexity and tokens/s.

    python benchmarks/encoder_quality.py                      # 12 minutes each, both encoders
    python benchmarks/encoder_quality.py --minutes 3 --only transformer \\
        --set warmup_steps=400 --set learning_rate=2.0       # a pilot

Each encoder trains with ``bilm train`` on ../shared/corpus/kjv/train (its vocabulary, seed 0)
for ``--minutes`` of wall-clock time from the process start (start-up and compilation
included), is stopped by SIGTERM (which saves a checkpoint), then scored on
../shared/corpus/kjv/heldout two ways:

- ``bilm score``: each held-out sentence on its own, full softmax, exp of the mean of both
  directions' per-token NLL: the same protocol for both encoders (the comparison);
- ``bilm evaluate``: the encoder's own protocol (the LSTM's bilm-tf streaming with the state
  carried across sentences, which sees the previous sentences; the Transformer's AllenNLP
  sentence scoring), reported for reference.

Models: the LSTM is the ``tiny`` preset (256 units, projection 64, 2 layers); the Transformer
is ``transformer-tiny`` (width 64, 2 layers) with a 1024-wide feed-forward, so that the two
contextualizers have about the same number of parameters (594K vs 596K; the token embedders
157K each; the softmax the same). tokens/s is the median of training_log.csv's windows (one
direction's targets per second, as bilm-tf counted).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KJV = ROOT.parent / "shared" / "corpus" / "kjv"

CONFIGS = {
    "lstm": ("tiny", {}),
    "transformer": ("transformer-tiny", {"encoder": {"type": "transformer", "dim": 64,
                                                     "hidden_dim": 1024, "n_layers": 2,
                                                     "n_heads": 8}}),
}


def bilm(*args: object, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bilm.cli", "-q", *map(str, args)],
                          capture_output=True, text=True, check=False, **kwargs)


def parameters(options_file: Path) -> dict[str, int]:
    import numpy as np

    from bilm.model.lm import LanguageModel
    from bilm.options import load_options

    lm = LanguageModel(load_options(options_file), jit_compile=False)
    count = lambda vs: int(sum(np.prod(v.shape) for v in vs))  # noqa: E731
    return {"token_embedder": count(lm.encoder.token_embedder.trainable_variables),
            "contextualizer": count(lm.contextualizer.trainable_variables),
            "softmax": count([lm.softmax_weights, lm.softmax_b])}


def run(name: str, minutes: float, changes: dict, work: Path) -> dict:
    preset, options = CONFIGS[name]
    options = json.loads(json.dumps(options))
    for key, value in changes.items():
        options[key] = value
    opts_file = work / f"{name}.json"
    opts_file.write_text(json.dumps(options))
    save = work / name
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bilm.cli", "-q", "train", "--train-prefix",
                             str(KJV / "train" / "*"), "--vocab", str(KJV / "vocab.txt"),
                             "--save-dir", str(save), "--preset", preset, "--options",
                             str(opts_file), "--n-batches", "10000000",
                             "--checkpoint-minutes", "0", "--seed", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # saves a checkpoint after the batch in progress
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 143):
        raise SystemExit(f"{name}: bilm train failed ({proc.returncode}): {err[-2000:]}")
    with open(save / "training_log.csv") as f:
        rows = list(csv.DictReader(f))
    batches = int(rows[-1]["batch"]) if rows else 0
    rates = [float(r["tokens_per_second"]) for r in rows]
    heldout = sorted((KJV / "heldout").glob("*"))[0]
    r = bilm("evaluate", "--save-dir", save, "--test-prefix", heldout, "--batch-size", 64)
    evaluate = float(r.stdout.split("perplexity:")[1]) if r.returncode == 0 else float("nan")
    r = bilm("score", heldout, "--save-dir", save, "--output", work / f"{name}.tsv")
    score = float(r.stdout.split("corpus perplexity:")[1].split()[0])
    return {"encoder": name, "wall_seconds": round(wall), "batches": batches,
            "tokens_per_second": statistics.median(rates) if rates else float("nan"),
            "score_perplexity": score, "evaluate_perplexity": evaluate,
            "parameters": parameters(save / "options.json"), "options": options}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=12.0)
    p.add_argument("--only", choices=list(CONFIGS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a top-level option of the trained encoder(s)")
    p.add_argument("--keep", type=Path, help="keep the runs in this folder")
    args = p.parse_args()
    if not KJV.exists():
        sys.exit(f"needs {KJV} (../shared beside the checkout)")
    changes = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    names = [args.only] if args.only else list(CONFIGS)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = [run(n, args.minutes, changes, work) for n in names]
    print(f"# {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, {args.minutes:g} minutes "
          "each, kjv/train, seed 0")
    print(f"{'encoder':<12} {'batches':>8} {'tokens/s':>9} {'score ppl':>10} "
          f"{'evaluate ppl':>13} {'contextualizer params':>22}")
    for r in results:
        print(f"{r['encoder']:<12} {r['batches']:>8} {r['tokens_per_second']:>9,.0f} "
              f"{r['score_perplexity']:>10.1f} {r['evaluate_perplexity']:>13.1f} "
              f"{r['parameters']['contextualizer']:>22,}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
