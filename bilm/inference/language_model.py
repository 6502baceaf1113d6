"""Inference: :class:`BidirectionalLanguageModel` (ELMo's layers from a pretrained biLM) and
:func:`contextual_layers`, the one inference computation every entry point shares."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from bilm.data.batcher import TokenBatcher, check_sentences
from bilm.data.vocabulary import BOS, EOS
from bilm.embedders.registry import batcher_for
from bilm.inference.batching import pad_steps, plan_batches, xla_rows
from bilm.inference.cache import TokenCache
from bilm.inference.loader import check_precision, load_encoder
from bilm.io.hdf5 import read_embedding_file
from bilm.model.encoder import BiLMEncoder, State
from bilm.options import BiLMOptions, OptionsError, load_options

__all__ = ["BidirectionalLanguageModel", "contextual_layers", "remove_sentence_boundaries"]


def remove_sentence_boundaries(layer: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
    """Drop ``<S>``/``</S>`` from a (batch, T, dim) layer -> (batch, T - 2, dim).

    Position j takes input position j + 1 inside the sentence and j + 2 past its end: the same
    values as bilm-tf's reverse/slice/reverse, padding positions included.
    """
    n_out = tf.shape(layer)[1] - 2
    j = tf.range(n_out)[tf.newaxis, :]  # shape (1, T - 2)
    inside = j < (lengths - 2)[:, tf.newaxis]
    index = tf.where(inside, j + 1, j + 2)  # shape (batch, T - 2)
    return tf.gather(layer, index, batch_dims=1)


def contextual_layers(encoder: BiLMEncoder, emb: tf.Tensor, lengths: tf.Tensor,
                      initial_states: State = None, skip_finished_rows: bool = False,
                      ) -> tuple[dict[str, tf.Tensor], State]:
    """ELMo's layers from token embeddings: the one inference computation, for every encoder.

    Args:
        encoder: a two-direction :class:`~bilm.model.encoder.BiLMEncoder`.
        emb: (batch, T, dim) token embeddings with ``<S>``/``</S>`` included.
        lengths: (batch,) tokens per row, boundaries included (0 for padding rows).
        initial_states: a stateful encoder's carried state (the LSTM's per layer (c, h), each
            (2, batch, size)); zeros if None.
        skip_finished_rows: let the encoder skip rows past their length at each step (the
            same results; not under XLA).
    Returns:
        ``lm_embeddings`` (batch, n_layers + 1, T - 2, 2 * dim): layer 0 is ``[tokens |
        tokens]``, layer k ``[forward_k | backward_k]``; ``lengths`` (batch,) and ``mask``
        (batch, T - 2) without the boundaries; and the final state (None when stateless).
    """
    outputs, finals = encoder.contextualizer.sentence_layers(
        emb, lengths, initial_states, skip_finished_rows=skip_finished_rows)
    layers = [tf.concat([emb, emb], axis=-1)]
    for out in outputs:  # shape (2, batch, T, dim)
        layers.append(tf.concat([out[0], out[1]], axis=-1))
    layers = [remove_sentence_boundaries(t, lengths) for t in layers]
    n_out = tf.shape(emb)[1] - 2
    return {
        "lm_embeddings": tf.stack(layers, axis=1),
        "lengths": lengths - 2,
        "mask": tf.sequence_mask(lengths - 2, n_out),
    }, finals


class BidirectionalLanguageModel:
    """A pretrained biLM that computes ELMo's layer outputs (bilm-tf's class, for TF2).

    Args:
        options_file: the model's ``options.json``.
        weight_file: the model's HDF5 weights.
        use_character_inputs: take character ids (from :class:`~bilm.Batcher`, or
            :attr:`batcher` for an embedder with ids of its own, e.g. ELMoForManyLangs'); False
            takes word ids (from :class:`~bilm.TokenBatcher`) with ``embedding_weight_file``.
        embedding_weight_file: token embeddings from :func:`dump_token_embeddings`.
        max_batch_size: rows of carried LSTM state (stateful mode).
        stateful: carry each row's LSTM state to the next call, as bilm-tf did (exact
            reproduction, history-dependent); False starts every sentence from zeros
            (deterministic, any batch size). Default: True for an LSTM model (bilm-tf's
            behaviour), False for a stateless encoder (the Transformer), which refuses True.
        precision: ``float32`` (default: exact, bilm-tf's results) or ``bfloat16``: matmuls
            and convolutions in bfloat16 with float32 weights, state and outputs -- faster
            where the hardware has strong bf16 units, off from float32 by ~0.4% (rms) (see
            docs/performance.md#bfloat16).

    Calling it on ids (batch, T[, max_chars]) — NumPy or tensor, eagerly or in
    ``tf.function`` — returns a dict of tensors:
    ``lm_embeddings`` (batch, n_layers + 1, T - 2, 2 * dim), ``lengths`` (batch,),
    ``mask`` (batch, T - 2) and ``token_embeddings`` (batch, T, dim).
    """

    def __init__(self, options_file: str | os.PathLike[str], weight_file: str | os.PathLike[str],
                 use_character_inputs: bool = True,
                 embedding_weight_file: str | os.PathLike[str] | None = None,
                 max_batch_size: int = 128, stateful: bool | None = None,
                 precision: str = "float32") -> None:
        check_precision(precision)
        options = load_options(options_file)
        n_word_vocab = _word_vocab_size(options, options_file, use_character_inputs,
                                        weight_file, embedding_weight_file)
        self.options: BiLMOptions = options
        self.use_character_inputs = use_character_inputs
        self.max_batch_size = max_batch_size
        self.precision = precision
        self.encoder = load_encoder(options, weight_file,
                                    use_character_inputs=use_character_inputs,
                                    n_word_vocab=n_word_vocab,
                                    embedding_weight_file=embedding_weight_file,
                                    precision=precision)
        if stateful is None:
            stateful = self.encoder.stateful
        elif stateful and not self.encoder.stateful:
            raise ValueError(f"a {options.encoder_type} biLM is stateless: it has no state to "
                             "carry from call to call; leave stateful unset (or False)")
        self.stateful = stateful
        self._states = None  # the carried state, as variables (stateful mode)
        if stateful:
            self._states = tf.nest.map_structure(
                lambda t: tf.Variable(t, trainable=False),
                self.encoder.initial_state(max_batch_size))
        self._build_graphs()
        max_chars = options.max_characters_per_token if use_character_inputs else None
        self.batcher = batcher_for(options) if use_character_inputs else None
        self._cache = TokenCache(self._embed_chars, self.encoder.dim, max_chars, self.batcher)

    @classmethod
    def from_model(cls, model: str | os.PathLike[str], **kwargs: Any,
                   ) -> BidirectionalLanguageModel:
        """The model ``model`` names: a folder or archive of any family bilm reads, or a
        catalogue name (downloaded on first use; :func:`bilm.models.open_model`).
        ``kwargs`` as for the constructor."""
        from bilm.models import open_model

        files = open_model(model)
        return cls(files.options_file, files.weight_file, **kwargs)

    def _build_graphs(self) -> None:
        """The model's ``tf.function`` graphs: the call, the stateless contextual layers (plain
        and XLA) and the character CNN."""
        # autograph=False: the code they trace has no Python control flow on tensors (its loops
        # are tf.while_loop / tf.cond), and AutoGraph's source conversion cost seconds a process
        if self.use_character_inputs:
            spec = tf.TensorSpec([None, None, self.options.max_characters_per_token],
                                 tf.int32)
        else:
            spec = tf.TensorSpec([None, None], tf.int32)
        self._forward = tf.function(self._forward_impl, input_signature=[spec],
                                    autograph=False)
        self._contextual_stateless = tf.function(
            lambda emb, lengths: self._contextual(emb, lengths, stateful=False,
                                                  skip_finished_rows=True),
            input_signature=[tf.TensorSpec([None, None, self.encoder.dim], tf.float32),
                             tf.TensorSpec([None], tf.int32)],
            autograph=False,
        )
        # XLA-compiled variant for embed_sentences, which pads shapes to few buckets; XLA fuses
        # each step's gate arithmetic (about 1.4x faster on CPU) but compiles once per shape.
        self._contextual_xla = tf.function(
            lambda emb, lengths: self._contextual(emb, lengths, stateful=False),
            jit_compile=True, autograph=False,
        )
        self._embed_chars = tf.function(
            lambda ids: self.encoder.embed_tokens(ids, shifted=True),
            input_signature=[tf.TensorSpec([None, spec.shape[-1]], tf.int32)],
            autograph=False,
        )

    @property
    def n_layers(self) -> int:
        """Number of contextual layers (``lm_embeddings`` has n_layers + 1)."""
        return self.encoder.n_layers

    @property
    def output_dim(self) -> int:
        """Size of each ``lm_embeddings`` vector: 2 * the model width."""
        return 2 * self.encoder.dim

    def embed_tokens(self, ids: np.ndarray | tf.Tensor) -> tf.Tensor:
        """Context-independent token embeddings (n_tokens, dim), one per row of ``ids``: the
        tokens' character ids (n_tokens, max_chars) shifted as the Batcher's (0 is padding),
        or a token-input model's word ids."""
        return self._embed_chars(ids)

    def clear_token_cache(self) -> None:
        """Forget the token embeddings :meth:`embed_sentences` cached (frees their memory)."""
        self._cache.clear()

    def reset_states(self) -> None:
        """Zero the carried states (stateful mode)."""
        for var in tf.nest.flatten(self._states or []):
            var.assign(tf.zeros_like(var))

    def __call__(self, ids: np.ndarray | tf.Tensor) -> dict[str, tf.Tensor]:
        ids = tf.cast(ids, tf.int32)
        expected = 3 if self.use_character_inputs else 2
        if ids.shape.rank is not None and ids.shape.rank != expected:
            raise ValueError(f"expected ids of rank {expected}, got shape {ids.shape}")
        batch = ids.shape[0]
        if self.stateful and batch is not None and batch > self.max_batch_size:
            raise ValueError(
                f"batch of {batch} sentences is larger than max_batch_size="
                f"{self.max_batch_size}; raise max_batch_size or use stateful=False"
            )
        return self._forward(ids)

    # -- graph pieces -------------------------------------------------------------------------

    def _forward_impl(self, ids: tf.Tensor) -> dict[str, tf.Tensor]:
        mask = tf.reduce_any(ids > 0, axis=2) if self.use_character_inputs else ids > 0
        lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
        if self.stateful:
            tf.debugging.assert_less_equal(
                tf.shape(ids)[0], self.max_batch_size,
                message="batch larger than max_batch_size in stateful mode")
        token_embeddings = self.encoder.embed_unique_tokens(ids, shifted=True)
        out = self._contextual(token_embeddings, lengths, stateful=self.stateful,
                               skip_finished_rows=True)
        out["token_embeddings"] = token_embeddings
        return out

    def _contextual(self, emb: tf.Tensor, lengths: tf.Tensor, stateful: bool,
                    skip_finished_rows: bool = False) -> dict[str, tf.Tensor]:
        """The contextual layers of token embeddings (batch, T, dim) with ``<S>``/``</S>``
        included; stateful: row i starts from (and leaves) the state of carried row i (the
        state's tensors hold the batch on axis 1; rows beyond the batch keep theirs)."""
        states = None
        if stateful:
            batch = tf.shape(emb)[0]
            states = tf.nest.map_structure(lambda v: v[:, :batch], self._states)
        out, finals = contextual_layers(self.encoder, emb, lengths, states,
                                        skip_finished_rows=skip_finished_rows)
        if stateful:
            tf.nest.map_structure(lambda v, t: v[:, :batch].assign(t), self._states, finals)
        return out

    # -- fast, stateless embedding of tokenized text ------------------------------------------
    # (the token cache: bilm.inference.cache; its table, array and lookup, as tests see them)

    @property
    def _token_cache(self) -> dict[str, int]:
        return self._cache.index

    @property
    def _token_cache_array(self) -> np.ndarray:
        return self._cache.array

    def _lookup_tokens(self, tokens: Sequence[str]) -> np.ndarray:
        """Row index of each token in the token-embedding cache, computing new ones."""
        return self._cache.rows(tokens)

    def _embed_batch(self, sentences: Sequence[Sequence[str]],
                     token_batcher: TokenBatcher | None, pad_rows: int | None,
                     ) -> list[np.ndarray]:
        """Stateless lm_embeddings of one batch. With ``pad_rows`` the batch is padded to that
        many rows (padding rows have length 0) and a multiple of 8 steps, and runs in the XLA
        graph; without, it runs at its own shape in TensorFlow's graph."""
        lengths = np.array([len(s) + 2 for s in sentences], dtype=np.int32)
        n_rows, n_steps = len(sentences), int(lengths.max())
        if pad_rows is not None:
            n_rows, n_steps = pad_rows, pad_steps(n_steps)
        padded_lengths = np.zeros(n_rows, np.int32)
        padded_lengths[: len(lengths)] = lengths
        if self.use_character_inputs:
            flat = [t for s in sentences for t in (BOS, *s, EOS)]
            rows = self._lookup_tokens(flat)
            emb = np.zeros((n_rows, n_steps, self.encoder.dim), np.float32)
            emb[np.repeat(np.arange(len(sentences)), lengths),
                np.concatenate([np.arange(n) for n in lengths])] = self._token_cache_array[rows]
            emb = tf.constant(emb)
        else:
            ids = np.zeros((n_rows, n_steps), np.int32)
            batch_ids = token_batcher.batch_sentences(sentences)
            ids[: batch_ids.shape[0], : batch_ids.shape[1]] = batch_ids
            emb = self.encoder.embed_tokens(tf.constant(ids), shifted=True)
        run = self._contextual_xla if pad_rows is not None else self._contextual_stateless
        out = run(emb, tf.constant(padded_lengths))["lm_embeddings"].numpy()
        return [out[k, :, : n - 2] for k, n in enumerate(lengths)]

    def embed_sentences(self, sentences: Iterable[Sequence[str]], batch_size: int = 64,
                        token_batcher: TokenBatcher | None = None, window: int = 32,
                        jit_compile: bool | None = None, *,
                        max_tokens: int | None = None) -> Iterator[np.ndarray]:
        """Stateless embeddings of tokenized sentences, fast, in input order.

        Sentences are read ``batch_size * window`` at a time (constant memory), sorted by
        length and grouped into batches of at most ``batch_size`` sentences and at most
        ``max_tokens`` time steps in all (rows x steps, ``<S>``/``</S>`` and padding
        included; a sentence longer than that goes alone), and each distinct token's CNN
        embedding is computed once and cached. The default ``max_tokens``, ``batch_size *
        64``, keeps ordinary text in full batches (sentences up to 62 tokens; most corpora
        average 20-30) while long lines take fewer rows, so a batch never needs more memory
        than ``batch_size`` sentences of 64 steps. Results equal calling the model one
        sentence at a time with ``stateful=False``, whatever the grouping (to float
        rounding: XLA and TensorFlow round differently). A token-input model needs
        ``token_batcher``.

        ``jit_compile`` runs the LSTMs through XLA, one shape per 8-step length bucket (one
        compilation each, ~1-3 s on CPU): a batch is padded to a multiple of 8 steps and to
        the most rows that bucket allows (``batch_size``, or ``max_tokens // steps`` for long
        sentences) when it has at least half of them; smaller batches and lone sentences run
        unpadded without XLA (see :func:`xla_rows`). XLA fuses the per-step gate arithmetic,
        but it needs static shapes, and TensorFlow's graph instead runs each step on the rows
        still inside their sentence only; the default (None) uses XLA for LSTMs up to 1024
        units, where the fusion wins (measured on CPU: XLA 1.1x faster at 1024 units, 1.1x
        slower at 2048; see docs/performance.md).

        Yields:
            one float32 array per sentence, (n_layers + 1, n_tokens, 2 * dim).
        """
        if not self.use_character_inputs and token_batcher is None:
            raise ValueError("a token-input model needs token_batcher to embed sentences")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if max_tokens is None:
            max_tokens = batch_size * 64
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1; got {max_tokens}")
        if jit_compile is None:
            jit_compile = self.encoder.contextualizer.default_jit(inference=True)
        buffer: list[Sequence[str]] = []
        for sentence in sentences:
            if isinstance(sentence, (str, bytes)):
                check_sentences([sentence])
            buffer.append(sentence)
            if len(buffer) == batch_size * window:
                yield from self._embed_window(buffer, batch_size, max_tokens, token_batcher,
                                              jit_compile)
                buffer = []
        if buffer:
            yield from self._embed_window(buffer, batch_size, max_tokens, token_batcher,
                                          jit_compile)

    def _embed_window(self, window: list[Sequence[str]], batch_size: int, max_tokens: int,
                      token_batcher: TokenBatcher | None,
                      jit_compile: bool) -> Iterator[np.ndarray]:
        empty = np.zeros((self.n_layers + 1, 0, self.output_dim), np.float32)
        results: list[np.ndarray | None] = [None] * len(window)
        order = sorted((i for i, s in enumerate(window) if len(s)), key=lambda i: len(window[i]))
        steps = [len(window[i]) + 2 for i in order]
        for start, stop in plan_batches(steps, batch_size, max_tokens, jit_compile):
            idx = order[start:stop]
            pad_rows = xla_rows(len(idx), steps[stop - 1], batch_size, max_tokens, jit_compile)
            batch = [window[i] for i in idx]
            for i, emb in zip(idx, self._embed_batch(batch, token_batcher, pad_rows), strict=True):
                results[i] = emb
        for r in results:
            yield empty if r is None else r


def _word_vocab_size(options: BiLMOptions, options_file: str | os.PathLike[str],
                     use_character_inputs: bool, weight_file: str | os.PathLike[str],
                     embedding_weight_file: str | os.PathLike[str] | None) -> int | None:
    """Rows of a word-input model's embedding (None for character input), once the inputs are
    checked against the options."""
    if use_character_inputs:
        if not options.use_character_inputs:
            raise OptionsError(f"{options_file} has no 'char_cnn' section: this is a "
                               "word-input model; pass use_character_inputs=False")
        return None
    if embedding_weight_file is None and options.use_character_inputs:
        raise ValueError("use_character_inputs=False needs embedding_weight_file "
                         "(write one with dump_token_embeddings)")
    source = embedding_weight_file or weight_file
    return read_embedding_file(source).shape[0]
