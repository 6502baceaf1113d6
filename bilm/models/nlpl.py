"""NLPL repository archives (vectors.nlpl.eu/repository): a ``.zip`` holding a model of
another family -- bilm-tf's (``model.hdf5``, ``options.json``, ``meta.json``, ``vocab.txt``
or ``vocab.txt.gz``) or ELMoForManyLangs' -- unpacked once into the cache, safely
(:func:`unpack_zip`), then read as that family.
"""

from __future__ import annotations

import os
import stat
import zipfile

from bilm.models.registry import ModelError, ModelFamily, ModelFiles, families, register_family

__all__ = ["FAMILY", "MAX_MEMBERS", "MAX_UNPACKED_BYTES", "unpack_zip", "unpacked"]

MAX_MEMBERS = 1000  # NLPL's archives hold a handful of files
MAX_UNPACKED_BYTES = 32 << 30  # the largest released ELMo is ~1 GB unpacked
MAX_RATIO = 200  # float32 weights compress ~1.1x; text ~4x: more is a zip bomb


def _problem(info: zipfile.ZipInfo) -> str | None:
    """Why a member may not be unpacked, or None."""
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return "a path outside the archive"
    mode = info.external_attr >> 16
    # (a file type of 0: a zip writer that recorded permissions only, a regular file)
    if info.create_system == 3 and stat.S_IFMT(mode) and not (stat.S_ISREG(mode)
                                                             or stat.S_ISDIR(mode)):
        return "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
    if info.flag_bits & 0x1:
        return "encrypted"
    if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
        return f"compressed {info.file_size / info.compress_size:.0f} to 1 (a zip bomb?)"
    return None


def unpack_zip(path: str, out: str) -> None:
    """Unpack the zip ``path`` into the folder ``out``: every member checked before anything
    is written (no absolute or ``..`` paths, no links or devices, no encryption, sizes within
    :data:`MAX_UNPACKED_BYTES` and the disk's free space), and each member's bytes counted
    against its declared size while they are written (ModelError otherwise)."""
    from bilm.io.files import check_free_space

    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelError(f"{path} is not a readable zip archive ({e})") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise ModelError(f"{path} lists {len(members):,} members (over {MAX_MEMBERS}): not "
                             "a model archive")
        for info in members:
            problem = _problem(info)
            if problem:
                raise ModelError(f"{path}: member {info.filename!r} is {problem}; refused")
        total = sum(i.file_size for i in members)
        if total > MAX_UNPACKED_BYTES:
            raise ModelError(f"{path} unpacks to {total:,} bytes (over {MAX_UNPACKED_BYTES:,}): "
                             "not a model archive")
        check_free_space(out, total, out, reserve=0)
        for info in members:
            target = os.path.join(out, *info.filename.replace("\\", "/").split("/"))
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _copy_member(archive, info, target, path)


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: str,
                 path: str) -> None:
    written = 0
    try:
        with archive.open(info) as src, open(target, "xb") as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > info.file_size:
                    break
                dst.write(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        if isinstance(e, OSError) and e.filename == target:
            raise
        raise ModelError(f"{path}: member {info.filename!r} is damaged ({e})") from None
    if written != info.file_size:
        raise ModelError(f"{path}: member {info.filename!r} holds {written:,}+ bytes but its "
                         f"header says {info.file_size:,}; the archive is damaged")


def _root(folder: str) -> str:
    """The unpacked folder, or its one subfolder when everything sits in one."""
    entries = [e for e in os.listdir(folder) if e != "converted.json"]
    if len(entries) == 1 and os.path.isdir(os.path.join(folder, entries[0])):
        return os.path.join(folder, entries[0])
    return folder


def _detect(path: str) -> bool:
    """A zip by its name or its first bytes (a damaged one too: its open says what is
    wrong)."""
    if not os.path.isfile(path):
        return False
    if path.lower().endswith(".zip"):
        return True
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04" or zipfile.is_zipfile(path)


def unpacked(path: str) -> str:
    """The zip ``path`` unpacked into the cache (once; :func:`unpack_zip`): its folder, or the
    one subfolder everything sits in."""
    from bilm.models.cache import converted

    return _root(converted("unpacked", path, lambda out: unpack_zip(path, out)))


def _open(path: str) -> ModelFiles:
    folder = unpacked(path)
    for family in families():
        if family.name != FAMILY.name and family.detect(folder):
            files = family.open(folder)
            return ModelFiles(f"nlpl/{files.family}", path, files.options_file,
                              files.weight_file, vocab_file=files.vocab_file,
                              run_dir=files.run_dir, meta=files.meta, mix=files.mix,
                              notes=(f"unpacked into {folder}", *files.notes))
    names = ", ".join(sorted(os.listdir(folder))[:12])
    raise ModelError(f"{path} holds no model this version reads (its files: {names})")


FAMILY = register_family(ModelFamily("nlpl", "NLPL repository archive (.zip)", _detect, _open))

