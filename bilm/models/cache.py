"""bilm's cache of downloaded and converted models: ``$BILM_CACHE``, else
``~/.cache/bilm`` (``$XDG_CACHE_HOME/bilm`` where that is set).

A converted model lives in a folder named by its source's fingerprint (path, size and
modification time of every file it was read from), written atomically: a conversion that
stops half-way leaves nothing under the final name, and a changed source is converted
afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable

__all__ = ["CACHE_ENV", "cache_root", "converted", "fingerprint", "source_files"]

CACHE_ENV = "BILM_CACHE"


def cache_root() -> str:
    """The cache folder (not created here)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return os.path.abspath(os.path.expanduser(root))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bilm")


def fingerprint(paths: Iterable[str]) -> str:
    """A short digest of the files' real paths, sizes and modification times."""
    h = hashlib.sha256()
    for path in sorted(os.path.realpath(p) for p in paths):
        st = os.stat(path)
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


def source_files(path: str) -> list[str]:
    """``path`` itself, or every file in the folder ``path``."""
    if os.path.isfile(path):
        return [path]
    return [os.path.join(root, name) for root, _, names in os.walk(path) for name in names]


def converted(kind: str, source: str, write: Callable[[str], None],
              files: Iterable[str] | None = None) -> str:
    """The folder holding ``source`` converted by ``write(folder)``, under the cache's
    ``kind/`` (made now when it is not there, or when ``files`` -- default: ``source``'s
    files -- changed since)."""
    from bilm.io.files import atomic_dir

    name = os.path.basename(os.path.normpath(source)) or kind
    files = source_files(source) if files is None else files
    folder = os.path.join(cache_root(), kind, f"{name}-{fingerprint(files)}")
    marker = os.path.join(folder, "converted.json")
    if os.path.isfile(marker):
        return folder
    with atomic_dir(folder, overwrite=True) as tmp:
        write(tmp)
        with open(os.path.join(tmp, "converted.json"), "w", encoding="utf-8") as f:
            json.dump({"source": os.path.abspath(source), "kind": kind}, f)
    return folder
