"""Character CNN token embedder: char embedding -> convolutions -> max-pool -> activation."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import keras
import tensorflow as tf

from bilm.data.vocabulary import PAD_CHAR

if TYPE_CHECKING:  # bilm.nn never imports the (TensorFlow-free) registries at run time
    from bilm.embedders.char_cnn import CharCNNOptions


class CharCNN(keras.layers.Layer):
    """bilm-tf's character CNN (``char_embed``, ``CNN/W_cnn_i``, ``CNN/b_cnn_i``); AllenNLP's
    (``padding_row="learned"``) differs only in storing a learned row for the padding token.

    Each filter is a valid convolution over the characters of a token; its max over positions,
    plus the bias, goes through the activation. The max is taken before adding the bias, which is
    exact (rounding is monotonic) and saves a pass over every position.
    """

    def __init__(self, options: CharCNNOptions, **kwargs) -> None:
        super().__init__(**kwargs)
        self.options = options
        d = options.embedding_dim
        self.char_embed = self.add_weight(
            shape=(options.n_stored_characters, d), name="char_embed",
            initializer=keras.initializers.RandomUniform(-1.0, 1.0),
        )
        self.kernels, self.biases = [], []
        for i, (width, count) in enumerate(options.filters):
            if options.activation == "relu":
                init = keras.initializers.RandomUniform(-0.05, 0.05)
            else:
                init = keras.initializers.RandomNormal(stddev=math.sqrt(1.0 / (width * d)))
            # shape (1, width, char_dim, count): bilm-tf's conv2d layout, kept for the file.
            self.kernels.append(self.add_weight(shape=(1, width, d, count),
                                                name=f"W_cnn_{i}", initializer=init))
            self.biases.append(self.add_weight(shape=(count,), name=f"b_cnn_{i}",
                                               initializer="zeros"))
        self.built = True

    # Tokens are convolved in this many groups of similar length (see :meth:`call`): 4 groups
    # cut the CNN's forward + backward time by ~15% and the small shape's training step by
    # ~10%; 3 or 6 were no better (measured, TF 2.21, 2 CPU threads; docs/performance.md).
    N_LENGTH_GROUPS = 4

    def _lengths(self, char_ids: tf.Tensor, shifted: bool) -> tf.Tensor:
        """(n_tokens,) characters before the padding (<begin word> ... <end word>)."""
        pad = PAD_CHAR + 1 if shifted else PAD_CHAR
        is_char = tf.logical_and(char_ids != pad, char_ids != 0) if shifted else char_ids != pad
        return tf.reduce_sum(tf.cast(is_char, tf.int32), axis=-1)

    def _pool(self, x: tf.Tensor, longest: tf.Tensor) -> tf.Tensor:
        """Max over positions of every filter, (n, n_filters), for embedded characters x
        (n, n_chars, char_dim) whose tokens have at most ``longest`` characters.

        Filter w reads the first ``longest + w`` columns only. Exact: past a token's end every
        window of width w reads padding only and has one value, and those columns keep one
        such window (and every window that touches a character), so the max is unchanged;
        identical windows also give identical weight gradients.
        """
        x = x[:, tf.newaxis]  # shape (n, 1, n_chars, char_dim)
        n_chars = tf.shape(x)[2]
        pooled = []
        for (width, _), kernel in zip(self.options.filters, self.kernels, strict=True):
            columns = tf.minimum(n_chars, longest + width)
            conv = tf.nn.conv2d(x[:, :, :columns], kernel, strides=1, padding="VALID")
            # shape (n, 1, columns - width + 1, count)
            pooled.append(tf.reduce_max(conv, axis=[1, 2]))
        return tf.concat(pooled, axis=-1)

    def call(self, char_ids: tf.Tensor, shifted: bool = True) -> tf.Tensor:
        """Embed tokens given as character ids.

        Tokens are sorted by length and convolved in :attr:`N_LENGTH_GROUPS` groups, each over
        the columns its longest token needs (:meth:`_pool`): short words cost a fraction of
        the 50-character convolution, forward and backward, with the same results.

        Args:
            char_ids: int (n_tokens, max_chars). ``shifted``: inference ids, 0 = padding token
                (a zero embedding row is prepended); else training ids 0..260.
        Returns:
            (n_tokens, n_filters) float.
        """
        table = tf.convert_to_tensor(self.char_embed)
        lengths = self._lengths(char_ids, shifted)
        if self.options.padding_row == "learned":  # AllenNLP: row 0 is stored, and learned
            if not shifted:
                char_ids = char_ids + 1
        elif shifted:  # bilm-tf: the padding token's row is zeros, never stored
            table = tf.concat([tf.zeros_like(table[:1]), table], axis=0)
        order = tf.argsort(lengths, stable=True)
        sorted_lengths = tf.gather(lengths, order)
        sorted_ids = tf.gather(char_ids, order)
        n, n_chars = tf.shape(char_ids)[0], tf.shape(char_ids)[1]
        widest = max(width for width, _ in self.options.filters)
        groups = self.N_LENGTH_GROUPS
        pooled = []
        empty = tf.zeros([0, self.options.n_filters], self.compute_dtype)
        for g in range(groups):
            start, stop = n * g // groups, n * (g + 1) // groups
            # a group is empty when there are fewer tokens than groups: oneDNN's conv2d gives
            # an empty batch the wrong shape, forward and backward, so it is never called
            def group(start=start, stop=stop):
                longest = sorted_lengths[stop - 1]
                # only the columns the widest filter reads: smaller gathers and gradients
                columns = tf.minimum(n_chars, longest + widest)
                return self._pool(tf.gather(table, sorted_ids[start:stop, :columns]), longest)

            pooled.append(tf.cond(stop > start, group, lambda: empty))
        pooled = tf.gather(tf.concat(pooled, axis=0), tf.math.invert_permutation(order))
        bias = tf.concat(self.biases, axis=0)
        act = tf.nn.relu if self.options.activation == "relu" else tf.tanh
        return act(pooled + tf.cast(bias, pooled.dtype))
