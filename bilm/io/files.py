"""Safe outputs: atomic writes that clean up after themselves (a temporary file beside the
output, published only on success and never over an output that appeared meanwhile), and a
free-space check for HDF5 writers. Their errors (:mod:`bilm.io.output_errors`) name the
user's path; a stop signal while writing removes the temporary file
(:mod:`bilm.io.stop_signals`)."""

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
import sys
from collections.abc import Iterator
from typing import TextIO

from bilm.io.output_errors import (
    DiskFullError,
    OutputError,
    OutputExistsError,
    is_disk_full,
    output_error,
)
from bilm.io.processes import _HOST, _pid_alive
from bilm.io.stop_signals import OutputInterrupted, _SignalsInterrupt

logger = logging.getLogger(__name__)

# DiskFullError, OutputError, OutputExistsError and OutputInterrupted (what atomic_path raises)
# live in their own modules and stay importable from here.
__all__ = [
    "DiskFullError",
    "OutputError",
    "OutputExistsError",
    "OutputInterrupted",
    "atomic_dir",
    "atomic_path",
    "check_free_space",
    "is_disk_full",
    "remove_stale_parts",
    "text_output",
]


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
def _part_name(path: str) -> str:
    return (f".{os.path.basename(path)}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.part")


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
            signals.raise_received()  # a signal while writing: never published
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
def text_output(path: str | os.PathLike[str] | None, overwrite: bool = False
                ) -> Iterator[TextIO]:
    """A UTF-8 text stream: standard output when ``path`` is None, else ``path`` written
    atomically (:func:`atomic_path`: published only when the block ends without an error)."""
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "w", encoding="utf-8") as f:
        yield f


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
            signals.raise_received()  # a signal while writing: never published
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
