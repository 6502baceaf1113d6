"""Per-sentence log-probabilities and perplexities under a trained biLM (``bilm score``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import tensorflow as tf

from bilm.data.sentences import sentence_batch
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
    sentence on its own: from a zero state for a stateful encoder), in input order."""
    n_dir = lm.n_directions

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
    for sentence in sentences:
        buffer.append(sentence)
        if len(buffer) == batch_size:
            yield from flush(buffer)
            buffer = []
    if buffer:
        yield from flush(buffer)
