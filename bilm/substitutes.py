"""Lexical substitutes from a trained biLM's own softmax (``bilm substitutes``): the words the
language model predicts at a position of a sentence, as simple_elmo's
``get_elmo_substitutes`` lists them.

At word ``i`` of a sentence (0-based, ``<S>``/``</S>`` not counted) the forward LM predicts
the word from words ``< i`` (and ``<S>``), the backward LM from words ``> i`` (and
``</S>``); neither sees word ``i`` itself. Each gives a log-probability over the whole
vocabulary (full softmax, float32). The ``direction``:

- ``"forward"``: ``log p_fwd(w | left context)``;
- ``"backward"``: ``log p_bwd(w | right context)``;
- ``"both"`` (default): their sum, ``log p_fwd(w | left) + log p_bwd(w | right)``: the log
  of the product of the two probabilities (a word both directions find likely ranks first;
  not renormalised, so the scores of all words do not sum to 1 in probability).

simple_elmo lists the two directions' top words separately; the sum is the combination of
lexical-substitution work with biLMs (e.g. Arefyev et al.'s product of the forward and
backward distributions). The special tokens ``<S>``, ``</S>`` and ``<UNK>`` (and the
``@@PADDING@@`` row of an imported AllenNLP vocabulary) are left out of the substitutes unless
``include_special`` (simple_elmo leaves out the first two); the word at the position itself is
not left out (it is one of the LM's candidates).

Each sentence is run on its own (a zero state for a stateful encoder), as ``bilm score``
does (:func:`bilm.evaluation.score_sentences`): the result does not depend on the batching
(to float rounding).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from bilm.data.sentences import sentence_batch
from bilm.data.vocabulary import Vocabulary
from bilm.io.allennlp_run import PADDING

if TYPE_CHECKING:  # TensorFlow is imported on first use: the CLI checks queries before it
    from bilm.model.lm import LanguageModel

__all__ = ["DIRECTIONS", "Substitute", "SubstitutesError", "check_query",
           "position_logprobs", "substitutes", "substitutes_many"]

DIRECTIONS = ("both", "forward", "backward")


class SubstitutesError(ValueError):
    """A query the model cannot answer (a position out of range, a direction the model
    lacks); the message says why."""


class Substitute(NamedTuple):
    """One predicted word and its (combined) natural-log probability."""

    word: str
    logprob: float


def check_query(sentence: Sequence[str], position: int) -> None:
    """Raise :class:`SubstitutesError` unless ``position`` is a word of ``sentence``
    (0-based)."""
    n = len(sentence)
    if not 0 <= position < n:
        where = f"positions 0-{n - 1}" if n else "it has no word"
        raise SubstitutesError(f"position {position} is out of range for a sentence of {n} "
                               f"tokens ({where}; positions are 0-based)")


def _check_direction(lm: LanguageModel, direction: str) -> None:
    if direction not in DIRECTIONS:
        raise SubstitutesError(f"direction {direction!r}: use one of {', '.join(DIRECTIONS)}")
    if direction != "forward" and lm.n_directions < 2:
        raise SubstitutesError(f"the model is forward-only (no backward LM); direction "
                               f"{direction!r} needs one: use direction 'forward'")


def position_logprobs(lm: LanguageModel, vocab: Vocabulary,
                      sentences: Sequence[Sequence[str]],
                      positions: Sequence[int]) -> np.ndarray:
    """Each direction's log-probabilities over the vocabulary at one word of each sentence.

    Args:
        lm: a loaded :class:`~bilm.model.lm.LanguageModel` (e.g. ``load_run(...).lm``).
        vocab: its vocabulary (a :class:`~bilm.data.vocabulary.UnicodeCharsVocabulary` for
            a character-input model).
        sentences: B tokenized sentences (without ``<S>``/``</S>``).
        positions: (B,) the 0-based word of each sentence to predict.
    Returns:
        (n_directions, B, n_vocab) float32 natural-log probabilities: ``[0]`` the forward
        LM's ``log p(w | words before)``, ``[1]`` the backward LM's ``log p(w | words
        after)``.
    """
    for sentence, position in zip(sentences, positions, strict=True):
        check_query(sentence, position)
    batch = sentence_batch(vocab, sentences)
    key = "tokens_characters" if lm.options.use_character_inputs else "token_ids"
    # word p is token p + 1 (after <S>): the forward LM predicts it at step p, the backward
    # LM at step p + 2
    steps = np.asarray(positions, np.int32)
    import tensorflow as tf

    return _logprobs()(lm, tf.constant(batch[key]), tf.constant(batch["lengths"]),
                       tf.constant(steps)).numpy()


@functools.cache
def _logprobs() -> Callable:
    """The traced function: (lm, ids, lengths, positions) -> (n_directions, B, n_vocab)
    log-softmax of each direction's top layer at the step that predicts word ``positions``
    (see :func:`position_logprobs`). Made on first use, so importing this module does not
    start TensorFlow."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True, autograph=False)
    def logprobs(lm, ids, lengths, positions):
        x = lm.encoder.embed_unique_tokens(ids, shifted=False)  # shape (B, T, dim)
        layers, _ = lm.contextualizer.sentence_layers(x, lengths)  # zero state
        top = layers[-1]  # shape (d, B, T, dim), backward aligned to positions
        steps = [positions, positions + 2][: lm.n_directions]
        h = tf.stack([tf.gather(top[k], steps[k][:, tf.newaxis], batch_dims=1)[:, 0]
                      for k in range(lm.n_directions)])  # shape (d, B, dim)
        logits = tf.einsum("dbh,vh->dbv", h, tf.cast(lm.softmax_weights, h.dtype))
        return tf.nn.log_softmax(tf.cast(logits, tf.float32) + lm.softmax_b, axis=-1)

    return logprobs


def _special_ids(vocab: Vocabulary) -> list[int]:
    """``<S>``, ``</S>``, ``<UNK>`` and an imported AllenNLP vocabulary's padding row."""
    ids = [vocab.bos, vocab.eos, vocab.unk]
    if PADDING in vocab:
        ids.append(vocab.word_to_id(PADDING))
    return [i for i in ids if i >= 0]


def _combine(logp: np.ndarray, direction: str) -> np.ndarray:
    """(B, n_vocab) scores of ``direction`` from (n_directions, B, n_vocab) log-probs."""
    if direction == "forward":
        return logp[0]
    if direction == "backward":
        return logp[1]
    return logp[0] + logp[1]


def _top_k(scores: np.ndarray, k: int, vocab: Vocabulary) -> list[Substitute]:
    """The ``k`` best words of one query's (n_vocab,) scores, best first (ties: lower id
    first); excluded words are ``-inf``."""
    order = np.argsort(-scores, kind="stable")[:k]
    return [Substitute(vocab.id_to_word(int(i)), float(scores[i])) for i in order
            if np.isfinite(scores[i])]


def substitutes_many(lm: LanguageModel, vocab: Vocabulary,
                     queries: Iterable[tuple[Sequence[str], int]], top_k: int = 10,
                     direction: str = "both", include_special: bool = False,
                     batch_size: int = 64) -> Iterator[list[Substitute]]:
    """:func:`substitutes` of each ``(sentence, position)`` query, in input order,
    ``batch_size`` queries at a time."""
    _check_direction(lm, direction)
    if top_k < 1:
        raise SubstitutesError(f"top_k {top_k}: ask for at least 1 word")
    excluded = [] if include_special else _special_ids(vocab)

    def flush(batch: list[tuple[Sequence[str], int]]) -> Iterator[list[Substitute]]:
        logp = position_logprobs(lm, vocab, [s for s, _ in batch], [p for _, p in batch])
        scores = _combine(logp.astype(np.float64), direction)
        scores[:, excluded] = -np.inf
        for row in scores:
            yield _top_k(row, top_k, vocab)

    buffer: list[tuple[Sequence[str], int]] = []
    for sentence, position in queries:
        check_query(sentence, position)
        buffer.append((sentence, position))
        if len(buffer) == batch_size:
            yield from flush(buffer)
            buffer = []
    if buffer:
        yield from flush(buffer)


def substitutes(lm: LanguageModel, vocab: Vocabulary, sentence: Sequence[str],
                position: int, top_k: int = 10, direction: str = "both",
                include_special: bool = False) -> list[Substitute]:
    """The ``top_k`` words the LM predicts for word ``position`` (0-based) of a tokenized
    ``sentence``, best first, each with its score (see the module doc):
    ``direction`` ``"both"`` ``log p_fwd(w | left) + log p_bwd(w | right)``, ``"forward"``
    or ``"backward"`` one direction's log-probability (full softmax). ``<S>``, ``</S>`` and
    ``<UNK>`` are left out unless ``include_special``.

    For example, with ``loaded = bilm.training.load_run("run")``,
    ``substitutes(loaded.lm, loaded.vocab, "the cat sat".split(), 1, top_k=3)`` gives
    three ``Substitute(word, logprob)`` for "cat".

    Raises :class:`SubstitutesError` for a position out of range, or a backward direction
    asked of a forward-only model."""
    return next(substitutes_many(lm, vocab, [(sentence, position)], top_k, direction,
                                 include_special, batch_size=1))
