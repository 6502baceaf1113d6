"""A run folder a user can trust: one process owns it (the lock), a folder of the user's own
files is never cleared, a damaged vocabulary copy, checkpoint or checkpoint list is found
before use (falling back to the newest intact checkpoint), and run.json's paths work from
any folder. Library calls in-process, and the real command line in subprocesses."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bilm.evaluation import evaluate_run
from bilm.export import dump_weights
from bilm.training.run_folder import LOCK_FILE, RunBusyError, RunError, RunLock, TrainingRun
from bilm.training.runs import load_run, resume_training
from tests.conftest import TINY_ONE_LAYER_OPTIONS
from tests.test_runs import TEXT, copy_run, start

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def bilm(*args, timeout=240, cwd=None) -> subprocess.CompletedProcess:
    if "-q" in args:  # a flag of bilm's own, before the command
        args = ("-q", *(a for a in args if a != "-q"))
    return subprocess.run([sys.executable, "-m", "bilm.cli", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=timeout, cwd=cwd)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("corpus")
    (d / "train").mkdir()
    for k in range(2):
        (d / "train" / f"shard.{k}.txt").write_text(TEXT * 20)
    (d / "heldout.txt").write_text(TEXT * 2)
    words = sorted(set(TEXT.split()))
    (d / "vocab.txt").write_text("\n".join(["<S>", "</S>", "<UNK>", *words]) + "\n")
    (d / "tiny.json").write_text(json.dumps({
        **TINY_ONE_LAYER_OPTIONS,
        "batch_size": 4, "unroll_steps": 5, "n_negative_samples_batch": 8}))
    return {"dir": d, "train": d / "train" / "shard.*", "vocab": d / "vocab.txt",
            "heldout": d / "heldout.txt", "options": d / "tiny.json"}


@pytest.fixture(scope="module")
def run3(corpus, tmp_path_factory) -> Path:
    """A 3-batch run saved at every batch: model-2 and model-3 on disk."""
    save = tmp_path_factory.mktemp("run3") / "run"
    start(corpus, save, n_batches=3, checkpoint_every=1)
    assert (save / "model-2.index").exists() and (save / "model-3.index").exists()
    return save


@pytest.fixture(scope="module")
def reference(run3) -> dict:
    """The perplexity and exported weights of model-2 and model-3, read before any damage."""
    out = {}
    for step in (2, 3):
        loaded = load_run(str(run3), checkpoint=str(run3 / f"model-{step}"))
        out[step] = {v.name: v.numpy() for v in loaded.lm.encoder.weights}
    return out


# -- items 4, 5: one process owns a run folder ------------------------------------------------

HOLDER = """
import sys, time
from bilm.training.run_folder import RunLock
lock = RunLock(sys.argv[1], "bilm train")
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def hold_lock(folder: Path) -> subprocess.Popen:
    """A process holding ``folder``'s lock, as a training would (no TensorFlow: quick)."""
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE,
                         text=True, env=ENV)
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.mark.slow
def test_a_second_process_is_refused_while_one_owns_the_folder(corpus, run3, tmp_path):
    new = tmp_path / "new"
    holder = hold_lock(new)
    try:
        with pytest.raises(RunBusyError, match=rf"in use by bilm train \(pid {holder.pid} on "):
            start(corpus, new, n_batches=1)
        assert [p.name for p in new.iterdir()] == [LOCK_FILE]  # nothing written
        # the command line: one line naming the owner, before TensorFlow starts
        r = bilm("train", "--train-prefix", corpus["train"], "--vocab", corpus["vocab"],
                 "--options", corpus["options"], "--n-batches", 1, "--save-dir", new)
        assert f"pid {holder.pid}" in one_line_error(r)
        assert [p.name for p in new.iterdir()] == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()
    # resume of a folder that another process trains into (item 5)
    run = copy_run(run3, tmp_path / "busy")
    before = snapshot(run)
    holder = hold_lock(run)
    try:
        with pytest.raises(RunBusyError, match="in use by"):
            resume_training(str(run), n_batches=4, progress=False)
        r = bilm("resume", "--save-dir", run, "--n-batches", 4)
        assert "in use by bilm train" in one_line_error(r)
    finally:
        holder.kill()  # kill -9: the kernel frees the lock; the stale file blocks nothing
        holder.wait()
    assert {k: v for k, v in snapshot(run).items() if k != LOCK_FILE} == before
    assert resume_training(str(run), n_batches=4, progress=False).endswith("model-4")
    assert not (run / LOCK_FILE).exists()  # released (and removed) at the end


def test_the_lock_is_reentrant_in_one_process_and_released_on_errors(tmp_path):
    lock = RunLock(tmp_path, "bilm train")
    with lock, pytest.raises(RunBusyError):
        RunLock(tmp_path, "bilm resume").acquire()  # another holder, even in this process
    with RunLock(tmp_path, "bilm resume"):  # released: free again
        pass
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.slow
def test_two_trainings_into_one_new_folder_at_once(corpus, tmp_path):
    """Two `bilm train` started together into one new folder: one trains, the other gets one
    line naming it, and the folder holds one run's files only (items 4 and 5)."""
    save = tmp_path / "run"
    args = ["train", "--train-prefix", corpus["train"], "--vocab", corpus["vocab"],
            # more batches than any machine trains before the SIGTERM below: the winner must
            # still be training then (with 5,000 a slow resume let it finish first in CI)
            "--options", corpus["options"], "--n-batches", 10**7, "--checkpoint-every", 5,
            "--no-jit", "--save-dir", save]
    procs = [subprocess.Popen([sys.executable, "-m", "bilm.cli", *map(str, args), "--seed",
                               str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=ENV) for seed in (1, 2)]
    # a resume while the winner trains
    deadline = time.monotonic() + 200
    while not (save / "model-5.index").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    r = bilm("resume", "--save-dir", save)
    for p in procs:  # then stop the winner (it saves and exits 128 + SIGTERM)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    outs = [(p.wait(timeout=240), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in outs)
    assert codes == [2, 143], outs
    loser = next(err for code, _, err in outs if code == 2)
    winner_seed = 1 if outs[0][0] == 143 else 2
    assert "in use by" in loser and "Traceback" not in loser
    assert "in use by bilm train" in one_line_error(r)  # resume refused while it trains
    state = json.loads((save / "run.json").read_text())
    assert state["seed"] == winner_seed
    rows = (save / "training_log.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in rows[1:]] == sorted(
        {int(line.split(",")[0]) for line in rows[1:]})  # one run's rows, once each


# -- item 6: a folder of the user's files is not a run ----------------------------------------

def test_a_folder_of_the_users_files_is_refused_and_left_untouched(corpus, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "options.json").write_text('{"mine": true}')
    (folder / "training_log.csv").write_text("my notes\n")
    (folder / "notes.txt").write_text("keep me")
    before = snapshot(folder)
    with pytest.raises(RunError, match=r"not empty and holds no bilm run \(notes.txt, "
                                       r"options.json, training_log.csv\)"):
        start(corpus, folder, n_batches=1)
    r = bilm("train", "--train-prefix", corpus["train"], "--vocab", corpus["vocab"],
             "--options", corpus["options"], "--n-batches", 1, "--save-dir", folder)
    assert "holds no bilm run" in one_line_error(r)
    assert snapshot(folder) == before


@pytest.mark.slow
def test_an_earlier_start_without_checkpoint_is_still_replaced(corpus, tmp_path):
    """A folder holding only what an earlier start wrote (run.json, no checkpoint) is ours to
    clear, and files of the user's beside it survive."""
    folder = tmp_path / "again"
    folder.mkdir()
    (folder / "run.json").write_text('{"seed": 5}')
    (folder / "options.json").write_text("{}")
    (folder / "notes.txt").write_text("keep me")
    start(corpus, folder, n_batches=1)
    assert (folder / "notes.txt").read_text() == "keep me"
    assert json.loads((folder / "run.json").read_text())["seed"] == 3


# -- item 8: the run's vocabulary copy is checked against the run's record --------------------

@pytest.mark.parametrize("damage", ["swap", pytest.param("truncate", marks=pytest.mark.slow)])
def test_a_damaged_vocabulary_copy_is_refused(run3, corpus, tmp_path, damage):
    run = copy_run(run3, tmp_path / "run")
    vocab = run / "vocab.txt"
    lines = vocab.read_text().splitlines(keepends=True)
    if damage == "swap":
        lines[4], lines[5] = lines[5], lines[4]
    else:
        lines = lines[:-3]
    vocab.write_text("".join(lines))
    before = snapshot(run)
    for call in (lambda: evaluate_run(str(run), str(corpus["heldout"]), progress=False),
                 lambda: resume_training(str(run), n_batches=4, progress=False)):
        with pytest.raises(RunError, match="not the vocabulary this run was trained with"):
            call()
    r = bilm("evaluate", "--save-dir", run, "--test-prefix", corpus["heldout"], "--batch-size",
             4)
    assert "vocab.txt is not the vocabulary" in one_line_error(r)
    assert snapshot(run) == before  # run.json's record is not rewritten from the damaged file


# -- items 9, 10: damaged checkpoints and checkpoint lists ------------------------------------

def _data_file(run: Path, step: int) -> Path:
    return next(run.glob(f"model-{step}.data-*"))


def _flip(path: Path, where: float) -> None:
    raw = bytearray(path.read_bytes())
    raw[int(len(raw) * where)] ^= 0x5A
    path.write_bytes(bytes(raw))


DAMAGES = {
    "index truncated": lambda run: (run / "model-3.index").write_bytes(
        (run / "model-3.index").read_bytes()[:40]),
    "index byte flipped": lambda run: _flip(run / "model-3.index", 0.3),
    "data zeroed": lambda run: _data_file(run, 3).write_bytes(
        bytes(_data_file(run, 3).stat().st_size)),
    "data truncated": lambda run: _data_file(run, 3).write_bytes(
        _data_file(run, 3).read_bytes()[:100]),
    "data deleted": lambda run: _data_file(run, 3).unlink(),
    "data byte flipped": lambda run: _flip(_data_file(run, 3), 0.5),
}


def _encoder_weights(lm) -> dict[str, np.ndarray]:
    return {v.name: v.numpy() for v in lm.encoder.weights}


def _assert_weights(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("damage", [  # one in the fast tier, the others in the slow one
    pytest.param(d, marks=[] if d == "data zeroed" else pytest.mark.slow) for d in DAMAGES])
def test_a_damaged_latest_checkpoint_falls_back_to_the_intact_one(run3, reference, tmp_path,
                                                                  damage, caplog):
    run = copy_run(run3, tmp_path / "run")
    DAMAGES[damage](run)
    caplog.set_level(logging.WARNING, logger="bilm")
    loaded = load_run(str(run))  # evaluate and score load the run this way
    if damage == "data byte flipped" and loaded.checkpoint.endswith("model-3"):
        # the flipped byte lies in a tensor evaluation does not read (an Adagrad slot, the
        # step): model-3's weights are intact and are used, exactly
        _assert_weights(_encoder_weights(loaded.lm), reference[3])
    else:
        assert loaded.checkpoint == str(run / "model-2")
        _assert_weights(_encoder_weights(loaded.lm), reference[2])
        assert any("model-3" in r.getMessage() and "damaged" in r.getMessage()
                   for r in caplog.records)
    if damage in ("data zeroed", "index truncated", "data byte flipped"):  # ~seconds each
        dump_weights(str(run), str(tmp_path / "export" / "weights.hdf5"))
        assert (tmp_path / "export" / "weights.hdf5").exists()
        caplog.clear()
        # resuming reads every tensor (weights, slots, step, states): model-2 it is
        final = resume_training(str(run), n_batches=4, progress=False)
        assert final == str(run / "model-4")
        assert any("using" in r.getMessage() and r.getMessage().endswith(
            "left in place)") and "model-2" in r.getMessage() for r in caplog.records)
        assert tf.train.latest_checkpoint(str(run)) == final


@pytest.mark.slow
def test_resume_from_the_intact_checkpoint_equals_resuming_it(run3, corpus, tmp_path):
    """Falling back to model-2 continues exactly as a run that stopped at model-2."""
    damaged = copy_run(run3, tmp_path / "damaged")
    DAMAGES["data byte flipped"](damaged)
    resume_training(str(damaged), n_batches=4, progress=False)
    clean = copy_run(run3, tmp_path / "clean")
    for p in clean.glob("model-3.*"):
        p.unlink()
    (clean / "checkpoint").write_text(f'model_checkpoint_path: "{clean}/model-2"\n'
                                      f'all_model_checkpoint_paths: "{clean}/model-2"\n')
    resume_training(str(clean), n_batches=4, progress=False)
    for name, _ in tf.train.list_variables(str(clean / "model-4")):
        if name.startswith("_") or "save_counter" in name:
            continue
        np.testing.assert_array_equal(tf.train.load_variable(str(damaged / "model-4"), name),
                                      tf.train.load_variable(str(clean / "model-4"), name),
                                      err_msg=name)


@pytest.mark.slow
def test_no_intact_checkpoint_is_one_line(run3, corpus, tmp_path):
    run = copy_run(run3, tmp_path / "run")
    for step in (2, 3):
        _data_file(run, step).write_bytes(bytes(_data_file(run, step).stat().st_size))
    with pytest.raises(RunError, match=r"no intact checkpoint in .*model-3 \(.*; model-2 \("):
        load_run(str(run))
    for args in (["evaluate", "--save-dir", run, "--test-prefix", corpus["heldout"]],
                 ["export", "--save-dir", run, tmp_path / "out" / "w.hdf5"],
                 ["resume", "--save-dir", run, "--n-batches", 5]):
        assert "no intact checkpoint" in one_line_error(bilm(*args, "-q"))  # no INFO lines


@pytest.mark.slow
def test_the_command_line_says_which_checkpoint_it_used(run3, corpus, tmp_path):
    run = copy_run(run3, tmp_path / "run")
    DAMAGES["data truncated"](run)
    r = bilm("evaluate", "--save-dir", run, "--test-prefix", corpus["heldout"], "-q",
             "--batch-size", 4)
    assert r.returncode == 0, r.stderr
    assert "damaged checkpoint model-3" in r.stderr and "Traceback" not in r.stderr
    good = bilm("evaluate", "--save-dir", run3, "--test-prefix", corpus["heldout"], "-q",
                "--batch-size", 4)
    assert good.returncode == 0
    assert r.stdout != good.stdout  # model-2's perplexity, not model-3's


@pytest.mark.parametrize("garble", ["text", pytest.param("binary", marks=pytest.mark.slow),
                                    pytest.param("empty", marks=pytest.mark.slow)])
def test_a_garbled_checkpoint_list_finds_checkpoints_by_their_files(run3, reference, tmp_path,
                                                                     garble, caplog):
    run = copy_run(run3, tmp_path / "run")
    (run / "checkpoint").write_bytes({"binary": b"\x00\xff\x13garbage",
                                      "text": b"this is not a checkpoint list\n",
                                      "empty": b""}[garble])
    caplog.set_level(logging.WARNING, logger="bilm")
    TrainingRun(run).check()
    loaded = load_run(str(run))
    assert loaded.checkpoint == str(run / "model-3")
    _assert_weights(_encoder_weights(loaded.lm), reference[3])
    assert any("checkpoint" in r.getMessage() and "damaged" in r.getMessage()
               for r in caplog.records)
    final = resume_training(str(run), n_batches=4, progress=False)
    assert final == str(run / "model-4")
    assert tf.train.latest_checkpoint(str(run)) == final  # the list is readable again


# -- item 15: run.json's paths work from any folder -------------------------------------------

@pytest.mark.slow
def test_resume_works_from_another_folder(corpus, tmp_path):
    work = tmp_path / "work"
    (work / "corpus").mkdir(parents=True)
    for shard in corpus["dir"].glob("train/shard.*"):
        shutil.copy(shard, work / "corpus")
    r = bilm("train", "--train-prefix", "corpus/shard.*", "--vocab", corpus["vocab"],
             "--options", corpus["options"], "--n-batches", 2, "--seed", 1, "--no-jit",
             "--save-dir", "run", "-q", cwd=work)
    assert r.returncode == 0, r.stderr
    state = json.loads((work / "run" / "run.json").read_text())
    assert state["train_prefix"] == str(work / "corpus" / "shard.*")
    r = bilm("resume", "--save-dir", work / "run", "--n-batches", 3, "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (work / "run" / "model-3.index").exists()
    # the recorded files gone: one line naming them, and the flag that fixes it
    shutil.move(work / "corpus", work / "moved")
    r = bilm("resume", "--save-dir", work / "run", "--n-batches", 4, cwd=tmp_path)
    line = one_line_error(r)
    assert str(work / "corpus" / "shard.*") in line and "--train-prefix" in line
    r = bilm("resume", "--save-dir", work / "run", "--n-batches", 4, "-q", "--train-prefix",
             work / "moved" / "shard.*")
    assert r.returncode == 0, r.stderr


def test_the_lock_file_is_not_a_users_file(tmp_path):
    """A folder with only a leftover lock file (a killed process) is empty for a new run."""
    (tmp_path / LOCK_FILE).write_text('{"pid": 999999999}')
    TrainingRun(tmp_path).check_new(overwrite=False)


def test_sigterm_to_the_lock_holder_frees_the_folder(tmp_path):
    holder = hold_lock(tmp_path)
    holder.send_signal(signal.SIGTERM)
    holder.wait(timeout=30)
    with RunLock(tmp_path, "bilm train"):
        pass
