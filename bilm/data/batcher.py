"""Batchers: turn tokenized sentences into padded id arrays for the biLM."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from bilm.data.vocabulary import (
    BOS,
    EOS,
    UnicodeCharsVocabulary,
    Vocabulary,
    token_to_char_ids,
)

__all__ = ["Batcher", "TokenBatcher", "check_sentences"]


def check_sentences(sentences: Sequence[Sequence[str]]) -> None:
    """Raise a clear error for an empty batch or a sentence given as one string."""
    if len(sentences) == 0:
        raise ValueError("cannot batch an empty list of sentences")
    for i, s in enumerate(sentences):
        if isinstance(s, (str, bytes)):
            raise TypeError(
                f"sentence {i} is a string; give each sentence as a list of tokens "
                "(e.g. line.split())"
            )


class Batcher:
    """Character ids for a batch of tokenized sentences (bilm-tf's ``Batcher``).

    Args:
        lm_vocab_file: optional vocabulary file; it only caches the ids of frequent words, the
            result is the same without it.
        max_token_length: ``char_cnn.max_characters_per_token`` of the model (50 for ELMo).
    """

    def __init__(self, lm_vocab_file: str | os.PathLike[str] | None = None,
                 max_token_length: int = 50) -> None:
        self._max_token_length = max_token_length
        self._lm_vocab = (UnicodeCharsVocabulary(lm_vocab_file, max_token_length)
                          if lm_vocab_file is not None else None)
        self._cache: dict[str, np.ndarray] = {}

    @property
    def max_token_length(self) -> int:
        return self._max_token_length

    def token_char_ids(self, token: str) -> np.ndarray:
        """Unshifted character ids of one token; shape (max_token_length,)."""
        if self._lm_vocab is not None:
            return self._lm_vocab.word_to_char_ids(token)
        ids = self._cache.get(token)
        if ids is None:
            if len(self._cache) >= 200_000:  # bound memory on huge corpora
                self._cache.clear()
            ids = self._cache[token] = token_to_char_ids(token, self._max_token_length)
        return ids

    def batch_sentences(self, sentences: Sequence[Sequence[str]]) -> np.ndarray:
        """Character ids shifted by +1 (0 is padding), with ``<S>``/``</S>`` added.

        Returns int32 of shape (n_sentences, max_n_tokens + 2, max_token_length).
        """
        check_sentences(sentences)
        max_length = max(len(s) for s in sentences) + 2
        out = np.zeros((len(sentences), max_length, self._max_token_length), dtype=np.int32)
        bos = token_to_char_ids(BOS, self._max_token_length)
        eos = token_to_char_ids(EOS, self._max_token_length)
        for k, sent in enumerate(sentences):
            out[k, 0] = bos
            for t, token in enumerate(sent, start=1):
                out[k, t] = self.token_char_ids(token)
            out[k, len(sent) + 1] = eos
            out[k, : len(sent) + 2] += 1
        return out


class TokenBatcher:
    """Word ids for a batch of tokenized sentences (bilm-tf's ``TokenBatcher``).

    The vocabulary must hold ``<S>`` and ``</S>``; unknown words map to ``<UNK>`` (an error if
    the vocabulary has none).
    """

    def __init__(self, lm_vocab_file: str | os.PathLike[str]) -> None:
        self._lm_vocab = Vocabulary(lm_vocab_file)
        self._lm_vocab.require(BOS, EOS)

    @property
    def vocab(self) -> Vocabulary:
        return self._lm_vocab

    def batch_sentences(self, sentences: Sequence[Sequence[str]]) -> np.ndarray:
        """Word ids shifted by +1 (0 is padding), with ``<S>``/``</S>`` added.

        Returns int32 of shape (n_sentences, max_n_tokens + 2).
        """
        check_sentences(sentences)
        max_length = max(len(s) for s in sentences) + 2
        out = np.zeros((len(sentences), max_length), dtype=np.int32)
        for k, sent in enumerate(sentences):
            out[k, : len(sent) + 2] = self._lm_vocab.encode(sent, split=False) + 1
        return out
