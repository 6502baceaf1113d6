"""Evaluating a trained biLM from a loaded model (no trainer, no strategy): held-out
perplexities (bilm-tf's ``test``, ``run_test.py``; ``bilm evaluate``) and per-sentence
log-probabilities and perplexities (``bilm score``)."""

from __future__ import annotations

import glob
import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from bilm.data.dataset import BidirectionalLMDataset, LMDataset
from bilm.data.lines import count_lines
from bilm.data.sentences import SentenceDataset, sentence_batch
from bilm.data.vocabulary import Vocabulary
from bilm.io.progress import Progress
from bilm.model.lm import LanguageModel
from bilm.options import BiLMOptions
from bilm.training.inputs import _as_options, _dataset
from bilm.training.run_folder import RunError
from bilm.training.runs import load_language_model, load_run

__all__ = ["EVAL_LOGITS", "SentenceScore", "eval_max_tokens", "evaluate_run",
           "heldout_perplexity", "score_sentences", "test"]

logger = logging.getLogger(__name__)

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


# -- held-out perplexity ---------------------------------------------------------------------------

def _held_out_lines(filepattern: str) -> int:
    """The lines of the files matching ``filepattern``: the total of evaluation's progress.

    :func:`~bilm.data.lines.count_lines` counts newlines at C speed (seconds for GBs,
    against hours for evaluating as much, and the pass leaves the files in the page cache for
    evaluation's own). A token count would decode and split every line in Python (minutes a
    GB); the files' sizes cost nothing, but the batches hold ids, not bytes, so the loop
    could not say how many it has read. Progress counts the sentences the batches begin,
    which this matches up to blank lines (skipped by the sentence protocol) and over-long
    lines (split)."""
    return sum(count_lines(path) for path in glob.glob(os.path.expanduser(filepattern)))


def _progress(data, progress: bool) -> Progress:
    """Evaluation's progress in lines of the held-out files, with their total (and so an
    ETA) when the data names its files."""
    pattern = getattr(data, "filepattern", None) if progress else None
    return Progress("evaluate", total=None if pattern is None else _held_out_lines(pattern),
                    unit="lines", enabled=progress)


def _finish(bar: Progress) -> None:
    """The end of the data: every line was read (blank ones skipped, the last few in a
    dropped, incomplete batch), so the count reaches the total."""
    bar.update(max((bar.total or 0) - bar.done, 0))


def _perplexity(lm: LanguageModel, data: BidirectionalLMDataset | LMDataset,
                batch_size: int, progress: bool) -> float:
    """bilm-tf's held-out perplexity: unroll_steps 1, LSTM states carried, full softmax,
    exp of the mean batch loss (the mean of both directions for a biLM)."""

    @tf.function(autograph=False)
    def eval_step(batch, states):
        return lm(batch, states, training=False)

    states = lm.zero_states(batch_size)
    losses = []
    starts = (data.vocab.bos, data.vocab.eos)  # a row's first input: <S>, or </S> reversed
    with _progress(data, progress) as bar:
        for batch in data.iter_batches(batch_size, 1):
            begun = int(np.isin(batch["token_ids"], starts).sum())  # sentences begun
            batch = {k: tf.constant(v) for k, v in batch.items() if v is not None}
            loss, states = eval_step(batch, states)
            losses.append(float(loss))
            bar.update(begun)
        _finish(bar)
    if not losses:
        raise RunError(f"the held-out text is smaller than one batch of {batch_size} rows; "
                       "lower the batch size")
    perplexity = math.exp(float(np.mean(losses)))
    logger.info("held-out perplexity %.2f over %d batches", perplexity, len(losses))
    return perplexity


def _sentence_perplexity(lm: LanguageModel, data: SentenceDataset, batch_size: int,
                         progress: bool, max_tokens: int | None = None) -> float:
    """AllenNLP's formula for held-out perplexity, over each sentence's own targets (not
    AllenNLP's padded-batch figure, see docs/transformer.md): each sentence scored whole,
    full softmax, exp(1/2 (NLL_forward + NLL_backward) / N) over the N forward targets. A
    batch holds at most ``batch_size`` sentences and ``max_tokens`` rows x steps (default:
    :func:`eval_max_tokens`); the result does not depend on the batching (to
    float rounding)."""

    @tf.function(reduce_retracing=True, autograph=False)
    def logprobs(batch):
        return tf.reduce_sum(lm.sentence_logprobs(batch), axis=1)  # shape (d,)

    if max_tokens is None:
        max_tokens = eval_max_tokens(batch_size, lm.options.n_tokens_vocab or 1)
    total, n_targets = np.zeros(lm.n_directions), 0
    with _progress(data, progress) as bar:
        for batch in data.iter_batches(batch_size, max_tokens=max_tokens):
            n_targets += int(np.maximum(batch["lengths"] - 1, 0).sum())
            total += logprobs({k: tf.constant(v) for k, v in batch.items()
                               if v is not None}).numpy()
            bar.update(len(batch["lengths"]))  # its sentences
        _finish(bar)
    if not n_targets:
        raise RunError(f"the held-out files matching {data.filepattern!r} hold no sentence")
    perplexity = math.exp(-float(total.mean()) / n_targets)
    logger.info("held-out perplexity %.2f over %d targets", perplexity, n_targets)
    return perplexity


def heldout_perplexity(lm: LanguageModel,
                       data: BidirectionalLMDataset | LMDataset | SentenceDataset,
                       batch_size: int = 256, progress: bool = True,
                       max_tokens: int | None = None) -> float:
    """Held-out perplexity of a loaded language model, by its encoder's protocol (see
    :func:`test`)."""
    if lm.protocol == "sentences":
        return _sentence_perplexity(lm, data, batch_size, progress, max_tokens)
    return _perplexity(lm, data, batch_size, progress)


def test(options: BiLMOptions | dict | str, ckpt_file: str,
         data: BidirectionalLMDataset | LMDataset | SentenceDataset, batch_size: int = 256,
         progress: bool = True, max_tokens: int | None = None) -> float:
    """Held-out perplexity (bilm-tf's ``test``), by the encoder's protocol: bilm-tf's for
    the LSTM (unroll_steps 1, states carried across batches, full softmax; ``data`` an
    LMDataset), AllenNLP's for the transformer (sentences whole; ``data`` a test-mode
    SentenceDataset, in batches of at most ``batch_size`` sentences and ``max_tokens`` rows x
    steps, default :func:`eval_max_tokens`)."""
    options = _as_options(options).replace(batch_size=batch_size, unroll_steps=1)
    return heldout_perplexity(load_language_model(options, ckpt_file), data, batch_size,
                              progress, max_tokens)


def evaluate_run(save_dir: str, test_prefix: str, vocab_file: str | None = None,
                 batch_size: int = 256, progress: bool = True,
                 max_tokens: int | None = None) -> float:
    """Held-out perplexity of a run's latest checkpoint on the files matching
    ``test_prefix`` (bilm-tf's ``run_test.py``), by the encoder's protocol (see
    :func:`test`)."""
    loaded = load_run(save_dir, vocab_file)
    data = _dataset(loaded.options, test_prefix, loaded.vocab, None, test=True)
    return heldout_perplexity(loaded.lm, data, batch_size, progress, max_tokens)


# -- sentence scores ------------------------------------------------------------------------------

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

    @tf.function(reduce_retracing=True, autograph=False)
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


def corpus_perplexity(scores: Iterable[SentenceScore]) -> float:
    """The perplexity of a whole text from its sentences' scores (``bilm score``'s closing
    line): exp of the total loss over the total predictions, each sentence's loss the mean of
    its directions; 1.0 for no sentence."""
    total_lp, total_n = 0.0, 0
    for sc in scores:
        bwd = sc.logprob_backward
        directions = [sc.logprob_forward] + ([] if bwd is None else [bwd])
        total_lp += sum(directions) / len(directions)
        total_n += sc.n_predictions
    return math.exp(-total_lp / max(total_n, 1))
