"""Weight I/O: the ONE place that knows bilm-tf's HDF5 and TF1 checkpoint names.

:func:`weight_table` lists every encoder variable beside its HDF5 dataset and TF1 checkpoint
variable, explicitly; readers and writers only walk that table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from bilm._io import atomic_path
from bilm.encoder import BiLMEncoder

__all__ = [
    "WeightEntry",
    "WeightFileError",
    "load_weights",
    "read_embedding_file",
    "save_weights",
    "weight_table",
]


class WeightFileError(ValueError):
    """A weight file lacks a dataset, holds an unexpected one, or a shape does not match."""


@dataclass(frozen=True)
class WeightEntry:
    """One stored tensor: ``variable[direction]`` (or the whole variable) <-> file keys."""

    variable: object  # a keras.Variable of the encoder
    h5_key: str
    tf1_key: str
    direction: int | None = None  # index into a direction-stacked LSTM variable

    @property
    def shape(self) -> tuple[int, ...]:
        shape = tuple(self.variable.shape)
        return shape[1:] if self.direction is not None else shape

    def get(self) -> np.ndarray:
        value = self.variable.numpy()
        return value[self.direction] if self.direction is not None else value

    def set(self, value: np.ndarray) -> None:
        if self.direction is None:
            self.variable.assign(value)
        else:
            full = self.variable.numpy()
            full[self.direction] = value
            self.variable.assign(full)


def weight_table(encoder: BiLMEncoder) -> list[WeightEntry]:
    """Every weight of ``encoder`` with its bilm-tf HDF5 key and TF1 checkpoint name."""
    table: list[WeightEntry] = []

    def add(variable, h5_key: str, tf1_key: str | None = None,
            direction: int | None = None) -> None:
        table.append(WeightEntry(variable, h5_key, tf1_key or f"lm/{h5_key}", direction))

    if encoder.char_cnn is not None:
        cnn = encoder.char_cnn
        add(cnn.char_embed, "char_embed")
        for i, (kernel, bias) in enumerate(zip(cnn.kernels, cnn.biases)):
            add(kernel, f"CNN/W_cnn_{i}")
            add(bias, f"CNN/b_cnn_{i}")
        if encoder.highway is not None:
            hw = encoder.highway
            for k in range(hw.n_layers):
                add(hw.w_carry[k], f"CNN_high_{k}/W_carry")
                add(hw.b_carry[k], f"CNN_high_{k}/b_carry")
                add(hw.w_transform[k], f"CNN_high_{k}/W_transform")
                add(hw.b_transform[k], f"CNN_high_{k}/b_transform")
        if encoder.w_proj is not None:
            add(encoder.w_proj, "CNN_proj/W_proj")
            add(encoder.b_proj, "CNN_proj/b_proj")
    else:
        add(encoder.embedding, "embedding")
    for k, layer in enumerate(encoder.lstms):
        for d in range(encoder.n_directions):
            h5 = f"RNN_{d}/RNN/MultiRNNCell/Cell{k}/LSTMCell"
            tf1 = f"lm/RNN_{d}/rnn/multi_rnn_cell/cell_{k}/lstm_cell"
            add(layer.kernel, f"{h5}/W_0", f"{tf1}/kernel", d)
            add(layer.bias, f"{h5}/B", f"{tf1}/bias", d)
            if layer.projection is not None:
                add(layer.projection, f"{h5}/W_P_0", f"{tf1}/projection/kernel", d)
    return table


def _datasets(f: h5py.File) -> set[str]:
    keys: set[str] = set()
    f.visititems(lambda name, obj: keys.add(name) if isinstance(obj, h5py.Dataset) else None)
    return keys


def _open(path: str | os.PathLike[str]) -> h5py.File:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightFileError(f"weight file not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise WeightFileError(f"{path} is not a readable HDF5 file: {e}") from None


def read_embedding_file(path: str | os.PathLike[str]) -> np.ndarray:
    """The ``embedding`` dataset of a token-embedding file; shape (n_vocab, dim)."""
    with _open(path) as f:
        if "embedding" not in f:
            raise WeightFileError(f"{os.fspath(path)} has no dataset 'embedding'")
        return f["embedding"][...]


# Datasets a weight file may hold that inference does not use (training's softmax).
_IGNORED = ("softmax/",)


def load_weights(encoder: BiLMEncoder, weight_file: str | os.PathLike[str],
                 embedding_weight_file: str | os.PathLike[str] | None = None) -> None:
    """Assign every weight of ``encoder`` from a bilm-tf HDF5 file.

    The word embedding of a token-input model comes from ``embedding_weight_file`` when given.
    Raises :class:`WeightFileError` naming the HDF5 key for a missing dataset, a shape mismatch
    (both shapes), or a dataset the options do not account for.
    """
    path = os.fspath(weight_file)
    table = weight_table(encoder)
    with _open(path) as f:
        present = _datasets(f)
        for entry in table:
            source, key_path = f, path
            if entry.h5_key == "embedding" and embedding_weight_file is not None:
                source = None
                key_path = os.fspath(embedding_weight_file)
                value = read_embedding_file(embedding_weight_file)
            elif entry.h5_key not in present:
                raise WeightFileError(
                    f"{path}: missing dataset '{entry.h5_key}' (expected shape {entry.shape}); "
                    "do the options match this weight file?"
                )
            else:
                value = source[entry.h5_key][...]
            if tuple(value.shape) != entry.shape:
                raise WeightFileError(
                    f"{key_path}: dataset '{entry.h5_key}' has shape {tuple(value.shape)}, the "
                    f"options imply {entry.shape}"
                )
            entry.set(value.astype(np.float32, copy=False))
        expected = {e.h5_key for e in table}
        ignored = _IGNORED
        if encoder.char_cnn is None:  # a token-input model of a char-CNN biLM
            ignored += ("char_embed", "CNN")
        unexpected = sorted(k for k in present - expected
                            if not k.startswith(ignored) and k != "embedding")
        if unexpected:
            raise WeightFileError(
                f"{path}: datasets {unexpected} are not used by the options (more layers, "
                "highways or filters in the file than in options.json?)"
            )


def save_weights(encoder: BiLMEncoder, outfile: str | os.PathLike[str]) -> None:
    """Write ``encoder``'s weights in bilm-tf's HDF5 layout (atomically)."""
    with atomic_path(outfile) as tmp, h5py.File(tmp, "w") as f:
        for entry in weight_table(encoder):
            f.create_dataset(entry.h5_key, data=entry.get().astype(np.float32))
