"""Training and held-out data one sentence per row (AllenNLP's language-model recipe, which
the Transformer biLM trains on): ``<S>``/``</S>`` added, sentences longer than the maximum
split into pieces (counted and reported, never dropped), batches of similar length."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence

import numpy as np

from bilm.data.batch import SentenceBatch
from bilm.data.dataset import MAX_LINE_TOKENS, LMDataset
from bilm.data.packing import Segment, replay
from bilm.data.vocabulary import PAD_CHAR, UnicodeCharsVocabulary, Vocabulary

__all__ = ["SentenceDataset", "sentence_batch"]

logger = logging.getLogger(__name__)


def sentence_batch(vocab: Vocabulary, sentences: Sequence[Sequence[str]]) -> SentenceBatch:
    """The ``"sentences"`` layout of :class:`~bilm.model.lm.LanguageModel`: ``token_ids`` (batch, T)
    with ``<S>``/``</S>``, ``tokens_characters`` (batch, T, chars) training character ids
    (None for a word vocabulary) and ``lengths`` (batch,); T is the longest sentence plus 2
    (padding: id 0 and padding characters)."""
    lengths = np.array([len(s) + 2 for s in sentences], np.int32)
    n_steps = int(lengths.max())
    ids = np.zeros((len(sentences), n_steps), np.int32)
    chars = None
    if isinstance(vocab, UnicodeCharsVocabulary):
        chars = np.full((len(sentences), n_steps, vocab.max_word_length), PAD_CHAR, np.int32)
    for i, sentence in enumerate(sentences):
        ids[i, : lengths[i]] = vocab.encode(sentence, split=False)
        if chars is not None:
            chars[i, : lengths[i]] = vocab.encode_chars(sentence, split=False)
    return {"token_ids": ids, "tokens_characters": chars, "lengths": lengths}


class SentenceDataset:
    """Sentences of sharded text, one per batch row (the ``"sentences"`` protocol).

    Args:
        filepattern: glob of the shards (one tokenized sentence per line).
        vocab: a :class:`Vocabulary`; a :class:`UnicodeCharsVocabulary` also gives char ids.
        test: one pass over the shards in sorted order, every sentence (the last batch may be
            smaller); else cycle forever, full batches only.
        shuffle_on_load: shuffle within shards (see :class:`~bilm.data.LMDataset`) and the
            order of the batches of each window.
        seed: seeds the shard order and the shuffles.
        max_length: most tokens per row, ``<S>``/``</S>`` included; a longer sentence is split
            into pieces of ``max_length - 2`` tokens, each with its own ``<S>``/``</S>``.
        window: batches read at a time and grouped by length (AllenNLP's bucketing buffer).

    Blank lines are skipped (they hold no target). Invalid UTF-8 lines are skipped and
    reported, as by :class:`~bilm.data.LMDataset`.
    """

    def __init__(self, filepattern: str, vocab: Vocabulary, test: bool = False,
                 shuffle_on_load: bool = False, seed: int | None = None,
                 max_length: int = 400, window: int = 100) -> None:
        if max_length < 3:
            raise ValueError(f"max_length must be >= 3 (<S>, a token, </S>), got {max_length}")
        # a long line comes from the stream in pieces of a whole number of sentences, so that
        # it is split here as if it came whole (one of over MAX_LINE_BYTES, at whitespace)
        size = max_length - 2
        self._lines = LMDataset(filepattern, vocab, test=test, shuffle_on_load=shuffle_on_load,
                                seed=seed,
                                max_line_tokens=size * max(MAX_LINE_TOKENS // size, 1))
        self._vocab, self._test, self._shuffle = vocab, test, shuffle_on_load
        self._seed, self._rng = seed, random.Random(None if seed is None else seed + 2)
        self.max_length, self.window = max_length, window
        self.n_split_sentences = 0  # sentences longer than max_length, split so far

    @property
    def vocab(self) -> Vocabulary:
        return self._vocab

    @property
    def filepattern(self) -> str:
        return self._lines.filepattern

    @property
    def seed(self) -> int | None:
        return self._seed

    @property
    def n_skipped_lines(self) -> int:
        return self._lines.n_skipped_lines

    @property
    def n_split_lines(self) -> int:
        """Lines read in pieces because they are longer than the stream's bound (see
        :class:`~bilm.data.LMDataset`); :attr:`n_split_sentences` counts the pieces' splits."""
        return self._lines.n_split_lines

    def pieces(self) -> Iterator[list[str]]:
        """The sentences to embed, in order: a long one as consecutive pieces."""
        size = self.max_length - 2
        for tokens in self._lines.iter_tokens():
            if not tokens:
                continue
            if len(tokens) > size:
                if self.n_split_sentences == 0:
                    logger.warning("a sentence of %d tokens is longer than max_sentence_length "
                                   "(%d with <S> and </S>): split into pieces (counted, not "
                                   "dropped)", len(tokens), self.max_length)
                self.n_split_sentences += 1
                for start in range(0, len(tokens), size):
                    yield tokens[start : start + size]
            else:
                yield tokens

    def _batches(self, source: Iterator[list[str]], rows: int, _steps: int = 0,
                 own: tuple[int, int] | None = None, max_tokens: int | None = None,
                 ) -> Iterator[SentenceBatch]:
        """Windows of ``rows * window`` sentences, sorted by length, cut into batches (their
        order shuffled in training); of each batch only the ``own`` = (start, stop) rows are
        built (a worker's slice). In test mode, ``max_tokens`` bounds a batch's rows x steps
        too (see :func:`token_batches`)."""
        carry: list[list[str]] = []
        while True:
            chunk = carry + [s for _, s in zip(range(rows * self.window - len(carry)), source,
                                               strict=False)]
            if not chunk:
                return
            chunk.sort(key=len)
            cut = len(chunk) if self._test else len(chunk) - len(chunk) % rows
            carry = chunk[cut:]  # training: full batches only; the rest waits for the next
            if self._test and max_tokens is not None:
                batches = token_batches(chunk, rows, max_tokens)
            else:
                batches = [chunk[i : i + rows] for i in range(0, cut, rows)]
            if not self._test and self._shuffle:
                self._rng.shuffle(batches)
            for b in batches:
                if own is not None:
                    b = b[own[0] : own[1]]
                yield sentence_batch(self._vocab, b) if b else {}
            if len(chunk) < rows * self.window:  # the source ended (test mode)
                return

    def iter_batches(self, batch_size: int, num_steps: int = 0,
                     history: Sequence[Segment] = (), rows: tuple[int, int] | None = None,
                     *, max_tokens: int | None = None) -> Iterator[SentenceBatch]:
        """Batches of ``batch_size`` sentences (see :func:`sentence_batch`); only ``rows`` =
        (start, stop) of each when given (a worker's slice). ``num_steps`` is unused (kept for
        the streams' signature); ``history`` replays the batches a resumed run read, as
        (n_batches, batch_size, num_steps) segments (a change of batch size starts a new
        window: the old window's unread sentences are dropped).

        ``max_tokens`` (test mode only: training batches have ``batch_size`` rows) also
        bounds each batch's rows x steps, ``<S>``/``</S>`` and padding included: long
        sentences come fewer to a batch, a sentence longer than that alone (evaluation's
        memory then stays bounded whatever the sentences' length)."""
        if max_tokens is not None:
            if not self._test:
                raise ValueError("max_tokens bounds test-mode batches only (training batches "
                                 "have batch_size rows)")
            if max_tokens < 1:
                raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")

        def batches(source, size, steps, own):
            return self._batches(source, size, steps, own, max_tokens)

        yield from replay(history, (batch_size, num_steps), self.pieces(), batches, rows)


def token_batches(sentences: Sequence[Sequence[str]], rows: int, max_tokens: int,
                  ) -> list[Sequence[Sequence[str]]]:
    """Consecutive sentences of ascending length grouped into batches of at most ``rows``
    sentences and at most ``max_tokens`` rows x steps (steps: the longest sentence + 2, for
    ``<S>``/``</S>``); one sentence always makes a batch, however long."""
    batches, start = [], 0
    while start < len(sentences):
        stop = start + 1
        while (stop < len(sentences) and stop - start < rows
               and (stop - start + 1) * (len(sentences[stop]) + 2) <= max_tokens):
            stop += 1
        batches.append(sentences[start:stop])
        start = stop
    return batches
