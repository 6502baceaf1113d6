"""The biLM for training and evaluation: the shared encoder plus a softmax over the vocabulary."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from bilm.encoder import BiLMEncoder, LSTMState
from bilm.layers.sampled_softmax import log_uniform_unique_sample, sampled_softmax_loss_static
from bilm.options import BiLMOptions

__all__ = ["LanguageModel"]


def _fold(seed: tf.Tensor, k: int) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(seed, k)


class LanguageModel(keras.layers.Layer):
    """Encoder (the same network inference uses) + softmax ``W`` (n_vocab, dim), ``b``.

    Training loss: sampled softmax (``n_negative_samples_batch`` log-uniform negatives per
    direction) on the top LSTM output after dropout; evaluation: full softmax. The
    bidirectional loss is the mean of the two directions' mean losses, as bilm-tf.

    ``jit_compile`` runs the LSTMs and the softmax, forward and backward, through XLA
    (:meth:`train_gradients`); default: the options' ``jit_compile``, else on for LSTMs up to
    2048 units, where it measured faster. ``precision`` (default: the options') ``float32``,
    or ``mixed_bfloat16`` / ``mixed_float16``: float32 variables, 16-bit matmuls and
    convolutions, float32 LSTM cell state, softmax logits and loss.
    """

    def __init__(self, options: BiLMOptions, jit_compile: bool | None = None,
                 precision: str | None = None, **kwargs) -> None:
        kwargs.setdefault("name", "lm")
        super().__init__(**kwargs)
        if options.n_tokens_vocab is None:
            raise ValueError("training needs 'n_tokens_vocab' in the options")
        if jit_compile is None:
            jit_compile = options.jit_compile
        if jit_compile is None:
            jit_compile = options.lstm.dim <= 2048
        self.jit_compile = jit_compile
        self.precision = options.precision if precision is None else precision
        self.options = options
        self.encoder = BiLMEncoder(options, n_word_vocab=options.n_tokens_vocab,
                                   precision=self.precision)
        self.matmul_dtype = self.encoder.matmul_dtype
        self.n_directions = self.encoder.n_directions
        p = options.lstm.projection_dim
        self.softmax_w = None
        if not (options.share_embedding_softmax and not options.use_character_inputs):
            self.softmax_w = self.add_weight(
                shape=(options.n_tokens_vocab, p), name="softmax_W",
                initializer=keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(p)))
        self.softmax_b = self.add_weight(shape=(options.n_tokens_vocab,), name="softmax_b",
                                         initializer="zeros")
        self._head_grads_xla = tf.function(self._head_grads, jit_compile=True)
        self.built = True

    @property
    def softmax_weights(self):
        return self.softmax_w if self.softmax_w is not None else self.encoder.embedding

    def head_variables(self) -> list:
        """Variables after the token embedding: LSTMs and softmax."""
        head = [w for layer in self.encoder.lstms
                for w in (layer.kernel, layer.bias, layer.projection) if w is not None]
        return [*head, self.softmax_weights, self.softmax_b]

    def zero_states(self, batch_size: int) -> list[LSTMState]:
        return self.encoder.zero_states(batch_size)

    # -- pieces -------------------------------------------------------------------------------

    def _suffixes(self) -> list[str]:
        return ["", "_reverse"][: self.n_directions]

    def _inputs(self, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        """Token embeddings of every direction, (n_directions, T, batch, dim)."""
        key = "tokens_characters" if self.options.use_character_inputs else "token_ids"
        ids = tf.stack([batch[key + s] for s in self._suffixes()])  # (d, batch, T[, chars])
        # Each distinct token's CNN once: exact, same gradient, most of the work saved.
        emb = self.encoder.embed_unique_tokens(ids, shifted=False)  # shape (d, batch, T, dim)
        return tf.transpose(emb, [0, 2, 1, 3])

    def _labels(self, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        """Targets in the LSTM outputs' (time, batch) order: (n_directions, T * batch)."""
        return tf.stack([tf.reshape(tf.transpose(batch["next_token_id" + s]), [-1])
                         for s in self._suffixes()])

    def _negatives(self, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        opts = self.options
        # outside XLA: the number of draws is data-dependent
        drawn = [log_uniform_unique_sample(opts.n_negative_samples_batch, opts.n_tokens_vocab,
                                           _fold(seed, 3 + k)) for k in range(self.n_directions)]
        return tf.stack([s for s, _ in drawn]), tf.stack([n for _, n in drawn])

    def _head_loss(self, x, states, labels, sampled, num_tries, seed, training):
        """Mean loss from token embeddings x (d, T, batch, dim) and the final states."""
        opts = self.options
        outputs, finals = self.encoder.run_lstms(
            x, initial_states=states, input_dropout=opts.dropout, training=training,
            dropout_seed=_fold(seed, 1))
        top = outputs[-1]  # shape (d, T, batch, dim)
        if training and opts.dropout > 0:
            top = tf.nn.experimental.stateless_dropout(top, rate=opts.dropout,
                                                       seed=_fold(seed, 2))
        losses = []
        for k in range(self.n_directions):
            inputs = tf.reshape(top[k], [-1, opts.lstm.projection_dim])  # (T * batch, dim)
            if sampled is not None:
                loss = sampled_softmax_loss_static(self.softmax_weights, self.softmax_b,
                                                   labels[k], inputs, sampled[k], num_tries[k],
                                                   matmul_dtype=self.matmul_dtype)
            else:
                mm = self.matmul_dtype
                logits = tf.matmul(tf.cast(inputs, mm), tf.cast(self.softmax_weights, mm),
                                   transpose_b=True)
                loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=labels[k], logits=tf.cast(logits, tf.float32) + self.softmax_b)
            losses.append(tf.reduce_mean(loss))
        return tf.add_n(losses) / len(losses), finals

    def _head_grads(self, x, states, labels, sampled, num_tries, seed, scale):
        head_vars = self.head_variables()
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss, finals = self._head_loss(x, states, labels, sampled, num_tries, seed, True)
            scaled = loss * scale
        grads = tape.gradient(scaled, [x, *head_vars])
        grads = [tf.convert_to_tensor(g) for g in grads]  # sparse softmax rows -> dense
        return loss, finals, grads[0], grads[1:]

    # -- entry points -------------------------------------------------------------------------

    def call(self, batch: dict[str, tf.Tensor], states: list[LSTMState] | None = None,
             training: bool = False, seed: tf.Tensor | None = None,
             ) -> tuple[tf.Tensor, list[LSTMState]]:
        """Mean loss of a batch and the final LSTM states (forward only).

        Args:
            batch: ``token_ids``/``tokens_characters``/``next_token_id`` (batch, T) (and the
                ``_reverse`` keys for a biLM), training ids (not shifted).
            states: per layer (c, h) carried from the previous batch; zeros if None.
            training: dropout and sampled softmax; else full softmax.
            seed: (2,) int seed for dropout and negative sampling (stateless, resumable).
        """
        if seed is None:
            seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
        sampled = num_tries = None
        if training and self.options.sample_softmax:
            sampled, num_tries = self._negatives(seed)
        return self._head_loss(self._inputs(batch), states, self._labels(batch), sampled,
                               num_tries, seed, training)

    def train_gradients(self, batch: dict[str, tf.Tensor], states: list[LSTMState] | None,
                        seed: tf.Tensor, variables: list, scale: float | tf.Tensor = 1.0):
        """Training loss, final states and the gradients of ``loss * scale`` for
        ``variables`` (dense tensors, in that order).

        Back-propagation runs in two stages: the LSTMs and softmax (fixed shapes, XLA when
        ``jit_compile``) give the gradient of the token embeddings, which the char CNN (run
        on the batch's distinct tokens, a data-dependent size) then takes on.
        """
        if states is None:
            states = self.zero_states(tf.shape(batch["next_token_id"])[0])
        sampled = num_tries = None
        if self.options.sample_softmax:
            sampled, num_tries = self._negatives(seed)
        labels = self._labels(batch)
        with tf.GradientTape() as tape:
            x = self._inputs(batch)
        head = self._head_grads_xla if self.jit_compile else self._head_grads
        if sampled is None:  # full softmax: no negatives to pass to the compiled function
            head = self._head_grads
        loss, finals, dx, head_grads = head(x, states, labels, sampled, num_tries, seed,
                                            tf.cast(scale, tf.float32))
        grads = {id(v): g for v, g in zip(self.head_variables(), head_grads)}
        # the token embedder's variables; a shared softmax is also the word embedding
        embed_vars = [v for v in variables if id(v) not in grads]
        if self.softmax_w is None:
            embed_vars.append(self.encoder.embedding)
        embed_grads = tape.gradient(x, embed_vars, output_gradients=dx)
        for v, g in zip(embed_vars, embed_grads):
            if g is None:
                continue
            g = tf.convert_to_tensor(g)
            grads[id(v)] = grads[id(v)] + g if id(v) in grads else g
        return loss, finals, [grads.get(id(v), tf.zeros_like(v)) for v in variables]
