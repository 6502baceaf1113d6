"""Read PyTorch ``weights.th`` state dicts into NumPy, without torch and without trusting the file.

AllenNLP model archives (``model.tar.gz``) keep their weights in ``weights.th``: a PyTorch
``state_dict`` (an ``OrderedDict`` of name -> tensor) written by ``torch.save``. ``torch.save``
writes one of two layouts, and :func:`load_torch_state_dict` reads both:

* the **zip** layout (torch >= 1.6 by default): a zip archive with ``<prefix>/data.pkl`` (the
  pickled dict; each tensor's storage is a persistent id
  ``('storage', storage_type, key, location, numel)``) and ``<prefix>/data/<key>`` (the storage's
  raw bytes), plus ``<prefix>/version``, ``<prefix>/byteorder`` and other small records. The
  prefix varies (``archive``, the file's stem, ...).
* the **legacy** layout (torch < 1.6, or ``_use_new_zipfile_serialization=False``): a run of
  pickles (the magic number, the protocol version 1001, a ``sys_info`` dict, the object itself
  with persistent ids ``('storage', storage_type, key, location, numel, view_metadata)``, the
  sorted list of storage keys), then for each key an int64 little-endian element count followed
  by the storage's raw little-endian bytes.

Every pickle goes through the restricted unpickler of :mod:`bilm.io.torch_unpickler`, which
refuses any global a state dict does not need, before anything is imported; nothing of torch is
imported.

Nor is a small file allowed to cost gigabytes. The first bytes must be a zip signature or a
pickle of the legacy magic number before anything else is read; every tensor's view is checked
against its storage before any data is read or any array allocated
(:mod:`bilm.io.torch_storages`); every storage, and all the tensors together, must fit in
:data:`MAX_TOTAL_BYTES`; of a zip member only the bytes its storage needs are read.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
import zlib
from typing import Any, BinaryIO

import numpy as np

from bilm.io.torch_storages import (
    _CHUNK,
    _by_storage,
    _check_state_dict,
    _check_views,
    _elements,
    _materialize,
    _read_up_to,
    _StorageTable,
)
from bilm.io.torch_unpickler import _ForbiddenGlobal, _FormatError, _unpickle

__all__ = ["TorchWeightsError", "load_torch_state_dict"]


class TorchWeightsError(ValueError):
    """A ``weights.th`` file that cannot (or must not) be read; the message names the file."""


#: The most bytes the arrays of one file may take, all together (and so the most any one
#: storage may hold): more than any biLM's weights, softmax included (AllenNLP's largest
#: Transformer ELMo archives hold under 2 GiB). A file declaring more is refused before
#: anything is allocated. Read at each call, so it can be changed here.
MAX_TOTAL_BYTES = 4 << 30
#: The most bytes the pickled state dict of a zip-layout file (``data.pkl``) may take: a few
#: hundred bytes per tensor.
MAX_PICKLE_BYTES = 256 << 20
# A zip-layout file given as a stream is copied to a temporary file (zipfile needs to seek);
# one this small stays in memory.
_SPOOL_IN_MEMORY = 32 << 20


# torch.serialization's constants for the legacy layout.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_SIGNATURE = b"PK\x03\x04"


def _load_zip(file: BinaryIO) -> dict[str, np.ndarray]:
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise _FormatError(
            f"starts like a zip archive but cannot be read as one (truncated?): {e}"
        ) from e
    with archive:
        names = archive.namelist()
        prefix = names[0].split("/", 1)[0] + "/" if names else ""
        if prefix + "data.pkl" not in names:
            raise _FormatError(
                f"is a zip archive without '{prefix}data.pkl': not a torch.save file, or truncated"
            )
        if prefix + "constants.pkl" in names or any(n.startswith(prefix + "code/") for n in names):
            raise _FormatError("is a TorchScript archive (torch.jit.save), not a state dict")
        # torch writes 'byteorder' since 1.13; older files come from (little-endian) x86/ARM
        # machines, and torch reads them as native-endian.
        if prefix + "byteorder" in names:
            byteorder = _read_member(archive, prefix + "byteorder", 64)
            if byteorder != b"little":
                raise _FormatError(
                    f"was written on a {byteorder.decode('ascii', 'replace')!r}-endian machine; "
                    "only little-endian files are supported"
                )
        table = _StorageTable(legacy=False, cap=MAX_TOTAL_BYTES)
        size = archive.getinfo(prefix + "data.pkl").file_size
        if size > MAX_PICKLE_BYTES:
            raise _FormatError(
                f"has a '{prefix}data.pkl' of {size:,} bytes, more than a state dict's pickle "
                f"takes (bilm.io.torch_pickle.MAX_PICKLE_BYTES = {MAX_PICKLE_BYTES:,})"
            )
        pickled = _read_member(archive, prefix + "data.pkl", size)
        tensors = _check_state_dict(_unpickle(io.BytesIO(pickled), table))
        _check_views(tensors, MAX_TOTAL_BYTES)
        arrays: dict[str, np.ndarray] = {}
        for key, entries in _by_storage(tensors).items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise _FormatError(
                    f"is truncated: zip member '{member}' (storage {key!r}) is missing"
                )
            kind, numel = table.roots[key]
            needed, size = numel * kind.raw.itemsize, archive.getinfo(member).file_size
            if size < needed:  # from the zip's directory, before reading
                raise _FormatError(
                    f"is truncated: zip member '{member}' holds {size} bytes, but its {numel} "
                    f"{kind.torch_name} elements need {needed}"
                )
            # only the bytes the storage needs, however long the member (as torch reads it)
            raw = _read_member(archive, member, needed)
            data = _elements(raw, kind, numel, f"zip member '{member}'")
            for name in entries:
                arrays[name] = _materialize(name, tensors[name], data)
    return {name: arrays[name] for name in tensors}


def _read_member(archive: zipfile.ZipFile, member: str, nbytes: int) -> bytearray:
    """The first ``nbytes`` of a zip member (fewer if it is shorter)."""
    try:
        with archive.open(member) as file:
            return _read_up_to(file, nbytes)
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        raise _FormatError(
            f"is truncated or corrupt: cannot read zip member '{member}': {e}"
        ) from e


def _check_magic(file: BinaryIO) -> None:
    """The legacy layout's first pickle: its magic number."""
    try:
        magic = _unpickle(file, None)
    except _ForbiddenGlobal:
        raise
    except _FormatError:
        magic = None
    if magic != _LEGACY_MAGIC or type(magic) is not int:
        raise _FormatError(
            "is not a PyTorch weights file (neither a zip archive nor a legacy torch.save file)"
        )


def _load_legacy(file: BinaryIO) -> dict[str, np.ndarray]:
    _check_magic(file)
    protocol = _unpickle(file, None)
    if protocol != _LEGACY_PROTOCOL:
        raise _FormatError(f"has legacy protocol version {protocol!r}, not {_LEGACY_PROTOCOL}")
    sys_info = _unpickle(file, None)
    if not isinstance(sys_info, dict):
        raise _FormatError(f"malformed legacy header: sys_info is {sys_info!r}")
    if sys_info.get("little_endian", True) is not True:
        # Such a file stores each storage's element count in the writer's (big-endian) byte
        # order, but its data little-endian; unverified, so refused.
        raise _FormatError("was written on a big-endian machine; only little-endian is supported")
    table = _StorageTable(legacy=True, cap=MAX_TOTAL_BYTES)
    tensors = _check_state_dict(_unpickle(file, table))
    _check_views(tensors, MAX_TOTAL_BYTES)
    keys = _unpickle(file, None)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _FormatError(f"malformed legacy file: the storage key list is {keys!r}")
    if set(keys) != set(table.roots) or len(keys) != len(set(keys)):
        raise _FormatError("malformed legacy file: its storage key list does not match the pickle")
    names = _by_storage(tensors)
    arrays: dict[str, np.ndarray] = {}
    for key in keys:  # the storages follow the pickles, one after another, in this order
        kind, numel = table.roots[key]
        count = file.read(8)
        if len(count) < 8:
            raise _FormatError(f"is truncated: the data of storage {key!r} is missing")
        stored = int.from_bytes(count, "little", signed=True)
        if stored != numel:
            raise _FormatError(
                f"is corrupt: storage {key!r} records {stored} elements, its pickle {numel}"
            )
        raw = _read_up_to(file, numel * kind.raw.itemsize)
        data = _elements(raw, kind, numel, f"storage {key!r}")
        for name in names.get(key, ()):
            arrays[name] = _materialize(name, tensors[name], data)
    return {name: arrays[name] for name in tensors}


def _describe_non_torch(head: bytes) -> str | None:
    """A kinder message for files that are plainly something else."""
    if not head:
        return "is empty, not a PyTorch weights file"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "is an HDF5 file, not a PyTorch weights file"
    if head.startswith(b"\x1f\x8b"):
        return (
            "is gzip-compressed, not a PyTorch weights file (a model.tar.gz archive? "
            "extract its weights.th first)"
        )
    if head[257:262] == b"ustar":
        return "is a tar archive (torch.save's pre-0.4 tar layout is not supported)"
    return None


def load_torch_state_dict(
    source: str | os.PathLike[str] | BinaryIO, *, name: str | None = None
) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (``torch.save(model.state_dict(), ...)``) without torch.

    Args:
        source: a path, or a binary file object, holding a file in PyTorch's zip layout or its
            legacy layout. A file object is read from its current position; one that is not
            seekable, or not at position 0, is read as a stream: the legacy layout as it
            comes, the zip layout (which needs seeking) through a temporary file.
        name: how error messages name the file (default: the path, or the file object's name).

    Returns:
        ``{name: array}`` in the file's order; each array a C-contiguous copy with the tensor's
        shape (``()`` for a scalar, a 0 in the shape for an empty tensor) and dtype: float32,
        float64, float16, int64, int32, int16, int8, uint8 or bool; bfloat16 tensors come back
        as float32 (exactly: the bits are widened). Views (transposes, slices with a storage
        offset, tensors sharing a storage) are resolved with their strides.

    Raises:
        TorchWeightsError: a one-line message naming the file (and the tensor or storage):
            not a PyTorch file, truncated, a global a weights file never needs (e.g.
            ``os.system``: nothing is imported or run), an unsupported dtype, a big-endian
            file, not a flat state dict, a view its storage cannot back, or more than
            :data:`MAX_TOTAL_BYTES` (all refused before the data is read).
        OSError: the path cannot be opened.
    """
    if isinstance(source, (str, os.PathLike)):
        label = name or os.fspath(source)
        with open(source, "rb") as file:
            return _load(file, label, seekable=True)
    label = name or str(getattr(source, "name", "") or "<stream>")
    return _load(source, label, seekable=source.seekable() and source.tell() == 0)


class _Prefixed(io.RawIOBase):
    """A stream's first bytes (already read to look at them), then the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head, self._rest = memoryview(head), rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
            return n
        piece = self._rest.read(len(buffer)) or b""
        buffer[: len(piece)] = piece
        return len(piece)


def _check_head(head: bytes) -> None:
    """From a file's first bytes, before the rest is read: a zip archive, or a legacy file
    whose first pickle is torch's magic number."""
    if head.startswith(_ZIP_SIGNATURE):
        return
    message = _describe_non_torch(head)
    if message:
        raise _FormatError(message)
    _check_magic(io.BytesIO(head))  # (the magic number's pickle takes a few dozen bytes)


def _load(file: BinaryIO, label: str, seekable: bool) -> dict[str, np.ndarray]:
    try:
        head = bytes(_read_up_to(file, 512))
        _check_head(head)
        if seekable:
            file.seek(0)
        else:
            file = io.BufferedReader(_Prefixed(head, file))
            if head.startswith(_ZIP_SIGNATURE):  # zipfile seeks: through a temporary file
                with tempfile.SpooledTemporaryFile(_SPOOL_IN_MEMORY) as copy:
                    limit = MAX_TOTAL_BYTES + MAX_PICKLE_BYTES
                    while piece := file.read(_CHUNK):
                        if copy.tell() + len(piece) > limit:
                            raise _FormatError(
                                f"holds more than {limit:,} bytes, more than a biLM's weights "
                                "take (bilm.io.torch_pickle.MAX_TOTAL_BYTES)"
                            )
                        copy.write(piece)
                    copy.seek(0)
                    return _load_zip(copy)
        if head.startswith(_ZIP_SIGNATURE):
            return _load_zip(file)
        return _load_legacy(file)
    except _FormatError as e:
        raise TorchWeightsError(f"{label}: {e}") from None
