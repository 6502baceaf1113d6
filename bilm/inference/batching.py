"""Batch planning for :meth:`~bilm.BidirectionalLanguageModel.embed_sentences`: sentences
sorted by length grouped under a token budget, and the padded shapes of the XLA graph."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

__all__ = ["pad_steps", "plan_batches", "xla_rows"]


def pad_steps(n_steps: int) -> int:
    """``n_steps`` rounded up to a multiple of 8 (the XLA graph's length buckets)."""
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
            n_steps = pad_steps(steps[stop]) if jit_compile else steps[stop]
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
    rows = min(batch_size, max_tokens // pad_steps(n_steps))
    return rows if 2 * n_rows >= rows else None
