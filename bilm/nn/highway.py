"""Highway layers (Srivastava et al., 2015) as bilm-tf computes them."""

from __future__ import annotations

import math

import keras
import tensorflow as tf


class Highway(keras.layers.Layer):
    """``n_layers`` highway layers of width ``dim``, with ``g = sigmoid(x W_carry + b_carry)``:

    - ``gate="transform"`` (bilm-tf): ``y = g * relu(x W_transform + b_transform) + (1-g) x``
      (bilm-tf's naming: its "carry" gate weights the transform branch);
    - ``gate="carry"`` (AllenNLP's ``Highway``): ``y = g * x + (1-g) * relu(x W_transform +
      b_transform)``, the gate on the carry path (its fused layer's second half).
    """

    def __init__(self, dim: int, n_layers: int, gate: str = "transform", **kwargs) -> None:
        super().__init__(**kwargs)
        if gate not in ("transform", "carry"):
            raise ValueError(f"gate must be 'transform' or 'carry', got {gate!r}")
        self.dim, self.n_layers, self.gate = dim, n_layers, gate
        # the gate starts mostly carrying the input, in either form (bilm-tf: -2; AllenNLP's
        # CnnHighwayEncoder: +2)
        gate_bias = -2.0 if gate == "transform" else 2.0

        def w_init():  # a new initializer per weight: one instance would repeat its values
            return keras.initializers.RandomNormal(stddev=math.sqrt(1.0 / dim))

        self.w_carry, self.b_carry, self.w_transform, self.b_transform = [], [], [], []
        for k in range(n_layers):
            self.w_carry.append(self.add_weight(shape=(dim, dim), name=f"W_carry_{k}",
                                                initializer=w_init()))
            self.b_carry.append(self.add_weight(shape=(dim,), name=f"b_carry_{k}",
                                                initializer=keras.initializers.Constant(
                                                    gate_bias)))
            self.w_transform.append(self.add_weight(shape=(dim, dim), name=f"W_transform_{k}",
                                                    initializer=w_init()))
            self.b_transform.append(self.add_weight(shape=(dim,), name=f"b_transform_{k}",
                                                    initializer="zeros"))
        self.built = True

    def call(self, x: tf.Tensor) -> tf.Tensor:
        """x: (n_tokens, dim) -> (n_tokens, dim)."""
        for k in range(self.n_layers):
            gate = tf.sigmoid(tf.matmul(x, self.w_carry[k]) + self.b_carry[k])
            transform = tf.nn.relu(tf.matmul(x, self.w_transform[k]) + self.b_transform[k])
            if self.gate == "transform":
                x = gate * transform + (1.0 - gate) * x
            else:
                x = gate * x + (1.0 - gate) * transform
        return x
