"""Character CNN token embedder: char embedding -> convolutions -> max-pool -> activation."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from bilm.data.vocabulary import PAD_CHAR
from bilm.options import CharCNNOptions


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

    def _trim(self, char_ids: tf.Tensor, shifted: bool) -> tf.Tensor:
        """Drop trailing character columns that only hold padding, keeping ``max_width``.

        Exact: past a token's end every window of width w reads padding characters only and has
        the same value, so keeping ``w`` padding columns beyond the longest token keeps one such
        window per filter and every other window; the max over positions is unchanged. Short
        words then cost a fraction of the 50-character convolution.
        """
        pad = PAD_CHAR + 1 if shifted else PAD_CHAR
        max_width = max(w for w, _ in self.options.filters)
        is_char = tf.logical_and(char_ids != pad, char_ids != 0) if shifted else char_ids != pad
        # shape (n_tokens,): characters before the padding (<begin word> ... <end word>)
        lengths = tf.reduce_sum(tf.cast(is_char, tf.int32), axis=-1)
        keep = tf.minimum(tf.shape(char_ids)[-1], tf.reduce_max(lengths) + max_width)
        return char_ids[:, :keep]

    def call(self, char_ids: tf.Tensor, shifted: bool = True) -> tf.Tensor:
        """Embed tokens given as character ids.

        Args:
            char_ids: int (n_tokens, max_chars). ``shifted``: inference ids, 0 = padding token
                (a zero embedding row is prepended); else training ids 0..260.
        Returns:
            (n_tokens, n_filters) float.
        """
        table = tf.convert_to_tensor(self.char_embed)
        if self.options.padding_row == "learned":  # AllenNLP: row 0 is stored, and learned
            char_ids = self._trim(char_ids, shifted)
            if not shifted:
                char_ids = char_ids + 1
        else:  # bilm-tf: the padding token's row is zeros, never stored
            if shifted:
                table = tf.concat([tf.zeros_like(table[:1]), table], axis=0)
            char_ids = self._trim(char_ids, shifted)
        x = tf.gather(table, char_ids)  # shape (n_tokens, n_chars, char_dim)
        x = x[:, tf.newaxis]  # shape (n_tokens, 1, n_chars, char_dim)
        pooled = []
        for kernel, bias in zip(self.kernels, self.biases):
            conv = tf.nn.conv2d(x, kernel, strides=1, padding="VALID")
            # shape (n_tokens, 1, n_chars - width + 1, count)
            pooled.append(tf.reduce_max(conv, axis=[1, 2]) + bias)
        act = tf.nn.relu if self.options.activation == "relu" else tf.tanh
        return act(tf.concat(pooled, axis=-1))
