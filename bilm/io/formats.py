"""Weight-file formats: each is one registration of how to open, read and write it.

A format maps dataset names (the weight table's HDF5 keys, :mod:`bilm.nn.layout`) to arrays;
:func:`bilm.io.weights.load_weights` and :func:`~bilm.io.weights.save_weights` match those
names against a network's weight table with the same checks for every format (missing, extra
and misshapen datasets, non-finite values). bilm-tf's HDF5 layout (:mod:`bilm.io.hdf5`) is
built in; a new format is one module that calls :func:`register_format` (see
docs/architecture.md). No TensorFlow and no h5py here.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bilm.nn.layout import WeightEntry

__all__ = ["WeightFileError", "WeightFormat", "WeightReader", "check_values", "format_for",
           "get_format", "register_format"]


class WeightFileError(ValueError):
    """A weight file lacks a dataset, holds an unexpected one, or a shape does not match."""


class WeightReader(Protocol):
    """An open weight file (a context manager): its dataset names and their values."""

    def __enter__(self) -> WeightReader: ...

    def __exit__(self, *exc: object) -> None: ...

    def names(self) -> set[str]:
        """Every dataset name in the file (WeightFileError for a damaged file)."""

    def read(self, name: str) -> np.ndarray:
        """Dataset ``name`` as float32 (checked with :func:`check_values`)."""


@dataclass(frozen=True)
class WeightFormat:
    """One weight-file format.

    Attributes:
        name: what users and messages call it ("hdf5").
        suffixes: file endings that mean this format (".hdf5", ".h5").
        open: path -> a :class:`WeightReader`; WeightFileError (one line, naming the path)
            for a missing or unreadable file.
        write: (path, table) -> None: every entry's ``get()`` under its ``h5_key`` (and its
            ``alias``, when the format has links), float32. Called on a temporary path that
            is renamed into place once written.
        sniff: path -> whether the file's first bytes are this format's (checked before the
            suffixes); None: suffixes only.
    """

    name: str
    suffixes: tuple[str, ...]
    open: Callable[[str], WeightReader]
    write: Callable[[str, Sequence[WeightEntry]], None]
    sniff: Callable[[str], bool] | None = None


_FORMATS: dict[str, WeightFormat] = {}
# the built-in formats, imported on first lookup (their modules import their libraries)
_BUILTIN = {"hdf5": "bilm.io.hdf5"}
DEFAULT_FORMAT = "hdf5"  # a file no format claims is read as bilm-tf's HDF5 (its errors)


def register_format(fmt: WeightFormat) -> WeightFormat:
    """Make ``fmt`` readable and writable everywhere weights are (ValueError if its name is
    taken by another format)."""
    known = _FORMATS.get(fmt.name)
    if known is not None and known != fmt:
        raise ValueError(f"a weight format named {fmt.name!r} is already registered")
    _FORMATS[fmt.name] = fmt
    return fmt


def _load_builtins() -> None:
    for name, module in _BUILTIN.items():
        if name not in _FORMATS:
            importlib.import_module(module)


def get_format(name: str) -> WeightFormat:
    """The registered format ``name`` (ValueError naming the known ones otherwise)."""
    _load_builtins()
    if name not in _FORMATS:
        raise ValueError(f"unknown weight format {name!r}; known: {', '.join(sorted(_FORMATS))}")
    return _FORMATS[name]


def format_for(path: str | os.PathLike[str], by_contents: bool = True) -> WeightFormat:
    """The format of ``path``: the first whose ``sniff`` claims the file (``by_contents``),
    else the one whose suffix it ends with, else HDF5 (whose reader then says what is wrong
    with the file). An output's format is its suffix's (``by_contents=False``)."""
    _load_builtins()
    path = os.fspath(path)
    if by_contents and os.path.isfile(path):
        for fmt in _FORMATS.values():
            if fmt.sniff is not None and fmt.sniff(path):
                return fmt
    lower = path.lower()
    for fmt in _FORMATS.values():
        if lower.endswith(fmt.suffixes):
            return fmt
    return _FORMATS[DEFAULT_FORMAT]


def check_values(value: np.ndarray, key: str, path: str) -> np.ndarray:
    """``value`` as float32, refusing non-numbers, NaN/inf, and values beyond float32."""
    if value.dtype.kind not in "fiu":
        raise WeightFileError(f"{path}: dataset '{key}' holds {value.dtype} values, not numbers")
    n_bad = value.size - np.count_nonzero(np.isfinite(value))
    if n_bad:
        raise WeightFileError(
            f"{path}: dataset '{key}' holds {n_bad} non-finite values (NaN/inf); the file is "
            "damaged or the training diverged")
    with np.errstate(over="ignore"):
        value = value.astype(np.float32, copy=False)
    n_big = value.size - np.count_nonzero(np.isfinite(value))
    if n_big:  # finite in a float64 file, inf as float32
        raise WeightFileError(
            f"{path}: dataset '{key}' holds {n_big} values beyond float32's range")
    return value
