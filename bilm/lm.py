"""The biLM for training and evaluation: the shared encoder plus a softmax over the vocabulary."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from bilm.encoder import BiLMEncoder, LSTMState
from bilm.layers.sampled_softmax import sampled_softmax_loss
from bilm.options import BiLMOptions

__all__ = ["LanguageModel"]


class LanguageModel(keras.layers.Layer):
    """Encoder (the same network inference uses) + softmax ``W`` (n_vocab, dim), ``b``.

    Training loss: sampled softmax (``n_negative_samples_batch`` log-uniform negatives) on the
    top LSTM output after dropout; evaluation: full softmax. The bidirectional loss is the mean
    of the two directions' mean losses, as bilm-tf.
    """

    def __init__(self, options: BiLMOptions, **kwargs) -> None:
        kwargs.setdefault("name", "lm")
        super().__init__(**kwargs)
        if options.n_tokens_vocab is None:
            raise ValueError("training needs 'n_tokens_vocab' in the options")
        self.options = options
        self.encoder = BiLMEncoder(options, n_word_vocab=options.n_tokens_vocab)
        self.n_directions = self.encoder.n_directions
        p = options.lstm.projection_dim
        self.softmax_w = None
        if not (options.share_embedding_softmax and not options.use_character_inputs):
            self.softmax_w = self.add_weight(
                shape=(options.n_tokens_vocab, p), name="softmax_W",
                initializer=keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(p)))
        self.softmax_b = self.add_weight(shape=(options.n_tokens_vocab,), name="softmax_b",
                                         initializer="zeros")
        self.built = True

    @property
    def softmax_weights(self):
        return self.softmax_w if self.softmax_w is not None else self.encoder.embedding

    def zero_states(self, batch_size: int) -> list[LSTMState]:
        return self.encoder.zero_states(batch_size)

    def _inputs(self, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        """Token embeddings of every direction, (n_directions, T, batch, dim)."""
        key = "tokens_characters" if self.options.use_character_inputs else "token_ids"
        suffixes = ["", "_reverse"][: self.n_directions]
        ids = tf.stack([batch[key + s] for s in suffixes])  # shape (d, batch, T[, chars])
        # Each distinct token's CNN once: exact, same gradient, most of the work saved.
        emb = self.encoder.embed_unique_tokens(ids, shifted=False)  # shape (d, batch, T, dim)
        return tf.transpose(emb, [0, 2, 1, 3])

    def call(self, batch: dict[str, tf.Tensor], states: list[LSTMState] | None = None,
             training: bool = False, seed: tf.Tensor | None = None,
             ) -> tuple[tf.Tensor, list[LSTMState]]:
        """Mean loss of a batch and the final LSTM states.

        Args:
            batch: ``token_ids``/``tokens_characters``/``next_token_id`` (batch, T) (and the
                ``_reverse`` keys for a biLM), training ids (not shifted).
            states: per layer (c, h) carried from the previous batch; zeros if None.
            training: dropout and sampled softmax; else full softmax.
            seed: (2,) int seed for dropout and negative sampling (stateless, resumable).
        """
        opts = self.options
        if seed is None:
            seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
        x = self._inputs(batch)
        outputs, finals = self.encoder.run_lstms(
            x, initial_states=states, input_dropout=opts.dropout, training=training,
            dropout_seed=tf.random.experimental.stateless_fold_in(seed, 1))
        top = outputs[-1]  # shape (d, T, batch, dim)
        if training and opts.dropout > 0:
            top = tf.nn.experimental.stateless_dropout(
                top, rate=opts.dropout, seed=tf.random.experimental.stateless_fold_in(seed, 2))
        suffixes = ["", "_reverse"][: self.n_directions]
        losses = []
        for k, suffix in enumerate(suffixes):
            inputs = tf.reshape(top[k], [-1, opts.lstm.projection_dim])  # (T * batch, dim)
            labels = tf.reshape(tf.transpose(batch["next_token_id" + suffix]), [-1])
            if training and opts.sample_softmax:
                loss = sampled_softmax_loss(
                    self.softmax_weights, self.softmax_b, labels, inputs,
                    opts.n_negative_samples_batch, opts.n_tokens_vocab,
                    seed=tf.random.experimental.stateless_fold_in(seed, 3 + k))
            else:
                logits = tf.matmul(inputs, self.softmax_weights, transpose_b=True)
                loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=labels, logits=logits + self.softmax_b)
            losses.append(tf.reduce_mean(loss))
        return tf.add_n(losses) / len(losses), finals
