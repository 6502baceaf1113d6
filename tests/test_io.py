"""Outputs: permissions, leftovers of killed writers, messages that name the user's path,
a full disk; and progress reporting (no TensorFlow here)."""

from __future__ import annotations

import errno
import logging
import os
import stat
import subprocess
import sys

import pytest

from bilm.io import files as _io
from bilm.io import progress
from bilm.io.files import DiskFullError, OutputError, atomic_dir, atomic_path
from bilm.io.progress import Progress


@pytest.fixture
def umask():
    def set_umask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_umask
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outputs_get_the_permissions_the_umask_allows(tmp_path, umask):
    for mask, file_mode, dir_mode in ((0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                      (0o002, 0o664, 0o775)):
        umask(mask)
        out = tmp_path / f"out{mask:o}.txt"
        with atomic_path(out) as tmp, open(tmp, "w") as f:
            f.write("x")
        assert mode(out) == file_mode, oct(mode(out))
        folder = tmp_path / f"model{mask:o}"
        with atomic_dir(folder) as tmp:
            (open(os.path.join(tmp, "a"), "w")).close()
        assert mode(folder) == dir_mode and mode(folder / "a") == file_mode


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp, open(tmp, "w") as f:
        f.write("half")
        raise RuntimeError("crash")
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_leftovers_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    # a child writes the temporary file of out.txt and is killed (SIGKILL) mid-write
    out = tmp_path / "out.txt"
    code = ("import os, sys\nfrom bilm.io.files import atomic_path, atomic_dir\n"
            f"cm = atomic_path({str(out)!r}); tmp = cm.__enter__()\n"
            "open(tmp, 'w').write('x' * 1000)\n"
            f"cd = atomic_dir({str(tmp_path / 'sm')!r}); d = cd.__enter__()\n"
            "print(tmp, d, flush=True)\nos.kill(os.getpid(), 9)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == -9
    part, part_dir = r.stdout.split()
    assert os.path.exists(part) and os.path.isdir(part_dir)
    # another process's live temporary file is left alone
    live = tmp_path / f".out.txt.{_io._HOST}.{os.getpid()}.abcd1234.part"
    live.write_text("in progress")
    unrelated = tmp_path / ".notes.txt.part"
    unrelated.write_text("mine")
    with atomic_path(out) as tmp, open(tmp, "w") as f:
        f.write("new")
    assert not os.path.exists(part) and live.exists() and unrelated.exists()
    with atomic_dir(tmp_path / "sm"):
        pass
    assert not os.path.exists(part_dir)
    assert out.read_text() == "new"


def test_unwritable_outputs_name_the_users_path(tmp_path, monkeypatch):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OutputError) as e, atomic_path(blocker / "sub" / "out.hdf5"):
        pass
    assert str(e.value) == (f"cannot write {blocker / 'sub' / 'out.hdf5'}: {blocker} is a "
                            "file, not a folder")

    real_open = os.open

    def read_only(path, flags, mode=0o777):
        if str(path).endswith(".part"):
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(OutputError) as e, atomic_path(tmp_path / "out.hdf5"):
        pass
    assert str(e.value) == (f"cannot write {tmp_path / 'out.hdf5'}: the file system is "
                            f"read-only (folder {tmp_path})")


def test_a_full_disk_is_reported_as_such(tmp_path, monkeypatch):
    out = tmp_path / "out.txt"
    out.write_text("earlier")
    with pytest.raises(DiskFullError) as e, atomic_path(out) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", tmp)
    assert str(e.value) == (f"the disk is full: cannot write {out}; free some space or "
                            "write elsewhere (earlier outputs are untouched)")
    assert out.read_text() == "earlier" and len(list(tmp_path.iterdir())) == 1
    assert _io.is_disk_full(RuntimeError("file write failed: errno = 28, error message = "
                                         "'No space left on device'"))

    class Full:  # 4 MB free
        f_bavail, f_frsize = 1000, 4096

    monkeypatch.setattr(os, "statvfs", lambda path: Full)
    _io.check_free_space(tmp_path, 4_096_000 - _io.HDF5_RESERVE, str(out))
    with pytest.raises(DiskFullError, match="cannot write"):  # the data and HDF5's reserve
        _io.check_free_space(tmp_path, 4_096_001 - _io.HDF5_RESERVE, str(out))


def test_progress_without_a_terminal_is_one_stream(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="bilm")
    # the first update comes 100 s after the start (compilation); then 1 s a batch, a pause
    clock = iter([100.0, 101.0, 102.0, 103.0, 131.0, 132.0, 133.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    bar = Progress("train", total=10, initial=4, unit="batches", interval=30.0)  # resumed at 4
    for _ in range(5):
        bar.update()
    bar.set_postfix("perplexity 12.5")
    bar.update()
    bar.close()
    # one line per 30 s and a final one, each with the run's own total; rates are counted
    # from the end of the first update, so the warm-up does not inflate the ETA
    assert [r.getMessage() for r in caplog.records] == [
        "train: 9/10 batches, 0.1 batches/s, ETA 00:07",
        "train: 10/10 batches, 0.2 batches/s, ETA 00:00, perplexity 12.5",
    ]


def test_progress_eta_skips_the_warm_up(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="bilm")
    times = iter([600.0, 601.0, 602.0, 603.0, 604.0])  # the first batch ends at 600 s
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(times))
    bar = Progress("embed", total=100, unit="batches", interval=0.5)
    for _ in range(5):
        bar.update()
    # then 1 batch/s: 95 batches left -> 1:35 (600 s of warm-up would say 2:01:00)
    assert caplog.records[-1].getMessage() == "embed: 5/100 batches, 1.0 batches/s, ETA 01:35"


def test_progress_final_line_once(caplog):
    caplog.set_level(logging.INFO, logger="bilm")
    bar = Progress("dump", total=3, unit="tokens", interval=0.0)
    bar.update(3)
    bar.close()
    bar.close()
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["dump: 3/3 tokens"]


def test_progress_prints_when_no_logging_is_configured():
    code = ("from bilm.io.progress import Progress\n"
            "p = Progress('train', total=2, unit='batches')\np.update(); p.update(); p.close()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stderr.startswith("train: 2/2 batches"), r.stderr


@pytest.mark.parametrize("writer", [atomic_path, atomic_dir])
def test_a_stop_signal_whose_exception_was_swallowed_still_stops_the_write(tmp_path, writer):
    """The handler's exception is raised at whatever bytecode runs when the signal comes; code
    that swallows it there (a finalizer, a library's ``except BaseException``) let the write
    finish and be published, then reported "was written" (a loaded CI run of
    test_sigterm_during_embed_removes_the_unfinished_output). A signal that came while the
    output was written stops it before the publishing rename."""
    import signal
    import time

    from bilm.io.stop_signals import OutputInterrupted

    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        pytest.skip("SIGTERM is not at its default disposition in this process")
    out = tmp_path / "out"
    with pytest.raises(OutputInterrupted) as caught, writer(out) as tmp:
        if writer is atomic_path:
            open(tmp, "w").close()
        try:  # the exception raised in here is swallowed
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)
        except BaseException:
            pass
    assert caught.value.signum == signal.SIGTERM
    assert [(os.path.basename(p), published) for _, p, published in caught.value.outputs] == [
        ("out", False)]
    assert os.listdir(tmp_path) == []  # not published, the temporary removed
