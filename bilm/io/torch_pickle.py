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

Pickles can run arbitrary code, so every pickle here goes through :class:`_RestrictedUnpickler`,
whose ``find_class`` knows only the handful of globals a state dict uses (see ``_ALLOWED``) and
maps them to this module's own NumPy-side stand-ins; any other global is refused with a
:class:`TorchWeightsError`, before anything is imported. Nothing of torch is imported.

Nor is a small file allowed to cost gigabytes. The first bytes must be a zip signature or a
pickle of the legacy magic number before anything else is read. Every tensor's view is checked
against its storage before any data is read or any array allocated: it may address only
elements its storage holds, and each at most once (no zero or overlapping strides, which
``torch.save`` never writes for a parameter; a dimension of size 1 may have any stride, a tensor
of 0 elements any view). Every storage, and all the tensors together, must fit in
:data:`MAX_TOTAL_BYTES`; the storages' bytes are read as the file delivers them (a count the file
declares is never allocated up front), and of a zip member only the bytes its storage needs.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO, NamedTuple

import numpy as np

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
# Storages are read in pieces of this size, so that what is allocated is what the file holds.
_CHUNK = 4 << 20
# A zip-layout file given as a stream is copied to a temporary file (zipfile needs to seek);
# one this small stays in memory.
_SPOOL_IN_MEMORY = 32 << 20


# torch.serialization's constants for the legacy layout.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_SIGNATURE = b"PK\x03\x04"


class _StorageType(NamedTuple):
    """Stand-in for a ``torch.<X>Storage`` class: the element type of a storage's raw bytes.

    ``raw`` is the NumPy dtype the bytes are read as (little-endian); ``result`` the dtype handed
    back (bfloat16 is read as its uint16 bit pattern and widened to float32; bool is read as
    uint8 and compared with 0).
    """

    torch_name: str
    raw: np.dtype
    result: np.dtype


def _storage_type(name: str, raw: str, result: str | None = None) -> _StorageType:
    return _StorageType(name, np.dtype(raw), np.dtype(result or raw).newbyteorder("="))


# The storage classes torch writes for the dtypes this reader supports. torch 2.13 still writes
# these (legacy typed-storage names) in both layouts, for CPU and CUDA tensors alike.
_STORAGE_TYPES: dict[str, _StorageType] = {
    "FloatStorage": _storage_type("torch.FloatStorage", "<f4"),
    "DoubleStorage": _storage_type("torch.DoubleStorage", "<f8"),
    "HalfStorage": _storage_type("torch.HalfStorage", "<f2"),
    "BFloat16Storage": _storage_type("torch.BFloat16Storage", "<u2", "float32"),
    "LongStorage": _storage_type("torch.LongStorage", "<i8"),
    "IntStorage": _storage_type("torch.IntStorage", "<i4"),
    "ShortStorage": _storage_type("torch.ShortStorage", "<i2"),
    "CharStorage": _storage_type("torch.CharStorage", "i1"),
    "ByteStorage": _storage_type("torch.ByteStorage", "u1"),
    "BoolStorage": _storage_type("torch.BoolStorage", "u1", "bool"),
}

# Legitimate torch names for dtypes this reader does not convert: named in the error message
# (an unsupported dtype), never imported or allowed.
_UNSUPPORTED_TORCH_NAMES = {
    ("torch", "ComplexFloatStorage"): "complex64",
    ("torch", "ComplexDoubleStorage"): "complex128",
    ("torch", "QInt8Storage"): "qint8",
    ("torch", "QUInt8Storage"): "quint8",
    ("torch", "QInt32Storage"): "qint32",
    ("torch", "QUInt4x2Storage"): "quint4x2",
    ("torch", "QUInt2x4Storage"): "quint2x4",
    # torch >= 2.3 pickles tensors of its newer dtypes (uint16/32/64, the float8 types, ...)
    # with _rebuild_tensor_v3 over a torch.storage.UntypedStorage plus a torch.<dtype> object.
    ("torch._utils", "_rebuild_tensor_v3"): "uint16/uint32/uint64/float8 and other newer dtypes",
    ("torch.storage", "UntypedStorage"): "an untyped storage (newer dtypes)",
}


class _Storage(NamedTuple):
    """What a persistent id resolves to: elements ``[offset, offset + numel)`` of storage ``key``.

    ``offset``/``numel`` differ from ``(0, root_numel)`` only for the legacy layout's storage
    views (``view_metadata``), which torch < 0.4 could write.
    """

    key: str
    type: _StorageType
    root_numel: int
    offset: int
    numel: int


class _Tensor(NamedTuple):
    """A tensor as the pickle describes it; its data is read once the storages are at hand."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    negate: bool


class _FormatError(Exception):
    """Internal: a problem with the file's content; re-raised as TorchWeightsError(file: msg)."""


class _ForbiddenGlobal(_FormatError):
    """Internal: the pickle names a global outside the allow-list (never imported)."""


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if type(value) is not int or value < minimum:
        raise _FormatError(f"malformed pickle: {what} is {value!r}, not an integer >= {minimum}")
    return value


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple):
        raise _FormatError(f"malformed pickle: {what} is {value!r}, not a tuple")
    return tuple(_int(v, what) for v in value)


def _text(value: Any, what: str) -> str:
    # Files pickled by Python 2 may hold these internal strings as bytes (as torch notes).
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        raise _FormatError(f"malformed pickle: {what} is {value!r}, not a string")
    return value


class _RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that resolves only the globals a PyTorch state dict needs.

    See "Restricting Globals" in Python's ``pickle`` documentation. ``find_class`` maps each
    allowed ``(module, name)`` to a stand-in (never importing anything) and refuses everything
    else; ``persistent_load`` turns torch's storage ids into :class:`_Storage` records, through
    ``storage_id`` (``None``: persistent ids are refused, as in the legacy header pickles).
    The rebuild functions are handed out as bound methods, so a hostile ``BUILD`` opcode can
    neither set attributes on them nor change them for later files.
    """

    # (module, name) -> the attribute of this class that stands in for it, or a storage type.
    _ALLOWED: dict[tuple[str, str], str | _StorageType] = {
        # The state dict itself (torch's Module.state_dict() returns an OrderedDict; every file
        # seen has it: the AllenNLP fixture, torch 2.13's zip and legacy files).
        ("collections", "OrderedDict"): "_ordered_dict",
        # How torch >= 0.4 pickles a tensor (all files seen); its optional 7th argument, the
        # {'neg': True} metadata of a negative view, is in state_dict_*.th (torch 2.13).
        ("torch._utils", "_rebuild_tensor_v2"): "_rebuild_tensor_v2",
        # How torch 0.3 pickled a tensor (the hand-made legacy_old_style.th, read by torch 2.13).
        ("torch._utils", "_rebuild_tensor"): "_rebuild_tensor",
        # An nn.Parameter stored as such, as state_dict(keep_vars=True) holds them
        # (state_dict_*.th, torch 2.13).
        ("torch._utils", "_rebuild_parameter"): "_rebuild_parameter",
        # The storage classes, as markers of the element type (all files seen).
        **{("torch", name): storage for name, storage in _STORAGE_TYPES.items()},
    }

    def __init__(
        self,
        file: BinaryIO,
        storage_id: Callable[[tuple[Any, ...]], _Storage] | None,
    ) -> None:
        super().__init__(file)
        self._storage_id = storage_id

    def find_class(self, module: str, name: str) -> Any:
        allowed = self._ALLOWED.get((module, name)) if self._storage_id is not None else None
        if isinstance(allowed, _StorageType):
            return allowed
        if allowed is not None:
            return getattr(self, allowed)
        if (module, name) in _UNSUPPORTED_TORCH_NAMES:
            raise _FormatError(
                f"uses '{module}.{name}' ({_UNSUPPORTED_TORCH_NAMES[module, name]}): a dtype this "
                "reader does not support (float32/64/16, bfloat16, int64/32/16/8, uint8, bool)"
            )
        raise _ForbiddenGlobal(
            f"refers to '{module}.{name}', which a weights file never needs; refusing to load it"
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if self._storage_id is None:
            raise _FormatError("malformed pickle: a persistent id where none belongs")
        if not isinstance(pid, tuple) or not pid or _text(pid[0], "persistent id") != "storage":
            raise _FormatError(f"malformed pickle: unknown persistent id {pid!r}")
        return self._storage_id(pid)

    # ---- stand-ins for the allowed globals -------------------------------------------------

    def _ordered_dict(self, *args: Any) -> collections.OrderedDict:
        return collections.OrderedDict(*args)

    def _rebuild_tensor(self, storage: Any, storage_offset: Any, size: Any, stride: Any) -> _Tensor:
        """``torch._utils._rebuild_tensor(storage, storage_offset, size, stride)``."""
        if not isinstance(storage, _Storage):
            raise _FormatError(f"malformed pickle: a tensor over {storage!r}, not a storage")
        size = _ints(size, "a tensor's size")
        stride = _ints(stride, "a tensor's stride")
        if len(size) != len(stride):
            raise _FormatError(f"malformed pickle: a tensor of size {size} has stride {stride}")
        offset = _int(storage_offset, "a tensor's storage offset")
        return _Tensor(storage, offset, size, stride, negate=False)

    def _rebuild_tensor_v2(
        self,
        storage: Any,
        storage_offset: Any,
        size: Any,
        stride: Any,
        requires_grad: Any = False,
        backward_hooks: Any = None,
        metadata: Any = None,
    ) -> _Tensor:
        """``torch._utils._rebuild_tensor_v2``; requires_grad and the (empty) hooks are dropped.

        ``metadata`` is torch's ``get_tensor_metadata``: ``{'neg': True}`` for a negative view
        (``torch._neg_view``), whose stored values are the negatives of the tensor's.
        """
        tensor = self._rebuild_tensor(storage, storage_offset, size, stride)
        if metadata:
            if not isinstance(metadata, dict) or not set(metadata) <= {"neg", "conj"}:
                raise _FormatError(f"unsupported tensor metadata {metadata!r}")
            if metadata.get("neg") and tensor.storage.type.result == np.bool_:
                raise _FormatError("malformed pickle: a negative view of a bool tensor")
            # 'conj' is the identity on the real dtypes supported here.
            tensor = tensor._replace(negate=bool(metadata.get("neg", False)))
        return tensor

    def _rebuild_parameter(self, data: Any, requires_grad: Any, backward_hooks: Any) -> _Tensor:
        """``torch._utils._rebuild_parameter``: an ``nn.Parameter`` is its data here."""
        if not isinstance(data, _Tensor):
            raise _FormatError(f"malformed pickle: a parameter of {data!r}, not a tensor")
        return data


class _StorageTable:
    """The storages a pickle refers to, by key; checks that every reference agrees."""

    def __init__(self, legacy: bool) -> None:
        self.legacy = legacy
        self.roots: dict[str, tuple[_StorageType, int]] = {}

    def __call__(self, pid: tuple[Any, ...]) -> _Storage:
        if len(pid) != (6 if self.legacy else 5):
            raise _FormatError(f"malformed pickle: storage id {pid!r} has the wrong length")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise _FormatError(f"malformed pickle: storage type {storage_type!r}")
        key = _text(key, "a storage key")
        numel = _int(numel, "a storage's numel")
        nbytes, cap = numel * storage_type.raw.itemsize, MAX_TOTAL_BYTES
        if nbytes > cap:
            raise _FormatError(
                f"storage {key!r} declares {numel:,} {storage_type.torch_name} elements "
                f"({nbytes:,} bytes), more than a biLM's weights take "
                f"(bilm.io.torch_pickle.MAX_TOTAL_BYTES = {cap:,} bytes); refusing to read it"
            )
        if self.roots.setdefault(key, (storage_type, numel)) != (storage_type, numel):
            raise _FormatError(f"storage {key!r} is described in two different ways")
        offset, view_numel = 0, numel
        view = pid[5] if self.legacy else None
        if view is not None:  # (view_key, offset, view_size) in elements; torch < 0.4 only
            if not isinstance(view, tuple) or len(view) != 3:
                raise _FormatError(f"malformed pickle: storage view {view!r}")
            offset = _int(view[1], "a storage view's offset")
            view_numel = _int(view[2], "a storage view's size")
            if offset + view_numel > numel:
                raise _FormatError(f"a view of storage {key!r} goes past its {numel} elements")
        return _Storage(key, storage_type, numel, offset, view_numel)


def _materialize(name: str, tensor: _Tensor, data: np.ndarray) -> np.ndarray:
    """One tensor's array (a C-contiguous copy) from its storage's elements ``data`` (1-D)."""
    storage = tensor.storage
    shape = tensor.size
    kind = storage.type
    if 0 in shape:
        array = np.empty(shape, kind.raw)
    else:  # the view was checked against its storage (_check_views)
        start = storage.offset + tensor.offset
        view = np.lib.stride_tricks.as_strided(
            data[start:],
            shape=shape,
            strides=tuple(s * data.itemsize for s in tensor.stride),
            writeable=False,
        )
        array = np.array(view, order="C", copy=True)
    if kind.result == np.float32 and kind.raw == np.uint16:  # bfloat16: the top half of a float32
        array = (array.astype(np.uint32) << 16).view(np.float32)
    elif kind.result == np.bool_:
        array = array != 0
    else:
        array = array.astype(kind.result, copy=False)
    if tensor.negate:
        array = np.negative(array)
    return array  # C-contiguous: every branch above makes a fresh array


def _check_state_dict(obj: Any) -> dict[str, _Tensor]:
    if not isinstance(obj, dict):
        raise _FormatError(
            f"holds a {type(obj).__name__}, not a state dict (a mapping of names to tensors)"
        )
    for key, value in obj.items():
        if not isinstance(key, str):
            raise _FormatError(f"state dict key {key!r} is not a string")
        if not isinstance(value, _Tensor):
            raise _FormatError(
                f"state dict entry {key!r} is a {type(value).__name__}, not a tensor; only flat "
                "state dicts (name -> tensor) are supported"
            )
    return dict(obj)


def _check_views(tensors: dict[str, _Tensor]) -> None:
    """Refuse, before any data is read, a view its storage cannot back: one reaching past the
    storage's elements or addressing an element twice (a zero or overlapping stride, as a
    broadcast makes: torch.save never writes one for a parameter), and tensors that take more
    than :data:`MAX_TOTAL_BYTES` together. A dimension of size 1 may have any stride (it is
    never stepped), a tensor of 0 elements any view (it addresses nothing)."""
    cap, total = MAX_TOTAL_BYTES, 0
    for name, tensor in tensors.items():
        size, stride, storage = tensor.size, tensor.stride, tensor.storage
        numel = math.prod(size)
        if numel:
            where = f"tensor {name!r} (size {size}, stride {stride}, offset {tensor.offset})"
            last = tensor.offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
            if last >= storage.numel:
                raise _FormatError(
                    f"{where} reaches past the {storage.numel} elements of its storage "
                    f"{storage.key!r}"
                )
            # Each element once: taken by increasing stride, every stride must step past all
            # the elements the smaller ones reach (then each index has its own element, and
            # with the bound above the tensor is no larger than its storage).
            reach = 1
            for s, n in sorted((s, n) for n, s in zip(size, stride, strict=True) if n > 1):
                if s < reach:
                    raise _FormatError(
                        f"{where} addresses elements of its storage {storage.key!r} more than "
                        "once (a zero or overlapping stride, which torch.save never writes for "
                        "a weight); refusing to read it"
                    )
                reach += (n - 1) * s
        total += numel * storage.type.result.itemsize
        if total > cap:
            raise _FormatError(
                f"tensor {name!r} (size {size}) brings the tensors to {total:,} bytes, more "
                f"than a biLM's weights take (bilm.io.torch_pickle.MAX_TOTAL_BYTES = {cap:,} "
                "bytes); refusing to read it"
            )


def _by_storage(tensors: dict[str, _Tensor]) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for name, tensor in tensors.items():
        names.setdefault(tensor.storage.key, []).append(name)
    return names


def _read_up_to(file: BinaryIO, nbytes: int) -> bytearray:
    """Up to ``nbytes`` of ``file`` (fewer at its end), read in pieces: what is allocated is
    what the file holds, whatever count it declares."""
    data = bytearray()
    while len(data) < nbytes:
        piece = file.read(min(_CHUNK, nbytes - len(data)))
        if not piece:
            break
        data += piece
    return data


def _elements(raw: bytes | bytearray, kind: _StorageType, numel: int, where: str) -> np.ndarray:
    needed = numel * kind.raw.itemsize
    if len(raw) < needed:
        raise _FormatError(
            f"is truncated: {where} holds {len(raw)} bytes, but its {numel} "
            f"{kind.torch_name} elements need {needed}"
        )
    return np.frombuffer(raw, dtype=kind.raw, count=numel)


def _unpickle(file: BinaryIO, storage_id: Callable[[tuple[Any, ...]], _Storage] | None) -> Any:
    """One pickle from ``file`` through the restricted unpickler; errors become _FormatError."""
    try:
        return _RestrictedUnpickler(file, storage_id).load()
    except _FormatError:
        raise
    except EOFError as e:
        raise _FormatError("is truncated: a pickle ends early") from e
    except MemoryError:  # an opcode declaring a string or bytes of gigabytes
        raise _FormatError("malformed pickle: it declares an object too large to hold") from None
    except pickle.UnpicklingError as e:
        if "truncated" in str(e):
            raise _FormatError("is truncated: a pickle ends early") from e
        raise _FormatError(f"malformed pickle: {e}") from e
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as e:
        raise _FormatError(f"malformed pickle: {type(e).__name__}: {e}") from e


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
        table = _StorageTable(legacy=False)
        size = archive.getinfo(prefix + "data.pkl").file_size
        if size > MAX_PICKLE_BYTES:
            raise _FormatError(
                f"has a '{prefix}data.pkl' of {size:,} bytes, more than a state dict's pickle "
                f"takes (bilm.io.torch_pickle.MAX_PICKLE_BYTES = {MAX_PICKLE_BYTES:,})"
            )
        pickled = _read_member(archive, prefix + "data.pkl", size)
        tensors = _check_state_dict(_unpickle(io.BytesIO(pickled), table))
        _check_views(tensors)
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
    table = _StorageTable(legacy=True)
    tensors = _check_state_dict(_unpickle(file, table))
    _check_views(tensors)
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
