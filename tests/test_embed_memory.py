"""Peak memory of embed_sentences on one very long line, measured in fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import EMBED_MEMORY_OPTIONS, ROOT, make_model_files

CHILD = """
import json, sys, time
import numpy as np
import bilm
from bilm import BidirectionalLanguageModel

def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

options_file, weight_file, batch_size, n_tokens = sys.argv[1:]
model = BidirectionalLanguageModel(options_file, weight_file, stateful=False)
rng = np.random.default_rng(0)
line = [f"w{i}" for i in rng.integers(0, 2000, size=int(n_tokens))]
before = status("VmRSS")
start = time.perf_counter()
[out] = model.embed_sentences([line], batch_size=int(batch_size))
assert out.shape == (3, int(n_tokens), 512), out.shape
print(json.dumps({"before_kib": before, "peak_kib": status("VmHWM"),
                  "seconds": time.perf_counter() - start, "bilm": bilm.__file__}))
"""


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
    except OSError:  # exited
        return 0


def embed_long_line(options_file, weight_file, batch_size: int, n_tokens: int,
                    limit_kib: int | None = None, timeout: float = 300.0) -> dict:
    """Run CHILD in a fresh process (its VmHWM is the peak of this embedding alone); kill it
    as soon as its RSS passes ``limit_kib``, so a regression fails without eating the
    machine's memory."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(options_file), str(weight_file), str(batch_size),
         str(n_tokens)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=ROOT)
    deadline, seen = time.monotonic() + timeout, 0
    while child.poll() is None:
        seen = max(seen, rss_kib(child.pid))
        if (limit_kib is not None and seen > limit_kib) or time.monotonic() > deadline:
            child.kill()
            child.communicate()
            return {"killed": True, "peak_kib": seen}
        time.sleep(0.02)
    out, err = child.communicate()
    if child.returncode != 0 and "ResourceExhaustedError" in err:  # TF refused to allocate
        return {"killed": True, "peak_kib": seen, "error": err.strip().splitlines()[-1]}
    assert child.returncode == 0, err[-3000:]
    return {"killed": False, **json.loads(out.strip().splitlines()[-1])}


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_one_long_line_costs_what_one_row_costs(tmp_path):
    """A 10,000-token line with the default batch_size (64) must not be padded to 64 rows:
    within 2x of batch_size=1's peak RSS. (Padded, this shape asked XLA for 23 GiB at once;
    alone, it peaks near 1 GB, 0.4 GB over TensorFlow's baseline.)"""
    options_file, weight_file = make_model_files(tmp_path, EMBED_MEMORY_OPTIONS)
    one = embed_long_line(options_file, weight_file, batch_size=1, n_tokens=10_000)
    assert not one["killed"], one
    limit = 2 * one["peak_kib"]
    default = embed_long_line(options_file, weight_file, batch_size=64, n_tokens=10_000,
                              limit_kib=limit)
    print(f"batch_size=1: {one}\nbatch_size=64: {default}")
    assert not default["killed"], (
        f"batch_size=64 did not stay within {limit / 2**20:.2f} GiB (2x batch_size=1's peak "
        f"{one['peak_kib'] / 2**20:.2f} GiB): "
        + default.get("error", f"killed at {default['peak_kib'] / 2**20:.2f} GiB"))
    assert default["peak_kib"] <= limit, (one, default)
