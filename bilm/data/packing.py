"""bilm-tf's packing of sentence streams into (batch, unroll_steps) windows: row i of every
batch continues its own stream, and a resumed run replays the batches it has already read."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import numpy as np

from bilm.data.batch import StreamBatch

__all__ = ["Batch", "PackedSentence", "Segment", "get_batch", "replay"]

# token_ids, tokens_characters (None for a word-input vocabulary, as in bilm-tf),
# next_token_id, and the same keys with '_reverse' for a biLM
Batch = dict[str, np.ndarray | None]

# (n_batches, batch_size, num_steps): a stretch of a run read with one batch geometry
Segment = tuple[int, int, int]


class PackedSentence(Protocol):
    """What the packing reads of a sentence (a dataset's, e.g. ``bilm.data.dataset``'s): its
    length ``n`` with ``<S>`` and ``</S>``, its word ids, and its character ids a stretch at a
    time."""

    n: int

    def ids(self) -> np.ndarray: ...

    def chars(self, start: int, stop: int) -> np.ndarray: ...


def _consume(iterator: Iterator, n: int) -> None:
    for _ in itertools.islice(iterator, n):
        pass


def replay(history: Sequence[Segment], geometry: tuple[int, int], source: Iterator,
           batches: Callable[[Iterator, int, int, tuple[int, int] | None], Iterator[Batch]],
           own: tuple[int, int] | None = None) -> Iterator[Batch]:
    """Batches from ``source`` with ``geometry`` (rows, steps), after replaying ``history``;
    ``batches(source, rows, steps, own)`` builds only the ``own`` = (start, stop) rows of each
    batch (None: all), and replayed stretches of another geometry are read, not built.

    Each history segment reads on from where the previous one left ``source``; consecutive
    segments of one geometry are one stretch, and when the last one has ``geometry`` the
    stream goes on within it (partly read rows kept), exactly as an uninterrupted run."""
    segments: list[Segment] = []
    for n, rows, steps in history:  # one segment per stretch of the same geometry
        if segments and segments[-1][1:] == (rows, steps):
            segments[-1] = (segments[-1][0] + n, rows, steps)
        elif n > 0:
            segments.append((n, rows, steps))
    skip = 0  # the same geometry continues: the same rows, partial sentences kept
    if segments and segments[-1][1:] == tuple(geometry):
        skip = segments.pop()[0]
    for n, rows, steps in segments:
        _consume(batches(source, rows, steps, (0, 0)), n)
    current = batches(source, *geometry, own)
    _consume(current, skip)
    yield from current


def get_batch(generator: Iterator[PackedSentence], batch_size: int, num_steps: int,
               max_word_length: int | None, rows: tuple[int, int] | None = None,
               ) -> Iterator[StreamBatch]:
    """bilm-tf's packing: row i continues its own sentence stream; in test mode the last,
    incomplete batch is dropped. Only ``rows`` = (start, stop) of the ``batch_size`` rows are
    filled and returned (all by default): the others are followed by their lengths alone,
    so that every worker of a cluster reads the same stream and builds just its slice."""
    start, stop = rows or (0, batch_size)
    cur_stream: list[list | None] = [None] * batch_size  # [sentence, position]
    no_more_data = False
    while True:
        inputs = np.zeros([stop - start, num_steps], np.int32)
        targets = np.zeros([stop - start, num_steps], np.int32)
        char_inputs = (np.zeros([stop - start, num_steps, max_word_length], np.int32)
                       if max_word_length is not None else None)
        for i in range(batch_size):
            own = start <= i < stop
            cur_pos = 0
            while cur_pos < num_steps:
                stream = cur_stream[i]
                if stream is None or stream[0].n - stream[1] <= 1:
                    try:
                        stream = cur_stream[i] = [next(generator), 0]
                    except StopIteration:
                        no_more_data = True
                        break
                sentence, offset = stream
                how_many = min(sentence.n - offset - 1, num_steps - cur_pos)
                next_pos = cur_pos + how_many
                if own:
                    ids = sentence.ids()
                    inputs[i - start, cur_pos:next_pos] = ids[offset : offset + how_many]
                    targets[i - start, cur_pos:next_pos] = ids[offset + 1 : offset + how_many + 1]
                    if char_inputs is not None:
                        char_inputs[i - start, cur_pos:next_pos] = sentence.chars(
                            offset, offset + how_many)
                stream[1] = offset + how_many
                cur_pos = next_pos
            if no_more_data:
                break
        if no_more_data:
            return
        yield {"token_ids": inputs, "tokens_characters": char_inputs, "next_token_id": targets}
