"""I have T minutes: start from a pretrained biLM or from nothing? (docs/adaptation.md)

    python benchmarks/adaptation.py --workdir /tmp/adaptation [--pretrain-minutes 5]
        [--minutes 3] [--repeats 2] [--corpus ../shared/corpus/kjv]

1. Pretrain the ``tiny`` preset on Python's own documentation (``bilm demo``'s corpus) for
   ``--pretrain-minutes`` of wall time.
2. For each seed: adapt it to the KJV corpus (``bilm train --init-from``, KJV's vocabulary;
   new softmax rows from the token embedding, and from zeros), and train the same shape from
   scratch on KJV, each for ``--minutes`` of wall time, start-up included (the process gets
   SIGTERM at T minutes and saves its checkpoint, as ``bilm train`` does on any stop).
3. Each model: held-out perplexity on KJV (``bilm evaluate``), and the KJV sections task
   (examples/kjv_sections.py, ELMo sentence vectors + logistic regression, ``--max-sentences``
   verses per split); also the pretrained model before any KJV training (its weights as
   --init-from starts them, with either rule for the new softmax rows).

Prints one row per model and the medians; ``--json`` writes them. Every step is a whole
``bilm`` process, as a user runs it; the machine should be otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "kjv"
ENDLESS = str(10**7)  # batches: the clock stops each training, not its length


def bilm(*args: object, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bilm.cli", "-q", *map(str, args)], text=True,
                          capture_output=True, **kw)


def timed_training(minutes: float, *args: object) -> dict:
    """``bilm train ARGS`` stopped by SIGTERM after ``minutes`` of wall time (start-up
    included); its batches."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bilm.cli", "-q", "train", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=60 * minutes)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate()
    if proc.returncode not in (0, 143):
        raise SystemExit(f"training failed ({proc.returncode}): {err[-2000:]}")
    save_dir = Path(args[list(map(str, args)).index("--save-dir") + 1])
    steps = sorted(int(p.name.split("-")[1].split(".")[0]) for p in save_dir.glob("model-*.index"))
    return {"batches": steps[-1], "seconds": round(time.perf_counter() - start, 1)}


def heldout(save_dir: Path, corpus: Path) -> float:
    r = bilm("evaluate", "--save-dir", save_dir, "--test-prefix", corpus / "heldout" / "*",
             "--batch-size", 64)
    if r.returncode:
        raise SystemExit(r.stderr)
    return float(r.stdout.split("perplexity:")[1])


def sections(save_dir: Path, corpus: Path, max_sentences: int) -> float:
    """Accuracy of ELMo sentence vectors + logistic regression on the KJV sections."""
    weights = save_dir / "export" / "weights.hdf5"
    if not weights.exists():
        r = bilm("export", "--save-dir", save_dir, weights)
        if r.returncode:
            raise SystemExit(r.stderr)
    code = ("import json, sys; sys.path.insert(0, 'examples'); import kjv_sections as k; "
            f"r = k.main(['--corpus', {str(corpus)!r}, '--options', "
            f"{str(weights.parent / 'options.json')!r}, '--weights', {str(weights)!r}, "
            f"'--max-sentences', '{max_sentences}', '--epochs', '1']); "
            "print('RESULT', json.dumps(r))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, text=True, capture_output=True)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if not line:
        raise SystemExit(r.stderr[-3000:])
    results = json.loads(line[0][7:])
    return next(v["accuracy"] for k, v in results.items() if k.startswith("(a) "))


def unadapted(pretrained: Path, corpus: Path, workdir: Path, new_rows: str) -> float:
    """Held-out KJV perplexity of the pretrained model as --init-from starts it (the rows of
    KJV words it lacks started by ``new_rows``), before any KJV batch."""
    code = f"""
import tensorflow as tf
from bilm.evaluation import heldout_perplexity
from bilm.training.adapt import Adaptation, adapted_options, read_init_model
from bilm.training.inputs import _dataset, load_vocab
from bilm.model.lm import LanguageModel, training_variables
model = read_init_model({str(pretrained)!r})
options = adapted_options(model, None, {{"batch_size": 64, "unroll_steps": 1}})
vocab = load_vocab({str(corpus / 'vocab.txt')!r}, options.max_characters_per_token)
options = options.replace(n_tokens_vocab=vocab.size)
lm = LanguageModel(options, precision="float32")
class T: pass
t = T(); t.lm, t.options, t.variables = lm, options, training_variables(lm)
Adaptation(model, new_rows={new_rows!r}).initialize(t, vocab)
data = _dataset(options, {str(corpus / 'heldout' / '*')!r}, vocab, None, test=True)
print("RESULT", heldout_perplexity(lm, data, 64, progress=False))
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=workdir, text=True,
                       capture_output=True)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if not line:
        raise SystemExit(r.stderr[-3000:])
    return float(line[0].split()[1])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--pretrain-minutes", type=float, default=5.0)
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--max-sentences", type=int, default=3000)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    work, kjv = args.workdir, args.corpus
    work.mkdir(parents=True, exist_ok=True)
    print(f"{time.strftime('%Y-%m-%d')} {platform.node()} {os.cpu_count()} CPUs; "
          f"pretrain {args.pretrain_minutes} min, adapt / scratch {args.minutes} min each")

    pre = work / "pretrained"
    if not (pre / "checkpoint").exists():
        from bilm.demo import build_corpus

        build_corpus(work / "python")
        r = bilm("vocab", work / "python" / "train" / "*", work / "python_vocab.txt",
                 "--min-count", 2, "--overwrite")
        if r.returncode:
            raise SystemExit(r.stderr)
        info = timed_training(args.pretrain_minutes, "--preset", "tiny", "--train-prefix",
                              work / "python" / "train" / "*", "--vocab",
                              work / "python_vocab.txt", "--save-dir", pre, "--n-batches",
                              ENDLESS, "--seed", 0)
        print(f"pretrained: {info['batches']} batches in {info['seconds']} s")
    rows: dict[str, list[dict]] = {}
    for new_rows in ("zeros", "token-embedding"):
        name = f"unadapted (new rows: {new_rows.replace('-', ' ')})"
        rows[name] = [{"perplexity": unadapted(pre, kjv, ROOT, new_rows), "accuracy": None,
                       "batches": 0}]
        print(f"{name}: KJV held-out perplexity {rows[name][0]['perplexity']:.1f}")
    variants = {
        "adapted (new rows: token embedding)": ["--init-from", pre, "--new-rows",
                                                "token-embedding"],
        "adapted (new rows: zeros)": ["--init-from", pre, "--new-rows", "zeros"],
        "from scratch": ["--preset", "tiny"],
    }
    for seed in range(1, args.repeats + 1):
        for name, flags in variants.items():
            out = work / f"{name.split()[0]}-{'zeros' if 'zeros' in name else 'emb'}-{seed}"
            info = timed_training(args.minutes, *flags, "--train-prefix", kjv / "train" / "*",
                                  "--vocab", kjv / "vocab.txt", "--save-dir", out,
                                  "--n-batches", ENDLESS, "--seed", seed, "--overwrite")
            info["perplexity"] = heldout(out, kjv)
            info["accuracy"] = sections(out, kjv, args.max_sentences)
            rows.setdefault(name, []).append(info)
            print(f"seed {seed} {name:<38} {info['batches']:>6} batches  held-out perplexity "
                  f"{info['perplexity']:8.1f}  sections accuracy {info['accuracy']:.3f}",
                  flush=True)
    print("\nmedians:")
    for name, runs in rows.items():
        ppl = statistics.median(r["perplexity"] for r in runs)
        acc = [r["accuracy"] for r in runs if r["accuracy"] is not None]
        print(f"  {name:<38} perplexity {ppl:8.1f}"
              + (f"  accuracy {statistics.median(acc):.3f}" if acc else ""))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
