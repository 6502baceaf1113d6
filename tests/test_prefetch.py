"""The training loop's batch prefetcher (bilm.training.hooks._prefetch): the same batches in
order, errors as they were raised, and no wait when training stops while a batch is being
read (tf.data's iterator held the process seconds at the end of every run)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from bilm.training.hooks import _prefetch


def batches(n: int, slow_from: int | None = None, seconds: float = 0.0, fail_at: int = -1):
    for i in range(n):
        if i == fail_at:
            raise ValueError(f"damaged shard at batch {i}")
        if slow_from is not None and i >= slow_from:
            time.sleep(seconds)
        yield {"token_ids": np.full((2, 3), i, np.int64), "tokens_characters": None}


def test_the_same_batches_in_order_as_int32_with_none_passed_through():
    got = list(_prefetch(batches(7), size=2))
    assert [int(b["token_ids"][0, 0]) for b in got] == list(range(7))
    assert all(b["token_ids"].dtype == np.int32 and b["tokens_characters"] is None for b in got)
    np.testing.assert_array_equal(got[5]["token_ids"], np.full((2, 3), 5, np.int32))


def test_an_error_while_reading_reaches_the_consumer_as_raised():
    it = _prefetch(batches(9, fail_at=4), size=2)
    assert [int(next(it)["token_ids"][0, 0]) for _ in range(4)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="damaged shard at batch 4") as raised:
        next(it)
    assert raised.traceback[-1].name == "batches"  # the reader's own frame, not a wrapper


def test_stopping_while_a_batch_is_read_does_not_wait_for_it():
    it = _prefetch(batches(100, slow_from=3, seconds=5.0), size=2)
    assert [int(next(it)["token_ids"][0, 0]) for _ in range(3)] == [0, 1, 2]
    start = time.perf_counter()
    it.close()  # what ending the training loop does to it
    del it
    assert time.perf_counter() - start < 1.0
    # the reader is a daemon thread, told to stop: it ends once its read returns
    reader = [t for t in threading.enumerate() if t.name == "bilm-prefetch"]
    assert all(t.daemon for t in reader)
