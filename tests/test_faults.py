"""Faults as users meet them, through the real command line in subprocesses (slow tier):
kill -9 and SIGTERM at random points of a training run then resume (the result must equal
an uninterrupted run bit for bit), a second Ctrl-C, a full disk (a small tmpfs), a read-only
file system, a closed pipe, and quiet output with -q.

    python -m pytest -m slow tests/test_faults.py
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_TWO_LAYER_OPTIONS

pytestmark = pytest.mark.slow

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
TEXT = ("the light was good .\nand god saw the light .\nthe earth was without form .\n"
        "and darkness was upon the face of the deep .\n")
OPTIONS = json.dumps({**TINY_TWO_LAYER_OPTIONS, "batch_size": 4, "unroll_steps": 5,
                      "n_negative_samples_batch": 8})
N_BATCHES = 300


def bilm(*args, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bilm.cli", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=timeout, **kwargs)


def popen(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bilm.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("faults")
    (d / "corpus").mkdir()
    for k in range(2):
        (d / "corpus" / f"s.{k}.txt").write_text(TEXT * 25)
    words = sorted(set(TEXT.split()))
    (d / "vocab.txt").write_text("\n".join(["<S>", "</S>", "<UNK>", *words]) + "\n")
    (d / "tiny.json").write_text(OPTIONS)
    p = {"dir": d, "corpus": d / "corpus" / "s.*", "vocab": d / "vocab.txt",
         "options": d / "tiny.json"}
    p["train"] = ["train", "--train-prefix", p["corpus"], "--vocab", p["vocab"], "--options",
                  p["options"], "--n-batches", N_BATCHES, "--checkpoint-every", 25,
                  "--checkpoint-minutes", 0, "--seed", 7, "--no-jit"]
    r = bilm(*p["train"], "--save-dir", d / "reference")
    assert r.returncode == 0, r.stderr
    p["reference"] = d / "reference"
    return p


def saved(ckpt) -> dict[str, np.ndarray]:
    import tensorflow as tf

    return {n: tf.train.load_variable(str(ckpt), n) for n, _ in tf.train.list_variables(
        str(ckpt)) if not n.startswith("_") and "save_counter" not in n}


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = saved(a / f"model-{N_BATCHES}"), saved(b / f"model-{N_BATCHES}")
    assert sorted(wa) == sorted(wb)
    for name in wa:
        np.testing.assert_array_equal(wa[name], wb[name], err_msg=name)


def test_same_seed_same_run_from_the_command_line(setup, tmp_path):
    r = bilm("-q", *setup["train"], "--save-dir", tmp_path / "again")
    assert r.returncode == 0 and r.stderr == "", r.stderr  # -q: nothing but errors
    assert_same_run(setup["reference"], tmp_path / "again")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_killed_at_random_points_then_resumed_equals_uninterrupted(setup, tmp_path, how):
    rng = random.Random(how)
    outcomes = []
    for trial in range(6):
        save = tmp_path / f"trial{trial}"
        proc = popen(*setup["train"], "--save-dir", save)
        if trial == 0:  # during start-up
            time.sleep(rng.uniform(0.5, 2.0))
        elif trial == 1:  # at the first batch (compilation)
            wait_for(save / "training_log.csv", proc)
        else:  # in the loop: after checkpoint k, between batches, in a step or a save
            wait_for(save / f"model-{25 * rng.randint(1, 10)}.index", proc)
            time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(getattr(signal, how))
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err
        if how == "SIGTERM" and proc.returncode == 143:  # stopped in the training loop
            assert "stopped by SIGTERM; saved" in err.strip().splitlines()[-1], err
        outcomes.append((proc.returncode, len(list(save.glob("model-*.index")))))
        # a user's next command: resume when there is a checkpoint, else train again
        if (save / "checkpoint").exists():
            r = bilm("-q", "resume", "--save-dir", save)
        else:
            r = bilm("-q", *setup["train"], "--save-dir", save)
        assert r.returncode == 0, (trial, outcomes, r.stderr)
        assert not list(save.glob("*_temp")) and not list(save.glob(".*.part"))
        assert_same_run(setup["reference"], save)
    print(how, "exit codes and checkpoints left:", outcomes)
    assert {rc for rc, _ in outcomes} & ({-9} if how == "SIGKILL" else {143})
    assert any(n for _, n in outcomes)  # some trials stopped after checkpoints were written


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    """Until ``path`` exists (or the process ended: the kill then finds nothing to stop)."""
    deadline = time.time() + seconds
    while not path.exists():
        if proc.poll() is not None:
            return
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def test_ctrl_c_twice_stops_without_a_traceback(setup, tmp_path):
    save = tmp_path / "run"
    args = [a if a != N_BATCHES else 100_000 for a in setup["train"]]
    proc = popen(*args, "--save-dir", save)
    wait_for(save / "training_log.csv", proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("bilm: stopped by SIGINT"), last


def test_sighup_saves_like_sigterm(setup, tmp_path):
    save = tmp_path / "run"
    args = [a if a != N_BATCHES else 100_000 for a in setup["train"]]
    proc = popen(*args, "--save-dir", save)
    wait_for(save / "training_log.csv", proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 129, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("bilm: stopped by SIGHUP; saved ") and last.endswith(
        tuple(p.name.removesuffix(".index") for p in save.glob("model-*.index"))), last


@pytest.fixture
def tmpfs(tmp_path):
    """A tiny file system of its own (root only): a full disk on demand."""
    mounts = []

    def mount(name: str, size: str = "64k", options: str = "") -> Path:
        path = tmp_path / name
        path.mkdir()
        opts = f"size={size}" + (f",{options}" if options else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                           capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); needs root")
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        subprocess.run(["umount", str(path)], capture_output=True)


def test_disk_full_while_saving_a_checkpoint(setup, tmpfs):
    disk = tmpfs("disk", "96k")
    save = disk / "run"
    args = [a if a != N_BATCHES else 100_000 for a in setup["train"]]
    args[args.index("--checkpoint-every") + 1] = 5
    r = bilm(*args, "--save-dir", save)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr, r.stderr
    lines = lines[-1:]  # the error, after the INFO lines of the run
    assert lines[0].startswith(f"bilm: error: the disk is full: cannot write {save} (while "
                               "saving checkpoint model-"), lines[0]
    assert "out of memory" not in lines[0]
    assert not list(save.glob("*_temp")) and not list(save.glob(".*.part"))
    import tensorflow as tf

    last = tf.train.latest_checkpoint(str(save))
    named = re.search(r"the last complete one is (\S+?)\)", lines[0])[1]
    assert last == named
    assert saved(last)  # the earlier checkpoint is intact and readable


def test_disk_full_while_embedding(setup, tiny_model, tmpfs):
    options_file, weight_file = tiny_model
    disk = tmpfs("disk", "256k")
    text = setup["dir"] / "many.txt"
    text.write_text("a b c d e f g h\n" * 3000)
    earlier = disk / "earlier.hdf5"
    earlier.write_bytes(b"an earlier result")
    r = bilm("embed", text, disk / "out.hdf5", "--options", options_file, "--weights",
             weight_file)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert lines == [f"bilm: error: the disk is full: cannot write {disk / 'out.hdf5'}; free "
                     "some space or write elsewhere (earlier outputs are untouched)"], lines[-5:]
    assert sorted(p.name for p in disk.iterdir()) == ["earlier.hdf5"]
    assert earlier.read_bytes() == b"an earlier result"


def test_read_only_output_folder(tiny_model, tmpfs, tmp_path):
    options_file, weight_file = tiny_model
    ro = tmpfs("ro", "64k", "ro")
    text = tmp_path / "in.txt"
    text.write_text("a b c\n")
    r = bilm("embed", text, ro / "out.hdf5", "--options", options_file, "--weights",
             weight_file)
    assert r.returncode == 2
    assert r.stderr.strip() == (f"bilm: error: cannot write {ro / 'out.hdf5'}: the file system "
                                f"is read-only (folder {ro})")


def test_a_closed_pipe_ends_score_quietly(setup):
    shell = (f"{sys.executable} -m bilm.cli -q score {setup['dir'] / 'corpus' / 's.0.txt'} "
             f"--save-dir {setup['reference']} | head -n 2")
    r = subprocess.run(["bash", "-c", f"set -o pipefail; {shell}"], capture_output=True,
                       text=True, env=ENV, timeout=300)
    assert r.stdout.startswith("line\tn_tokens") and len(r.stdout.splitlines()) == 2
    assert "Broken pipe" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.returncode in (0, 141)  # 141: bilm ended as a shell's `yes | head` does


def test_bin_scripts_and_cli_are_quiet(setup, tmp_path):
    """TensorFlow's start-up and absl lines are hidden (shown with -v)."""
    noise = ("I0000", "E0000", "W0000", "absl", "oneDNN", "cuda", "retracing")
    r = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "bin" / "run_test.py"),
                        "--save_dir", str(setup["reference"]), "--test_prefix",
                        str(setup["dir"] / "corpus" / "s.0.txt"), "--batch_size", "4"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert not [line for line in r.stderr.splitlines() if any(n in line for n in noise)], \
        r.stderr
    out = tmp_path / "export" / "weights.hdf5"
    r = bilm("-q", "export", "--save-dir", setup["reference"], out)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = bilm("-q", "export-savedmodel", tmp_path / "sm", "--options",
             out.parent / "options.json", "--weights", out)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = bilm("-v", "info", "--options", out.parent / "options.json", "--weights", out)
    assert r.returncode == 0 and "I0000" in r.stderr  # -v shows TensorFlow's own lines
    shutil.rmtree(tmp_path / "sm")
