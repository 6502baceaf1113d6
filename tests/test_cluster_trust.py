"""A cluster a user can trust: its shape never changes the result, and it reports once.

- An unseeded cluster run shares the chief's seed (weights, dropout, negatives, data order):
  ``bilm launch`` without ``--seed`` equals one process with the seed run.json records.
- Every dropout mask is a function of the seed, the step and the global row: N replicas x b
  rows train as one replica x N*b rows with the presets' dropout (LSTM and Transformer), on
  logical CPU replicas and on two workers.
- ``bilm launch`` shows the chief's output as it is, and of the other workers only their
  warnings and errors (and the last lines of one that fails), each line prefixed
  ``[worker N] ``.

    python -m pytest -m slow tests/test_cluster_trust.py
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT, TINY_PAIRED_LSTM_OPTIONS, TINY_PAIRED_TRANSFORMER_OPTIONS

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
       "PYTHONPATH": str(ROOT)}
ENV.pop("TF_CONFIG", None)


# --- fast: dropout masks follow the global row ------------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
def test_a_replicas_dropout_mask_is_its_rows_of_the_global_mask(jit):
    from bilm.nn.dropout import stateless_dropout

    seed = tf.constant([3, 7], tf.int64)
    x = tf.reshape(tf.range(2 * 5 * 6 * 3, dtype=tf.float32) + 1.0, [2, 5, 6, 3])

    def drop(x, first=None, total=None, axis=2):
        rows = None if total is None else (first, total)
        return stateless_dropout(x, 0.3, seed, rows, axis=axis)

    fn = tf.function(drop, jit_compile=True) if jit else drop
    if not jit:  # one replica: TensorFlow's own stateless dropout, bit for bit
        whole = drop(x)
        np.testing.assert_array_equal(
            whole, tf.nn.experimental.stateless_dropout(x, rate=0.3, seed=seed))
        assert 0 < int(tf.reduce_sum(tf.cast(whole == 0, tf.int32))) < x.shape.num_elements()
    for axis in (2, 1):  # rows on the LSTM streams' axis 2; on the sentences' axis 1
        whole = fn(x, axis=axis)
        b = x.shape[axis] // 2 if axis == 2 else 2
        total = x.shape[axis]
        starts = range(0, total, b)
        parts = [fn(tf.gather(x, tf.range(s, min(s + b, total)), axis=axis),
                    tf.constant(s, tf.int32), total, axis) for s in starts]
        np.testing.assert_array_equal(tf.concat(parts, axis=axis), whole, err_msg=str(axis))


def _lm(encoder: str, jit: bool):
    from bilm.model.lm import LanguageModel
    from bilm.options import BiLMOptions

    if encoder == "lstm":
        options = {**TINY_PAIRED_LSTM_OPTIONS, "dropout": 0.3}
    else:
        paired = TINY_PAIRED_TRANSFORMER_OPTIONS
        options = {**paired, "encoder": {**paired["encoder"], "dropout": 0.3,
                                         "input_dropout": 0.3},
                   "dropout": 0.3}
    tf.keras.utils.set_random_seed(0)
    return LanguageModel(BiLMOptions.from_dict({
        **options, "n_tokens_vocab": 20, "n_negative_samples_batch": 6, "batch_size": 4,
        "unroll_steps": 5}), jit_compile=jit)


def _batch(lm, rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if lm.protocol == "sentences":
        lengths = rng.integers(3, 8, rows).astype(np.int32)
        ids = rng.integers(3, 20, (rows, 8)).astype(np.int32)
        ids[np.arange(8)[None, :] >= lengths[:, None]] = 0
        chars = rng.integers(1, 260, (rows, 8, 10)).astype(np.int32)
        chars[ids == 0] = 0
        return {"token_ids": ids, "tokens_characters": chars, "lengths": lengths}
    batch = {}
    for s in ("", "_reverse"):
        batch["token_ids" + s] = rng.integers(0, 20, (rows, 5)).astype(np.int32)
        batch["next_token_id" + s] = rng.integers(0, 20, (rows, 5)).astype(np.int32)
        batch["tokens_characters" + s] = rng.integers(0, 261, (rows, 5, 10)).astype(np.int32)
    return batch


@pytest.mark.parametrize("encoder,jit", [
    ("lstm", False), ("transformer", False),
    pytest.param("lstm", True, marks=pytest.mark.slow)])  # XLA: minutes of compiling
def test_replica_rows_give_the_global_batchs_dropout(encoder, jit):
    """Two replicas' halves (each told its rows of the global batch) sum to the gradient of
    the whole batch on one replica, with dropout everywhere (the LSTM's layer inputs and top
    layer; the Transformer's input, attention probabilities, residual branches and feed
    forward)."""
    lm = _lm(encoder, jit)
    variables = lm.trainable_variables
    seed = tf.constant([5, 1], tf.int64)
    whole = _batch(lm, 8)
    # streams: the mean loss (halves: the mean of the halves); sentences: summed NLL
    scale = 1.0 if encoder == "transformer" else 0.5
    loss, _, grads = lm.train_gradients({k: tf.constant(v) for k, v in whole.items()}, None,
                                        seed, variables)
    parts = []
    for first in (0, 4):
        half = {k: tf.constant(v[first : first + 4]) for k, v in whole.items()}
        parts.append(lm.train_gradients(half, None, seed, variables, scale=scale,
                                        rows=(tf.constant(first), 8)))
    summed = [tf.convert_to_tensor(a) + tf.convert_to_tensor(b)
              for a, b in zip(parts[0][2], parts[1][2], strict=True)]
    if encoder == "lstm":
        assert float(loss) == pytest.approx((float(parts[0][0]) + float(parts[1][0])) / 2,
                                            rel=1e-6)
    for v, g, s in zip(variables, grads, summed, strict=True):
        np.testing.assert_allclose(s, tf.convert_to_tensor(g), rtol=1e-5, atol=1e-6,
                                   err_msg=v.path)
    # and the masks did drop something: without rows, a half draws its own masks
    alone = lm.train_gradients({k: tf.constant(v[4:]) for k, v in whole.items()}, None, seed,
                               variables, scale=scale)
    assert max(float(np.abs(tf.convert_to_tensor(a) - tf.convert_to_tensor(b)).max())
               for a, b in zip(alone[2], parts[1][2], strict=True)) > 1e-4


# --- fast: the chief's seed reaches every worker -------------------------------------------------

CHIEF_VALUE = """
import json, os, sys
from bilm.training.distribute import chief_value, make_strategy
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
strategy = make_strategy(collective_timeout=60)
print("agreed", chief_value(strategy, 1_000_000_007 + 2**40 * index), flush=True)
"""


@pytest.mark.slow
def test_every_worker_gets_the_chiefs_value(tmp_path):
    """What an unseeded worker picked for itself is replaced by the chief's pick (train()
    does this with the seed before it builds the data, the weights and the trainer)."""
    from bilm.training.launch import free_ports, tf_config

    ports = free_ports(2)
    procs = [subprocess.Popen([sys.executable, "-c", CHIEF_VALUE], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**ENV, "TF_CONFIG": tf_config(ports, i)}) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert out.split() == ["agreed", "1000000007"], (out, err[-3000:])


# --- fast: bilm launch's output -----------------------------------------------------------------

FAKE_WORKER = textwrap.dedent('''
    """A stand-in for ``bilm train`` under bilm launch: what a worker writes."""
    import json, logging, os, sys
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    log = logging.getLogger("bilm.training.loop")
    log.info("seed 12345")
    log.info("train: 1/2 batches (worker %d)", index)
    log.warning("a warning of worker %d\\nits second line", index)
    print(f"checkpoint: run/model-2 (worker {index})", flush=True)
    if index == 2:  # dies without a word at WARNING or above: only its last lines tell
        log.info("about to fail")
        print("some chatter", file=sys.stderr)
        print("the last words of worker 2", file=sys.stderr, flush=True)
        os._exit(3)
    if index == 1:
        try:
            raise RuntimeError("a bug on worker 1")
        except RuntimeError:
            log.exception("worker 1 failed")
        print("bilm: error: something the user can fix", file=sys.stderr)
    log.info("done (worker %d)", index)
''')


def _launch(tmp_path: Path, n_workers: int) -> subprocess.CompletedProcess:
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    code = ("import sys; from bilm.training.launch import launch_local; "
            f"sys.exit(launch_local({n_workers}, [], grace=30, "
            f"program=[sys.executable, {str(script)!r}]))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=ENV, timeout=120)


def test_launch_shows_the_chief_as_it_is_and_only_the_others_warnings_prefixed(tmp_path):
    r = _launch(tmp_path, 2)
    assert r.returncode == 0, r.stderr
    # the chief: every line, unchanged, on its own stream
    assert r.stdout.splitlines() == ["checkpoint: run/model-2 (worker 0)"], r.stdout
    chief = [line for line in r.stderr.splitlines() if not line.startswith("[worker ")]
    assert [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in chief] == [
        "INFO bilm.training.loop: seed 12345",
        "INFO bilm.training.loop: train: 1/2 batches (worker 0)",
        "WARNING bilm.training.loop: a warning of worker 0", "its second line",
        "INFO bilm.training.loop: done (worker 0)"], r.stderr
    # worker 1: its warning (both lines), its logged traceback and its error line, prefixed
    other = [line[len("[worker 1] "):] for line in r.stderr.splitlines()
             if line.startswith("[worker 1] ")]
    text = "\n".join(other)
    assert "WARNING bilm.training.loop: a warning of worker 1" in text, r.stderr
    assert "its second line" in other
    assert "ERROR bilm.training.loop: worker 1 failed" in text
    assert "Traceback (most recent call last):" in other
    assert "RuntimeError: a bug on worker 1" in other
    assert "bilm: error: something the user can fix" in other
    assert "seed 12345" not in text and "batches" not in text and "done" not in text, other
    assert len(chief) + len(other) == len(r.stderr.splitlines()), r.stderr


def test_launch_shows_the_last_lines_of_a_worker_that_fails(tmp_path):
    r = _launch(tmp_path, 3)
    assert r.returncode == 3, r.stderr
    lines = r.stderr.splitlines()
    two = [line[len("[worker 2] "):] for line in lines if line.startswith("[worker 2] ")]
    failed = next(k for k, line in enumerate(two) if "exit code 3" in line)
    # after the line saying so: what it wrote last (the lines not shown before)
    tail = two[failed + 1 :]
    assert tail[-2:] == ["some chatter", "the last words of worker 2"], two
    assert tail[-3].endswith("INFO bilm.training.loop: about to fail"), two
    assert "some chatter" not in two[:failed], two
    assert "[worker 2] checkpoint: run/model-2 (worker 2)" not in lines  # stdout: not a failure


CHATTY_WORKER = textwrap.dedent('''
    """Writes far more than a pipe holds, then waits for a signal, as a training worker.
       Each line in one write, as logging writes a record (print writes the newline apart:
       the launcher's lines could land in between, on the stream it shares with the chief)."""
    import json, os, signal, sys, time
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]

    def stop(signum, frame):
        sys.stderr.write(f"bilm: stopped by SIGTERM; saved run/model-{index}\\n")
        sys.exit(143)

    signal.signal(signal.SIGTERM, stop)
    for k in range(20000):  # ~1 MB on each stream
        sys.stdout.write(f"chatter {k} " + "x" * 40 + "\\n")
        sys.stderr.write(f"12:00:00 INFO bilm.training.loop: batch {k} " + "x" * 20 + "\\n")
    sys.stdout.flush()
    sys.stderr.write("12:00:00 WARNING bilm.training.loop: ready\\n")
    sys.stderr.flush()
    time.sleep(120)
''')


def test_launch_drains_the_pipes_and_forwards_signals(tmp_path):
    script = tmp_path / "chatty_worker.py"
    script.write_text(CHATTY_WORKER)
    code = ("import sys; from bilm.training.launch import launch_local; "
            f"sys.exit(launch_local(2, [], grace=30, program=[sys.executable, {str(script)!r}]))")
    with open(tmp_path / "stdout.txt", "w") as stdout:
        launcher = subprocess.Popen([sys.executable, "-c", code], stdout=stdout,
                                    stderr=subprocess.PIPE, text=True, env=ENV)
    # each worker says it is ready once it has written its megabytes: worker 1's could only
    # be written if the launcher drained its pipes
    ready, lines, both = "12:00:00 WARNING bilm.training.loop: ready", [], threading.Event()

    def read() -> None:
        waiting = {ready, f"[worker 1] {ready}"}
        for line in launcher.stderr:
            lines.append(line.rstrip("\n"))
            waiting.discard(lines[-1])
            if not waiting:
                both.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert both.wait(timeout=120), lines[-5:]
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=60)
    finally:
        launcher.kill()
    reader.join(timeout=10)
    err, out = "\n".join(lines), (tmp_path / "stdout.txt").read_text()
    assert launcher.returncode == 143, err[-2000:]
    assert "bilm: stopped by SIGTERM; saved run/model-0" in err.splitlines()
    assert "[worker 1] bilm: stopped by SIGTERM; saved run/model-1" in err.splitlines()
    assert out.count("chatter") == 20000 and "[worker 1] chatter" not in out  # the chief's
    assert "[worker 1] 12:00:00 INFO" not in err


# --- slow: real workers and replicas --------------------------------------------------------


def bilm(*args, env=None, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bilm.cli", *map(str, args)],
                          capture_output=True, text=True, env=env or ENV, timeout=timeout)


def saved(ckpt: Path) -> dict[str, np.ndarray]:
    return {n: tf.train.load_variable(str(ckpt), n) for n, _ in tf.train.list_variables(
        str(ckpt)) if n.startswith("variables/")}


N_BATCHES = 3


@pytest.fixture(scope="module")
def unseeded_launch(kjv, tmp_path_factory) -> dict:
    """``bilm launch`` of two workers of 4 rows, the tiny preset (dropout 0.1) and no seed;
    then one process of 8 rows with the seed the run recorded."""
    d = tmp_path_factory.mktemp("unseeded")
    common = ["train", "--train-prefix", kjv / "train" / "*", "--vocab", kjv / "vocab.txt",
              "--preset", "tiny", "--n-batches", N_BATCHES, "--checkpoint-minutes", 0,
              "--no-jit", "--collective-timeout", 120]
    start = time.monotonic()
    launched = bilm("launch", "--workers", 2, "--", *common, "--batch-size", 4,
                    "--save-dir", d / "two", env={**ENV, "TMPDIR": str(d)})
    seconds = time.monotonic() - start
    assert launched.returncode == 0, launched.stderr[-3000:]
    seed = json.loads((d / "two" / "run.json").read_text())["seed"]
    one = bilm(*common, "--batch-size", 8, "--seed", seed, "--save-dir", d / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    return {"dir": d, "launched": launched, "seed": seed, "seconds": seconds}


@pytest.mark.slow
def test_an_unseeded_launch_shares_the_chiefs_seed_and_equals_one_process(unseeded_launch):
    d, seed = unseeded_launch["dir"], unseeded_launch["seed"]
    err = unseeded_launch["launched"].stderr
    seeds = re.findall(r"INFO bilm\.training\.loop: seed (\d+)$", err, re.M)
    assert seeds == [str(seed)], (seeds, seed)  # logged once, the seed run.json records
    state = json.loads((d / "two" / "run.json").read_text())
    assert state["data_seed"] == seed
    one, two = saved(d / "one" / f"model-{N_BATCHES}"), saved(d / "two" / f"model-{N_BATCHES}")
    assert sorted(one) == sorted(two)
    diff = max(float(np.abs(one[n] - two[n]).max()) for n in one)
    print(f"unseeded 2 workers (seed {seed}, dropout 0.1) vs 1 process after {N_BATCHES} "
          f"batches: max abs difference {diff:.3g}; the launch took "
          f"{unseeded_launch['seconds']:.0f} s")
    assert diff <= 1e-6, diff


@pytest.mark.slow
def test_launch_prints_the_chiefs_lines_once_and_prefixes_the_others(unseeded_launch):
    r = unseeded_launch["launched"]
    assert r.stdout.count("checkpoint: ") == 1, r.stdout
    err = r.stderr.splitlines()
    assert sum("worker 0 of 2" in line for line in err) == 1, r.stderr
    assert not any("worker 1 of 2" in line for line in err), r.stderr  # an INFO of worker 1
    progress = [line for line in err if f"{N_BATCHES}/{N_BATCHES} batches" in line]
    assert len(progress) == 1, r.stderr
    for line in err:
        assert "[worker" not in line or line.startswith("[worker 1] "), line


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["lstm", "transformer"])
def test_two_replicas_equal_one_with_the_presets_dropout(kjv, tmp_path, encoder):
    script = ROOT / "tests" / "replica_check.py"
    r = subprocess.run([sys.executable, str(script), str(kjv), str(tmp_path), encoder,
                        "preset"], capture_output=True, text=True, timeout=900, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    print(r.stdout)
    diff = float(r.stdout.split("max abs difference")[1].split()[0])
    assert diff <= 1e-6, r.stdout
    if encoder == "transformer":  # Adam's normalized rounding noise on a zero gradient
        assert float(r.stdout.split("key biases")[1].split()[0]) < 5.6e-3, r.stdout
