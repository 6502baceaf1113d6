"""Inference: :class:`BidirectionalLanguageModel` and the embedding dump functions."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence

import h5py
import numpy as np
import tensorflow as tf

from bilm.data.batcher import Batcher, TokenBatcher, check_sentences
from bilm.data.vocabulary import BOS, EOS, UnicodeCharsVocabulary
from bilm.io.files import Progress, atomic_path, check_free_space
from bilm.io.hdf5 import load_weights, read_embedding_file
from bilm.model.encoder import BiLMEncoder, State
from bilm.options import BiLMOptions, OptionsError, load_options

__all__ = ["BidirectionalLanguageModel", "dump_bilm_embeddings", "dump_token_embeddings"]

logger = logging.getLogger(__name__)

# Most distinct tokens embed_sentences keeps embedded (500,000 x 512 floats = 1 GB at the
# original model's shape); the cache is cleared when a batch would pass it.
TOKEN_CACHE_LIMIT = 500_000

# inference precision -> the encoder's (float32 weights and state either way)
INFERENCE_PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


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
        use_character_inputs: take character ids (from :class:`~bilm.Batcher`); False takes word
            ids (from :class:`~bilm.TokenBatcher`) with ``embedding_weight_file``.
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
        if precision not in INFERENCE_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(INFERENCE_PRECISIONS)}; "
                             f"got {precision!r}")
        options = load_options(options_file)
        n_word_vocab = None
        if use_character_inputs:
            if options.char_cnn is None:
                raise OptionsError(f"{options_file} has no 'char_cnn' section: this is a "
                                   "word-input model; pass use_character_inputs=False")
        else:
            if embedding_weight_file is None and options.char_cnn is not None:
                raise ValueError("use_character_inputs=False needs embedding_weight_file "
                                 "(write one with dump_token_embeddings)")
            source = embedding_weight_file or weight_file
            n_word_vocab = read_embedding_file(source).shape[0]
        self.options: BiLMOptions = options
        self.use_character_inputs = use_character_inputs
        self.max_batch_size = max_batch_size
        self.precision = precision
        self.encoder = BiLMEncoder(options, use_character_inputs=use_character_inputs,
                                   n_word_vocab=n_word_vocab, n_directions=2,
                                   precision=INFERENCE_PRECISIONS[precision])
        if stateful is None:
            stateful = self.encoder.stateful
        elif stateful and not self.encoder.stateful:
            raise ValueError(f"a {options.encoder_type} biLM is stateless: it has no state to "
                             "carry from call to call; leave stateful unset (or False)")
        self.stateful = stateful
        load_weights(self.encoder, weight_file, embedding_weight_file)
        self.encoder.trainable = False
        self._states = None  # the carried state, as variables (stateful mode)
        if stateful:
            self._states = tf.nest.map_structure(
                lambda t: tf.Variable(t, trainable=False),
                self.encoder.initial_state(max_batch_size))
        if use_character_inputs:
            spec = tf.TensorSpec([None, None, options.char_cnn.max_characters_per_token],
                                 tf.int32)
        else:
            spec = tf.TensorSpec([None, None], tf.int32)
        self._forward = tf.function(self._forward_impl, input_signature=[spec])
        self._contextual_stateless = tf.function(
            lambda emb, lengths: self._contextual(emb, lengths, stateful=False,
                                                  skip_finished_rows=True),
            input_signature=[tf.TensorSpec([None, None, self.encoder.dim], tf.float32),
                             tf.TensorSpec([None], tf.int32)],
        )
        # XLA-compiled variant for embed_sentences, which pads shapes to few buckets; XLA fuses
        # each step's gate arithmetic (about 1.4x faster on CPU) but compiles once per shape.
        self._contextual_xla = tf.function(
            lambda emb, lengths: self._contextual(emb, lengths, stateful=False),
            jit_compile=True,
        )
        self._embed_chars = tf.function(
            lambda ids: self.encoder.embed_tokens(ids, shifted=True),
            input_signature=[tf.TensorSpec([None, spec.shape[-1]], tf.int32)],
        )
        self._token_cache: dict[str, int] = {}
        self._token_cache_array = np.zeros((0, self.encoder.dim), np.float32)
        self._batcher: Batcher | None = None

    @property
    def n_layers(self) -> int:
        """Number of contextual layers (``lm_embeddings`` has n_layers + 1)."""
        return self.encoder.n_layers

    @property
    def output_dim(self) -> int:
        """Size of each ``lm_embeddings`` vector: 2 * the model width."""
        return 2 * self.encoder.dim

    def clear_token_cache(self) -> None:
        """Forget the token embeddings :meth:`embed_sentences` cached (frees their memory)."""
        self._token_cache.clear()
        self._token_cache_array = self._token_cache_array[:0]

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

    def _lookup_tokens(self, tokens: Sequence[str]) -> np.ndarray:
        """Row index of each token in the token-embedding cache, computing new ones.

        ``_token_cache`` maps a token to its row of ``_token_cache_array``; rows are filled in
        order, so the filled rows are ``len(_token_cache)`` and the array's length is its
        capacity, doubled when full (amortised: a few copies in all, not one per batch).
        """
        if self._batcher is None:
            self._batcher = Batcher(None, self.options.char_cnn.max_characters_per_token)
        cache = self._token_cache
        new = [t for t in dict.fromkeys(tokens) if t not in cache]
        if new:
            if len(cache) + len(new) > TOKEN_CACHE_LIMIT:  # bound memory on open-ended corpora
                cache.clear()
                new = list(dict.fromkeys(tokens))
            # Shortest first, in chunks: each chunk's CNN runs only over its own longest
            # token's characters (CharCNN trims padding columns).
            new.sort(key=lambda t: len(t.encode("utf-8", "ignore")))
            ids = np.stack([self._batcher.token_char_ids(t) for t in new]) + 1
            start = len(cache)
            array = self._reserve_token_rows(start + len(new))
            for i in range(0, len(ids), 512):
                chunk = self._embed_chars(ids[i : i + 512]).numpy()
                array[start + i : start + i + len(chunk)] = chunk
            for k, t in enumerate(new):
                cache[t] = start + k
        return np.fromiter((cache[t] for t in tokens), dtype=np.int64, count=len(tokens))

    def _reserve_token_rows(self, n_rows: int) -> np.ndarray:
        """The cache array with capacity for ``n_rows``; its filled rows kept."""
        array = self._token_cache_array
        if n_rows > len(array):
            # double, from 1024 rows, up to the bound (more only if one batch needs it)
            capacity = max(n_rows, min(max(2 * len(array), 1024), TOKEN_CACHE_LIMIT))
            grown = np.empty((capacity, array.shape[1]), np.float32)
            filled = min(len(self._token_cache), len(array))
            grown[:filled] = array[:filled]
            self._token_cache_array = array = grown
        return array

    def _embed_batch(self, sentences: Sequence[Sequence[str]],
                     token_batcher: TokenBatcher | None, pad_rows: int | None,
                     ) -> list[np.ndarray]:
        """Stateless lm_embeddings of one batch. With ``pad_rows`` the batch is padded to that
        many rows (padding rows have length 0) and a multiple of 8 steps, and runs in the XLA
        graph; without, it runs at its own shape in TensorFlow's graph."""
        lengths = np.array([len(s) + 2 for s in sentences], dtype=np.int32)
        n_rows, n_steps = len(sentences), int(lengths.max())
        if pad_rows is not None:
            n_rows, n_steps = pad_rows, _pad_steps(n_steps)
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


def _pad_steps(n_steps: int) -> int:
    return -(-n_steps // 8) * 8


def plan_batches(steps: Sequence[int], batch_size: int, max_tokens: int,
                 jit_compile: bool) -> Iterator[tuple[int, int]]:
    """Split sentences of ascending ``steps`` (tokens + 2) into batches ``[start, stop)``, each
    as long as it can be with at most ``batch_size`` sentences and at most ``max_tokens``
    rows x steps (steps rounded up to a multiple of 8 for XLA); one sentence always makes a
    batch, however long."""
    start = 0
    while start < len(steps):
        stop = start + 1
        while stop < len(steps) and stop - start < batch_size:
            n_steps = _pad_steps(steps[stop]) if jit_compile else steps[stop]
            if (stop - start + 1) * n_steps > max_tokens:
                break
            stop += 1
        yield start, stop
        start = stop


def xla_rows(n_rows: int, n_steps: int, batch_size: int, max_tokens: int,
             jit_compile: bool) -> int | None:
    """Rows a batch of ``n_rows`` sentences (the longest ``n_steps`` steps) is padded to for the
    XLA graph, or None: it runs unpadded in TensorFlow's graph.

    XLA compiles once per shape (measured: 1.4-3 s and 4-22 MB of resident memory kept, each),
    so its batches come in ONE shape per 8-step bucket S: the most rows the budget allows,
    ``min(batch_size, max_tokens // S)`` — ``batch_size`` rows for ordinary sentences, as
    before, fewer for long ones. A batch with at least half that many sentences is padded up
    to it (under 2x the work, and never over ``max_tokens``); a smaller one (the last of a
    window, or where the lengths jump) runs unpadded in TensorFlow's graph, which needs no
    compilation and is as fast as XLA at a few rows. So does a lone sentence: XLA's CPU loop is
    ~15x slower than TensorFlow's at one row.
    """
    if not jit_compile or n_rows < 2:
        return None
    rows = min(batch_size, max_tokens // _pad_steps(n_steps))
    return rows if 2 * n_rows >= rows else None


def _read_max_chars(options_file: str | os.PathLike[str]) -> int:
    options = load_options(options_file)
    if options.char_cnn is None:
        raise OptionsError(f"{options_file}: a word-input model has no character CNN")
    return options.char_cnn.max_characters_per_token


def dump_token_embeddings(vocab_file: str | os.PathLike[str],
                          options_file: str | os.PathLike[str],
                          weight_file: str | os.PathLike[str],
                          outfile: str | os.PathLike[str], batch_size: int = 4096,
                          progress: bool = True, overwrite: bool = True) -> None:
    """Write the context-independent embedding of every vocabulary token (bilm-tf's layout).

    ``outfile`` gets dataset ``embedding`` (n_vocab, dim), rows in file order; a
    token-input :class:`BidirectionalLanguageModel` reads it as ``embedding_weight_file``.
    The file is written atomically; ``overwrite=False`` never replaces an existing one, not
    even one that another process wrote meanwhile (:class:`~bilm.io.files.OutputExistsError`).
    """
    max_chars = _read_max_chars(options_file)
    vocab = UnicodeCharsVocabulary(vocab_file, max_chars)
    model = BidirectionalLanguageModel(options_file, weight_file, stateful=False)
    ids = vocab.word_char_ids + 1
    bar = Progress("dump_token_embeddings", total=len(ids), unit="tokens", enabled=progress)
    parts = []
    for i in range(0, len(ids), batch_size):
        parts.append(model._embed_chars(ids[i : i + batch_size]).numpy())
        bar.update(len(parts[-1]))
    bar.close()
    dim = model.encoder.dim
    embeddings = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
    embeddings = embeddings.astype(np.float32)
    with atomic_path(outfile, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as f:
        check_free_space(os.path.dirname(tmp), embeddings.nbytes, os.fspath(outfile))
        f.create_dataset("embedding", data=embeddings)


# Choices of dump_bilm_embeddings (and ``bilm embed``); the first of each is the default.
LAYERS = ("all", "top", "average")
POOLS = ("none", "mean", "max")
LAYOUTS = ("bilm", "allennlp")


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def reduce_embeddings(embeddings: np.ndarray, layers: str = "all",
                      pool: str = "none") -> np.ndarray:
    """Select layers and pool tokens of one sentence's ``lm_embeddings``.

    Args:
        embeddings: (n_layers + 1, n_tokens, dim), as :meth:`embed_sentences` yields.
        layers: ``"all"`` keeps every layer; ``"top"`` the top LSTM layer; ``"average"`` the
            mean of all n_layers + 1 layers (AllenNLP's ``--top`` / ``--average``).
        pool: ``"none"`` keeps one vector per token; ``"mean"`` / ``"max"`` reduce over the
            sentence's tokens. A sentence without tokens (a blank line) pools to zeros.

    Returns:
        float32: (n_layers + 1, n_tokens, dim) for all layers, (n_tokens, dim) for top or
        average; pooling drops the n_tokens axis.
    """
    _check_choice("layers", layers, LAYERS)
    _check_choice("pool", pool, POOLS)
    out = embeddings
    if layers == "top":
        out = out[-1]  # shape (n_tokens, dim)
    elif layers == "average":
        out = out.mean(axis=0)  # shape (n_tokens, dim)
    if pool != "none":
        token_axis = out.ndim - 2
        if out.shape[token_axis] == 0:  # mean/max of nothing: zeros, so every line has a row
            out = np.zeros(out.shape[:token_axis] + out.shape[token_axis + 1 :], np.float32)
        elif pool == "mean":
            out = out.mean(axis=token_axis)
        else:
            out = out.max(axis=token_axis)
    return out.astype(np.float32, copy=False)


def _count_lines(path: str) -> int:
    """Lines of a text file as :func:`_read_sentences` reads them (a last line without its
    newline counts)."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            n, last = n + chunk.count(b"\n"), chunk[-1:]
    return n + (last != b"\n")


def _read_sentences(path: str | os.PathLike[str]) -> Iterator[list[str]]:
    """The whitespace tokens of each line of a UTF-8 text file: a line ends at "\\n" only
    (never at \\r, \\x0b, \\x0c, \\x1c-\\x1e, \\x85, U+2028 or U+2029, which universal newlines
    or ``str.splitlines()`` would break it at), so sentence i is line i, as training reads
    the same file. UnicodeDecodeError for text that is not UTF-8."""
    with open(path, encoding="utf-8", newline="\n") as f:
        for line in f:
            yield line.split()


def _sentence_to_index(path: str) -> dict[str, str]:
    """AllenNLP's ``sentence_to_index``: each stripped line -> its line index as a string (a
    repeated line maps to its last occurrence, as in AllenNLP); lines end at "\\n" only."""
    with open(path, encoding="utf-8", newline="\n") as f:
        return {line.strip(): str(index) for index, line in enumerate(f)}


def dump_bilm_embeddings(vocab_file: str | os.PathLike[str] | None,
                         dataset_file: str | os.PathLike[str],
                         options_file: str | os.PathLike[str],
                         weight_file: str | os.PathLike[str],
                         outfile: str | os.PathLike[str], stateful: bool = True,
                         batch_size: int = 64, progress: bool = True, *, layers: str = "all",
                         pool: str = "none", layout: str = "bilm",
                         max_tokens: int | None = None, precision: str = "float32",
                         overwrite: bool = True) -> None:
    """Embed every line of a tokenized text file (one sentence per line) into HDF5.

    ``outfile`` gets one dataset per line, key ``str(line_index)``, float32; with the defaults
    its shape is (n_layers + 1, n_tokens, 2 * dim) (bilm-tf's layout) and a blank
    line gives n_tokens 0.

    With the defaults this is bilm-tf's computation: one sentence at a time, LSTM state
    carried from line to line. ``stateful=False`` embeds up to ``batch_size`` sentences at a
    time, grouped by length, each from a zero state: deterministic and many times faster;
    ``max_tokens`` bounds a batch's rows x time steps (default ``batch_size * 64``, see
    :meth:`BidirectionalLanguageModel.embed_sentences`), so a very long line is embedded
    alone. The file is streamed and the output is written atomically. ``vocab_file`` only
    caches char ids.

    ``layers`` (all | top | average) and ``pool`` (none | mean | max) reduce each sentence
    as :func:`reduce_embeddings` does: e.g. top + mean gives one (2 * dim,) vector
    per line, zeros for a blank line. ``layout="allennlp"`` adds AllenNLP's ``elmo`` command's
    ``sentence_to_index`` dataset: shape (1,), a JSON string mapping each stripped line to its
    key (it holds every distinct line in memory while writing). ``precision="bfloat16"``
    computes in bfloat16 (see :class:`BidirectionalLanguageModel`); the file stays float32.
    ``overwrite=False`` never replaces an existing ``outfile``, not even one that another
    process wrote meanwhile (:class:`~bilm.io.files.OutputExistsError`).
    """
    _check_choice("layers", layers, LAYERS)
    _check_choice("pool", pool, POOLS)
    _check_choice("layout", layout, LAYOUTS)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1; got {max_tokens}")
    dataset_file = os.fspath(dataset_file)
    if not os.path.exists(dataset_file):
        raise FileNotFoundError(f"dataset file not found: {dataset_file}")
    max_chars = _read_max_chars(options_file)
    model = BidirectionalLanguageModel(options_file, weight_file, stateful=stateful,
                                       max_batch_size=1 if stateful else batch_size,
                                       precision=precision)
    total = _count_lines(dataset_file)
    bar = Progress("dump_bilm_embeddings", total=total, unit="sentences", enabled=progress)
    if stateful:
        batcher = Batcher(vocab_file, max_chars)

        def embeddings() -> Iterator[np.ndarray]:
            for sentence in _read_sentences(dataset_file):
                ids = batcher.batch_sentences([sentence])
                yield model(ids)["lm_embeddings"].numpy()[0]
    else:
        def embeddings() -> Iterator[np.ndarray]:
            yield from model.embed_sentences(_read_sentences(dataset_file),
                                             batch_size=batch_size, max_tokens=max_tokens)
    n_blank = 0
    with atomic_path(outfile, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as fout:
        folder = os.path.dirname(tmp)
        for index, emb in enumerate(embeddings()):
            n_blank += emb.shape[1] == 0
            data = reduce_embeddings(emb, layers, pool)
            check_free_space(folder, data.nbytes, os.fspath(outfile))
            fout.create_dataset(str(index), data=data)
            bar.update()
        if layout == "allennlp":
            index_json = json.dumps(_sentence_to_index(dataset_file))
            check_free_space(folder, len(index_json.encode()), os.fspath(outfile))
            fout.create_dataset("sentence_to_index", (1,), dtype=h5py.string_dtype())[0] = (
                index_json)
    bar.close()
    if n_blank and pool != "none":
        logger.warning("%d blank line(s) have no tokens: their pooled vectors are zeros",
                       n_blank)
