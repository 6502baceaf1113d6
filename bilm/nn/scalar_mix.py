"""Learned scalar mix of biLM layers (ELMo's task-specific weighting)."""

from __future__ import annotations

import keras
import tensorflow as tf


class ScalarMix(keras.layers.Layer):
    """``gamma * sum_k softmax(w)_k * layer_k`` over the biLM layers, as bilm-tf's
    ``weight_layers``.

    Weights: ``{name}_ELMo_W`` (n_layers,) initialised to 0 with an L2 penalty ``l2_coef``
    (collected in ``losses``), and ``{name}_ELMo_gamma`` (1,) initialised to 1.
    ``use_top_only`` takes the top layer alone (times gamma); ``do_layer_norm`` normalises each
    layer over its unmasked values first.
    """

    def __init__(self, n_layers: int, l2_coef: float | None = None,
                 use_top_only: bool = False, do_layer_norm: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_layers, self.l2_coef = n_layers, l2_coef
        self.use_top_only, self.do_layer_norm = use_top_only, do_layer_norm
        self.scalar_weights = None
        if not use_top_only:
            self.scalar_weights = self.add_weight(
                shape=(n_layers,), name=f"{self.name}_ELMo_W", initializer="zeros",
                regularizer=keras.regularizers.L2(l2_coef) if l2_coef else None,
            )
        self.gamma = self.add_weight(shape=(1,), name=f"{self.name}_ELMo_gamma",
                                     initializer="ones")
        self.built = True

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(n_layers=self.n_layers, l2_coef=self.l2_coef,
                      use_top_only=self.use_top_only, do_layer_norm=self.do_layer_norm)
        return config

    def regularization(self) -> tf.Tensor | float:
        """bilm-tf's ``regularization_op``: ``l2_coef * sum(w ** 2)``, or 0.0."""
        if self.use_top_only or not self.l2_coef:
            return 0.0
        return self.l2_coef * tf.reduce_sum(tf.square(self.scalar_weights))

    def call(self, lm_embeddings: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """lm_embeddings (batch, n_layers, T, dim), mask (batch, T) -> (batch, T, dim)."""
        lm_embeddings = tf.convert_to_tensor(lm_embeddings)
        if self.use_top_only:
            return lm_embeddings[:, -1] * self.gamma
        mask_float = tf.cast(mask, lm_embeddings.dtype)
        broadcast_mask = mask_float[..., tf.newaxis]  # shape (batch, T, 1)
        dim = tf.cast(tf.shape(lm_embeddings)[-1], lm_embeddings.dtype)

        def layer_norm(x):
            x_masked = x * broadcast_mask
            n = tf.reduce_sum(mask_float) * dim
            mean = tf.reduce_sum(x_masked) / n
            variance = tf.reduce_sum(((x_masked - mean) * broadcast_mask) ** 2) / n
            return tf.nn.batch_normalization(x, mean, variance, None, None, 1e-12)

        # bilm-tf adds 1/n_layers before the softmax (a no-op, kept for identical rounding).
        normed = tf.nn.softmax(tf.convert_to_tensor(self.scalar_weights) + 1.0 / self.n_layers)
        pieces = []
        for k in range(self.n_layers):
            layer = lm_embeddings[:, k]
            if self.do_layer_norm:
                layer = layer_norm(layer)
            pieces.append(normed[k] * layer)
        return tf.add_n(pieces) * self.gamma
