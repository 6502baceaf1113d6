"""The two batch layouts a language model trains and is evaluated on, by encoder protocol
(``EncoderOptions.protocol``, :mod:`bilm.encoders`).

Batches stay plain dicts of arrays, the nested structure ``tf.function`` and
``tf.distribute`` take as they are (a class would need registering with both); these types
name the layouts for readers and type checkers, and :func:`is_sentence_batch` is the one
place that tells them apart. A key whose value is None is absent (word input has no
``tokens_characters``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

import numpy as np

__all__ = ["SentenceBatch", "StreamBatch", "is_sentence_batch"]


class StreamBatch(TypedDict, total=False):
    """``"streams"`` (bilm-tf's packed windows, the LSTM): each row a stream continued from
    the previous batch; the backward direction's keys end in ``_reverse``."""

    token_ids: np.ndarray  # (batch, unroll_steps) int32 inputs
    tokens_characters: np.ndarray | None  # (batch, unroll_steps, max_chars) training char ids
    next_token_id: np.ndarray  # (batch, unroll_steps) int32 targets
    token_ids_reverse: np.ndarray
    tokens_characters_reverse: np.ndarray | None
    next_token_id_reverse: np.ndarray


class SentenceBatch(TypedDict):
    """``"sentences"`` (AllenNLP's, the Transformer): one sentence per row with ``<S>`` and
    ``</S>``, zero-padded; both directions read the same rows."""

    token_ids: np.ndarray  # (batch, T) int32, T the longest sentence + 2
    tokens_characters: np.ndarray | None  # (batch, T, max_chars) training char ids
    lengths: np.ndarray  # (batch,) int32 tokens of each row, <S> and </S> included


def is_sentence_batch(batch: Mapping[str, Any]) -> bool:
    """Whether ``batch`` (arrays or tensors) is a :class:`SentenceBatch`."""
    return "lengths" in batch
