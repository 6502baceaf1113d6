"""The biLM for training and evaluation: the shared encoder plus a softmax over the vocabulary.

Two batch layouts, one per encoder protocol (:mod:`bilm.encoders`):

- ``"streams"`` (bilm-tf, the LSTM): ``token_ids``/``tokens_characters``/``next_token_id``
  (batch, T) and the same keys with ``_reverse``: each direction reads its own stream of
  sentences, packed into fixed windows, the state carried from batch to batch;
- ``"sentences"`` (AllenNLP, the transformer; scoring for every encoder): ``token_ids``
  (batch, T) and ``tokens_characters`` (batch, T, chars), one sentence per row with
  ``<S>``/``</S>``, and ``lengths`` (batch,); the forward direction at position t predicts
  token t + 1, the backward one token t - 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import keras
import tensorflow as tf

from bilm.data.batch import is_sentence_batch
from bilm.model.encoder import BiLMEncoder, State
from bilm.nn.dropout import Rows, stateless_dropout
from bilm.nn.layout import WeightEntry, weight_table
from bilm.nn.sampled_softmax import log_uniform_unique_sample, sampled_softmax_loss_static
from bilm.options import BiLMOptions

__all__ = ["LanguageModel", "encoder_variables", "frozen_variables", "tf1_table",
           "training_variables"]


def _fold(seed: tf.Tensor, k: int) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(seed, k)


class LanguageModel(keras.layers.Layer):
    """Encoder (the same network inference uses) + softmax ``W`` (n_vocab, dim), ``b``,
    shared by both directions.

    Training loss: sampled softmax (``n_negative_samples_batch`` log-uniform negatives per
    direction) on the top layer after dropout; evaluation: full softmax. Streams: the mean of
    the two directions' mean losses (bilm-tf); sentences: half the summed negative
    log-likelihoods of both directions over the number of forward targets (AllenNLP).

    ``jit_compile`` runs the contextualizer and the softmax, forward and backward, through XLA
    (:meth:`train_gradients`); default: the options' ``jit_compile``, else the encoder's
    measured choice. ``precision`` (default: the options') ``float32``, or
    ``mixed_bfloat16`` / ``mixed_float16``: float32 variables, 16-bit matmuls and
    convolutions, float32 state, softmax logits and loss.

    ``sparse_gradients``: :meth:`train_gradients` returns the gradients of gathered tables
    (the softmax rows a batch touches, a word embedding's rows) as ``tf.IndexedSlices``
    instead of dense tensors the size of the vocabulary.
    """

    def __init__(self, options: BiLMOptions, jit_compile: bool | None = None,
                 precision: str | None = None, sparse_gradients: bool = False,
                 **kwargs) -> None:
        kwargs.setdefault("name", "lm")
        super().__init__(**kwargs)
        if options.n_tokens_vocab is None:
            raise ValueError("training needs 'n_tokens_vocab' in the options")
        self.precision = options.precision if precision is None else precision
        self.options = options
        self.encoder = BiLMEncoder(options, n_word_vocab=options.n_tokens_vocab,
                                   precision=self.precision)
        self.contextualizer = self.encoder.contextualizer
        self.protocol = self.contextualizer.protocol
        if jit_compile is None:
            jit_compile = options.jit_compile
        if jit_compile is None:
            jit_compile = self.contextualizer.default_jit()
        self.jit_compile = jit_compile
        self.sparse_gradients = sparse_gradients
        self.matmul_dtype = self.encoder.matmul_dtype
        self.n_directions = self.encoder.n_directions
        p = self.encoder.dim
        self.softmax_w = None
        if not (options.share_embedding_softmax and not options.use_character_inputs):
            self.softmax_w = self.add_weight(
                shape=(options.n_tokens_vocab, p), name="softmax_W",
                initializer=keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(p)))
        self.softmax_b = self.add_weight(shape=(options.n_tokens_vocab,), name="softmax_b",
                                         initializer="zeros")
        self._head_grads_xla = tf.function(self._head_grads, jit_compile=True,
                                           autograph=False)
        self.built = True

    @property
    def softmax_weights(self):
        return self.softmax_w if self.softmax_w is not None else self.encoder.embedding

    def head_variables(self) -> list:
        """Variables after the token embedding: the contextualizer's (as it tracks them) and
        the softmax; derived, never listed by hand."""
        return [*self.contextualizer.trainable_variables, self.softmax_weights,
                self.softmax_b]

    def initial_state(self, batch_size: int | tf.Tensor) -> State:
        """The contextualizer's zero state (None for a stateless encoder)."""
        return self.encoder.initial_state(batch_size)

    zero_states = initial_state  # the name bilm-tf-era code uses

    # -- pieces -------------------------------------------------------------------------------

    def _suffixes(self) -> list[str]:
        return ["", "_reverse"][: self.n_directions]

    def _char_key(self) -> str:
        return "tokens_characters" if self.options.use_character_inputs else "token_ids"

    def _inputs(self, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        """Token embeddings: streams (n_directions, T, batch, dim); sentences
        (batch, T, dim)."""
        key = self._char_key()
        if self.protocol == "sentences" or is_sentence_batch(batch):
            # Each distinct token's CNN once: exact, same gradient, most of the work saved.
            return self.encoder.embed_unique_tokens(batch[key], shifted=False)
        ids = tf.stack([batch[key + s] for s in self._suffixes()])  # (d, batch, T[, chars])
        emb = self.encoder.embed_unique_tokens(ids, shifted=False)  # shape (d, batch, T, dim)
        return tf.transpose(emb, [0, 2, 1, 3])

    def _targets(self, batch: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor | None]:
        """(n_directions, N) targets, and (n_directions, N) float weights (None: all count).
        Streams: in the outputs' (time, batch) order; sentences: (batch, T) flattened."""
        if not is_sentence_batch(batch):
            return tf.stack([tf.reshape(tf.transpose(batch["next_token_id" + s]), [-1])
                             for s in self._suffixes()]), None
        ids, lengths = batch["token_ids"], batch["lengths"]
        n_steps = tf.shape(ids)[1]
        pos = tf.range(n_steps)[tf.newaxis, :]
        zero = tf.zeros_like(ids[:, :1])
        targets = [tf.concat([ids[:, 1:], zero], axis=1)]  # forward: token t + 1
        valid = [pos + 1 < lengths[:, tf.newaxis]]
        if self.n_directions == 2:
            targets.append(tf.concat([zero, ids[:, :-1]], axis=1))  # backward: token t - 1
            valid.append(tf.logical_and(pos >= 1, pos < lengths[:, tf.newaxis]))
        return (tf.reshape(tf.stack(targets), [self.n_directions, -1]),
                tf.reshape(tf.cast(tf.stack(valid), tf.float32), [self.n_directions, -1]))

    def _negatives(self, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        opts = self.options
        # outside XLA: the number of draws is data-dependent
        drawn = [log_uniform_unique_sample(opts.n_negative_samples_batch, opts.n_tokens_vocab,
                                           _fold(seed, 3 + k)) for k in range(self.n_directions)]
        return tf.stack([s for s, _ in drawn]), tf.stack([n for _, n in drawn])

    def _nll(self, inputs, labels, sampled, num_tries) -> tf.Tensor:
        """Per-row negative log-likelihoods, (N,): sampled or full softmax."""
        if sampled is not None:
            return sampled_softmax_loss_static(self.softmax_weights, self.softmax_b, labels,
                                               inputs, sampled, num_tries,
                                               matmul_dtype=self.matmul_dtype)
        mm = self.matmul_dtype
        logits = tf.matmul(tf.cast(inputs, mm), tf.cast(self.softmax_weights, mm),
                           transpose_b=True)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=tf.cast(logits, tf.float32) + self.softmax_b)

    def _top(self, x, lengths, state, seed, training, rows=None) -> tuple[tf.Tensor, State]:
        """The top layer per direction, flattened to (n_directions, N, dim), after dropout in
        training; and the new state. ``rows``: see :meth:`train_gradients`."""
        layer_seed = None if seed is None else _fold(seed, 1)
        if lengths is None:  # streams
            top, finals = self.contextualizer.stream_top(x, state, training=training,
                                                         seed=layer_seed, rows=rows)
            row_axis = 2  # shape (d, T, batch, dim)
        else:
            layers, finals = self.contextualizer.sentence_layers(
                x, lengths, state, training=training, seed=layer_seed, rows=rows)
            top = layers[-1]  # shape (d, batch, T, dim)
            row_axis = 1
        if training and self.options.dropout > 0:
            top = stateless_dropout(top, self.options.dropout, _fold(seed, 2), rows, row_axis)
        return tf.reshape(top, [self.n_directions, -1, self.encoder.dim]), finals

    def _head_loss(self, x, state, lengths, labels, weights, sampled, num_tries, seed,
                   training, rows=None):
        """(reported loss, objective, new state, per-direction NLL sums (d,)).

        Streams: the mean of the directions' mean losses (both). Sentences: the objective is
        half the summed NLL of both directions (the caller divides by the global number of
        forward targets); the reported loss divides by this batch's.
        """
        top, finals = self._top(x, lengths, state, seed, training, rows)
        sums, means = [], []
        for k in range(self.n_directions):
            nll = self._nll(top[k], labels[k], None if sampled is None else sampled[k],
                            None if num_tries is None else num_tries[k])
            if weights is None:
                means.append(tf.reduce_mean(nll))
                sums.append(tf.reduce_sum(nll))
            else:
                sums.append(tf.reduce_sum(nll * weights[k]))
        if weights is None:
            loss = tf.add_n(means) / len(means)
            return loss, loss, finals, tf.stack(sums)
        n_targets = tf.maximum(tf.reduce_sum(weights[0]), 1.0)
        objective = tf.add_n(sums) / len(sums)
        return objective / n_targets, objective, finals, tf.stack(sums)

    def _head_grads(self, x, state, lengths, labels, weights, sampled, num_tries, seed, scale,
                    rows=None):
        head_vars = self.head_variables()
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss, objective, finals, _ = self._head_loss(
                x, state, lengths, labels, weights, sampled, num_tries, seed, True, rows)
            scaled = objective * scale
        grads = tape.gradient(scaled, [x, *head_vars])
        return (loss, finals, tf.convert_to_tensor(grads[0]),
                [self._dense_unless_sparse(g, v)
                 for g, v in zip(grads[1:], head_vars, strict=True)])

    def _dense_unless_sparse(self, g, variable):
        """A gradient as a dense tensor; with ``sparse_gradients``, a vocabulary table's (the
        softmax's, a word embedding's) kept as IndexedSlices: its touched rows, as many per
        replica whatever the batch (the targets' and the negatives' rows)."""
        tables = (self.softmax_w, self.softmax_b, self.encoder.embedding)
        if g is None or (self.sparse_gradients and isinstance(g, tf.IndexedSlices)
                         and any(variable is t for t in tables if t is not None)):
            return g
        return tf.convert_to_tensor(g)

    # -- entry points -------------------------------------------------------------------------

    def call(self, batch: dict[str, tf.Tensor], states: State = None, training: bool = False,
             seed: tf.Tensor | None = None) -> tuple[tf.Tensor, State]:
        """Mean loss of a batch and the new state (forward only).

        Args:
            batch: either layout (see the module doc), training ids (not shifted).
            states: the carried state (streams); zeros if None.
            training: dropout and sampled softmax; else full softmax.
            seed: (2,) int seed for dropout and negative sampling (stateless, resumable).
        """
        loss, finals, _ = self.loss_and_sums(batch, states, training, seed)
        return loss, finals

    def loss_and_sums(self, batch: dict[str, tf.Tensor], states: State = None,
                      training: bool = False, seed: tf.Tensor | None = None,
                      ) -> tuple[tf.Tensor, State, tf.Tensor]:
        """:meth:`call` plus the per-direction sums of the negative log-likelihoods, (d,)."""
        if seed is None:
            seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
        sampled = num_tries = None
        if training and self.options.sample_softmax:
            sampled, num_tries = self._negatives(seed)
        labels, weights = self._targets(batch)
        loss, _, finals, sums = self._head_loss(self._inputs(batch), states,
                                                batch.get("lengths"), labels, weights,
                                                sampled, num_tries, seed, training)
        return loss, finals, sums

    def sentence_logprobs(self, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        """Natural-log probability of each sentence of a ``"sentences"`` batch under each
        direction (full softmax, no dropout, each sentence on its own), (n_directions,
        batch): the forward LM predicting its tokens and ``</S>``, the backward one its
        tokens and ``<S>``."""
        labels, weights = self._targets(batch)
        top, _ = self._top(self._inputs(batch), batch["lengths"], None, None, False)
        logp = [-self._nll(top[k], labels[k], None, None) * weights[k]
                for k in range(self.n_directions)]
        shape = tf.shape(batch["token_ids"])
        return tf.reduce_sum(tf.reshape(tf.stack(logp), [self.n_directions, shape[0],
                                                        shape[1]]), axis=-1)

    def train_gradients(self, batch: dict[str, tf.Tensor], states: State, seed: tf.Tensor,
                        variables: list, scale: float | tf.Tensor = 1.0,
                        rows: Rows | None = None):
        """Training loss, final states and the gradients of the objective times ``scale``
        for ``variables`` (dense tensors, in that order; IndexedSlices for gathered tables
        with ``sparse_gradients``, their rows possibly repeated). Streams: the objective is the mean
        loss; sentences: half the summed NLL (``scale`` 1 / forward targets gives the mean).

        Back-propagation runs in two stages: the contextualizer and softmax (XLA when
        ``jit_compile``) give the gradient of the token embeddings, which the token embedder
        (run on the batch's distinct tokens, a data-dependent size) then takes on.

        ``rows`` (a replica of a replicated step): (first row of this batch in the global
        batch, rows of the global batch); every dropout mask is then the global batch's, at
        this batch's rows, so that the replica layout does not change the step. None: the
        batch is the whole global batch.
        """
        lengths = batch.get("lengths")
        if states is None and lengths is None and self.contextualizer.stateful:
            states = self.initial_state(tf.shape(batch["next_token_id"])[0])
        sampled = num_tries = None
        if self.options.sample_softmax:
            sampled, num_tries = self._negatives(seed)
        labels, weights = self._targets(batch)
        with tf.GradientTape() as tape:
            x = self._inputs(batch)
        head = self._head_grads_xla if self.jit_compile else self._head_grads
        if sampled is None:  # full softmax: no negatives to pass to the compiled function
            head = self._head_grads
        loss, finals, dx, head_grads = head(x, states, lengths, labels, weights, sampled,
                                            num_tries, seed, tf.cast(scale, tf.float32), rows)
        grads = {id(v): g for v, g in zip(self.head_variables(), head_grads, strict=True)}
        # the token embedder's variables; a shared softmax is also the word embedding
        embed_vars = [v for v in variables if id(v) not in grads]
        if self.softmax_w is None:
            embed_vars.append(self.encoder.embedding)
        embed_grads = tape.gradient(x, embed_vars, output_gradients=dx)
        for v, g in zip(embed_vars, embed_grads, strict=True):
            if g is None:
                continue
            g = self._dense_unless_sparse(g, v)
            grads[id(v)] = _add(grads[id(v)], g) if id(v) in grads else g
        return loss, finals, [grads.get(id(v), tf.zeros_like(v)) for v in variables]


def _add(a, b):
    """a + b for gradients that may be IndexedSlices (rows concatenated, to be summed
    later)."""
    if isinstance(a, tf.IndexedSlices) and isinstance(b, tf.IndexedSlices):
        return tf.IndexedSlices(tf.concat([a.values, b.values], 0),
                                tf.concat([a.indices, b.indices], 0), a.dense_shape)
    return tf.convert_to_tensor(a) + tf.convert_to_tensor(b)


def encoder_variables(encoder: BiLMEncoder) -> dict[str, object]:
    """Every variable of an encoder (token embedder and contextualizer) by its stable
    checkpoint name, ``encoder/<table name>``, one entry per variable."""
    names: dict[str, object] = {}
    for entry in weight_table(encoder):
        names.setdefault(f"encoder/{entry.name or entry.h5_key}", entry.variable)
    return names


def training_variables(lm: LanguageModel) -> dict[str, object]:
    """Every trainable variable of a :class:`LanguageModel` by a stable checkpoint
    name (``encoder/<table name>`` or ``softmax/W|b``), one entry per variable."""
    names = encoder_variables(lm.encoder)
    if lm.softmax_w is not None:
        names["softmax/W"] = lm.softmax_w
    names["softmax/b"] = lm.softmax_b
    return names


def frozen_variables(lm: LanguageModel, parts: Sequence[str]) -> set[str]:
    """The :func:`training_variables` names of the parts ``parts`` names: ``token-embedder``
    (the token embedder's variables) and ``layer-K`` (contextual layer K, counted from 1 at
    the bottom). ValueError for another name."""
    n = lm.encoder.n_layers
    ids: set[int] = set()
    for part in parts:
        if part == "token-embedder":
            chosen = lm.encoder.token_embedder.trainable_variables
        elif re.fullmatch(r"layer-[1-9][0-9]*", part) and int(part[6:]) <= n:
            chosen = lm.contextualizer.layer_variables(int(part[6:]) - 1)
        else:
            raise ValueError(f"cannot freeze {part!r}: name token-embedder or a contextual "
                             f"layer, layer-1 to layer-{n}")
        ids |= {id(v) for v in chosen}
    return {name for name, v in training_variables(lm).items() if id(v) in ids}


def tf1_table(lm: LanguageModel) -> list[WeightEntry]:
    """:func:`weight_table` plus the softmax, for reading bilm-tf TF1 training checkpoints."""
    table = weight_table(lm.encoder)
    if lm.softmax_w is not None:
        table.append(WeightEntry(lm.softmax_w, "softmax/W", "lm/softmax/W"))
    table.append(WeightEntry(lm.softmax_b, "softmax/b", "lm/softmax/b"))
    return table
