"""Loading and saving a network's weights, in any registered weight format.

A network's weight table (:mod:`bilm.nn.layout`) is matched against a file's datasets with
the same checks for every format (:mod:`bilm.io.formats`): a missing dataset, a shape
mismatch (both shapes), a dataset the options do not account for, NaN/inf values; each a
one-line :class:`~bilm.io.formats.WeightFileError` naming the file and the dataset.
"""

from __future__ import annotations

import math
import os

from bilm.io.files import atomic_path, check_free_space
from bilm.io.formats import WeightFileError, format_for
from bilm.io.hdf5 import read_embedding_file
from bilm.nn.layout import WeightOwner, weight_table

__all__ = ["WeightFileError", "load_weights", "save_weights"]


# Datasets a weight file may hold that inference does not use (training's softmax).
_IGNORED = ("softmax/",)


def load_weights(encoder: WeightOwner, weight_file: str | os.PathLike[str],
                 embedding_weight_file: str | os.PathLike[str] | None = None) -> None:
    """Assign every weight of ``encoder`` from a weight file (bilm-tf's HDF5 or another
    registered format, :func:`bilm.io.formats.format_for`).

    The word embedding of a token-input model comes from ``embedding_weight_file`` when given.
    Raises :class:`WeightFileError` (one line, naming the file and the HDF5 key) for a missing
    dataset, a shape mismatch (both shapes), a dataset the options do not account for, NaN/inf
    values, data stored outside the file (external or virtual datasets, soft or external
    links anywhere in the file), or a truncated or damaged file.
    """
    path = os.fspath(weight_file)
    table = weight_table(encoder)
    with format_for(path).open(path) as f:
        present = f.names()
        for entry in table:
            key_path = path
            if entry.h5_key == "embedding" and embedding_weight_file is not None:
                key_path = os.fspath(embedding_weight_file)
                value = read_embedding_file(embedding_weight_file)
            elif entry.h5_key in present:
                value = f.read(entry.h5_key)
            elif entry.alias in present:
                value = f.read(entry.alias)
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
        ignored = _IGNORED + _unused_embedder_keys(encoder)
        unexpected = sorted(k for k in present - expected
                            if not k.startswith(ignored) and k != "embedding")
        if unexpected:
            raise WeightFileError(
                f"{path}: datasets {unexpected} are not used by the options (more layers, "
                "highways or filters in the file than in options.json?)"
            )


def _unused_embedder_keys(encoder: WeightOwner) -> tuple[str, ...]:
    """The datasets (key prefixes) of the options' own token embedder, which a word-input read
    of a character model (through a token-embedding file) does not use."""
    if getattr(encoder, "use_character_inputs", True):
        return ()
    from bilm.embedders import build_token_embedder
    from bilm.embedders.registry import BUILTIN_EMBEDDERS

    options = getattr(encoder, "options", None)
    if options is None or options.embedder_type in BUILTIN_EMBEDDERS:
        return ("char_embed", "CNN")  # bilm-tf's char CNN

    # a registered embedder's keys are its own: ask a (throwaway) network of it
    embedder = build_token_embedder(options, use_character_inputs=True)
    return tuple(e.h5_key for e in weight_table(embedder))


def save_weights(encoder: WeightOwner, outfile: str | os.PathLike[str],
                 overwrite: bool = True) -> None:
    """Write ``encoder``'s weights in bilm-tf's HDF5 layout, or the registered format
    ``outfile``'s suffix names (atomically; an existing ``outfile`` is replaced only when
    ``overwrite``, see :func:`~bilm.io.files.atomic_path`). HDF5 writes an entry's alias as a
    hard link (a 1-layer LSTM's cells under both AllenNLP's and bilm-tf's names)."""
    table = weight_table(encoder)
    fmt = format_for(outfile, by_contents=False)
    with atomic_path(outfile, overwrite=overwrite) as tmp:
        check_free_space(os.path.dirname(tmp), sum(4 * math.prod(e.shape) for e in table),
                         os.fspath(outfile))
        fmt.write(tmp, table)
