"""AllenNLP's bidirectional Transformer LM (``BidirectionalLanguageModelTransformer``, the
Transformer ELMo of Peters et al., 2018, "Dissecting Contextual Word Embeddings").

Per direction, ``n_layers`` pre-layer-norm blocks over the same, un-reversed sentence::

    x = token vectors + sinusoidal positions (sin on even, cos on odd channels; no scaling)
    x = dropout(x, input_dropout)                      # once, shared by both directions
    block:  x = x + dropout(attention(LN(x)))          # 8 heads, scaled dot products
            x = x + dropout(W_2 dropout(relu(W_1 LN(x))))
    the top block's output is layer-normalized (the layers below are returned as they are)

The forward stack's position i attends to positions <= i, the backward one's to positions
>= i; both never see a padding key (AllenNLP masks the forward stack by its query rows and the
backward one by its key columns: the same at every real position). Layer norm is AllenNLP's:
``gamma * (x - mean) / (std + 1e-13) + beta`` with the biased std. Stateless.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from bilm.nn.contextualizer import Contextualizer
from bilm.nn.dropout import Rows, stateless_dropout
from bilm.nn.layer_norm import layer_norm
from bilm.nn.layout import WeightEntry

if TYPE_CHECKING:  # the options type only: bilm.nn never imports bilm.encoders
    from bilm.encoders.transformer import TransformerOptions

__all__ = ["TransformerContextualizer", "positional_encoding"]

# the parts of one block: (HDF5 name, attribute, shape given (width, hidden))
_BLOCK = (
    ("attention/W_query", "w_query", lambda w, h: (w, w)),
    ("attention/b_query", "b_query", lambda w, h: (w,)),
    ("attention/W_key", "w_key", lambda w, h: (w, w)),
    ("attention/b_key", "b_key", lambda w, h: (w,)),
    ("attention/W_value", "w_value", lambda w, h: (w, w)),
    ("attention/b_value", "b_value", lambda w, h: (w,)),
    ("attention/W_output", "w_output", lambda w, h: (w, w)),
    ("attention/b_output", "b_output", lambda w, h: (w,)),
    ("attention_norm/gamma", "attention_gamma", lambda w, h: (w,)),
    ("attention_norm/beta", "attention_beta", lambda w, h: (w,)),
    ("feed_forward/W_1", "w_1", lambda w, h: (w, h)),
    ("feed_forward/b_1", "b_1", lambda w, h: (h,)),
    ("feed_forward/W_2", "w_2", lambda w, h: (h, w)),
    ("feed_forward/b_2", "b_2", lambda w, h: (w,)),
    ("feed_forward_norm/gamma", "feed_forward_gamma", lambda w, h: (w,)),
    ("feed_forward_norm/beta", "feed_forward_beta", lambda w, h: (w,)),
)


def positional_encoding(n_steps: tf.Tensor | int, width: int) -> tf.Tensor:
    """(n_steps, width) float32: sin(t * f_i) on channel 2i, cos(t * f_i) on 2i + 1, with
    f_i = exp(2i * -(ln 10000 / width)), computed in float32 as AllenNLP's (torch) code does."""
    inv = np.exp(np.arange(0, width, 2, dtype=np.float32)
                 * np.float32(-(math.log(10000.0) / width))).astype(np.float32)
    angles = tf.range(n_steps, dtype=tf.float32)[:, tf.newaxis] * inv  # shape (T, width / 2)
    # interleave: even channels sin, odd channels cos
    return tf.reshape(tf.stack([tf.sin(angles), tf.cos(angles)], axis=-1), [-1, width])


class _Block(keras.layers.Layer):
    """One pre-layer-norm block for every direction: weights stacked on a leading
    (n_directions,) axis, so both directions run in the same batched matmuls."""

    def __init__(self, width: int, hidden: int, n_directions: int, **kwargs) -> None:
        super().__init__(**kwargs)
        d = n_directions
        for _, attr, shape in _BLOCK:
            dims = shape(width, hidden)
            if attr.endswith("gamma"):
                init = "ones"
            elif attr.endswith("beta"):
                init = "zeros"
            elif len(dims) == 2:  # AllenNLP: Glorot uniform per matrix
                limit = math.sqrt(6.0 / (dims[0] + dims[1]))
                init = keras.initializers.RandomUniform(-limit, limit)
            else:  # torch.nn.Linear's bias: uniform(+-1/sqrt(fan_in))
                fan_in = hidden if attr == "b_2" else width
                init = keras.initializers.RandomUniform(-1 / math.sqrt(fan_in),
                                                        1 / math.sqrt(fan_in))
            setattr(self, attr, self.add_weight(shape=(d, *dims), name=attr, initializer=init))
        self.built = True


class TransformerContextualizer(Contextualizer):
    """The Transformer biLM (``options.encoder`` of type ``transformer``)."""

    def __init__(self, options: TransformerOptions, n_directions: int = 2,
                 compute_dtype: str = "float32", **kwargs) -> None:
        kwargs.setdefault("name", "transformer")
        super().__init__(options, options.n_layers, options.dim, n_directions, **kwargs)
        self.n_heads = options.n_heads
        self.matmul_dtype = tf.as_dtype(compute_dtype)
        self.blocks = [_Block(options.dim, options.hidden_dim, n_directions, name=f"layer_{k}")
                       for k in range(options.n_layers)]
        self.final_norm = options.final_norm
        self.norm_gamma = self.norm_beta = None
        if self.final_norm:
            self.norm_gamma = self.add_weight(shape=(n_directions, options.dim), name="gamma",
                                              initializer="ones")
            self.norm_beta = self.add_weight(shape=(n_directions, options.dim), name="beta",
                                             initializer="zeros")
        self.built = True

    # -- pieces -------------------------------------------------------------------------------

    def _linear(self, x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        """x (d, batch, T, n) @ w (d, n, m) + b (d, m) -> (d, batch, T, m) float32."""
        shape = tf.shape(x)
        flat = tf.reshape(tf.cast(x, self.matmul_dtype), [shape[0], -1, shape[-1]])
        y = tf.matmul(flat, tf.cast(w, self.matmul_dtype))  # shape (d, batch * T, m)
        y = tf.cast(y, tf.float32) + tf.convert_to_tensor(b)[:, tf.newaxis]
        return tf.reshape(y, tf.concat([shape[:-1], [tf.shape(w)[-1]]], axis=0))

    def _dropout(self, x: tf.Tensor, rate: float, training: bool, seed: tf.Tensor | None,
                 k: int, rows: Rows | None = None, axis: int = 1) -> tf.Tensor:
        """Dropout ``k`` of a step; ``x``'s rows on ``axis``, placed in the global batch by
        ``rows`` (the mask follows the global row)."""
        if not training or rate <= 0.0:
            return x
        if seed is None:
            return tf.nn.dropout(x, rate=rate)
        return stateless_dropout(x, rate, tf.random.experimental.stateless_fold_in(seed, k),
                                 rows, axis)

    def _attention(self, block: _Block, x: tf.Tensor, mask: tf.Tensor, training: bool,
                   seed: tf.Tensor | None, k: int, rows: Rows | None = None) -> tf.Tensor:
        """x (d, batch, T, width), mask (d, batch, 1, T, T) bool -> (d, batch, T, width)."""
        d, batch, n_steps = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        heads, dk = self.n_heads, self.width // self.n_heads

        def split(t):  # (d, batch, T, width) -> (d, batch, heads, T, dk)
            return tf.transpose(tf.reshape(t, [d, batch, n_steps, heads, dk]), [0, 1, 3, 2, 4])

        q = split(self._linear(x, block.w_query, block.b_query))
        key = split(self._linear(x, block.w_key, block.b_key))
        v = split(self._linear(x, block.w_value, block.b_value))
        mm = self.matmul_dtype
        scores = tf.matmul(tf.cast(q, mm), tf.cast(key, mm), transpose_b=True)
        scores = tf.cast(scores, tf.float32) / math.sqrt(dk)  # shape (d, batch, heads, T, T)
        # AllenNLP: masked_fill with the dtype's lowest value (a fully masked row, a padding
        # query, becomes uniform, as there)
        scores = tf.where(mask, scores, tf.float32.min)
        probs = tf.nn.softmax(scores, axis=-1)
        probs = self._dropout(probs, self.options.dropout, training, seed, 10 * k + 1, rows)
        context = tf.cast(tf.matmul(tf.cast(probs, mm), tf.cast(v, mm)), tf.float32)
        context = tf.reshape(tf.transpose(context, [0, 1, 3, 2, 4]),
                             [d, batch, n_steps, self.width])
        return self._linear(context, block.w_output, block.b_output)

    @staticmethod
    def _norm(x: tf.Tensor, gamma, beta) -> tf.Tensor:
        gamma = tf.convert_to_tensor(gamma)[:, tf.newaxis, tf.newaxis]  # (d, 1, 1, width)
        beta = tf.convert_to_tensor(beta)[:, tf.newaxis, tf.newaxis]
        return layer_norm(x, gamma, beta)

    def attention_masks(self, lengths: tf.Tensor, n_steps: tf.Tensor) -> tf.Tensor:
        """(n_directions, batch, 1, T, T) bool: query i may read key j (AllenNLP's masks)."""
        valid = tf.sequence_mask(lengths, n_steps)  # shape (batch, T)
        i = tf.range(n_steps)[:, tf.newaxis]
        j = tf.range(n_steps)[tf.newaxis, :]
        forward = tf.logical_and(valid[:, :, tf.newaxis], (j <= i)[tf.newaxis])
        masks = [forward]
        if self.n_directions == 2:
            masks.append(tf.logical_and(valid[:, tf.newaxis, :], (j >= i)[tf.newaxis]))
        return tf.stack(masks)[:, :, tf.newaxis]

    # -- the interface ------------------------------------------------------------------------

    def sentence_layers(self, x, lengths, state=None, training=False, seed=None,
                        skip_finished_rows=False, rows=None):
        opts = self.options
        n_steps = tf.shape(x)[1]
        x = tf.cast(x, tf.float32) + positional_encoding(n_steps, self.width)
        x = self._dropout(x, opts.input_dropout, training, seed, 0, rows, axis=0)
        mask = self.attention_masks(lengths, n_steps)
        h = tf.stack([x] * self.n_directions)  # shape (d, batch, T, width)
        layers = []
        for k, block in enumerate(self.blocks):
            a = self._attention(block, self._norm(h, block.attention_gamma,
                                                  block.attention_beta), mask, training, seed,
                                k + 1, rows)
            h = h + self._dropout(a, opts.dropout, training, seed, 10 * (k + 1) + 2, rows)
            f = self._linear(self._norm(h, block.feed_forward_gamma, block.feed_forward_beta),
                             block.w_1, block.b_1)
            f = self._dropout(tf.nn.relu(f), opts.dropout, training, seed, 10 * (k + 1) + 3,
                              rows)
            f = self._linear(f, block.w_2, block.b_2)
            h = h + self._dropout(f, opts.dropout, training, seed, 10 * (k + 1) + 4, rows)
            layers.append(h)
        if self.final_norm:
            layers[-1] = self._norm(layers[-1], self.norm_gamma, self.norm_beta)
        return layers, None

    def weight_entries(self) -> list[WeightEntry]:
        table = []
        for k, block in enumerate(self.blocks):
            for name, attr, _ in _BLOCK:
                for d in range(self.n_directions):
                    key = f"Transformer_{d}/layer_{k}/{name}"
                    table.append(WeightEntry(getattr(block, attr), key, f"lm/{key}", d,
                                             name=f"transformer/layer_{k}/{name}"))
        if self.final_norm:
            for d in range(self.n_directions):
                for name, var in (("gamma", self.norm_gamma), ("beta", self.norm_beta)):
                    key = f"Transformer_{d}/norm/{name}"
                    table.append(WeightEntry(var, key, f"lm/{key}", d,
                                             name=f"transformer/norm/{name}"))
        return table

    def layer_variables(self, k: int) -> list:
        return list(self.blocks[k].trainable_variables)

    def layer_output_names(self) -> list[str]:
        return [f"transformer_outputs{k}" for k in range(1, self.n_layers + 1)]
