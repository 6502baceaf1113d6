"""bilm-tf's TF1 training checkpoints, read without TF1 (``restart_ckpt_file``, restart.py).

Every variable is found by its TF1 name in a language model's weight table
(:func:`bilm.model.lm.tf1_table`), with its Adagrad accumulator when the checkpoint has one.
"""

from __future__ import annotations

import numpy as np

from bilm.io.formats import WeightFileError
from bilm.nn.layout import WeightEntry

__all__ = ["load_tf1_checkpoint"]


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
