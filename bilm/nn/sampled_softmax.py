"""Sampled softmax with TF's log-uniform candidate sampler, made stateless.

``tf.nn.sampled_softmax_loss`` samples with a stateful op whose sequence restarts with the
process, so a resumed run would draw different negatives. This module draws the same kind of
sample (log-uniform over a frequency-sorted vocabulary, ``unique=True``, TF's expected-count
formula) from an explicit seed, so a run resumed from a checkpoint continues bit for bit.
"""

from __future__ import annotations

import tensorflow as tf


def log_uniform_prob(ids: tf.Tensor, range_max: int) -> tf.Tensor:
    """P(id) = log((id + 2) / (id + 1)) / log(range_max + 1), float64."""
    ids = tf.cast(ids, tf.float64)
    log_range = tf.math.log(tf.constant(range_max + 1.0, tf.float64))
    return tf.math.log((ids + 2.0) / (ids + 1.0)) / log_range


def _expected_count(prob: tf.Tensor, num_sampled: int, num_tries: tf.Tensor) -> tf.Tensor:
    # TF's ExpectedCountHelper: with unique sampling, P(picked in num_tries draws)
    tries = tf.cast(num_tries, tf.float64)
    unique = -tf.math.expm1(tries * tf.math.log1p(-prob))
    return tf.where(tf.equal(num_tries, num_sampled), prob * num_sampled, unique)


def log_uniform_unique_sample(num_sampled: int, range_max: int, seed: tf.Tensor,
                              ) -> tuple[tf.Tensor, tf.Tensor]:
    """``num_sampled`` distinct ids drawn log-uniformly from [0, range_max), in draw order,
    and the number of draws it took. ``seed``: (2,) int, the only source of randomness."""
    if num_sampled > range_max:
        raise ValueError(f"cannot draw {num_sampled} distinct negatives from {range_max} "
                         "classes; lower n_negative_samples_batch")
    chunk = max(2 * num_sampled, 1024)
    log_range = tf.math.log(tf.constant(range_max + 1.0, tf.float64))

    def draw(i):
        u = tf.random.stateless_uniform([chunk], seed=tf.random.experimental.stateless_fold_in(
            seed, i), dtype=tf.float64)
        value = tf.cast(tf.exp(u * log_range), tf.int64) - 1
        return tf.math.floormod(value, range_max)

    def not_enough(i, draws):
        return tf.size(tf.unique(draws).y) < num_sampled

    def more(i, draws):
        return i + 1, tf.concat([draws, draw(i)], axis=0)

    _, draws = tf.while_loop(not_enough, more, (tf.constant(1), draw(0)),
                             shape_invariants=(tf.TensorShape([]), tf.TensorShape([None])))
    unique, index = tf.unique(draws)  # unique ids in order of first draw
    first_draw = tf.math.unsorted_segment_min(tf.range(tf.shape(index)[0]), index,
                                              tf.shape(unique)[0])
    sampled = tf.ensure_shape(unique[:num_sampled], [num_sampled])
    return sampled, tf.cast(first_draw[num_sampled - 1] + 1, tf.int64)


def sampled_softmax_loss(weights: tf.Tensor, biases: tf.Tensor, labels: tf.Tensor,
                         inputs: tf.Tensor, num_sampled: int, num_classes: int,
                         seed: tf.Tensor) -> tf.Tensor:
    """Per-row sampled softmax loss, as ``tf.nn.sampled_softmax_loss`` with its default
    sampler and ``remove_accidental_hits=True``.

    Args:
        weights: (num_classes, dim); biases: (num_classes,); labels: (n,) int;
        inputs: (n, dim); seed: (2,) int.
    Returns:
        (n,) loss.
    """
    sampled, num_tries = log_uniform_unique_sample(num_sampled, num_classes, seed)
    labels = tf.cast(labels, tf.int64)
    true_expected = _expected_count(log_uniform_prob(labels, num_classes), num_sampled,
                                    num_tries)
    sampled_expected = _expected_count(log_uniform_prob(sampled, num_classes), num_sampled,
                                       num_tries)
    return tf.nn.sampled_softmax_loss(
        weights=weights, biases=biases, labels=labels[:, tf.newaxis], inputs=inputs,
        num_sampled=num_sampled, num_classes=num_classes, num_true=1,
        sampled_values=(sampled, tf.cast(true_expected[:, tf.newaxis], tf.float32),
                        tf.cast(sampled_expected, tf.float32)),
        remove_accidental_hits=True,
    )


def sampled_softmax_loss_static(weights: tf.Tensor, biases: tf.Tensor, labels: tf.Tensor,
                                inputs: tf.Tensor, sampled: tf.Tensor, num_tries: tf.Tensor,
                                matmul_dtype: tf.DType = tf.float32) -> tf.Tensor:
    """TF's sampled softmax arithmetic (``subtract_log_q``, accidental hits removed) with
    fixed shapes, so XLA can compile it; equals :func:`sampled_softmax_loss` given the same
    negatives. ``matmul_dtype`` (mixed precision): the dtype of the (n, num_sampled) matmul;
    the logits and the loss are float32 whatever it is. Returns the (n,) loss."""
    num_sampled = sampled.shape[0]
    num_classes = weights.shape[0]
    labels = tf.cast(labels, tf.int64)
    true_w = tf.gather(weights, labels)  # shape (n, dim)
    true_logits = tf.reduce_sum(inputs * true_w, axis=1) + tf.gather(biases, labels)
    sampled_logits = tf.matmul(tf.cast(inputs, matmul_dtype),
                               tf.cast(tf.gather(weights, sampled), matmul_dtype),
                               transpose_b=True)
    sampled_logits = tf.cast(sampled_logits, tf.float32)
    sampled_logits += tf.gather(biases, sampled)  # shape (n, num_sampled)
    hits = tf.equal(labels[:, tf.newaxis], sampled[tf.newaxis, :])
    sampled_logits += tf.where(hits, tf.float32.min, 0.0)
    true_q = _expected_count(log_uniform_prob(labels, num_classes), num_sampled, num_tries)
    sampled_q = _expected_count(log_uniform_prob(sampled, num_classes), num_sampled,
                                num_tries)
    true_logits -= tf.cast(tf.math.log(true_q), tf.float32)
    sampled_logits -= tf.cast(tf.math.log(sampled_q), tf.float32)[tf.newaxis, :]
    logits = tf.concat([true_logits[:, tf.newaxis], sampled_logits], axis=1)
    return tf.reduce_logsumexp(logits, axis=1) - true_logits
