"""Per-sentence log-probabilities and perplexities under a trained biLM (``bilm score``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from bilm.data.vocabulary import Vocabulary

__all__ = ["SentenceScore", "score_sentences"]


@dataclass(frozen=True)
class SentenceScore:
    """Natural-log probabilities of one sentence, each direction predicting its ``n + 1``
    targets (the words and the closing ``</S>`` / ``<S>``)."""

    n_tokens: int
    logprob_forward: float
    logprob_backward: float | None  # None for a forward-only LM

    @property
    def n_predictions(self) -> int:
        return self.n_tokens + 1

    @property
    def perplexity_forward(self) -> float:
        return math.exp(-self.logprob_forward / self.n_predictions)

    @property
    def perplexity_backward(self) -> float | None:
        if self.logprob_backward is None:
            return None
        return math.exp(-self.logprob_backward / self.n_predictions)

    @property
    def perplexity(self) -> float:
        """exp of the mean loss of the directions (bilm-tf's perplexity, per sentence)."""
        losses = [-self.logprob_forward]
        if self.logprob_backward is not None:
            losses.append(-self.logprob_backward)
        return math.exp(sum(losses) / len(losses) / self.n_predictions)


def score_sentences(lm, vocab: Vocabulary, sentences: Iterable[Sequence[str]],
                    batch_size: int = 64) -> Iterator[SentenceScore]:
    """Score tokenized sentences with a :class:`~bilm.lm.LanguageModel` (full softmax, each
    sentence from a zero LSTM state), in input order."""
    opts = lm.options
    n_dir = lm.n_directions

    @tf.function(reduce_retracing=True)
    def logprobs(x_ids, targets, lengths):
        emb = lm.encoder.embed_unique_tokens(x_ids, shifted=False)  # (d, batch, T, dim)
        x = tf.transpose(emb, [0, 2, 1, 3])
        outputs, _ = lm.encoder.run_lstms(x, lengths=lengths)
        top = outputs[-1]  # shape (d, T, batch, dim)
        logits = tf.einsum("dtbp,vp->dtbv", top, lm.softmax_weights) + lm.softmax_b
        logp = -tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.transpose(targets, [0, 2, 1]), logits=logits)  # shape (d, T, batch)
        mask = tf.sequence_mask(lengths, tf.shape(logp)[1], dtype=logp.dtype)
        return tf.reduce_sum(logp * tf.transpose(mask)[tf.newaxis], axis=1)  # (d, batch)

    chars = opts.use_character_inputs
    buffer: list[Sequence[str]] = []

    def flush(batch: list[Sequence[str]]) -> Iterator[SentenceScore]:
        n_steps = max(len(s) for s in batch) + 1
        shape = (n_dir, len(batch), n_steps)
        ids = np.zeros(shape, np.int32)
        targets = np.zeros(shape, np.int32)
        char_ids = (np.full((*shape, opts.char_cnn.max_characters_per_token), 260, np.int32)
                    if chars else None)
        for i, sentence in enumerate(batch):
            for d in range(n_dir):
                tokens = list(sentence)[::-1] if d else list(sentence)
                word_ids = vocab.encode(tokens, reverse=bool(d), split=False)
                ids[d, i, : len(word_ids) - 1] = word_ids[:-1]
                targets[d, i, : len(word_ids) - 1] = word_ids[1:]
                if chars:
                    c = vocab.encode_chars(tokens, reverse=bool(d), split=False)
                    char_ids[d, i, : len(c) - 1] = c[:-1]
        lengths = np.array([len(s) + 1 for s in batch], np.int32)
        result = logprobs(tf.constant(char_ids if chars else ids), tf.constant(targets),
                          tf.constant(lengths)).numpy()
        for i, sentence in enumerate(batch):
            yield SentenceScore(len(sentence), float(result[0, i]),
                                float(result[1, i]) if n_dir == 2 else None)

    for sentence in sentences:
        buffer.append(sentence)
        if len(buffer) == batch_size:
            yield from flush(buffer)
            buffer = []
    if buffer:
        yield from flush(buffer)
