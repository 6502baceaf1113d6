"""Small I/O helpers: atomic writes that clean up after themselves, disk-full and
unwritable-path errors that name the user's path, and progress reporting."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator

logger = logging.getLogger(__name__)

__all__ = [
    "DiskFullError",
    "OutputError",
    "OutputExistsError",
    "OutputInterrupted",
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


class OutputExistsError(OutputError):
    """The output exists (or appeared while it was being written, from another process) and
    the command was not asked to replace it: nothing was replaced."""

    def __init__(self, path: str | os.PathLike[str], appeared: bool = False) -> None:
        path = os.fspath(path)
        what = ("appeared while this command was writing it (another process?)" if appeared
                else "exists")
        super().__init__(errno.EEXIST, f"{path} {what}; nothing was replaced; pass "
                         "--overwrite to replace it")
        self.path = path


class OutputInterrupted(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) arrived while an output was being written;
    its temporary file is removed and the message says so. ``signum`` is the signal (the
    command line exits with 128 + ``signum``, as a shell reports a process it killed)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.outputs: list[tuple[str, str, bool]] = []  # (temporary file, output, published)

    def __str__(self) -> str:
        text = f"stopped by {signal.Signals(self.signum).name}"
        notes = [f"{path} was written" if published else
                 f"removed the unfinished {tmp}; {path} was not written"
                 for tmp, path, published in self.outputs]
        return f"{text}: {'; '.join(notes)}" if notes else text


# The signals that stop a command: each raises OutputInterrupted while an output is written.
_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                      if hasattr(signal, n))


class _SignalsInterrupt:
    """While an output is written, a stop signal raises :class:`OutputInterrupted` (whose
    cleanup removes the temporary file) instead of killing the process on the spot.

    Only in the main thread, and only for signals left at their default (a program's own
    handler, e.g. training's save-then-stop, is kept). A second signal during the cleanup is
    ignored; ``hold()`` defers a signal until the output is published (or not)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._holding = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _SignalsInterrupt:
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in _STOP_SIGNALS:
            try:
                current = signal.getsignal(sig)
                default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
                if current is default:
                    self._previous[sig] = signal.signal(sig, self._handle)
            except (OSError, ValueError):  # not settable here
                continue
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            return  # already stopping: let the cleanup finish
        self.received = signum
        if not self._holding:
            raise OutputInterrupted(signum)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Defer a signal until the block ends (the publishing rename or link)."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self.received is not None:
            raise OutputInterrupted(self.received)


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


_RENAME_NOREPLACE = 1  # linux/fs.h
_AT_FDCWD = -100


@functools.cache
def _renameat2():  # -> the C library's renameat2, or None
    """Linux's renameat2 (glibc 2.28+), which renames without replacing (RENAME_NOREPLACE)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _rename_noreplace(src: str, dst: str) -> None:
    """Rename ``src`` (a file or folder) to ``dst`` unless ``dst`` exists, atomically:
    FileExistsError if it does, whatever appeared there meanwhile (rename(2) alone would
    replace a file or an empty folder).

    renameat2(RENAME_NOREPLACE) where the kernel and file system have it; else a file is
    hard-linked then its temporary name removed (link(2) never replaces), and a folder
    claims its name with mkdir(2) first (which fails if it exists), then is renamed onto
    that empty folder of its own."""
    function = _renameat2()
    if function is not None:
        if function(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst),
                    _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), dst)
    if os.path.isdir(src) and not os.path.islink(src):
        os.mkdir(dst)  # FileExistsError if anything is there
        try:
            os.rename(src, dst)
        except BaseException:
            with contextlib.suppress(OSError):
                os.rmdir(dst)
            raise
        return
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                           errno.EMLINK, errno.ENOSYS):
            raise
        # no hard links here (e.g. some network or FAT file systems): check, then rename
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst) from None
        os.rename(src, dst)
        return
    os.remove(src)


def _publish(tmp: str, path: str, overwrite: bool, existed: bool, is_dir: bool) -> None:
    """Move the finished ``tmp`` onto ``path``: replacing it only when ``overwrite``."""
    if overwrite and not is_dir:
        os.replace(tmp, path)
        return
    if overwrite and os.path.lexists(path):  # a folder: moved aside, then removed
        old = os.path.join(os.path.dirname(path), _part_name(path))
        os.rename(path, old)
        try:
            _rename_noreplace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):  # the old folder back, if its name is free
                _rename_noreplace(old, path)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        _rename_noreplace(tmp, path)
    except FileExistsError:
        raise OutputExistsError(path, appeared=not existed) from None
    except OSError as e:
        if e.errno == errno.ENOTEMPTY:  # a folder's rename onto a non-empty folder
            raise OutputExistsError(path, appeared=not existed) from None
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only on success.

    A crash or exception never leaves a half-written file under the final name; the
    temporary file is removed on an exception, and one left by a killed process is removed
    by the next write of the same path. A stop signal (SIGINT, SIGTERM, SIGHUP) while
    writing raises :class:`OutputInterrupted`, after removing the temporary file. The file
    gets the permissions the umask allows, as any new file. Errors name ``path``
    (:class:`OutputError`, :class:`DiskFullError`).

    Without ``overwrite`` an existing ``path`` is never replaced, even one that another
    process wrote while this one was writing (:class:`OutputExistsError`: the check and the
    move are one atomic step); with it, ``path`` is replaced.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    _ensure_dir(path, directory)
    remove_stale_parts(path)
    existed = os.path.lexists(path)
    tmp = os.path.join(directory, _part_name(path))
    with _SignalsInterrupt() as signals:
        published = False
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            yield tmp
            with signals.hold():
                _publish(tmp, path, overwrite, existed, is_dir=False)
                published = True
        except BaseException as e:
            if not published:
                with contextlib.suppress(OSError):
                    os.remove(tmp)
            if isinstance(e, OutputInterrupted):
                e.outputs.append((tmp, path, published))
                raise
            if isinstance(e, OSError) and not isinstance(e, OutputError):
                raise output_error(path, e) from None
            if is_disk_full(e) and not isinstance(e, DiskFullError):
                raise DiskFullError(path) from None
            raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[str]:
    """As :func:`atomic_path` for a folder: yield a new temporary folder beside ``path``,
    moved onto ``path`` only on success; an existing ``path`` (or one that appeared
    meanwhile, even empty) is replaced only when ``overwrite``."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    _ensure_dir(path, parent)
    remove_stale_parts(path)
    existed = os.path.lexists(path)
    tmp = os.path.join(parent, _part_name(path))
    with _SignalsInterrupt() as signals:
        try:
            os.mkdir(tmp, 0o777)  # the umask applies, as for any new folder
        except OSError as e:
            raise output_error(path, e) from None
        published = False
        try:
            yield tmp
            with signals.hold():
                _publish(tmp, path, overwrite, existed, is_dir=True)
                published = True
        except BaseException as e:
            if not published:
                shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, OutputInterrupted):
                e.outputs.append((tmp, path, published))
                raise
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
