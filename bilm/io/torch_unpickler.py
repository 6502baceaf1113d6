"""The restricted unpickler that reads a PyTorch state dict's pickles, trusting nothing.

Pickles can run arbitrary code, so every pickle of a ``weights.th`` goes through
:class:`_RestrictedUnpickler`, whose ``find_class`` knows only the handful of globals a state
dict uses (see ``_ALLOWED``) and maps them to this module's own NumPy-side stand-ins; any other
global is refused (:class:`_ForbiddenGlobal`), before anything is imported. Nothing of torch is
imported. The file layouts that hold these pickles are read by :mod:`bilm.io.torch_pickle`.
"""

from __future__ import annotations

import collections
import pickle
from collections.abc import Callable
from typing import Any, BinaryIO, NamedTuple

import numpy as np


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
