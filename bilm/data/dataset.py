"""Training data: sharded text streamed into bilm-tf's (batch, unroll_steps) windows.

Each of ``batch_size`` rows continues its own stream of sentences from batch to batch, so the
LSTM state carried across batches follows real text. Shards are streamed line by line (a shard of
many GB is never loaded whole), and a line ends at "\\n" only. One line costs bounded memory
whatever its length: a line of more than :data:`MAX_LINE_BYTES` is read in pieces cut at
whitespace, and a sentence of more than :data:`MAX_LINE_TOKENS` tokens is split into pieces
(each its own sentence; counted and reported). Lines are read by :mod:`bilm.data.lines`, and
packed into windows by :mod:`bilm.data.packing`.
"""

from __future__ import annotations

import glob
import logging
import os
import random
from collections.abc import Iterator, Sequence

import numpy as np

from bilm.data.lines import MAX_LINE_BYTES, read_lines
from bilm.data.packing import Batch, Segment, get_batch, replay
from bilm.data.vocabulary import UNK, UnicodeCharsVocabulary, Vocabulary

# MAX_LINE_BYTES, read_lines (bilm.data.lines) and Batch (bilm.data.packing) stay importable
# from here.
__all__ = ["MAX_LINE_BYTES", "MAX_LINE_TOKENS", "Batch", "BidirectionalLMDataset", "DataError",
           "LMDataset", "read_lines"]

logger = logging.getLogger(__name__)

# invalid UTF-8 lines reported one by one per shard, then counted
_MAX_REPORTED_BAD_LINES = 5
# Most tokens of one training sentence: a longer line is split into pieces of this many, each
# its own sentence (bilm-tf kept a line whole, whatever it cost: 100 MB without a newline took
# 9 GB). Real sentences are far shorter; a paragraph or a document per line is split.
MAX_LINE_TOKENS = 10_000

# Most characters a shard's shuffle buffer holds (with at most ``shuffle_buffer`` lines): a
# corpus of ordinary lines never fills it, so its shuffle is the line-count one.
SHUFFLE_BUFFER_CHARS = 1 << 28


class DataError(ValueError):
    """The training or held-out text cannot be used (e.g. the files hold no tokens)."""


class LMDataset:
    """One direction of a sharded corpus (bilm-tf's ``LMDataset``).

    Args:
        filepattern: glob of the shards (one tokenized sentence per line).
        vocab: a :class:`Vocabulary`; a :class:`UnicodeCharsVocabulary` also yields char ids.
        reverse: read every sentence backwards (``</S>`` first).
        test: read each shard once, in sorted order, then stop; otherwise cycle forever, each
            cycle visiting every shard once in a random order.
        shuffle_on_load: shuffle sentences within a shard (through a streaming buffer of
            ``shuffle_buffer`` sentences, so memory stays bounded).
        seed: seeds the shard order and the shuffle, for reproducible runs.
        max_line_tokens: most tokens of a sentence; a longer line is split into pieces of
            this many, each its own sentence (as is a line of more than
            :data:`MAX_LINE_BYTES` bytes, at whitespace), counted (:attr:`n_split_lines`) and
            reported, so that one line costs bounded memory.

    Lines end at ``"\\n"`` only (see :func:`read_lines`). Lines that are not valid UTF-8 are
    skipped with a warning naming the file and line (the first few per shard, then a count):
    one bad line must not end a long run.
    """

    def __init__(self, filepattern: str, vocab: Vocabulary, reverse: bool = False,
                 test: bool = False, shuffle_on_load: bool = False, seed: int | None = None,
                 shuffle_buffer: int = 100_000, max_line_tokens: int = MAX_LINE_TOKENS,
                 ) -> None:
        if max_line_tokens < 1:
            raise ValueError(f"max_line_tokens must be >= 1, got {max_line_tokens}")
        self._filepattern = filepattern
        self._shards = sorted(glob.glob(os.path.expanduser(filepattern)))
        if not self._shards:
            raise FileNotFoundError(f"no training files match {filepattern!r}")
        logger.debug("found %d shards at %s", len(self._shards), filepattern)
        self._vocab = vocab
        self._reverse, self._test = reverse, test
        self._shuffle_on_load, self._shuffle_buffer = shuffle_on_load, shuffle_buffer
        self._seed = seed
        self._rng = random.Random(seed)
        self._use_char_inputs = isinstance(vocab, UnicodeCharsVocabulary)
        self._bad_lines: set[tuple[str, int]] = set()  # invalid UTF-8 lines seen so far
        self.max_line_tokens = max_line_tokens
        self._long_lines: set[tuple[str, int]] = set()  # lines split into pieces so far
        self.report_skipped = True  # warn about them (the reverse stream of a biLM does not)

    @property
    def vocab(self) -> Vocabulary:
        return self._vocab

    @property
    def shards(self) -> list[str]:
        return list(self._shards)

    @property
    def filepattern(self) -> str:
        return self._filepattern

    @property
    def n_skipped_lines(self) -> int:
        """Distinct lines skipped so far because they are not valid UTF-8."""
        return len(self._bad_lines)

    @property
    def n_split_lines(self) -> int:
        """Distinct lines split so far into pieces because they are longer than
        ``max_line_tokens`` tokens or :data:`MAX_LINE_BYTES` bytes."""
        return len(self._long_lines)

    @property
    def seed(self) -> int | None:
        return self._seed

    @property
    def max_word_length(self) -> int | None:
        return self._vocab.max_word_length if self._use_char_inputs else None

    def _decoded_lines(self, shard: str) -> Iterator[str]:
        """The shard's lines as text (a long line as pieces, see :func:`read_lines`); invalid
        UTF-8 lines skipped and reported; long lines counted and reported."""
        bad, new = 0, 0
        long_lines, new_long, previous = 0, 0, 0
        cap = self.max_line_tokens
        with open(shard, "rb") as f:
            for lineno, text, whole in read_lines(f):
                if isinstance(text, UnicodeDecodeError):
                    e = text
                    bad += 1
                    if (shard, lineno) in self._bad_lines:  # reported on an earlier pass
                        continue
                    self._bad_lines.add((shard, lineno))
                    new += 1
                    if self.report_skipped and new <= _MAX_REPORTED_BAD_LINES:
                        logger.warning("%s:%d: not valid UTF-8 (%s at byte %d); line skipped",
                                       shard, lineno, e.reason, e.start)
                    continue
                # more than `cap` tokens takes at least 2 * cap - 1 characters
                if lineno != previous and (not whole or (
                        len(text) >= 2 * cap - 1 and len(text.split()) > cap)):
                    previous = lineno
                    long_lines += 1
                    if (shard, lineno) not in self._long_lines:
                        self._long_lines.add((shard, lineno))
                        new_long += 1
                        if self.report_skipped and new_long == 1:
                            logger.warning(
                                "%s:%d: a line longer than a sentence may be (%d tokens, or "
                                "%d MiB): split into pieces of at most %d tokens, each its own "
                                "sentence (counted, not dropped)", shard, lineno, cap,
                                MAX_LINE_BYTES >> 20, cap)
                yield text
        if self.report_skipped and new > _MAX_REPORTED_BAD_LINES:
            logger.warning("%s: %d lines in all were not valid UTF-8 and were skipped", shard,
                           bad)
        if self.report_skipped and new_long > 1:
            logger.warning("%s: %d lines in all were longer than a sentence may be and were "
                           "split into pieces", shard, long_lines)

    def _lines(self, shard: str) -> Iterator[str]:
        lines = self._decoded_lines(shard)
        if not self._shuffle_on_load:
            yield from lines
            return
        # a streaming shuffle buffer: memory stays bounded for any shard size, in lines and in
        # characters (the pieces of very long lines would otherwise fill it)
        buffer: list[str] = []
        chars = 0
        for line in lines:
            while buffer and chars + len(line) > SHUFFLE_BUFFER_CHARS:
                k = self._rng.randrange(len(buffer))
                buffer[k], buffer[-1] = buffer[-1], buffer[k]
                out = buffer.pop()
                chars -= len(out)
                yield out
            if len(buffer) < self._shuffle_buffer:
                buffer.append(line)
                chars += len(line)
                continue
            k = self._rng.randrange(len(buffer))
            yield buffer[k]
            chars += len(line) - len(buffer[k])
            buffer[k] = line
        self._rng.shuffle(buffer)
        yield from buffer

    def _shard_order(self) -> Iterator[str]:
        if self._test:
            yield from self._shards
            return
        while True:
            order = list(self._shards)
            self._rng.shuffle(order)
            yield from order

    def iter_tokens(self) -> Iterator[list[str]]:
        """Each line's tokens, shard after shard (in a random order each pass, or once in
        sorted order in test mode), shuffled within a shard when ``shuffle_on_load``.

        Raises :class:`DataError` when a full pass over the shards finds no token (training
        would otherwise loop forever on empty files)."""
        n_shards, seen_tokens = len(self._shards), False
        cap = self.max_line_tokens
        for visited, shard in enumerate(self._shard_order(), start=1):
            for line in self._lines(shard):
                tokens = line.split()
                seen_tokens = seen_tokens or bool(tokens)
                if len(tokens) > cap:  # a long line's piece (counted when read)
                    for start in range(0, len(tokens), cap):
                        yield tokens[start : start + cap]
                    continue
                yield tokens
            if visited == n_shards and not seen_tokens:
                raise DataError(
                    f"the {n_shards} file(s) matching {self._filepattern!r} hold no tokens "
                    "(empty or blank files); check the path and the files")

    def _encode(self, tokens: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        if self._reverse:
            tokens = tokens[::-1]
        ids = self._vocab.encode(tokens, reverse=self._reverse, split=False)
        chars = (self._vocab.encode_chars(tokens, reverse=self._reverse, split=False)
                 if self._use_char_inputs else None)
        return ids, chars

    def get_sentence(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield (word ids (n + 2,), char ids (n + 2, max_chars) or None) per sentence."""
        for tokens in self.iter_tokens():
            yield self._encode(tokens)

    def _sentences(self) -> Iterator[_Sentence]:
        for tokens in self.iter_tokens():
            yield _Sentence(self, tokens)

    def iter_batches(self, batch_size: int, num_steps: int,
                     history: Sequence[Segment] = (), rows: tuple[int, int] | None = None,
                     ) -> Iterator[Batch]:
        """Batches of ``token_ids``, ``tokens_characters``, ``next_token_id`` (int32;
        ``tokens_characters`` is None for a word-input vocabulary); only ``rows`` = (start,
        stop) of each batch's ``batch_size`` rows when given (a worker's slice).

        ``history`` replays the batches a resumed run has already read, as (n_batches,
        batch_size, num_steps) segments in order, so that the stream continues where it
        stood even when the batch geometry changed in between: each segment reads on from
        the sentences the previous one left (a geometry change drops the partly read
        sentences of the old rows). The same seed and history give the same batches.
        """
        def batches(source: Iterator[_Sentence], size: int, steps: int,
                    own: tuple[int, int] | None) -> Iterator[Batch]:
            return get_batch(source, size, steps, self.max_word_length, own)

        yield from replay(history, (batch_size, num_steps), self._sentences(), batches, rows)


class _Sentence:
    """One sentence of a stream: its length at once, its ids encoded only when a row this
    process fills reads it (a worker fills only its own rows of the global batch), and its
    character ids only a window's stretch at a time (a long sentence's (n + 2, max_chars)
    array is never built whole)."""

    __slots__ = ("_ids", "dataset", "n", "tokens")

    def __init__(self, dataset: LMDataset, tokens: list[str]) -> None:
        self.dataset, self.tokens, self.n = dataset, tokens, len(tokens) + 2
        self._ids = None

    def ids(self) -> np.ndarray:
        if self._ids is None:
            d = self.dataset
            tokens = self.tokens[::-1] if d._reverse else self.tokens
            self._ids = d._vocab.encode(tokens, reverse=d._reverse, split=False)
        return self._ids

    def chars(self, start: int, stop: int) -> np.ndarray:
        """Character ids of positions [start, stop) of the sentence, ``<S>``/``</S>``
        included (the rows of :meth:`LMDataset._encode`'s array): the vocabulary's rows of
        the ids, and unknown words' own characters."""
        vocab = self.dataset._vocab
        ids = self.ids()[start:stop]
        out = vocab.word_char_ids[ids]
        if vocab.unk >= 0:
            n, reverse = len(self.tokens), self.dataset._reverse
            for j in np.flatnonzero(ids == vocab.unk):
                p = start + int(j)  # a token's position: reversed, it holds token n - p
                word = self.tokens[n - p if reverse else p - 1]
                if word != UNK:
                    out[j] = vocab.word_to_char_ids(word)
        return out


class BidirectionalLMDataset:
    """Forward and reverse streams of the same shards (bilm-tf's class); each batch has the
    forward keys and the same keys with ``_reverse``."""

    def __init__(self, filepattern: str, vocab: Vocabulary, test: bool = False,
                 shuffle_on_load: bool = False, seed: int | None = None) -> None:
        self._seed = seed
        other = None if seed is None else seed + 1
        self._forward = LMDataset(filepattern, vocab, reverse=False, test=test,
                                  shuffle_on_load=shuffle_on_load, seed=seed)
        self._reverse = LMDataset(filepattern, vocab, reverse=True, test=test,
                                  shuffle_on_load=shuffle_on_load, seed=other)
        self._reverse.report_skipped = False  # each bad line reported once, by the forward


    @property
    def vocab(self) -> Vocabulary:
        return self._forward.vocab

    @property
    def shards(self) -> list[str]:
        return self._forward.shards

    @property
    def filepattern(self) -> str:
        return self._forward.filepattern

    @property
    def seed(self) -> int | None:
        return self._seed

    @property
    def max_word_length(self) -> int | None:
        return self._forward.max_word_length

    @property
    def n_skipped_lines(self) -> int:
        """Invalid UTF-8 lines skipped so far (counted once, by the forward stream)."""
        return self._forward.n_skipped_lines

    @property
    def n_split_lines(self) -> int:
        """Long lines split into pieces so far (counted once, by the forward stream)."""
        return self._forward.n_split_lines

    def iter_batches(self, batch_size: int, num_steps: int,
                     history: Sequence[Segment] = (), rows: tuple[int, int] | None = None,
                     ) -> Iterator[Batch]:
        """As :meth:`LMDataset.iter_batches`, with the ``_reverse`` keys added."""
        for x, xr in zip(self._forward.iter_batches(batch_size, num_steps, history, rows),
                         self._reverse.iter_batches(batch_size, num_steps, history, rows),
                         strict=False):
            for k, v in xr.items():
                x[k + "_reverse"] = v
            yield x
