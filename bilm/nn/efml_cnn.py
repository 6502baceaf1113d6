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
import numpy as np
import tensorflow as tf

from bilm.nn.layout import WeightEntry
from bilm.nn.token_embedding import TokenEmbedderLayer

if TYPE_CHECKING:
    from bilm.embedders.efml import EFMLOptions

__all__ = ["EFMLTokenEmbedder", "efml_graph_ids"]


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


def _sorted_lookup(keys: np.ndarray, ids: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
    order = np.argsort(keys, kind="stable")
    return tf.constant(keys[order]), tf.constant(ids[order].astype(np.int32))


def _find(sorted_keys: tf.Tensor, sorted_ids: tf.Tensor, queries: tf.Tensor,
          default: int) -> tf.Tensor:
    """The id of each query key (any shape), ``default`` where it is not a key."""
    flat = tf.reshape(queries, [-1])
    at = tf.minimum(tf.searchsorted(sorted_keys, flat, out_type=tf.int32),
                    tf.shape(sorted_keys)[0] - 1)
    found = tf.where(tf.gather(sorted_keys, at) == flat, tf.gather(sorted_ids, at), default)
    return tf.reshape(found, tf.shape(queries))


def _fingerprints(strings: tf.Tensor) -> tf.Tensor:
    """A 64-bit fingerprint of each string (any shape)."""
    flat = tf.reshape(strings, [-1])
    fp = tf.bitcast(tf.fingerprint(flat), tf.int64)
    return tf.reshape(fp, tf.shape(strings))


def efml_graph_ids(ids_maker, tokens: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
    """ELMoForManyLangs' ids of a padded batch of tokens, in the graph (see
    :meth:`bilm.embedders.efml.EFMLTokenIds.graph_ids`)."""
    from bilm.data.vocabulary import BOS, EOS

    m = ids_maker._max_characters
    chars = ids_maker._chars
    single = {c: i for c, i in chars.items() if len(c) == 1}
    char_keys, char_ids = _sorted_lookup(np.array([ord(c) for c in single], np.int32),
                                         np.array(list(single.values())))
    tokens = tf.convert_to_tensor(tokens, tf.string)
    lengths = tf.cast(lengths, tf.int32)
    points = tf.strings.unicode_decode(tokens, "UTF-8", errors="replace")[:, :, : m - 2]
    body = tf.ragged.map_flat_values(
        lambda p: _find(char_keys, char_ids, p, ids_maker._oov), points)
    n = tf.cast(points.row_lengths(axis=2).to_tensor(), tf.int32)[..., tf.newaxis]
    body = body.to_tensor(default_value=ids_maker._pad, shape=[None, None, m - 2])
    body = tf.pad(body, [[0, 0], [0, 0], [1, 1]], constant_values=ids_maker._pad)
    pos = tf.range(m)
    ids = tf.where(pos == 0, ids_maker._first,
                   tf.where(pos <= n, body, tf.where(pos == n + 1, ids_maker._last,
                                                     ids_maker._pad)))
    special = {t: np.array(ids_maker.token_char_ids(t)[-m:]) for t in ("<bos>", "<eos>")}
    for name, row in special.items():
        ids = tf.where((tokens == name)[..., tf.newaxis], tf.constant(row), ids)
    if ids_maker._words is not None:
        words = ids_maker._words
        with tf.init_scope():  # computed eagerly, even while a graph is traced
            keys = _fingerprints(tf.constant(list(words))).numpy()
        word_keys, word_ids = _sorted_lookup(keys, np.array(list(words.values())))
        cut = tf.strings.unicode_encode(points, "UTF-8")  # the token as looked up: cut
        if isinstance(cut, tf.RaggedTensor):
            cut = cut.to_tensor()
        found = _find(word_keys, word_ids, _fingerprints(cut), words["<oov>"])
        inverse = [""] * len(ids_maker._words_list)
        for word, i in words.items():
            inverse[i] = word
        inverse = tf.constant(inverse)  # a fingerprint match is checked against the word
        found = tf.where(tf.gather(inverse, found) == cut, found, words["<oov>"])
        for name in ("<bos>", "<eos>"):
            found = tf.where(tokens == name, words.get(name, words["<oov>"]), found)
        ids = tf.concat([found[..., tf.newaxis], ids], axis=-1)
    width = ids_maker.max_token_length
    batch, t = tf.shape(tokens)[0], tf.shape(tokens)[1]
    bos = tf.constant(ids_maker.token_char_ids(BOS))
    eos = tf.constant(ids_maker.token_char_ids(EOS))
    ids = tf.concat([tf.broadcast_to(bos, [batch, 1, width]), ids,
                     tf.zeros([batch, 1, width], tf.int32)], axis=1) + 1
    steps = tf.range(t + 2)[tf.newaxis, :]
    lengths = lengths[:, tf.newaxis]
    ids = tf.where((steps == lengths + 1)[..., tf.newaxis], eos + 1, ids)
    return tf.where((steps <= lengths + 1)[..., tf.newaxis], ids, 0)
