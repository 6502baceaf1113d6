"""Training on several workers (TensorFlow's MultiWorkerMirroredStrategy over TF_CONFIG).

The fast tests check the pieces in-process: each worker builds only its rows of the global
batch (and those rows are the global batch's), cluster detection, ``bilm launch``'s
TF_CONFIG. The slow ones run real workers on localhost through the command line, as a
cluster would: two workers equal one process with the same global batch; only the chief
writes; SIGTERM to one worker stops every worker at one consistent checkpoint and the
resumed run is the uninterrupted one; a worker killed with SIGKILL makes its peer stop
within the collective timeout with a one-line message, and relaunching resumes.

    python -m pytest -m slow tests/test_multiworker.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_TWO_LAYER_OPTIONS

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
ENV.pop("TF_CONFIG", None)
TEXT = ("the light was good .\nand god saw the light .\nthe earth was without form .\n"
        "and darkness was upon the face of the deep .\nand god called the light day .\n")
OPTIONS = {**TINY_TWO_LAYER_OPTIONS,
           "unroll_steps": 5, "n_negative_samples_batch": 8, "dropout": 0.0}
N_BATCHES = 40


# --- fast: the pieces -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("mw")
    (d / "corpus").mkdir()
    for k in range(2):
        (d / "corpus" / f"s.{k}.txt").write_text(TEXT * 30)
    words = sorted(set(TEXT.split()))
    (d / "vocab.txt").write_text("\n".join(["<S>", "</S>", "<UNK>", *words]) + "\n")
    return {"dir": d, "corpus": d / "corpus" / "s.*", "vocab": d / "vocab.txt"}


@pytest.mark.parametrize("kind", ["stream", "sentences"])
def test_each_worker_builds_its_own_rows_of_the_global_batch(corpus, kind):
    from bilm.data import BidirectionalLMDataset, UnicodeCharsVocabulary
    from bilm.data.sentences import SentenceDataset

    vocab = UnicodeCharsVocabulary(str(corpus["vocab"]), 10)

    def batches(rows=None, history=()):
        if kind == "stream":
            data = BidirectionalLMDataset(str(corpus["corpus"]), vocab, seed=3)
            it = data.iter_batches(8, 5, history, rows=rows)
        else:
            data = SentenceDataset(str(corpus["corpus"]), vocab, seed=3)
            it = data.iter_batches(8, 0, history, rows=rows)
        return [next(it) for _ in range(6)]

    # a resumed run: 3 batches of another geometry read before, then 8-row batches
    history = [(3, 4, 5 if kind == "stream" else 0)]
    for hist in ((), history):
        whole = batches(None, hist)
        parts = [batches((start, start + 4), hist) for start in (0, 4)]
        for k, batch in enumerate(whole):
            assert set(parts[0][k]) == set(batch)
            for key, value in batch.items():
                if value is None:
                    continue
                joined = np.concatenate([parts[0][k][key], parts[1][k][key]])
                np.testing.assert_array_equal(joined, value, err_msg=f"{kind} {key} {k}")
    assert whole[0]["token_ids"].shape[0] == 8 and whole[0]["token_ids"].any()


def test_cluster_detection(monkeypatch):
    from bilm.training.distribute import cluster_configured
    from bilm.training.launch import free_ports, tf_config

    for var in ("TF_CONFIG", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(var, raising=False)
    assert cluster_configured() is None
    ports = free_ports(3)
    assert len(set(ports)) == 3
    config = json.loads(tf_config(ports, 2))
    assert config == {"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                      "task": {"type": "worker", "index": 2}}
    monkeypatch.setenv("TF_CONFIG", tf_config(ports, 0))
    assert cluster_configured() == "tf_config"
    monkeypatch.setenv("TF_CONFIG", "not json")
    with pytest.raises(ValueError, match="TF_CONFIG"):
        cluster_configured()
    monkeypatch.delenv("TF_CONFIG")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")  # one task: one machine
    assert cluster_configured() is None
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    assert cluster_configured() == "slurm"


def test_the_preemption_watcher_ending_with_the_cluster_prints_no_traceback():
    """TensorFlow's PeerTerminationWatcher thread dies with UnavailableError when the chief
    (the coordination service) exits first: at the end of a run that is noise (it made CI's
    2-worker run print a traceback). Other threads' errors still reach the previous hook."""
    import threading

    import tensorflow as tf

    from bilm.training.hooks import _quiet_peer_watcher

    previous, printed = threading.excepthook, []
    try:
        threading.excepthook = lambda args: printed.append((args.thread.name, args.exc_type))
        _quiet_peer_watcher()

        def fail(error):
            raise error

        for name, error in (("PeerTerminationWatcher-1",
                             tf.errors.UnavailableError(None, None, "Socket closed")),
                            ("another-thread", RuntimeError("a real bug"))):
            thread = threading.Thread(target=fail, args=(error,), name=name)
            thread.start()
            thread.join()
    finally:
        threading.excepthook = previous
    assert printed == [("another-thread", RuntimeError)], printed


# --- slow: real workers through the command line --------------------------------------------


def bilm(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bilm.cli", *map(str, args)],
                          capture_output=True, text=True, env=env or ENV, timeout=timeout)


def popen(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bilm.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or ENV)


def saved(ckpt: Path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    return {n: tf.train.load_variable(str(ckpt), n) for n, _ in tf.train.list_variables(
        str(ckpt)) if n.startswith("variables/")}


def wait_for(path: Path, procs: list[subprocess.Popen], seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def runs(corpus) -> dict:
    """The same global batch of 8 rows: one process, and two workers of 4 rows each."""
    d = corpus["dir"]
    for name, batch_size in (("one", 8), ("worker", 4)):
        (d / f"{name}.json").write_text(json.dumps({**OPTIONS, "batch_size": batch_size}))
    common = ["--train-prefix", corpus["corpus"], "--vocab", corpus["vocab"], "--n-batches",
              N_BATCHES, "--checkpoint-every", 10, "--checkpoint-minutes", 0, "--seed", 7,
              "--no-jit", "--collective-timeout", 30]
    p = {**corpus, "train_one": ["train", *common, "--options", d / "one.json"],
         "train_worker": ["train", *common, "--options", d / "worker.json"]}
    r = bilm("-q", *p["train_one"], "--save-dir", d / "one")
    assert r.returncode == 0, r.stderr
    tmp = d / "tmp"
    tmp.mkdir()
    p["env"] = {**ENV, "TMPDIR": str(tmp)}  # the non-chief's private files go here
    start = time.monotonic()
    r = bilm("launch", "--workers", 2, "--", *p["train_worker"], "--save-dir", d / "two",
             env=p["env"])
    p["two_seconds"] = time.monotonic() - start
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    p["tmp"], p["one"], p["two"] = tmp, d / "one", d / "two"
    return p


@pytest.mark.slow
def test_two_workers_equal_one_process_with_the_same_global_batch(runs):
    one, two = saved(runs["one"] / f"model-{N_BATCHES}"), saved(runs["two"] / f"model-{N_BATCHES}")
    assert sorted(one) == sorted(two)
    diff = max(float(np.abs(one[n] - two[n]).max()) for n in one)
    moved = max(float(np.abs(one[n]).max()) for n in one)
    print(f"2 workers vs 1 process after {N_BATCHES} batches: max abs difference {diff:.3g} "
          f"(max value {moved:.3g}); 2 workers took {runs['two_seconds']:.1f} s")
    assert diff <= 1e-6, diff
    # and the exported weights (what users take away), dataset by dataset
    import h5py

    exported = []
    for name in ("one", "two"):
        out = runs["dir"] / f"export-{name}" / "weights.hdf5"
        r = bilm("-q", "export", "--save-dir", runs[name], out)
        assert r.returncode == 0, r.stderr
        with h5py.File(out) as f:
            exported.append({})
            f.visititems(lambda n, o: exported[-1].__setitem__(n, o[...])
                         if isinstance(o, h5py.Dataset) else None)
    assert sorted(exported[0]) == sorted(exported[1]) and len(exported[0]) > 10
    for key, value in exported[0].items():
        np.testing.assert_allclose(exported[1][key], value, rtol=0, atol=1e-6, err_msg=key)
    # the run's record: tokens counted for the global batch, one history
    state = json.loads((runs["two"] / "run.json").read_text())
    reference = json.loads((runs["one"] / "run.json").read_text())
    assert state["segments"] == reference["segments"]
    log = (runs["two"] / "training_log.csv").read_text().splitlines()
    assert len(log) == len((runs["one"] / "training_log.csv").read_text().splitlines())


@pytest.mark.slow
def test_only_the_chief_writes(runs):
    def listing(d: Path) -> list[str]:
        return sorted(str(p.relative_to(d)) for p in d.rglob("*")
                      if "events.out" not in p.name)  # TensorBoard names hold host and time

    assert listing(runs["two"]) == listing(runs["one"])
    assert not list(runs["tmp"].iterdir()), list(runs["tmp"].iterdir())  # cleaned up


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_all_at_one_checkpoint_then_resume_is_exact(runs):
    d = runs["dir"] / "preempted"
    procs = _two_workers(runs, d)
    procs[1].send_signal(signal.SIGTERM)  # the scheduler preempts one machine
    outs = [p.communicate(timeout=120) for p in procs]
    codes = [p.returncode for p in procs]
    for _, err in outs:
        assert "Traceback" not in err, err
    lasts = [err.strip().splitlines()[-1] for _, err in outs]
    print(f"exit codes {codes}; last lines {lasts}")
    assert codes == [143, 143], (codes, outs[0][1][-2000:], outs[1][1][-2000:])
    # both stopped at the same batch, at the one checkpoint the chief wrote
    steps = sorted(int(p.stem.split("-")[1]) for p in d.glob("model-*.index"))
    assert steps and 10 < steps[-1] < N_BATCHES, steps
    assert lasts[0] == lasts[1] == f"bilm: stopped by SIGTERM; saved {d / f'model-{steps[-1]}'}"
    r = bilm("launch", "--workers", 2, "--", "resume", "--save-dir", d, env=runs["env"])
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = saved(runs["two"] / f"model-{N_BATCHES}"), saved(d / f"model-{N_BATCHES}")
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.slow
def test_a_worker_killed_stops_the_others_in_bounded_time_then_relaunch_resumes(runs):
    d = runs["dir"] / "lost"
    procs = _two_workers(runs, d)
    procs[1].kill()
    killed = time.monotonic()
    _, err = procs[0].communicate(timeout=180)
    waited = time.monotonic() - killed
    procs[1].communicate()
    last = err.strip().splitlines()[-1]
    print(f"the surviving worker stopped {waited:.1f} s after its peer was killed: {last}")
    assert procs[0].returncode == 2, err[-3000:]  # one line, no traceback
    assert "Traceback" not in err and "Graph execution error" not in err, err
    assert last.startswith("bilm: error: the cluster lost a worker at batch "), last
    assert f"The last checkpoint is {d / 'model-'}" in last and "bilm resume" in last, last
    assert waited < 30 + 60, waited  # the collective timeout, and some start-up slack
    r = bilm("launch", "--workers", 2, "--", "resume", "--save-dir", d, env=runs["env"])
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = saved(runs["two"] / f"model-{N_BATCHES}"), saved(d / f"model-{N_BATCHES}")
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def _two_workers(runs: dict, save_dir: Path, *flags) -> list[subprocess.Popen]:
    """Two training workers on localhost (TF_CONFIG as a cluster gives it), once the first
    checkpoint (batch 10) is written."""
    from bilm.training.launch import free_ports, tf_config

    ports = free_ports(2)
    procs = [popen(*runs["train_worker"], "--save-dir", save_dir, *flags,
                   env={**runs["env"], "TF_CONFIG": tf_config(ports, i)}) for i in range(2)]
    wait_for(save_dir / "model-10.index", procs)
    return procs


@pytest.mark.slow
def test_a_frozen_worker_stops_the_others_within_the_collective_timeout(runs):
    """A machine that stops answering without closing its connections (SIGSTOP here: a hung
    host, a network partition): only the collective timeout can tell."""
    d = runs["dir"] / "frozen"
    procs = _two_workers(runs, d, "--collective-timeout", 10)
    try:
        procs[1].send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        _, err = procs[0].communicate(timeout=120)
        waited = time.monotonic() - frozen
    finally:
        procs[1].kill()
        procs[1].communicate()
    last = err.strip().splitlines()[-1]
    print(f"the other worker stopped {waited:.1f} s after its peer froze: {last}")
    assert procs[0].returncode == 2, err[-3000:]
    assert last.startswith("bilm: error: the cluster lost a worker at batch "), last
    assert waited < 10 + 30, waited  # the timeout, and slack for a slow machine
