"""The token cache of :meth:`~bilm.BidirectionalLanguageModel.embed_sentences`: each distinct
token's context-independent (CNN) embedding, computed once, in bounded memory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from bilm.data.batcher import Batcher

__all__ = ["TOKEN_CACHE_LIMIT", "TokenCache"]

# Most distinct tokens embed_sentences keeps embedded (500,000 x 512 floats = 1 GB at the
# original model's shape); the cache is cleared when a batch would pass it.
TOKEN_CACHE_LIMIT = 500_000


class TokenCache:
    """Token -> its embedding row, computed on first sight.

    Args:
        embed_chars: shifted character ids (n_tokens, max_chars) -> embeddings (n_tokens, dim).
        dim: the embedding size.
        max_chars: ``max_characters_per_token`` (None for a word-input model, which never
            looks tokens up).
        batcher: what makes a token's ids (``token_char_ids``), when the model's embedder
            has its own (:func:`bilm.embedders.registry.batcher_for`); default bilm-tf's.

    ``index`` maps a token to its row of ``array``; rows are filled in order, so the filled
    rows are ``len(index)`` and the array's length is its capacity, doubled when full
    (amortised: a few copies in all, not one per batch).
    """

    def __init__(self, embed_chars: Callable[[np.ndarray], tf.Tensor], dim: int,
                 max_chars: int | None, batcher: Any = None) -> None:
        self._embed_chars = embed_chars
        self._max_chars = max_chars
        self.index: dict[str, int] = {}
        self.array = np.zeros((0, dim), np.float32)
        self._batcher = batcher

    def clear(self) -> None:
        """Forget every cached embedding (frees their memory)."""
        self.index.clear()
        self.array = self.array[:0]

    def rows(self, tokens: Sequence[str]) -> np.ndarray:
        """Row index of each token in :attr:`array`, computing new ones."""
        if self._batcher is None:
            self._batcher = Batcher(None, self._max_chars)
        cache = self.index
        new = [t for t in dict.fromkeys(tokens) if t not in cache]
        if new:
            if len(cache) + len(new) > TOKEN_CACHE_LIMIT:  # bound memory on open-ended corpora
                cache.clear()
                new = list(dict.fromkeys(tokens))
            # Shortest first, in chunks: each chunk's CNN runs only over its own longest
            # token's characters (CharCNN trims padding columns).
            new.sort(key=lambda t: len(t.encode("utf-8", "ignore")))
            ids = np.stack([self._batcher.token_char_ids(t) for t in new]) + 1
            start = len(cache)
            array = self._reserve(start + len(new))
            for i in range(0, len(ids), 512):
                chunk = self._embed_chars(ids[i : i + 512]).numpy()
                array[start + i : start + i + len(chunk)] = chunk
            for k, t in enumerate(new):
                cache[t] = start + k
        return np.fromiter((cache[t] for t in tokens), dtype=np.int64, count=len(tokens))

    def _reserve(self, n_rows: int) -> np.ndarray:
        """The cache array with capacity for ``n_rows``; its filled rows kept."""
        array = self.array
        if n_rows > len(array):
            # double, from 1024 rows, up to the bound (more only if one batch needs it)
            capacity = max(n_rows, min(max(2 * len(array), 1024), TOKEN_CACHE_LIMIT))
            grown = np.empty((capacity, array.shape[1]), np.float32)
            filled = min(len(self.index), len(array))
            grown[:filled] = array[:filled]
            self.array = array = grown
        return array
