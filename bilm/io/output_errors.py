"""Errors of outputs that cannot be written: one line naming the user's path and the reason
(a full disk, a read-only folder, a file in the way, an output that exists)."""

from __future__ import annotations

import errno
import os

__all__ = ["DiskFullError", "OutputError", "OutputExistsError", "is_disk_full", "output_error"]


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
