""""Embed this file into HDF5" as users run it: whole processes, timed from outside, beside the
original toolkits' own code for the same task.

    python benchmarks/embed_file.py                              # every shape, 512 and 5,000
    python benchmarks/embed_file.py --shapes small transformer --sizes 512 --rounds 3
    python benchmarks/embed_file.py --shapes original --sizes 5000 --sides bilm

Each cell (shape x number of sentences) runs these commands as separate processes, alternating
(A B A B ...) for ``--rounds`` rounds, and prints every run's wall time (start to exit: Python
and TensorFlow's start-up, loading the weights, embedding, writing the file), the median, the
spread, the user and system CPU seconds, and the ratio of the medians:

    bilm            ``bilm embed FILE OUT --options O --weights W`` (the command's defaults:
                    stateless, batches of 64, length-grouped, each distinct token's CNN once)
    bilm-stateful   ``bilm embed ... --stateful``: one sentence at a time with the LSTM state
                    carried from line to line -- bilm-tf's numbers (``--stateful-side``)
    bilm-tf         bilm-tf's own ``dump_bilm_embeddings`` (what its ``usage_cached.py`` does:
                    one sentence per ``Session.run``, state carried), ``bilmtf_side.py dump``
    allennlp        the Transformer: AllenNLP's own modules (``load_archive``, its ELMo
                    character indexer, the ``LanguageModel``'s token embedder and
                    contextualizer under ``no_grad``, batches of 64 in file order) writing the
                    same layout, ``allennlp_side.py dump``; ours is ``bilm embed --model
                    ARCHIVE`` on the same AllenNLP archive

LSTM shapes are bilm-tf's small / medium / original (``embed_throughput.SHAPES``, random
weights written in bilm-tf's formats); the Transformer is the released Transformer ELMo's
layout (``transformer_embed.allennlp_config("released")``, AllenNLP's own seeded random
weights in an AllenNLP archive, which ``bilm embed --model`` converts once into its cache before
the timed runs, as a user's first run does). After each cell's first round the outputs are compared:
``bilm-stateful`` against ``bilm-tf`` and ``bilm`` against ``allennlp`` (the same numbers), so
the sides are shown to do the same task; ``bilm`` against ``bilm-tf`` differs by design
(stateless vs state carried across lines; ``--stateful`` is the like-for-like one).

Sentences: 512 are the first lines of ``../shared/corpus/kjv/heldout``; 5,000 are its 1,000
lines then the training shards' lines from ``train/kjv.09.txt`` backwards (the held-out file has
1,000; every model here has random weights, so no line is one it was trained on). Every side
uses its library's default threads (all cores), as a user's job does. The ratio is how many
times longer the other side's median takes than ``bilm``'s. This measure includes start-up
(TensorFlow's import alone is ~4.5 s here), which dominates small files; ``embed_throughput.py``
and ``transformer_embed.py`` measure the kernels alone (``model(ids)`` at batch 64, warm), the
like-for-like measure of the computation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
KJV = HERE.parent.parent / "shared" / "corpus" / "kjv"
ALLENNLP_PYTHON = HERE / ".envs" / "allennlp" / "bin" / "python"
LSTM_SHAPES = ["small", "medium", "original"]


def sentences(n: int) -> list[str]:
    """The first ``n`` lines of the held-out file, then of ``train/kjv.09.txt``, ``kjv.08.txt``
    and so on."""
    lines: list[str] = []
    shards = sorted((KJV / "train").glob("kjv.*.txt"), reverse=True)
    for path in (KJV / "heldout" / "kjv.heldout.txt", *shards):
        with open(path, encoding="utf-8") as f:
            lines += [line for line in f if line.split()][: n - len(lines)]
    if len(lines) < n:
        sys.exit(f"only {len(lines)} sentences available, {n} asked")
    return lines


def max_difference(ours: str, theirs: str) -> float:
    """The largest absolute difference between two files' datasets (the same keys)."""
    with h5py.File(ours, "r") as a, h5py.File(theirs, "r") as b:
        keys = set(b) - {"sentence_to_index"}
        if set(a) - {"sentence_to_index"} != keys:
            return float("inf")
        if any(a[k].shape != b[k].shape for k in keys):
            print(f"# {ours} and {theirs}: shapes differ, e.g. {a['0'].shape} vs {b['0'].shape}")
            return float("inf")
        return max(float(np.max(np.abs(a[k][()] - b[k][()]))) for k in keys)


def commands(shape: str, model: dict, text: str, out: str, sides: list[str]) -> dict:
    """The commands of a cell, by side."""
    bilm = [sys.executable, "-m", "bilm.cli", "-q", "embed", text, out + ".bilm.hdf5",
            "--overwrite"]
    if shape == "transformer":
        found = {"bilm": [*bilm, "--model", model["archive"]],
                 "allennlp": [str(ALLENNLP_PYTHON), str(HERE / "allennlp_side.py"), "dump",
                              model["archive"], "--sentences", text, "--output",
                              out + ".allennlp.hdf5"]}
    else:
        weights = ["--options", model["options"], "--weights", model["weights"]]
        found = {"bilm": bilm + weights,
                 "bilm-stateful": [*bilm[:6], out + ".bilm-stateful.hdf5", "--overwrite",
                                   *weights, "--stateful"],
                 "bilm-tf": [sys.executable, str(HERE / "bilmtf_side.py"), "dump",
                             model["options"], model["weights"], "--vocab",
                             str(KJV / "vocab.txt"), "--sentences", text, "--output",
                             out + ".bilm-tf.hdf5"]}
    return {side: command for side, command in found.items() if side in sides}


def build_models(shapes: list[str], tmp: str) -> dict:
    """Random-weight models of the shapes, in their families' own formats."""
    import bilmtf_side
    from embed_throughput import write_model

    models = {}
    for shape in shapes:
        if shape == "transformer":
            from transformer_embed import allennlp_config

            config, archive = os.path.join(tmp, "transformer.json"), os.path.join(
                tmp, "transformer.tar.gz")
            with open(config, "w") as f:
                json.dump(allennlp_config("released"), f)
            words = os.path.join(tmp, "vocabulary.txt")  # its softmax's words (unused here)
            with open(words, "w", encoding="utf-8") as f:
                f.writelines(sentences(16))
            bilmtf_side.run_side([str(ALLENNLP_PYTHON), str(HERE / "allennlp_side.py"),
                                  "build", config, archive, "--seed", "0", "--sentences",
                                  words, "--reference", os.path.join(tmp, "reference.npz")])
            models[shape] = {"archive": archive}
        else:
            options, weights = write_model(shape, tmp)
            models[shape] = {"options": options, "weights": weights}
    return models


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=[*LSTM_SHAPES, "transformer"],
                   choices=[*LSTM_SHAPES, "transformer"])
    p.add_argument("--sizes", nargs="+", type=int, default=[512, 5000])
    p.add_argument("--sides", nargs="+", default=["bilm", "bilm-tf", "allennlp"],
                   choices=["bilm", "bilm-stateful", "bilm-tf", "allennlp"])
    p.add_argument("--stateful-side", action="store_true",
                   help="also bilm embed --stateful (bilm-tf's numbers) at the LSTM shapes")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", help="also write every run's figures to this file")
    args = p.parse_args()
    sys.path.insert(0, str(HERE))
    import bilmtf_side
    from train_throughput import timed_process

    sides = list(args.sides) + (["bilm-stateful"] if args.stateful_side else [])
    if "bilm-tf" in sides and not bilmtf_side.available():
        sys.exit("bilm-tf is not set up: bash benchmarks/setup_bilmtf_env.sh (or --sides bilm)")
    if ("allennlp" in sides or "transformer" in args.shapes) and not ALLENNLP_PYTHON.exists():
        sys.exit("AllenNLP is not set up: bash benchmarks/setup_allennlp_env.sh")
    tmp_cache = tempfile.TemporaryDirectory()  # bilm's converted-model cache, this run's own
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore",
               BILM_CACHE=tmp_cache.name)
    envs = {"bilm": env, "bilm-stateful": env, "allennlp": env,
            "bilm-tf": dict(env, PYTHONPATH=str(bilmtf_side.BILMTF_DIR),
                            TF_USE_LEGACY_KERAS="1")}
    print(f"# {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, whole processes timed from "
          f"outside, {args.rounds} alternating rounds per cell; sides {', '.join(sides)}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(args.shapes, tmp)
        for shape in args.shapes:
            for n in args.sizes:
                text = os.path.join(tmp, f"sentences.{n}.txt")
                with open(text, "w", encoding="utf-8") as f:
                    f.writelines(sentences(n))
                cell = commands(shape, models[shape], text, os.path.join(tmp, "out"), sides)
                if shape == "transformer" and "bilm" in cell and n == args.sizes[0]:
                    # the archive's one-time conversion (cached, as for a user's second run)
                    one = os.path.join(tmp, "one.txt")
                    with open(one, "w", encoding="utf-8") as f:
                        f.write("warm up\n")
                    timed_process([*cell["bilm"][:5], one, os.path.join(tmp, "one.hdf5"),
                                   *cell["bilm"][7:]], env)
                runs: dict[str, list[dict]] = {side: [] for side in cell}
                checks = {}
                for k in range(args.rounds):
                    for side, command in cell.items():
                        run = timed_process(command, envs[side])
                        run.pop("stdout")
                        runs[side].append(run)
                        print(f"  {shape} {n} round {k + 1} {side}: {run['wall']:.1f} s",
                              file=sys.stderr, flush=True)
                    if k == 0:  # the same task on both sides: the same numbers
                        out = os.path.join(tmp, "out")
                        for a, b in (("bilm-stateful", "bilm-tf"), ("bilm", "allennlp")):
                            if a in cell and b in cell:
                                checks[f"{a} vs {b}"] = max_difference(
                                    f"{out}.{a}.hdf5", f"{out}.{b}.hdf5")
                median = {side: statistics.median(r["wall"] for r in rs)
                          for side, rs in runs.items()}
                for side, rs in runs.items():
                    walls = [r["wall"] for r in rs]
                    ratio = (f"{median[side] / median['bilm']:.2f}x bilm's"
                             if "bilm" in median and side != "bilm" else "")
                    print(f"{shape:<12}{n:>6} {side:<14} median {median[side]:7.1f} s "
                          f"(min {min(walls):.1f}, max {max(walls):.1f}; runs "
                          f"{', '.join(f'{w:.1f}' for w in walls)}); user "
                          f"{statistics.median(r['user'] for r in rs):.1f} s, sys "
                          f"{statistics.median(r['sys'] for r in rs):.1f} s {ratio}",
                          flush=True)
                for name, diff in checks.items():
                    print(f"{shape:<12}{n:>6} check {name}: max |difference| {diff:.2e}",
                          flush=True)
                results.append({"shape": shape, "sentences": n, "runs": runs,
                                "checks": checks})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
