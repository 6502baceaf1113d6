"""Weight I/O: HDF5 weight files and TF1 checkpoints, through one table.

:func:`weight_table` lists every encoder variable beside its HDF5 dataset and TF1 checkpoint
variable: the token embedder's entries (:meth:`bilm.model.token_embedder.TokenEmbedder.
weight_entries`) then the contextualizer's (:mod:`bilm.encoders`), each declared explicitly
where the variable is made. Readers, writers, checkpoints and the set of trained variables
only walk that table (plus the softmax), so no variable can be missed.
"""

from __future__ import annotations

import math
import os
import re

import h5py
import numpy as np

from bilm.io.files import atomic_path, check_free_space
from bilm.nn.layout import WeightEntry, WeightOwner, weight_table

# No TensorFlow at import: reading HDF5 files needs none (the command line lists them first).

__all__ = [
    "WeightEntry",
    "WeightFileError",
    "list_datasets",
    "load_weights",
    "read_embedding_file",
    "save_weights",
    "weight_table",
]


class WeightFileError(ValueError):
    """A weight file lacks a dataset, holds an unexpected one, or a shape does not match."""


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


# Datasets a weight file may hold that inference does not use (training's softmax).
_IGNORED = ("softmax/",)


def load_weights(encoder: WeightOwner, weight_file: str | os.PathLike[str],
                 embedding_weight_file: str | os.PathLike[str] | None = None) -> None:
    """Assign every weight of ``encoder`` from a bilm-tf HDF5 file.

    The word embedding of a token-input model comes from ``embedding_weight_file`` when given.
    Raises :class:`WeightFileError` (one line, naming the file and the HDF5 key) for a missing
    dataset, a shape mismatch (both shapes), a dataset the options do not account for, NaN/inf
    values, data stored outside the file (external or virtual datasets, soft or external
    links anywhere in the file), or a truncated or damaged file.
    """
    path = os.fspath(weight_file)
    table = weight_table(encoder)
    with _open(path) as f:
        try:
            present = _datasets(f)
        except _H5_ERRORS:
            raise WeightFileError(f"{path}: {_DAMAGED}") from None
        for entry in table:
            key_path = path
            if entry.h5_key == "embedding" and embedding_weight_file is not None:
                key_path = os.fspath(embedding_weight_file)
                value = read_embedding_file(embedding_weight_file)
            elif entry.h5_key in present:
                value = _read_dataset(f, entry.h5_key, path)
            elif entry.alias in present:
                value = _read_dataset(f, entry.alias, path)
            else:
                raise WeightFileError(
                    f"{path}: missing dataset '{entry.h5_key}' (expected shape {entry.shape}); "
                    "do the options match this weight file?"
                )
            if tuple(value.shape) != entry.shape:
                raise WeightFileError(
                    f"{key_path}: dataset '{entry.h5_key}' has shape {tuple(value.shape)}, the "
                    f"options imply {entry.shape}"
                )
            entry.set(value)
        expected = {e.h5_key for e in table} | {e.alias for e in table if e.alias}
        ignored = _IGNORED
        # a token-input model of a char-CNN biLM
        if not getattr(encoder, "use_character_inputs", True):
            ignored += ("char_embed", "CNN")
        unexpected = sorted(k for k in present - expected
                            if not k.startswith(ignored) and k != "embedding")
        if unexpected:
            raise WeightFileError(
                f"{path}: datasets {unexpected} are not used by the options (more layers, "
                "highways or filters in the file than in options.json?)"
            )


def save_weights(encoder: WeightOwner, outfile: str | os.PathLike[str],
                 overwrite: bool = True) -> None:
    """Write ``encoder``'s weights in bilm-tf's HDF5 layout (atomically; an existing
    ``outfile`` is replaced only when ``overwrite``, see :func:`~bilm.io.files.atomic_path`). An
    entry's alias is written too, as an HDF5 hard link (a 1-layer LSTM's cells under both
    AllenNLP's ``MultiRNNCell/Cell0`` names and the plain ``LSTMCell`` names bilm-tf's
    reader expects)."""
    table = weight_table(encoder)
    with atomic_path(outfile, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as f:
        check_free_space(os.path.dirname(tmp), sum(4 * math.prod(e.shape) for e in table),
                         os.fspath(outfile))
        for entry in table:
            f.create_dataset(entry.h5_key, data=entry.get().astype(np.float32))
            if entry.alias:  # another reader's name: a hard link, no second copy of the data
                f[entry.alias] = f[entry.h5_key]


def load_tf1_checkpoint(table: list[WeightEntry], path: str,
                        slots: dict[int, object] | None = None) -> int:
    """Restore a bilm-tf (TF1) training checkpoint into ``table``'s variables (a language
    model's :func:`~bilm.model.lm.tf1_table`) without TF1.

    ``slots`` maps ``id(variable)`` to its Adagrad accumulator, restored from
    ``<name>/Adagrad`` when present. Returns the checkpoint's ``global_step`` (0 if absent).
    Raises :class:`WeightFileError` naming a missing variable or a shape mismatch.
    """
    import tensorflow as tf

    reader = tf.train.load_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()

    def read(name: str, expected: tuple[int, ...]) -> np.ndarray:
        if name not in shapes:
            raise WeightFileError(f"{path}: missing variable '{name}' (expected shape "
                                  f"{expected}); do the options match this checkpoint?")
        value = reader.get_tensor(name)
        if tuple(value.shape) != expected:
            raise WeightFileError(f"{path}: variable '{name}' has shape {tuple(value.shape)}, "
                                  f"the options imply {expected}")
        return value

    for entry in table:
        entry.set(read(entry.tf1_key, entry.shape))
        slot = (slots or {}).get(id(entry.variable))
        if slot is not None and f"{entry.tf1_key}/Adagrad" in shapes:
            WeightEntry(slot, entry.h5_key, entry.tf1_key, entry.direction).set(
                read(f"{entry.tf1_key}/Adagrad", entry.shape))
    return int(reader.get_tensor("global_step")) if "global_step" in shapes else 0
