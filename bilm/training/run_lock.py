"""One process per run folder: the lock a training, a resume or an import holds while it
writes into the folder (``SAVE_DIR/.bilm-run.lock``), and which processes of a cluster write.
No TensorFlow here: the command line takes the lock before it starts TensorFlow.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from bilm.io.processes import _pid_alive
from bilm.training.run_errors import RunBusyError, RunError

__all__ = ["LOCK_FILE", "RunLock", "owned", "owns_run", "writes_run"]

logger = logging.getLogger(__name__)

LOCK_FILE = ".bilm-run.lock"

_HOST = socket.gethostname()


def writes_run() -> bool:
    """Whether this process writes into the run: True unless it is a non-chief worker of a
    cluster (TF_CONFIG's 'chief' task, else worker 0; SLURM's task 0), read from the
    environment without TensorFlow, as :func:`bilm.training.distribute.is_chief` decides."""
    raw = os.environ.get("TF_CONFIG")
    if raw:
        try:
            config = json.loads(raw)
            task, cluster = config.get("task", {}), config.get("cluster", {})
            if task.get("type") == "chief":
                return True
            return (task.get("type") == "worker" and int(task.get("index", 0)) == 0
                    and "chief" not in cluster)
        except (ValueError, TypeError, AttributeError):
            return True  # make_strategy reports a malformed TF_CONFIG
    procid = os.environ.get("SLURM_PROCID")
    return procid is None or procid == "0"


class RunLock:
    """One process at a time trains (or resumes, or imports) into a run folder.

    The lock is the file ``SAVE_DIR/.bilm-run.lock``, held with ``flock`` for as long as the
    process runs: the kernel frees it when the process ends however it ends (kill -9
    included), so a lock left by a dead process never blocks. The file records the owner
    (command, pid, host, start time) for the message a second process gets, and is removed
    on release. On a file system without ``flock``, the file is created exclusively instead
    and a leftover of a dead process of this host is taken over. Reading a run (evaluate,
    export, score) takes no lock.

    Raises :class:`RunBusyError` (one line naming the owner) when another process holds it.
    """

    def __init__(self, save_dir: str | os.PathLike[str], command: str) -> None:
        self.save_dir = os.fspath(save_dir)
        self.path = os.path.join(self.save_dir, LOCK_FILE)
        self.command = command
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _owner(self) -> str:
        try:
            with open(self.path, encoding="utf-8") as f:
                owner = json.loads(f.read(4096) or "{}")
            return (f"{owner['command']} (pid {owner['pid']} on {owner['host']}, since "
                    f"{owner['started']})")
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def _busy(self) -> RunBusyError:
        return RunBusyError(f"{self.save_dir} is in use by {self._owner()}; wait for it to end "
                            "or stop it, or use another --save-dir")

    def acquire(self) -> None:
        try:
            os.makedirs(self.save_dir, exist_ok=True)
        except FileExistsError:
            raise RunError(f"--save-dir {self.save_dir} is a file, not a folder") from None
        import fcntl

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._busy() from None
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                self._acquire_exclusive()
                return
            # The previous owner may have removed the file between our open and our lock:
            # then we hold a lock on a file nobody else sees, and must start again.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        self._write_owner(fd)

    def _write_owner(self, fd: int) -> None:
        owner = {"command": self.command, "pid": os.getpid(), "host": _HOST,
                 "started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[1:]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode("utf-8"), 0)

    def _acquire_exclusive(self) -> None:
        """Without flock: create the file exclusively; one of a dead process of this host
        (its pid gone) is stale and taken over."""
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                try:
                    with open(self.path, encoding="utf-8") as f:
                        owner = json.loads(f.read(4096) or "{}")
                    stale = owner.get("host") == _HOST and not _pid_alive(int(owner["pid"]))
                except (OSError, ValueError, KeyError, TypeError):
                    stale = False
                if not stale:
                    raise self._busy() from None
                logger.warning("removed a stale lock of a process that no longer runs (%s)",
                               self._owner())
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)
                continue
            self._fd = fd
            self._write_owner(fd)
            return
        raise self._busy()

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.remove(self.path)  # still held: no other process can have taken it
        os.close(self._fd)
        self._fd = None


@contextlib.contextmanager
def owned(save_dir: str | os.PathLike[str], command: str) -> Iterator[None]:
    """Hold the run folder's lock (:class:`RunLock`) when this process writes into the run
    (every process but a cluster's non-chief workers, which write nothing there)."""
    key = os.path.realpath(save_dir)
    if not writes_run() or key in _HELD:  # (held already: this process's own, re-entered)
        yield
        return
    with RunLock(save_dir, command):
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)


_HELD: set[str] = set()  # the run folders this process holds


F = TypeVar("F", bound=Callable[..., Any])


def owns_run(command: str) -> Callable[[F], F]:
    """Decorator: the function (which writes into the run folder named by its ``save_dir``
    or ``tf_save_dir`` argument) holds the folder's lock while it runs (:class:`RunLock`;
    one line naming the owner when another process has it)."""

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        name = "save_dir" if "save_dir" in signature.parameters else "tf_save_dir"

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with owned(signature.bind(*args, **kwargs).arguments[name], command):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
