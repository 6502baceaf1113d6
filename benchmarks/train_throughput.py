"""Training throughput (and, with --quality, held-out perplexity) at bilm-tf's "small" shape.

    python benchmarks/train_throughput.py                  # 60 timed batches
    python benchmarks/train_throughput.py --quality        # 300 batches + held-out perplexity
    python benchmarks/train_throughput.py --precision mixed_bfloat16 --no-jit --batches 40
    python benchmarks/train_throughput.py --whole-process 10 40 --pairs 5
                                                           # as users time a job (below)

Shape: char CNN filters [[1,32],[2,32],[3,64],[4,128],[5,256],[6,512],[7,1024]], char embedding
16, 1 highway, LSTM 1024 / projection 128, 2 layers, clip 3, skip connections, dropout 0.1,
bidirectional, batch 64 x unroll 20, 4096 negatives, one CPU replica, on
../shared/corpus/kjv/train with its vocabulary. Tokens/s counts batch_size * unroll_steps per
batch (one direction, as bilm-tf reported), read from the run's training_log.csv, whose windows
exclude the first batch (tracing and compilation); start-up is the rest of the train() call.

In the same run: this machine's float32 matmul ceiling (``roofline.py``), the useful FLOPs of a
training token (forward + backward of the LSTMs and the sampled softmax for every token, the
token embedder once per distinct token of a batch, averaged over the run's first batches) and
the fraction of the ceiling reached; and, when bilm-tf is set up
(``benchmarks/setup_bilmtf_env.sh``), bilm-tf's own ``train`` on the same shape, data and
vocabulary in a separate process (``bilmtf_side.py train``; ``--no-bilm-tf`` skips it).

``--whole-process N M`` measures as a user times a job instead: whole processes, timed from
outside (wall clock from start to exit): ``bilm train`` (the command, its final checkpoint
included) and bilm-tf's ``train`` (``bilmtf_side.py train``), each for N and for M batches, in
``--pairs`` alternating rounds (ours N, theirs N, ours M, theirs M). The difference of a
round's two runs gives each side's per-batch cost without its start-up ((T_M - T_N) / (M - N));
the ratio is taken round by round and its median reported, with every run's time (the spread).
Beside it, each side's in-log measure of its M-batch run (ours: training_log.csv's window,
batch 2 to the end; bilm-tf's: its median batch interval after the first 5), so both measures
come from the same processes. Each run also reports, to say where slow runs lose their time:
its user and system CPU seconds and minor page faults (``os.wait4``), the CPU seconds the host
stole from this virtual machine meanwhile (/proc/stat), and for ours the wall time by phase,
from the arrival of its log lines (start-up, model build, first step with XLA compilation, the
other steps, the end: the last checkpoint and exit). ``--malloc system`` runs ours with glibc's
malloc defaults (``BILM_MALLOC=system``) to see what ``bilm.allocator`` changes.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KJV = ROOT.parent / "shared" / "corpus" / "kjv"

SMALL = {
    "lstm": {"dim": 1024, "projection_dim": 128, "n_layers": 2, "cell_clip": 3, "proj_clip": 3,
             "use_skip_connections": True},
    "char_cnn": {"filters": [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512],
                             [7, 1024]],
                 "n_highway": 1, "embedding": {"dim": 16}, "n_characters": 261,
                 "max_characters_per_token": 50, "activation": "relu"},
    "bidirectional": True, "dropout": 0.1, "batch_size": 64, "unroll_steps": 20,
    "n_negative_samples_batch": 4096, "all_clip_norm_val": 10.0, "learning_rate": 0.2,
    "n_epochs": 1,
}


class _Skipped(logging.Handler):
    """Counts mixed_float16 steps skipped on overflow (logged at DEBUG)."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "gradients overflowed" in record.getMessage():
            self.skipped += 1


def _window_rates(log_file: str) -> list[float]:
    """tokens/s of each window of the run's training_log.csv (the first window starts after
    the first batch, so compilation is never in it)."""
    with open(log_file, newline="") as f:
        return [float(row["tokens_per_second"]) for row in csv.DictReader(f)]


def train_flops_per_token(shape: dict, vocab, n_batches: int = 20) -> float:
    """Useful FLOPs per counted token (``roofline.py``): 3x the forward matmuls of the LSTMs
    and the sampled softmax (both directions) for every token, and of the token embedder for
    each distinct token of a batch (measured over ``n_batches`` batches of KJV)."""
    import itertools

    from roofline import lstm_flops_per_token, token_embedder_flops

    from bilm.data import BidirectionalLMDataset

    lstm, cnn = shape["lstm"], shape["char_cnn"]
    rows, steps = shape["batch_size"], shape["unroll_steps"]
    proj = lstm["projection_dim"]
    per_token = (lstm_flops_per_token(lstm["dim"], proj, lstm["n_layers"])
                 + 2 * 2 * proj * (shape["n_negative_samples_batch"] + 1))
    data = BidirectionalLMDataset(str(KJV / "train" / "*"), vocab)
    embedder = []
    for batch in itertools.islice(data.iter_batches(rows, steps), n_batches):
        words = {vocab.id_to_word(int(i)) for i in batch["token_ids"].ravel()}
        embedder.append(sum(token_embedder_flops(w, cnn["n_highway"], proj, cnn["filters"])
                            for w in words))
    return 3 * (per_token + statistics.mean(embedder) / (rows * steps))


def bilmtf_train(options: dict, vocab_file: str, n_batches: int, tmp: str) -> dict:
    """bilm-tf's own train() on these options, in its own process (``bilmtf_side.py``)."""
    import json

    import bilmtf_side

    options_file = os.path.join(tmp, "bilmtf_options.json")
    theirs = {k: v for k, v in options.items() if k not in ("precision", "jit_compile")}
    with open(options_file, "w") as f:
        json.dump(theirs, f)
    return bilmtf_side.run_side(
        [sys.executable, str(HERE / "bilmtf_side.py"), "train", options_file, "--vocab",
         vocab_file, "--train", str(KJV / "train" / "*"), "--batches", str(n_batches)],
        bilm_tf=True)


# the phases of a bilm train run, by the log lines that end them (bilm.training)
OUR_MARKS = {"started": "bilm.training.loop: seed", "compiling": "compiling the first",
             "first step": "first step done", "trained": "{n}/{n} batches"}


def _stolen() -> float:
    """CPU seconds this virtual machine's host has taken from its vCPUs since boot (the
    ``steal`` column of /proc/stat, all CPUs): wall time during which no vCPU ran us."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def timed_process(command: list[str], env: dict, marks: dict[str, str] | None = None) -> dict:
    """One whole process (a failure stops the run): wall seconds, its stdout, from its rusage
    the user and system CPU seconds and the minor page faults, and the CPU seconds the host
    stole meanwhile. ``marks`` ({name: text}): the seconds from the start at which a line of
    its stderr first contained each text -- a profile of the run's phases from its log."""
    import subprocess

    stolen = _stolen()
    seen: dict[str, float] = {}
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.PIPE,
                                text=True)
        tail = []
        for line in proc.stderr:
            now = time.perf_counter() - start
            for name, text in (marks or {}).items():
                if name not in seen and text in line:
                    seen[name] = now
            tail = [*tail[-49:], line]
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read()
    if proc.returncode:
        sys.stderr.write("".join(tail))
        sys.exit(f"{command[:3]} failed (exit {proc.returncode})")
    return {"wall": seconds, "user": usage.ru_utime, "sys": usage.ru_stime,
            "faults": usage.ru_minflt, "stolen": _stolen() - stolen, "marks": seen,
            "stdout": stdout}


def _phases(run: dict) -> str:
    """A bilm train run's wall time by phase, from its log lines' arrival (OUR_MARKS)."""
    t = run["marks"]
    if len(t) < len(OUR_MARKS):
        return f"(log lines missing: {sorted(set(OUR_MARKS) - set(t))})"
    parts = {"start-up": t["started"], "build": t["compiling"] - t["started"],
             "first step": t["first step"] - t["compiling"],
             "other steps": t["trained"] - t["first step"], "end": run["wall"] - t["trained"]}
    return ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())


def whole_process(n: int, m: int, pairs: int, threads: int, malloc: str = "bilm") -> None:
    """The whole-process measure (module doc)."""
    import json

    import bilmtf_side

    if not bilmtf_side.available():
        sys.exit("needs bilm-tf: bash benchmarks/setup_bilmtf_env.sh")
    vocab_file = str(KJV / "vocab.txt")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTRAOP_THREADS=str(threads))
    ours_env = dict(env, BILM_MALLOC=malloc)  # "system": glibc's defaults (bilm.allocator)
    theirs_env = dict(env, PYTHONPATH=str(bilmtf_side.BILMTF_DIR), TF_USE_LEGACY_KERAS="1")
    with tempfile.TemporaryDirectory() as tmp:
        options_file = os.path.join(tmp, "options.json")  # ours: n_tokens_vocab from --vocab
        with open(options_file, "w") as f:
            json.dump(SMALL, f)
        with open(vocab_file, encoding="utf-8") as f:
            n_vocab = sum(1 for line in f if line.strip())
        theirs_file = os.path.join(tmp, "bilmtf_options.json")
        with open(theirs_file, "w") as f:
            json.dump({**SMALL, "n_tokens_vocab": n_vocab}, f)

        def ours(batches: int) -> dict:
            run = timed_process([sys.executable, "-m", "bilm.cli", "train", "--train-prefix",
                          str(KJV / "train" / "*"), "--vocab", vocab_file, "--save-dir",
                          os.path.join(tmp, "run"), "--options", options_file, "--n-batches",
                          str(batches), "--seed", "0", "--overwrite"], ours_env,
                                {k: v.format(n=batches) for k, v in OUR_MARKS.items()})
            # the in-log measure: the run's one window, batch 2 to the end
            run["in_log"] = _window_rates(os.path.join(tmp, "run", "training_log.csv"))[-1]
            return run

        def theirs(batches: int) -> dict:
            run = timed_process([sys.executable, str(HERE / "bilmtf_side.py"), "train", theirs_file,
                          "--vocab", vocab_file, "--train", str(KJV / "train" / "*"),
                          "--batches", str(batches)], theirs_env)
            # the in-process measure: median batch interval after the first 5
            run["in_log"] = json.loads(run["stdout"].strip().splitlines()[-1])["tokens_per_s"]
            return run

        tokens = SMALL["batch_size"] * SMALL["unroll_steps"]
        runs: dict[str, list[tuple[dict, dict]]] = {"bilm": [], "bilm-tf": []}
        ratios, log_ratios = [], []
        print(f"# whole processes: {n} and {m} batches of {SMALL['batch_size']} x "
              f"{SMALL['unroll_steps']}, small shape, {SMALL['n_negative_samples_batch']} "
              f"negatives, {threads} threads, bilm's malloc {malloc}; {pairs} rounds (ours N, "
              "theirs N, ours M, theirs M)")
        for k in range(pairs):
            a_n, b_n, a_m, b_m = ours(n), theirs(n), ours(m), theirs(m)
            runs["bilm"].append((a_n, a_m))
            runs["bilm-tf"].append((b_n, b_m))
            rate_a = tokens * (m - n) / (a_m["wall"] - a_n["wall"])
            rate_b = tokens * (m - n) / (b_m["wall"] - b_n["wall"])
            ratios.append(rate_a / rate_b)
            log_ratios.append(a_m["in_log"] / b_m["in_log"])
            print(f"round {k + 1}: bilm {a_n['wall']:.1f} s / {a_m['wall']:.1f} s -> "
                  f"{rate_a:,.0f} tokens/s (in-log {a_m['in_log']:,.0f}); bilm-tf "
                  f"{b_n['wall']:.1f} s / {b_m['wall']:.1f} s -> {rate_b:,.0f} tokens/s "
                  f"(in-process {b_m['in_log']:,.0f}); ratio {ratios[-1]:.2f}x "
                  f"(in-log {log_ratios[-1]:.2f}x)", flush=True)
            for side, (x, y) in (("bilm", (a_n, a_m)), ("bilm-tf", (b_n, b_m))):
                print("    " + "; ".join(
                    f"{side} {b}: user {r['user']:.1f} s, sys {r['sys']:.1f} s, "
                    f"{r['faults'] / 1e6:.2f}M page faults, stolen {r['stolen']:.1f} s"
                    for b, r in ((n, x), (m, y))), flush=True)
            for b, r in ((n, a_n), (m, a_m)):
                print(f"    bilm {b} phases: {_phases(r)}", flush=True)
        for side, pair_runs in runs.items():
            for i, batches in ((0, n), (1, m)):
                t = [x[i]["wall"] for x in pair_runs]
                print(f"{side} {batches}-batch process: min {min(t):.1f} s, median "
                      f"{statistics.median(t):.1f} s, max {max(t):.1f} s "
                      f"(max/median {max(t) / statistics.median(t):.2f}); system CPU median "
                      f"{statistics.median(x[i]['sys'] for x in pair_runs):.1f} s")
            rates = [x[1]["in_log"] for x in pair_runs]
            print(f"{side} in-log rate ({m} batches): min {min(rates):,.0f}, median "
                  f"{statistics.median(rates):,.0f}, max {max(rates):,.0f} tokens/s")
        stolen = [r["stolen"] for pair in runs["bilm"] + runs["bilm-tf"] for r in pair]
        print(f"CPU seconds the host stole per process: median {statistics.median(stolen):.1f}"
              f", max {max(stolen):.1f}")
        print(f"whole-process training ratio bilm / bilm-tf: median "
              f"{statistics.median(ratios):.2f}x (rounds: "
              f"{', '.join(f'{r:.2f}' for r in ratios)}; min {min(ratios):.2f}, max "
              f"{max(ratios):.2f}); goal >= 3x")
        print(f"in-log training ratio ({m}-batch runs): median "
              f"{statistics.median(log_ratios):.2f}x (min {min(log_ratios):.2f}, max "
              f"{max(log_ratios):.2f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=None,
                   help="batches to train (default 60; 300 with --quality)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--quality", action="store_true",
                   help="shuffled shards, then held-out perplexity (300 batches unless --batches)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=["float32", "mixed_bfloat16", "mixed_float16"],
                   default="float32", help="the options' precision (default float32)")
    p.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                   help="XLA for the LSTMs + softmax (default: the toolkit's, on at this shape)")
    p.add_argument("--vocab-size", type=int,
                   help="pad KJV's vocabulary with synthetic words to this size (e.g. the 1B "
                   "Word Benchmark's 793471): the softmax grows, the text does not")
    p.add_argument("--shape", choices=["small", "original"], default="small",
                   help="small (above) or original: the released ELMo's 4096/512 LSTMs, 2 "
                   "highways, 128 x 20 rows, 8192 negatives (for the scaling plan's step time)")
    p.add_argument("--dense", action="store_true",
                   help="dense softmax gradients and updates (the toolkit before sparse ones)")
    p.add_argument("--bilm-tf", action=argparse.BooleanOptionalAction, default=None,
                   help="bilm-tf's train() side by side (default: when set up; small shape)")
    p.add_argument("--threads", type=int, default=2, help="TF intra/inter-op threads")
    p.add_argument("--whole-process", nargs=2, type=int, metavar=("N", "M"),
                   help="time whole processes of N and M batches, both sides (module doc)")
    p.add_argument("--pairs", type=int, default=5, help="--whole-process rounds")
    p.add_argument("--malloc", choices=["bilm", "system"], default="bilm",
                   help="--whole-process: bilm's malloc setting (bilm.allocator) or glibc's "
                        "defaults (BILM_MALLOC=system), to see the difference")
    args = p.parse_args()
    if not KJV.exists():
        sys.exit(f"needs {KJV} (../shared beside the checkout)")
    if args.whole_process:
        sys.path.insert(0, str(HERE))
        whole_process(*args.whole_process, args.pairs, args.threads, args.malloc)
        return
    if args.batches is None:
        args.batches = 300 if args.quality else 60
    import tensorflow as tf

    from bilm.data import BidirectionalLMDataset
    from bilm.training import load_vocab, test, train

    sys.path.insert(0, str(HERE))
    from roofline import matmul_ceiling

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    ceiling = matmul_ceiling("float32")

    skipped = _Skipped()
    logging.getLogger("bilm").addHandler(skipped)
    logging.getLogger("bilm").setLevel(logging.INFO)
    logging.getLogger("bilm.training.loop").setLevel(logging.DEBUG)  # overflow-skipped steps
    vocab_file = str(KJV / "vocab.txt")
    if args.vocab_size:
        words = (KJV / "vocab.txt").read_text(encoding="utf-8").split()
        synthetic = [f"zzsyn{i}" for i in range(max(args.vocab_size - len(words), 0))]
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as padded:
            padded.write("\n".join(words + synthetic) + "\n")
        vocab_file = padded.name
    vocab = load_vocab(vocab_file, 50)
    shape = SMALL
    if args.shape == "original":
        from bilm.presets import preset

        shape = {**preset("original"), "dropout": SMALL["dropout"]}
    rows, steps = shape["batch_size"], shape["unroll_steps"]
    options = {**shape, "n_tokens_vocab": vocab.size, "precision": args.precision}
    if args.jit is not None:
        options["jit_compile"] = args.jit
    with tempfile.TemporaryDirectory() as tmp:
        data = BidirectionalLMDataset(str(KJV / "train" / "*"), vocab,
                                      shuffle_on_load=args.quality, seed=args.seed)
        start = time.perf_counter()
        ckpt = train(options, data, 1, os.path.join(tmp, "save"), os.path.join(tmp, "log"),
                     n_batches=args.batches, log_every=args.log_every, seed=args.seed,
                     checkpoint_every=None, checkpoint_minutes=None, progress=True,
                     sparse_updates=not args.dense)
        total = time.perf_counter() - start
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        timed = _window_rates(os.path.join(tmp, "save", "training_log.csv"))
        flops = train_flops_per_token(shape, vocab)
        jit = "default" if args.jit is None else args.jit
        print(f"# TF {tf.__version__}, {args.shape} shape, {args.batches} batches of {rows} x "
              f"{steps}, {shape['n_negative_samples_batch']} negatives, "
              f"precision {args.precision}, jit {jit}, vocabulary {vocab.size:,}, "
              f"{'dense' if args.dense else 'sparse'} softmax updates")
        rate = statistics.median(timed)
        print(f"training tokens/s (median of {len(timed)} windows, the first batch excluded): "
              f"{rate:,.0f}")
        print(f"seconds per batch (median): {rows * steps / rate:.3f}")
        steady = (args.batches - 1) * rows * steps / rate
        print(f"start-up (the train() call's time beyond {args.batches - 1} batches at that "
              f"rate: set-up, compilation, the final save): {total - steady:.1f} s")
        print(f"total {total:.1f} s, peak RSS {rss:,.0f} MB (training)")
        print(f"useful training FLOPs per token {flops / 1e6:.1f} M: {rate * flops / 1e9:.1f} "
              f"GFLOP/s, {rate * flops / 1e9 / ceiling:.1%} of this run's float32 matmul "
              f"ceiling ({ceiling:,.0f} GFLOP/s, 4096^3)")
        use_bilmtf = args.bilm_tf
        if use_bilmtf is None:
            import bilmtf_side

            use_bilmtf = bilmtf_side.available() and args.shape == "small"
        if use_bilmtf:
            theirs = bilmtf_train(options, vocab_file, args.batches, tmp)
            print(f"bilm-tf: {theirs['tokens_per_s']:,.0f} tokens/s (median of "
                  f"{len(theirs['seconds_per_batch'])} batches after its first 5), start-up "
                  f"{theirs['startup_s']:.1f} s, peak RSS {theirs['peak_rss_mb']:,.0f} MB; "
                  f"ratio {rate / theirs['tokens_per_s']:.2f}x")
        if args.precision == "mixed_float16":
            print(f"steps skipped on float16 overflow: {skipped.skipped}")
        if args.quality:
            ppl = test(os.path.join(tmp, "save", "options.json"), ckpt,
                       BidirectionalLMDataset(str(KJV / "heldout" / "*"), vocab, test=True),
                       batch_size=64)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"held-out perplexity after {args.batches} batches: {ppl:.1f} "
                  "(bilm-tf: 167.8; target <= 176)")
            print(f"peak RSS {rss:,.0f} MB (training + test)")


if __name__ == "__main__":
    main()
