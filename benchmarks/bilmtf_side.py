"""bilm-tf's half of ``embed_throughput.py`` and ``train_throughput.py``: runs bilm-tf itself
(PyPI's ``bilm==0.1.post5``) on TensorFlow 2's TF1-compat mode, in its own process, and answers
as JSON on stdout (bilm-tf's chatter goes to stderr).

bilm-tf shares our import name ``bilm``, so it lives in a ``--target`` folder, never installed
and never a dependency (``benchmarks/setup_bilmtf_env.sh``); the caller puts that folder first
on ``PYTHONPATH``. It needs ``tf_keras`` (there too) and ``TF_USE_LEGACY_KERAS=1``.

    python bilmtf_side.py embed OPTIONS.json WEIGHTS.hdf5 --vocab V.txt --sentences S.txt \
        --batch-size 64 --repeats 3
        bilm-tf's BidirectionalLanguageModel (stateful, as bilm-tf ran it) on the sentences in
        file order, ``--batch-size`` at a time, fed by bilm-tf's Batcher: a warm-up pass, then
        ``--repeats`` timed passes (the LSTM states are zeroed before each).
    python bilmtf_side.py train OPTIONS.json --vocab V.txt --train 'DIR/*' --batches 60
        bilm-tf's ``train`` for ``--batches`` batches (one CPU "GPU" tower); the time of each
        batch is the interval between the ends of consecutive ``Session.run`` calls of the
        training loop; the median after the first 5 batches is reported.
    python bilmtf_side.py dump OPTIONS.json WEIGHTS.hdf5 --vocab V.txt --sentences S.txt \
        --output OUT.hdf5
        bilm-tf's own ``dump_bilm_embeddings`` on the file (``benchmarks/embed_file.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# where benchmarks/setup_bilmtf_env.sh puts bilm-tf
BILMTF_DIR = Path(__file__).resolve().parent / ".envs" / "bilmtf"


def available() -> bool:
    """Whether bilm-tf is set up beside us."""
    return (BILMTF_DIR / "bilm" / "training.py").exists()


def run_side(cmd: list[str], bilm_tf: bool = False) -> dict:
    """Run ``cmd`` (a benchmark side: bilm-tf's or ours) in its own process and return the
    JSON of its last stdout line; with ``bilm_tf``, bilm-tf's folder goes first on the path.
    Called by the benchmarks, in our environment."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if bilm_tf:
        env.update(PYTHONPATH=str(BILMTF_DIR), TF_USE_LEGACY_KERAS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"{' '.join(cmd[:3])}... failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def import_bilm_tf():
    """bilm-tf's modules, imported against ``tensorflow.compat.v1`` (they ``import tensorflow
    as tf`` and call TF1's API)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow

    tf1 = tensorflow.compat.v1
    tf1.disable_v2_behavior()
    tf1.logging.set_verbosity(tf1.logging.ERROR)
    sys.modules["tensorflow"] = tf1
    import bilm  # bilm-tf's, from the target folder first on PYTHONPATH

    if not hasattr(bilm, "BidirectionalLanguageModel") or hasattr(bilm, "embed_sentences"):
        raise SystemExit(f"{bilm.__file__} is not bilm-tf 0.1.post5")
    return tf1, bilm


def _threads(tf1, n: int):
    return tf1.ConfigProto(allow_soft_placement=True, intra_op_parallelism_threads=n,
                           inter_op_parallelism_threads=n)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def embed(args) -> dict:
    tf1, bilm = import_bilm_tf()
    with open(args.sentences, encoding="utf-8") as f:
        sentences = [line.split() for line in f if line.split()]
    batcher = bilm.Batcher(args.vocab, 50)
    ids = tf1.placeholder("int32", shape=(None, None, 50))
    model = bilm.BidirectionalLanguageModel(args.options, args.weights,
                                            max_batch_size=args.batch_size)
    ops = model(ids)
    out = ops["lm_embeddings"]
    # bilm-tf keeps each LSTM's carried (c, h) in unnamed non-trainable variables
    state_vars = [v for v in tf1.global_variables() if v.name.split("/")[-1].startswith("Variable")]
    reset = tf1.variables_initializer(state_vars)
    with tf1.Session(config=_threads(tf1, args.threads)) as sess:
        sess.run(tf1.global_variables_initializer())

        def one_pass() -> float:
            sess.run(reset)
            start = time.perf_counter()
            for i in range(0, len(sentences), args.batch_size):
                sess.run(out, feed_dict={ids: batcher.batch_sentences(
                    sentences[i : i + args.batch_size])})
            return time.perf_counter() - start

        one_pass()  # warm-up
        times = [one_pass() for _ in range(args.repeats)]
    return {"times": times, "n_tokens": sum(len(s) for s in sentences),
            "peak_rss_mb": peak_rss_mb(), "tf": tf1.VERSION}


def train(args) -> dict:
    tf1, bilm = import_bilm_tf()
    from bilm.training import train as bilm_train  # bilm-tf's train()

    with open(args.options) as f:
        options = json.load(f)
    options["n_train_tokens"] = args.batches * options["batch_size"] * options["unroll_steps"]
    options["n_epochs"] = 1
    vocab = bilm.data.UnicodeCharsVocabulary(args.vocab, 50)
    data = bilm.data.BidirectionalLMDataset(args.train, vocab, test=False, shuffle_on_load=False)
    ends: list[float] = []
    real_run = tf1.Session.run

    def timed_run(self, fetches, *a, **kw):
        result = real_run(self, fetches, *a, **kw)
        # the loop's per-batch call fetches [train_op, summary, perplexity, states...]
        if isinstance(fetches, list) and len(fetches) > 3:
            ends.append(time.perf_counter())
        return result

    tf1.Session.run = timed_run
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        bilm_train(options, data, 1, tmp, tmp)
    total = time.perf_counter() - start
    per_batch = [b - a for a, b in itertools.pairwise(ends)][4:]
    median = statistics.median(per_batch)
    tokens = options["batch_size"] * options["unroll_steps"]
    return {"seconds_per_batch": per_batch, "tokens_per_s": tokens / median,
            "startup_s": total - (len(ends) - 1) * median, "batches": len(ends),
            "peak_rss_mb": peak_rss_mb(), "tf": tf1.VERSION}


def dump(args) -> dict:
    """bilm-tf's own ``dump_bilm_embeddings`` (what its ``usage_cached.py`` does): one
    sentence per ``Session.run``, the LSTM state carried from line to line, TensorFlow's
    default threads."""
    _, bilm = import_bilm_tf()
    with contextlib.redirect_stdout(sys.stderr):
        bilm.dump_bilm_embeddings(args.vocab, args.sentences, args.options, args.weights,
                                  args.output)
    return {"peak_rss_mb": peak_rss_mb()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("embed")
    e.add_argument("options")
    e.add_argument("weights")
    e.add_argument("--vocab", required=True)
    e.add_argument("--sentences", required=True)
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--repeats", type=int, default=3)
    e.add_argument("--threads", type=int, default=2)
    t = sub.add_parser("train")
    t.add_argument("options")
    t.add_argument("--vocab", required=True)
    t.add_argument("--train", required=True, help="bilm-tf's file pattern of training shards")
    t.add_argument("--batches", type=int, default=60)
    d = sub.add_parser("dump")
    d.add_argument("options")
    d.add_argument("weights")
    d.add_argument("--vocab", required=True)
    d.add_argument("--sentences", required=True)
    d.add_argument("--output", required=True)
    args = p.parse_args()
    result = {"embed": embed, "train": train, "dump": dump}[args.command](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
