"""AllenNLP's layer normalization (Transformer ELMo's): ``gamma * (x - mean) / (std + eps) +
beta`` over the last axis, with the biased standard deviation and ``eps`` added to the std
(not to the variance, as ``keras.layers.LayerNormalization`` does)."""

from __future__ import annotations

import keras
import tensorflow as tf

EPSILON = 1e-13  # allennlp.nn.util.tiny_value_of_dtype(float32)


def layer_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
    """x (..., dim) -> (..., dim); gamma, beta broadcast against x (e.g. (dim,) or
    (n_directions, 1, 1, dim)). Computed in float32 whatever x's dtype."""
    x = tf.cast(x, tf.float32)
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    std = tf.sqrt(tf.reduce_mean(tf.square(x - mean), axis=-1, keepdims=True))
    return gamma * (x - mean) / (std + EPSILON) + beta


class LayerNorm(keras.layers.Layer):
    """:func:`layer_norm` with its own ``gamma`` (ones) and ``beta`` (zeros), shape (dim,)."""

    def __init__(self, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gamma = self.add_weight(shape=(dim,), name="gamma", initializer="ones")
        self.beta = self.add_weight(shape=(dim,), name="beta", initializer="zeros")
        self.built = True

    def call(self, x: tf.Tensor) -> tf.Tensor:
        """x (..., dim) -> (..., dim) float32."""
        return layer_norm(x, self.gamma, self.beta)
