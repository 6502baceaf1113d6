"""Per-sentence log-probabilities and perplexities under a trained biLM (``bilm score``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import tensorflow as tf

from bilm.data.sentences import sentence_batch
from bilm.data.vocabulary import Vocabulary

__all__ = ["EVAL_LOGITS", "SentenceScore", "eval_max_tokens", "score_sentences"]

# Most softmax logits (float32) one batch of whole sentences may take per direction when
# scoring or evaluating: the full softmax over the vocabulary is the largest tensor, so a
# batch's tokens are bounded by this over the vocabulary's size (256 sentences of KJV's
# held-out against its 13,629 words took 3.8-4.7 GB; 64 MB of logits a batch, about 1,200
# tokens, keeps a tiny Transformer's evaluation under 0.9 GB in all).
EVAL_LOGITS = 1 << 24


def eval_max_tokens(batch_size: int, n_vocab: int) -> int:
    """The default token budget of a batch of whole sentences to score (rows x steps,
    ``<S>``/``</S>`` and padding included): as embedding's (``batch_size * 64``), and at
    most :data:`EVAL_LOGITS` logits over an ``n_vocab``-word softmax."""
    return max(min(batch_size * 64, EVAL_LOGITS // max(n_vocab, 1)), 1)


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
                    batch_size: int = 64, max_tokens: int | None = None,
                    ) -> Iterator[SentenceScore]:
    """Score tokenized sentences with a :class:`~bilm.model.lm.LanguageModel` (full softmax, each
    sentence on its own: from a zero state for a stateful encoder), in input order.

    Consecutive sentences are scored together, at most ``batch_size`` of them and at most
    ``max_tokens`` rows x steps (default :func:`eval_max_tokens`: the softmax's logits stay
    bounded, however long the lines); a longer sentence alone. The scores do not depend on
    the grouping (to float rounding)."""
    n_dir = lm.n_directions
    if max_tokens is None:
        max_tokens = eval_max_tokens(batch_size, lm.options.n_tokens_vocab or 1)

    @tf.function(reduce_retracing=True)
    def logprobs(batch):
        return lm.sentence_logprobs(batch)

    def flush(batch: list[Sequence[str]]) -> Iterator[SentenceScore]:
        arrays = sentence_batch(vocab, batch)
        result = logprobs({k: tf.constant(v) for k, v in arrays.items()
                           if v is not None}).numpy()
        for i, sentence in enumerate(batch):
            yield SentenceScore(len(sentence), float(result[0, i]),
                                float(result[1, i]) if n_dir == 2 else None)

    buffer: list[Sequence[str]] = []
    steps = 0  # the longest of the buffer, <S> and </S> included
    for sentence in sentences:
        longest = max(steps, len(sentence) + 2)
        if buffer and (len(buffer) + 1) * longest > max_tokens:
            yield from flush(buffer)
            buffer, longest = [], len(sentence) + 2
        buffer.append(sentence)
        steps = longest
        if len(buffer) == batch_size:
            yield from flush(buffer)
            buffer, steps = [], 0
    if buffer:
        yield from flush(buffer)
