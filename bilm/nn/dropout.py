"""Stateless dropout whose mask follows the global batch, not the replica.

A replica holds rows ``[first, first + b)`` of a global batch of ``total`` rows. Its mask is
the slice of the mask a single replica holding every row would draw (the same stateless
uniform numbers, drawn for the global shape), so that N replicas x b rows train exactly as
one replica x N*b rows. With ``rows=None`` (one replica, inference, tests) it is
``tf.nn.experimental.stateless_dropout``, bit for bit.

The price: each replica draws the uniform numbers of the whole global batch (N times its
own), cheap beside the matmuls the dropped tensors feed.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["Rows", "stateless_dropout"]

# (first global row of this replica's batch, rows of the global batch): ints or int32 scalars;
# the global rows must be known when the graph is built (a constant, for XLA's shapes)
Rows = tuple[tf.Tensor | int, tf.Tensor | int]


def stateless_dropout(x: tf.Tensor, rate: float, seed: tf.Tensor, rows: Rows | None = None,
                      axis: int = 0) -> tf.Tensor:
    """Dropout of ``x`` (rate ``rate``, kept values scaled by 1 / (1 - rate)) with a mask that
    is a function of ``seed`` (a (2,) int seed) and each element's position in the global
    batch: ``x``'s rows lie on ``axis``; ``rows`` (see :data:`Rows`) places them in the global
    batch (None: ``x`` holds the whole batch)."""
    if rows is None:
        return tf.nn.experimental.stateless_dropout(x, rate=rate, seed=seed)
    first, total = rows
    if tf.get_static_value(first) == 0 and tf.get_static_value(total) == x.shape[axis]:
        return tf.nn.experimental.stateless_dropout(x, rate=rate, seed=seed)
    rank = x.shape.rank

    def sampler(shape, dtype):
        # shape (..., total, ...): the uniform numbers of the whole batch, then our rows
        whole = tf.concat([shape[:axis], tf.reshape(tf.cast(total, tf.int32), [1]),
                           shape[axis + 1 :]], axis=0)
        u = tf.random.stateless_uniform(whole, seed=seed, dtype=dtype)
        begin = tf.one_hot(axis, rank, on_value=tf.cast(first, tf.int32), off_value=0,
                           dtype=tf.int32)
        return tf.slice(u, begin, shape)

    return tf.nn.experimental.general_dropout(x, rate, sampler)
