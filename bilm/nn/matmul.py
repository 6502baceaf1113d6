"""A matrix product whose input gradient reads the weight already transposed."""

from __future__ import annotations

import tensorflow as tf


def matmul(x: tf.Tensor, w: tf.Tensor, w_t: tf.Tensor | None = None) -> tf.Tensor:
    """``x @ w`` for 2-D x (n, k) and w (k, m) -> (n, m), whose gradient for x is
    ``dy @ w_t``, a plain product with w's transpose held in memory: ``w_t`` (m, k) from the
    caller (transposed once outside a loop; it must equal ``transpose(w)``, or the gradient
    is silently wrong, and it gets no gradient itself), else transposed in the backward pass.

    TensorFlow's gradient of ``x @ w`` is ``matmul(dy, w, transpose_b=True)``, which oneDNN
    runs 1.5-2.7x slower than a plain product at the highway's and the LSTM's shapes and XLA
    ~20% slower (measured, TF 2.21, 2 CPU threads); the values are the same.
    """

    @tf.custom_gradient
    def product(x, w):
        def grad(dy):
            w_t_ = tf.transpose(w) if w_t is None else w_t
            return tf.matmul(dy, w_t_), tf.matmul(x, dy, transpose_a=True)

        return tf.matmul(x, w), grad

    return product(x, w)
