"""bilm-tf's HDF5 weight files: the built-in weight format (:mod:`bilm.io.formats`).

Reading refuses what could make a file read other files or exhaust memory (soft and external
links, virtual and external datasets) and names the file and dataset of every problem;
:func:`list_datasets` (``bilm info``) and :func:`read_embedding_file` (token-input models'
word embeddings) are HDF5-only. Loading and saving a network's weights in any format:
:mod:`bilm.io.weights`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import h5py
import numpy as np

from bilm.io.formats import WeightFileError, WeightFormat, check_values, register_format
from bilm.nn.layout import WeightEntry

# No TensorFlow at import: reading HDF5 files needs none (the command line lists them first).

__all__ = ["HDF5", "WeightFileError", "list_datasets", "read_embedding_file"]


def _walk(group: h5py.Group, prefix: str = ""):
    """(name, dataset) for every link to a dataset, in file order. (``visititems`` visits an
    object once, so a dataset with two names, a hard link, would show only one.)"""
    for key in group:
        obj = group[key]
        name = f"{prefix}{key}"
        if isinstance(obj, h5py.Dataset):
            yield name, obj
        elif isinstance(obj, h5py.Group):
            yield from _walk(obj, name + "/")


def _datasets(f: h5py.File) -> set[str]:
    return {name for name, _ in _walk(f)}


_DAMAGED = "not a readable HDF5 file (truncated or damaged?)"
# h5py's errors for an unreadable file or object (HDF5 raises any of these, by where it fails;
# a damaged object header surfaces as KeyError from ``group[name]`` for a name the group lists)
_H5_ERRORS = (OSError, RuntimeError, KeyError)


def _check_links(f: h5py.File, path: str) -> None:
    """Refuse a file whose objects do not all live in it: every link, in every group, must be
    a hard link (a soft link names a path, an external link another file, whose numbers would
    be read in place of this file's). Also refuses a group that contains itself."""
    name = os.path.basename(path)

    def refuse(where: str, what: str) -> WeightFileError:
        return WeightFileError(f"{path}: '{where}' is {what}; every object of a weight file "
                               f"must live in {name}, so refusing to follow it")

    def visit(group: h5py.Group, prefix: str, ancestors: frozenset[int]) -> None:
        for key in group:
            where = f"{prefix}{key}"
            try:
                link = group.get(key, getlink=True)
            except TypeError:  # h5py: "Unknown link type"
                raise refuse(where, "a user-defined link") from None
            if isinstance(link, h5py.ExternalLink):
                raise refuse(where, f"an external link to {link.filename}:{link.path}")
            if isinstance(link, h5py.SoftLink):
                raise refuse(where, f"a soft link to {link.path}")
            if not isinstance(link, h5py.HardLink):
                raise refuse(where, f"a link of another kind ({type(link).__name__})")
            obj = group[key]
            if isinstance(obj, h5py.Group):
                address = h5py.h5o.get_info(obj.id).addr
                if address in ancestors:
                    raise WeightFileError(f"{path}: group '{where}' contains itself (a cycle of "
                                          "hard links); not a weight file")
                visit(obj, where + "/", ancestors | {address})

    visit(f, "", frozenset({h5py.h5o.get_info(f.id).addr}))


def _open(path: str | os.PathLike[str]) -> h5py.File:
    """The HDF5 file at ``path``, for reading, once every object in it is known to live in it
    (:func:`_check_links`): every reader opens its files here."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightFileError(f"weight file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        # h5py: "... (truncated file: eof = 27160, sblock->base_addr = 0, stored_eof = 54320)"
        sizes = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", str(e))
        detail = (f": it has {int(sizes[1]):,} of its {int(sizes[2]):,} bytes" if sizes
                  else "")
        raise WeightFileError(f"{path}: {_DAMAGED}{detail}") from None
    try:
        _check_links(f, path)
    except _H5_ERRORS:
        f.close()
        raise WeightFileError(f"{path}: {_DAMAGED}") from None
    except BaseException:
        f.close()
        raise
    return f


def _read_dataset(f: h5py.File, key: str, path: str) -> np.ndarray:
    """``f[key]`` as float32, refusing storage outside the file and non-finite values.

    An HDF5 dataset may keep its bytes in other files (EXTERNAL storage, or a VIRTUAL dataset
    mapping other files' datasets): a weight file must not read files it merely names.
    """
    name = os.path.basename(path)
    try:
        dset = f[key]
        if not isinstance(dset, h5py.Dataset):
            raise WeightFileError(f"{path}: '{key}' is a group, not a dataset")
        if dset.is_virtual:
            sources = sorted({m.file_name for m in dset.virtual_sources()})
            raise WeightFileError(
                f"{path}: dataset '{key}' is a virtual dataset mapping other files "
                f"({', '.join(sources)}); refusing to read outside {name}")
        plist = dset.id.get_create_plist()
        if plist.get_external_count():
            files = [os.fsdecode(plist.get_external(i)[0])
                     for i in range(plist.get_external_count())]
            raise WeightFileError(
                f"{path}: dataset '{key}' stores its data in an external file "
                f"({', '.join(files)}); refusing to read outside {name}")
        value = dset[...]
    except _H5_ERRORS:
        raise WeightFileError(f"{path}: {_DAMAGED}: dataset '{key}' cannot be read") from None
    return check_values(value, key, path)


def list_datasets(path: str | os.PathLike[str],
                  ) -> list[tuple[str, tuple[int, ...], str | None]]:
    """(name, shape, same_as) of every dataset name of an HDF5 file, in file order:
    ``same_as`` names the dataset listed first when this name is another link to it (else
    None). A damaged or truncated file raises :class:`WeightFileError`."""
    path = os.fspath(path)
    rows: list[tuple[str, tuple[int, ...], str | None]] = []
    first: dict[int, str] = {}
    with _open(path) as f:
        try:
            for name, obj in _walk(f):
                address = h5py.h5o.get_info(obj.id).addr
                rows.append((name, obj.shape, first.get(address)))
                first.setdefault(address, name)
        except _H5_ERRORS:
            raise WeightFileError(f"{path}: {_DAMAGED}") from None
    return rows


def read_embedding_file(path: str | os.PathLike[str]) -> np.ndarray:
    """The ``embedding`` dataset of a token-embedding file; shape (n_vocab, dim), float32.

    Raises :class:`WeightFileError` as :func:`load_weights` does.
    """
    path = os.fspath(path)
    with _open(path) as f:
        if "embedding" not in f:
            raise WeightFileError(f"{path} has no dataset 'embedding'")
        return _read_dataset(f, "embedding", path)


class _Reader:
    """An open HDF5 weight file (:class:`bilm.io.formats.WeightReader`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.file = _open(path)

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def names(self) -> set[str]:
        try:
            return _datasets(self.file)
        except _H5_ERRORS:
            raise WeightFileError(f"{self.path}: {_DAMAGED}") from None

    def read(self, name: str) -> np.ndarray:
        return _read_dataset(self.file, name, self.path)


def _write(path: str, table: Sequence[WeightEntry]) -> None:
    """Every entry as a float32 dataset; an entry's alias as an HDF5 hard link (a 1-layer
    LSTM's cells under both AllenNLP's ``MultiRNNCell/Cell0`` names and the plain
    ``LSTMCell`` names bilm-tf's reader expects; no second copy of the data)."""
    with h5py.File(path, "w") as f:
        for entry in table:
            f.create_dataset(entry.h5_key, data=entry.get().astype(np.float32))
            if entry.alias:
                f[entry.alias] = f[entry.h5_key]


def _sniff(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


HDF5 = register_format(WeightFormat("hdf5", (".hdf5", ".h5"), _Reader, _write, _sniff))

