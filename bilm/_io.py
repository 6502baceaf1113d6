"""Small I/O helpers: atomic writes that clean up after themselves, disk-full and
unwritable-path errors that name the user's path, and progress reporting."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterator

logger = logging.getLogger(__name__)

__all__ = [
    "DiskFullError",
    "OutputError",
    "Progress",
    "atomic_dir",
    "atomic_path",
    "check_free_space",
    "is_disk_full",
    "remove_stale_parts",
]


class OutputError(OSError):
    """An output cannot be written: the message names the user's path and the reason."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno N]"
        return self.args[1] if len(self.args) > 1 else super().__str__()


class DiskFullError(OutputError):
    """The disk (file system) holding an output is full."""

    def __init__(self, path: str | os.PathLike[str], detail: str = "") -> None:
        path = os.fspath(path)
        super().__init__(errno.ENOSPC, f"the disk is full: cannot write {path}"
                         f"{f' ({detail})' if detail else ''}; free some space or write "
                         "elsewhere (earlier outputs are untouched)")
        self.path = path


def is_disk_full(error: BaseException) -> bool:
    """True for an error caused by a full disk (OSError ENOSPC, or TensorFlow's and HDF5's
    wrapped forms of it, which only carry the message)."""
    if isinstance(error, DiskFullError):
        return True
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "No space left on device" in text or "errno = 28" in text


_REASONS = {
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a file is in the way of a folder on that path",
    errno.EEXIST: "a file is in the way of a folder on that path",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
}


def output_error(path: str, error: OSError) -> OutputError:
    """``error`` (raised while writing ``path`` or its temporary file) as a one-line
    :class:`OutputError` naming ``path``, never the temporary name or a bare errno."""
    if is_disk_full(error):
        return DiskFullError(path)
    reason = _REASONS.get(error.errno or -1, error.strerror or str(error))
    where = os.path.dirname(os.path.abspath(path))
    return OutputError(error.errno, f"cannot write {path}: {reason} (folder {where})")


def _ensure_dir(path: str, directory: str) -> None:
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        if e.errno not in (errno.EEXIST, errno.ENOTDIR):
            raise output_error(path, e) from None
    blocker = directory
    while blocker and not os.path.exists(blocker):
        blocker = os.path.dirname(blocker)
    if not os.path.isdir(blocker):
        raise OutputError(errno.ENOTDIR, f"cannot write {path}: {blocker} is a file, not a "
                          "folder")


# Temporary names: ".<name>.<host>.<pid>.<random>.part" beside the final path. The host and
# pid say who is writing, so that a later run can tell a leftover of a killed process (kill
# -9, power loss) from a write in progress, and remove it.
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"


def _part_name(path: str) -> str:
    return (f".{os.path.basename(path)}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.part")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_parts(path: str | os.PathLike[str]) -> list[str]:
    """Remove temporary files (or folders) that an earlier, killed process left while
    writing ``path``: those of this host whose process no longer runs. Returns them."""
    path = os.path.abspath(os.fspath(path))
    directory, base = os.path.split(path)
    pattern = re.compile(re.escape(f".{base}.") + r"(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)"
                         r"\.[0-9a-f]+\.part$")
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        m = pattern.match(name)
        if not m or m["host"] != _HOST or _pid_alive(int(m["pid"])):
            continue
        stale = os.path.join(directory, name)
        with contextlib.suppress(OSError):
            if os.path.isdir(stale) and not os.path.islink(stale):
                shutil.rmtree(stale)
            else:
                os.remove(stale)
            removed.append(stale)
    if removed:
        logger.info("removed %d unfinished temporary file(s) of an earlier, interrupted "
                    "write of %s", len(removed), path)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A crash or exception never leaves a half-written file under the final name; the
    temporary file is removed on an exception, and one left by a killed process is removed
    by the next write of the same path. The file gets the permissions the umask allows, as
    any new file. Errors name ``path`` (:class:`OutputError`, :class:`DiskFullError`).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    _ensure_dir(path, directory)
    remove_stale_parts(path)
    tmp = os.path.join(directory, _part_name(path))
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as e:
        raise output_error(path, e) from None
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise output_error(path, e) from None
        if is_disk_full(e) and not isinstance(e, DiskFullError):
            raise DiskFullError(path) from None
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[str]:
    """As :func:`atomic_path` for a folder: yield a new temporary folder beside ``path``,
    renamed onto ``path`` (replacing it when ``overwrite``) only on success."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    _ensure_dir(path, parent)
    remove_stale_parts(path)
    tmp = os.path.join(parent, _part_name(path))
    try:
        os.mkdir(tmp, 0o777)  # the umask applies, as for any new folder
    except OSError as e:
        raise output_error(path, e) from None
    try:
        yield tmp
        if os.path.exists(path):
            if not overwrite:
                raise FileExistsError(errno.EEXIST, f"{path} exists")
            old = os.path.join(parent, _part_name(path))
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(e) and not isinstance(e, DiskFullError):
            raise DiskFullError(path) from None
        raise


# Space kept free beyond the data when writing HDF5: its metadata (object headers, B-trees,
# the heap of names) is flushed at close, and must fit.
HDF5_RESERVE = 1 << 20


def check_free_space(directory: str | os.PathLike[str], needed: int, path: str,
                     reserve: int = HDF5_RESERVE) -> None:
    """Raise :class:`DiskFullError` naming ``path`` unless ``directory``'s file system has
    ``needed + reserve`` bytes free.

    HDF5 buffers writes and reports a full disk only when it flushes, through errors that
    h5py cannot recover from (thousands of messages, then a crash when the file closes), so
    HDF5 writers check before each dataset instead: a full disk then ends with one clear
    error and a file that closes cleanly."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return  # cannot tell: let the write itself report
    if st.f_bavail * st.f_frsize < needed + reserve:
        raise DiskFullError(path)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Progress of a long loop: one stream, one total.

    On a terminal, a `tqdm <https://tqdm.github.io>`_ bar on stderr (log records are routed
    above it); otherwise one log line every ``interval`` seconds (or a plain stderr line when
    the program configured no logging at all). Rates and ETAs are measured from the end of
    the first update, so start-up and compilation do not inflate the ETA.

    Args:
        desc: a label. total: the count to reach (None: unknown). unit: what is counted.
        enabled: False makes every call a no-op. initial: already done (a resumed run).
        interval: seconds between log lines when stderr is not a terminal.
    """

    def __init__(self, desc: str, total: int | None = None, unit: str = "it",
                 enabled: bool = True, initial: int = 0, interval: float = 30.0) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.enabled = enabled
        self.done = initial
        self.postfix = ""
        self._interval = interval
        self._tty = enabled and _stderr_is_terminal()
        self._bar = None  # made at the first update: its clock then skips the warm-up
        self._redirect = None
        self._t0: float | None = None
        self._n0 = initial
        self._last_emit = 0.0
        self._emitted_at = -1

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_postfix(self, text: str) -> None:
        """Extra text shown after the counts (e.g. the latest perplexity)."""
        self.postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._t0 is None:  # the first update ends the warm-up
            self._t0, self._n0, self._last_emit = now, self.done, now
            if self._tty:
                self._open_bar()
            return
        if self._bar is not None:
            self._bar.update(n)
        elif now - self._last_emit >= self._interval:
            self._emit(now)

    def _open_bar(self) -> None:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._bar = tqdm(total=self.total, initial=self.done, desc=self.desc, unit=self.unit,
                         dynamic_ncols=True, mininterval=0.5, smoothing=0.1, leave=True,
                         file=sys.stderr)
        if self.postfix:
            self._bar.set_postfix_str(self.postfix, refresh=False)
        # log records print above the bar instead of breaking it
        self._redirect = logging_redirect_tqdm()
        self._redirect.__enter__()

    def line(self, now: float | None = None) -> str:
        """The log line: counts, rate and ETA (rate measured after the first update)."""
        now = time.perf_counter() if now is None else now
        rate = None
        if self._t0 is not None and now > self._t0 and self.done > self._n0:
            rate = (self.done - self._n0) / (now - self._t0)
        text = f"{self.desc}: {self.done:,}"
        if self.total is not None:
            text += f"/{self.total:,}"
        text += f" {self.unit}"
        if rate:
            text += f", {rate:,.1f} {self.unit}/s"
            if self.total is not None:
                text += f", ETA {_fmt_time(max(self.total - self.done, 0) / rate)}"
        if self.postfix:
            text += f", {self.postfix}"
        return text

    def _emit(self, now: float) -> None:
        self._last_emit, self._emitted_at = now, self.done
        text = self.line(now)
        if logger.hasHandlers():
            logger.info("%s", text)
        else:  # a library user who configured no logging still sees progress
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            if self._redirect is not None:
                self._redirect.__exit__(None, None, None)
                self._redirect = None
        elif not self._tty and self._t0 is not None and self._emitted_at != self.done:
            self._emit(time.perf_counter())  # the final count, once
        self.enabled = False


def _fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
