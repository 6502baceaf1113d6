"""ELMoForManyLangs' token embedder network (its ``ConvTokenEmbedder``; options and ids in
:mod:`bilm.embedders.efml`).

Per token, from its ids ``[word id,] c_0 .. c_{M-1}``:

    E = char_embed[c]                                  (M, char_dim); <pad> is a learned row
    f_i = act(max_t conv_i(E)[t] + b_i)                 valid convolutions over all M columns
    x = concat_i f_i;  for each highway: h = x W + b,   x = g x + (1 - g) relu(h[:F]),
                                         g = sigmoid(h[F:])
    z = [word_embed[w]; x]  (or x);  out = z W_proj + b_proj

The convolution runs over every column (ELMoForManyLangs' ``<pad>`` embedding is trained and
non-zero, so padding columns take part in the max), unlike bilm-tf's CNN, which trims them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import tensorflow as tf

from bilm.nn.layout import WeightEntry
from bilm.nn.token_embedding import TokenEmbedderLayer

if TYPE_CHECKING:
    from bilm.embedders.efml import EFMLOptions

__all__ = ["EFMLTokenEmbedder"]


class EFMLTokenEmbedder(TokenEmbedderLayer):
    """ELMoForManyLangs' char CNN + highways (+ word embedding) + projection to ``dim``."""

    def __init__(self, options: EFMLOptions, dim: int, compute_dtype: str = "float32",
                 **kwargs) -> None:
        super().__init__(dim, use_character_inputs=True, **kwargs)
        self.options = options
        self.matmul_dtype = tf.as_dtype(compute_dtype)
        uniform = keras.initializers.RandomUniform(-0.25, 0.25)
        self.char_embed = self.add_weight(shape=(len(options.chars), options.char_dim),
                                          name="char_embed", initializer=uniform)
        self.word_embed = None
        if options.word_dim:
            self.word_embed = self.add_weight(shape=(len(options.words), options.word_dim),
                                              name="word_embed", initializer=uniform)
        self.kernels, self.biases = [], []
        for i, (width, count) in enumerate(options.filters):
            self.kernels.append(self.add_weight(shape=(width, options.char_dim, count),
                                                name=f"W_cnn_{i}", initializer="glorot_uniform"))
            self.biases.append(self.add_weight(shape=(count,), name=f"b_cnn_{i}",
                                               initializer="zeros"))
        n = options.n_filters
        self.highways = [(self.add_weight(shape=(n, 2 * n), name=f"W_highway_{j}",
                                          initializer="glorot_uniform"),
                          self.add_weight(shape=(2 * n,), name=f"b_highway_{j}",
                                          initializer="zeros"))
                         for j in range(options.n_highway)]
        self.w_proj = self.add_weight(shape=(options.word_dim + n, dim), name="W_proj",
                                      initializer="glorot_uniform")
        self.b_proj = self.add_weight(shape=(dim,), name="b_proj", initializer="zeros")
        self._pad = options.chars.index("<pad>")
        self._pad_word = None if options.words is None else options.words.index("<pad>")
        self.built = True

    def _matmul(self, x: tf.Tensor, w: tf.Variable) -> tf.Tensor:
        return tf.cast(tf.matmul(tf.cast(x, self.matmul_dtype), tf.cast(w, self.matmul_dtype)),
                       tf.float32)

    def call(self, ids: tf.Tensor, shifted: bool = True) -> tf.Tensor:
        """(..., dim) token vectors of ids (..., max_characters_per_token); ``shifted``:
        inference ids (+1, 0 for a padding token, read as ``<pad>``)."""
        ids = tf.convert_to_tensor(ids, tf.int32)
        width = self.options.max_characters_per_token
        flat = tf.reshape(ids, [-1, width])
        if shifted:
            flat = flat - 1  # a padding token (0) becomes -1: <pad> below
        has_word = self.word_embed is not None
        chars = flat[:, 1:] if has_word else flat
        chars = tf.where(chars < 0, self._pad, chars)
        x = tf.gather(self.char_embed, chars)  # (n, M, char_dim)
        x = tf.cast(x, self.matmul_dtype)
        pooled = []
        for kernel, bias in zip(self.kernels, self.biases, strict=True):
            conv = tf.nn.conv1d(x, tf.cast(kernel, self.matmul_dtype), stride=1, padding="VALID")
            pooled.append(tf.reduce_max(tf.cast(conv, tf.float32), axis=1) + bias)
        h = tf.concat(pooled, axis=-1)
        h = tf.nn.relu(h) if self.options.activation == "relu" else tf.tanh(h)
        n = self.options.n_filters
        for w, b in self.highways:
            a = self._matmul(h, w) + b
            gate = tf.sigmoid(a[:, n:])
            h = gate * h + (1.0 - gate) * tf.nn.relu(a[:, :n])
        if has_word:
            words = tf.where(flat[:, 0] < 0, self._pad_word, flat[:, 0])
            h = tf.concat([tf.gather(self.word_embed, words), h], axis=-1)
        out = self._matmul(h, self.w_proj) + self.b_proj
        return tf.reshape(out, tf.concat([tf.shape(ids)[:-1], [self.dim]], axis=0))

    def weight_entries(self) -> list[WeightEntry]:
        pairs = [("char_embed", self.char_embed)]
        if self.word_embed is not None:
            pairs.append(("word_embed", self.word_embed))
        for i, (k, b) in enumerate(zip(self.kernels, self.biases, strict=True)):
            pairs += [(f"W_cnn_{i}", k), (f"b_cnn_{i}", b)]
        for j, (w, b) in enumerate(self.highways):
            pairs += [(f"W_highway_{j}", w), (f"b_highway_{j}", b)]
        pairs += [("W_proj", self.w_proj), ("b_proj", self.b_proj)]
        return [WeightEntry(v, f"EFML/{k}", f"lm/EFML/{k}") for k, v in pairs]
