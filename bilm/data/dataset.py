"""Training data: sharded text streamed into bilm-tf's (batch, unroll_steps) windows.

Each of ``batch_size`` rows continues its own stream of sentences from batch to batch, so the
LSTM state carried across batches follows real text. Shards are streamed line by line (a shard of
many GB is never loaded whole).
"""

from __future__ import annotations

import glob
import logging
import os
import random
from collections.abc import Iterator

import numpy as np

from bilm.data.vocabulary import UnicodeCharsVocabulary, Vocabulary

__all__ = ["Batch", "BidirectionalLMDataset", "LMDataset"]

logger = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]  # token_ids, tokens_characters, next_token_id (+ '_reverse')


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
    """

    def __init__(self, filepattern: str, vocab: Vocabulary, reverse: bool = False,
                 test: bool = False, shuffle_on_load: bool = False, seed: int | None = None,
                 shuffle_buffer: int = 100_000) -> None:
        self._shards = sorted(glob.glob(os.path.expanduser(filepattern)))
        if not self._shards:
            raise FileNotFoundError(f"no training files match {filepattern!r}")
        logger.debug("found %d shards at %s", len(self._shards), filepattern)
        self._vocab = vocab
        self._reverse, self._test = reverse, test
        self._shuffle_on_load, self._shuffle_buffer = shuffle_on_load, shuffle_buffer
        self._rng = random.Random(seed)
        self._use_char_inputs = isinstance(vocab, UnicodeCharsVocabulary)

    @property
    def vocab(self) -> Vocabulary:
        return self._vocab

    @property
    def shards(self) -> list[str]:
        return list(self._shards)

    @property
    def max_word_length(self) -> int | None:
        return self._vocab.max_word_length if self._use_char_inputs else None

    def _lines(self, shard: str) -> Iterator[str]:
        with open(shard, encoding="utf-8") as f:
            if not self._shuffle_on_load:
                yield from f
                return
            buffer: list[str] = []
            for line in f:
                if len(buffer) < self._shuffle_buffer:
                    buffer.append(line)
                    continue
                k = self._rng.randrange(len(buffer))
                yield buffer[k]
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

    def get_sentence(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield (word ids (n + 2,), char ids (n + 2, max_chars) or None) per sentence."""
        for shard in self._shard_order():
            for line in self._lines(shard):
                tokens = line.split()
                if self._reverse:
                    tokens.reverse()
                ids = self._vocab.encode(tokens, reverse=self._reverse, split=False)
                chars = (self._vocab.encode_chars(tokens, reverse=self._reverse, split=False)
                         if self._use_char_inputs else None)
                yield ids, chars

    def iter_batches(self, batch_size: int, num_steps: int) -> Iterator[Batch]:
        """Batches of ``token_ids``, ``tokens_characters``, ``next_token_id`` (int32)."""
        yield from _get_batch(self.get_sentence(), batch_size, num_steps, self.max_word_length)


def _get_batch(generator: Iterator[tuple[np.ndarray, np.ndarray | None]], batch_size: int,
               num_steps: int, max_word_length: int | None) -> Iterator[Batch]:
    """bilm-tf's packing: row i continues its own sentence stream; in test mode the last,
    incomplete batch is dropped."""
    cur_stream: list[list | None] = [None] * batch_size
    no_more_data = False
    while True:
        inputs = np.zeros([batch_size, num_steps], np.int32)
        targets = np.zeros([batch_size, num_steps], np.int32)
        char_inputs = (np.zeros([batch_size, num_steps, max_word_length], np.int32)
                       if max_word_length is not None else None)
        for i in range(batch_size):
            cur_pos = 0
            while cur_pos < num_steps:
                stream = cur_stream[i]
                if stream is None or len(stream[0]) <= 1:
                    try:
                        stream = cur_stream[i] = list(next(generator))
                    except StopIteration:
                        no_more_data = True
                        break
                how_many = min(len(stream[0]) - 1, num_steps - cur_pos)
                next_pos = cur_pos + how_many
                inputs[i, cur_pos:next_pos] = stream[0][:how_many]
                targets[i, cur_pos:next_pos] = stream[0][1 : how_many + 1]
                if char_inputs is not None:
                    char_inputs[i, cur_pos:next_pos] = stream[1][:how_many]
                    stream[1] = stream[1][how_many:]
                stream[0] = stream[0][how_many:]
                cur_pos = next_pos
            if no_more_data:
                break
        if no_more_data:
            return
        batch = {"token_ids": inputs, "next_token_id": targets}
        if char_inputs is not None:
            batch["tokens_characters"] = char_inputs
        yield batch


class BidirectionalLMDataset:
    """Forward and reverse streams of the same shards (bilm-tf's class); each batch has the
    forward keys and the same keys with ``_reverse``."""

    def __init__(self, filepattern: str, vocab: Vocabulary, test: bool = False,
                 shuffle_on_load: bool = False, seed: int | None = None) -> None:
        other = None if seed is None else seed + 1
        self._forward = LMDataset(filepattern, vocab, reverse=False, test=test,
                                  shuffle_on_load=shuffle_on_load, seed=seed)
        self._reverse = LMDataset(filepattern, vocab, reverse=True, test=test,
                                  shuffle_on_load=shuffle_on_load, seed=other)

    @property
    def vocab(self) -> Vocabulary:
        return self._forward.vocab

    @property
    def shards(self) -> list[str]:
        return self._forward.shards

    @property
    def max_word_length(self) -> int | None:
        return self._forward.max_word_length

    def iter_batches(self, batch_size: int, num_steps: int) -> Iterator[Batch]:
        for x, xr in zip(self._forward.iter_batches(batch_size, num_steps),
                         self._reverse.iter_batches(batch_size, num_steps)):
            for k, v in xr.items():
                x[k + "_reverse"] = v
            yield x
