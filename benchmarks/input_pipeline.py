"""What reading and batching cost one worker per step, at the original shape's global batch.

    python benchmarks/input_pipeline.py [--gpus 64] [--gpus-per-worker 8] [--batches 5]

bilm-tf's original run: 128 rows x 20 steps per GPU, characters padded to 50, bidirectional.
On G GPUs the global batch is 128 * G rows; every worker reads the same stream (the same
seed) and builds its own rows only (``iter_batches(rows=...)``): for each global batch this
times building

- the whole global batch (what every worker would do without row slicing), and
- one worker's rows (``--gpus-per-worker`` GPUs: 128 * that many rows),

on ``../shared/corpus/kjv/train``, in one process (the training loop's prefetch thread builds
batches while the step runs, so the cost is hidden as long as it stays below the step time).
Prints ms per global batch (median of ``--batches`` after one warm-up batch), the worker's
tokens/s of input, and peak RSS.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KJV = ROOT.parent / "shared" / "corpus" / "kjv"
ROWS_PER_GPU, STEPS, MAX_CHARS = 128, 20, 50


def _time(make, n: int) -> list[float]:
    batches = make()
    next(batches)  # warm-up: opens the first shard
    times = []
    for _ in range(n):
        start = time.perf_counter()
        batch = next(batches)
        times.append(time.perf_counter() - start)
    assert batch["token_ids"].any()
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpus", type=int, default=64, help="GPUs in the cluster (default 64)")
    p.add_argument("--gpus-per-worker", type=int, default=8,
                   help="GPUs per worker machine (default 8)")
    p.add_argument("--batches", type=int, default=5, help="timed global batches (default 5)")
    args = p.parse_args()
    if not KJV.exists():
        sys.exit(f"needs {KJV} (../shared beside the checkout)")
    from bilm.data import BidirectionalLMDataset, UnicodeCharsVocabulary

    vocab = UnicodeCharsVocabulary(str(KJV / "vocab.txt"), MAX_CHARS)
    rows = ROWS_PER_GPU * args.gpus
    own = ROWS_PER_GPU * args.gpus_per_worker

    def stream(slice_):
        data = BidirectionalLMDataset(str(KJV / "train" / "*"), vocab, shuffle_on_load=True,
                                      seed=0)
        return data.iter_batches(rows, STEPS, rows=slice_)

    print(f"# {date.today()}, {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}; global batch {rows} rows x {STEPS} steps "
          f"({args.gpus} GPUs x {ROWS_PER_GPU}), {MAX_CHARS} characters, bidirectional")
    results = {}
    for name, slice_ in (("all rows (every worker builds the global batch)", None),
                         (f"one worker's rows ({args.gpus_per_worker} GPUs: {own} rows)",
                          (0, own)),
                         (f"one GPU's rows ({ROWS_PER_GPU} rows)", (0, ROWS_PER_GPU))):
        times = _time(lambda s=slice_: stream(s), args.batches)
        ms = 1000 * statistics.median(times)
        built = rows if slice_ is None else slice_[1] - slice_[0]
        results[name] = ms
        print(f"{name}: {ms:,.0f} ms per global batch (median of {len(times)}), "
              f"{built * STEPS / (ms / 1000):,.0f} tokens/s of input built for this worker")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:,.0f} MB")
    base = next(iter(results.values()))
    for name, ms in list(results.items())[1:]:
        print(f"{name}: {base / ms:.1f}x less time than all rows")


if __name__ == "__main__":
    main()
