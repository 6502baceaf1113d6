"""A state dict's storages and tensor views: checked before any data is read, then read.

Every tensor's view is checked against its storage before any data is read or any array
allocated: it may address only elements its storage holds, and each at most once (no zero or
overlapping strides, which ``torch.save`` never writes for a parameter; a dimension of size 1
may have any stride, a tensor of 0 elements any view). Every storage, and all the tensors
together, must fit in the cap the caller passes (``cap``:
:data:`bilm.io.torch_pickle.MAX_TOTAL_BYTES`, read at each load); the storages' bytes are read
as the file delivers them (a count the file declares is never allocated up front).
"""

from __future__ import annotations

import math
from typing import Any, BinaryIO

import numpy as np

from bilm.io.torch_unpickler import _FormatError, _int, _Storage, _StorageType, _Tensor, _text

# Storages are read in pieces of this size, so that what is allocated is what the file holds.
_CHUNK = 4 << 20


class _StorageTable:
    """The storages a pickle refers to, by key; checks that every reference agrees, and that
    no storage holds more than ``cap`` bytes."""

    def __init__(self, legacy: bool, cap: int) -> None:
        self.legacy = legacy
        self.cap = cap
        self.roots: dict[str, tuple[_StorageType, int]] = {}

    def __call__(self, pid: tuple[Any, ...]) -> _Storage:
        if len(pid) != (6 if self.legacy else 5):
            raise _FormatError(f"malformed pickle: storage id {pid!r} has the wrong length")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise _FormatError(f"malformed pickle: storage type {storage_type!r}")
        key = _text(key, "a storage key")
        numel = _int(numel, "a storage's numel")
        nbytes, cap = numel * storage_type.raw.itemsize, self.cap
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


def _check_views(tensors: dict[str, _Tensor], cap: int) -> None:
    """Refuse, before any data is read, a view its storage cannot back: one reaching past the
    storage's elements or addressing an element twice (a zero or overlapping stride, as a
    broadcast makes: torch.save never writes one for a parameter), and tensors that take more
    than ``cap`` bytes together (:data:`bilm.io.torch_pickle.MAX_TOTAL_BYTES`). A dimension of
    size 1 may have any stride (it is never stepped), a tensor of 0 elements any view (it
    addresses nothing)."""
    total = 0
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
