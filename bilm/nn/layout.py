"""The weight table: every stored weight of a network beside its names in each file format.

Networks declare their entries where they make the variables (``weight_entries()``); readers
and writers of every format (:mod:`bilm.io`), checkpoints and the set of trained variables
only walk these tables, so no variable can be missed. No TensorFlow and no h5py here: the
entries hold the variables, the formats live in :mod:`bilm.io`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["WeightEntry", "WeightOwner", "weight_table"]


@dataclass(frozen=True)
class WeightEntry:
    """One stored tensor: ``variable[direction]`` (or the whole variable) <-> file keys."""

    variable: object  # a keras.Variable of the network
    h5_key: str
    tf1_key: str
    direction: int | None = None  # index into a direction-stacked variable
    alias: str | None = None  # another HDF5 key read for it (e.g. bilm-tf's 1-layer names)
    name: str | None = None  # the variable's checkpoint name (one for all its directions)

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


class WeightOwner(Protocol):
    """A network with stored weights (the biLM encoder, a token embedder, a contextualizer)."""

    def weight_entries(self) -> list[WeightEntry]: ...


def weight_table(owner: WeightOwner) -> list[WeightEntry]:
    """Every weight of ``owner`` with its HDF5 key and TF1 checkpoint name."""
    return list(owner.weight_entries())
