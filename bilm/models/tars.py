"""Unpacking a downloaded tar archive (a TF Hub module) safely: every member checked before
anything is written -- regular files and folders only, no absolute or ``..`` paths, sizes
within bounds and the disk's free space."""

from __future__ import annotations

import os
import tarfile

from bilm.models.registry import ModelError

__all__ = ["MAX_MEMBERS", "MAX_UNPACKED_BYTES", "unpack_tar"]

MAX_MEMBERS = 10_000
MAX_UNPACKED_BYTES = 32 << 30


def unpack_tar(path: str, out: str) -> None:
    """Unpack the tar ``path`` (any compression) into the new folder ``out``."""
    from bilm.io.files import check_free_space

    try:
        with tarfile.open(path, "r:*") as tar:
            members = tar.getmembers()
            if len(members) > MAX_MEMBERS:
                raise ModelError(f"{path} lists over {MAX_MEMBERS:,} members: not a model")
            for info in members:
                name = info.name.removeprefix("./")
                if not (info.isreg() or info.isdir()):
                    raise ModelError(f"{path}: member {info.name!r} is not a regular file or "
                                     "folder (a link or a device); refused")
                if name.startswith("/") or ".." in name.split("/"):
                    raise ModelError(f"{path}: member {info.name!r} is a path outside the "
                                     "archive; refused")
            total = sum(i.size for i in members)
            if total > MAX_UNPACKED_BYTES:
                raise ModelError(f"{path} unpacks to {total:,} bytes: not a model archive")
            os.makedirs(out)
            check_free_space(out, total, out, reserve=0)
            tar.extractall(out, filter="data")
    except (tarfile.TarError, EOFError, OSError) as e:
        if isinstance(e, OSError) and getattr(e, "filename", None):
            raise
        raise ModelError(f"{path} is not a readable tar archive ({e})") from None
    entries = os.listdir(out)
    if len(entries) == 1 and os.path.isdir(os.path.join(out, entries[0])):
        inner = os.path.join(out, ".lifted")  # everything in one folder: lift it
        os.rename(os.path.join(out, entries[0]), inner)
        for name in os.listdir(inner):
            os.rename(os.path.join(inner, name), os.path.join(out, name))
        os.rmdir(inner)
