"""Word and character vocabularies with bilm-tf's ids."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "BOS_CHAR",
    "BOW_CHAR",
    "EOS_CHAR",
    "EOW_CHAR",
    "PAD_CHAR",
    "UnicodeCharsVocabulary",
    "Vocabulary",
    "VocabularyError",
    "token_to_char_ids",
]

# Character ids 0-255 are UTF-8 bytes; these five are the specials (bilm-tf's values).
BOS_CHAR = 256  # <begin sentence>
EOS_CHAR = 257  # <end sentence>
BOW_CHAR = 258  # <begin word>
EOW_CHAR = 259  # <end word>
PAD_CHAR = 260  # <padding>

BOS, EOS, UNK = "<S>", "</S>", "<UNK>"


class VocabularyError(ValueError):
    """A vocabulary file is malformed (the message gives the file and line)."""


def _read_vocab_file(filename: str | os.PathLike[str]) -> list[str]:
    filename = os.fspath(filename)
    try:
        with open(filename, "rb") as f:
            raw_lines = f.read().split(b"\n")
    except FileNotFoundError:
        raise VocabularyError(f"vocabulary file not found: {filename}") from None
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()  # the final newline
    words = []
    for lineno, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise VocabularyError(
                f"{filename}:{lineno}: invalid UTF-8 ({e.reason} at byte {e.start})"
            ) from None
        word = line.strip()
        if not word:
            raise VocabularyError(f"{filename}:{lineno}: blank line in vocabulary")
        words.append(word)
    return words


class Vocabulary:
    """A word vocabulary: one token per line, ids in file order (bilm-tf's ``Vocabulary``).

    Args:
        filename: vocabulary file, or None with ``tokens`` given.
        validate_file: require ``<S>``, ``</S>`` and ``<UNK>``.
        tokens: the words themselves, instead of a file.
    """

    def __init__(self, filename: str | os.PathLike[str] | None = None,
                 validate_file: bool = False, tokens: Iterable[str] | None = None) -> None:
        if (filename is None) == (tokens is None):
            raise ValueError("give exactly one of filename or tokens")
        self.filename = os.fspath(filename) if filename is not None else "<tokens>"
        words = _read_vocab_file(filename) if filename is not None else list(tokens)
        self._id_to_word: list[str] = []
        self._word_to_id: dict[str, int] = {}
        for lineno, word in enumerate(words, start=1):
            if word == "!!!MAXTERMID":  # a marker in some released vocabularies; skipped
                continue
            if word in self._word_to_id:
                first = self._word_to_id[word] + 1
                raise VocabularyError(
                    f"{self.filename}:{lineno}: duplicate token {word!r} (first on line {first})"
                )
            self._word_to_id[word] = len(self._id_to_word)
            self._id_to_word.append(word)
        self._bos = self._word_to_id.get(BOS, -1)
        self._eos = self._word_to_id.get(EOS, -1)
        self._unk = self._word_to_id.get(UNK, -1)
        if validate_file:
            self.require(BOS, EOS, UNK)

    def require(self, *specials: str) -> None:
        """Raise :class:`VocabularyError` unless every token in ``specials`` is present."""
        missing = [s for s in specials if s not in self._word_to_id]
        if missing:
            raise VocabularyError(
                f"{self.filename}: vocabulary lacks {', '.join(missing)}; add "
                f"{'them' if len(missing) > 1 else 'it'} on a line of its own"
            )

    @property
    def bos(self) -> int:
        return self._bos

    @property
    def eos(self) -> int:
        return self._eos

    @property
    def unk(self) -> int:
        return self._unk

    @property
    def size(self) -> int:
        return len(self._id_to_word)

    def __len__(self) -> int:
        return len(self._id_to_word)

    def __contains__(self, word: str) -> bool:
        return word in self._word_to_id

    def word_to_id(self, word: str) -> int:
        """Id of ``word``; ``<UNK>``'s id for unknown words (error if there is no ``<UNK>``)."""
        idx = self._word_to_id.get(word)
        if idx is not None:
            return idx
        if self._unk < 0:
            raise KeyError(
                f"token {word!r} is not in {self.filename} and the vocabulary has no <UNK>"
            )
        return self._unk

    def id_to_word(self, cur_id: int) -> str:
        return self._id_to_word[cur_id]

    def encode(self, sentence: str | Sequence[str], reverse: bool = False,
               split: bool = True) -> np.ndarray:
        """Ids of a sentence with ``<S>``/``</S>`` added; shape (n_tokens + 2,), int32."""
        self.require(BOS, EOS)
        tokens = sentence.split() if split else sentence
        ids = [self.word_to_id(w) for w in tokens]
        if reverse:
            return np.array([self._eos, *ids, self._bos], dtype=np.int32)
        return np.array([self._bos, *ids, self._eos], dtype=np.int32)

    def decode(self, cur_ids: Iterable[int]) -> str:
        return " ".join(self._id_to_word[i] for i in cur_ids)


def _special_chars(c: int, max_word_length: int) -> np.ndarray:
    r = np.full(max_word_length, PAD_CHAR, dtype=np.int32)
    r[:3] = (BOW_CHAR, c, EOW_CHAR)
    return r


def token_to_char_ids(token: str, max_word_length: int) -> np.ndarray:
    """bilm-tf's character ids of one token (not shifted); shape (max_word_length,), int32.

    The token's UTF-8 bytes, cut to ``max_word_length - 2``, between begin/end-of-word marks,
    padded with 260. ``<S>`` and ``</S>`` get the sentence-boundary characters.
    """
    if token == BOS:
        return _special_chars(BOS_CHAR, max_word_length)
    if token == EOS:
        return _special_chars(EOS_CHAR, max_word_length)
    code = np.full(max_word_length, PAD_CHAR, dtype=np.int32)
    encoded = token.encode("utf-8", "ignore")[: max_word_length - 2]
    code[0] = BOW_CHAR
    code[1 : len(encoded) + 1] = np.frombuffer(encoded, dtype=np.uint8)
    code[len(encoded) + 1] = EOW_CHAR
    return code


class UnicodeCharsVocabulary(Vocabulary):
    """A :class:`Vocabulary` that also holds each word's character ids (bilm-tf's class).

    Words outside the vocabulary are converted on the fly, so the vocabulary is only a cache.
    """

    def __init__(self, filename: str | os.PathLike[str] | None, max_word_length: int,
                 validate_file: bool = False, tokens: Iterable[str] | None = None) -> None:
        super().__init__(filename, validate_file=validate_file, tokens=tokens)
        self._max_word_length = max_word_length
        self.bos_chars = _special_chars(BOS_CHAR, max_word_length)
        self.eos_chars = _special_chars(EOS_CHAR, max_word_length)
        self._word_char_ids = np.stack(
            [token_to_char_ids(w, max_word_length) for w in self._id_to_word]
        ) if self._id_to_word else np.zeros((0, max_word_length), np.int32)

    @property
    def max_word_length(self) -> int:
        return self._max_word_length

    @property
    def word_char_ids(self) -> np.ndarray:
        """Character ids of every word; shape (size, max_word_length), int32."""
        return self._word_char_ids

    def word_to_char_ids(self, word: str) -> np.ndarray:
        idx = self._word_to_id.get(word)
        if idx is not None:
            return self._word_char_ids[idx]
        return token_to_char_ids(word, self._max_word_length)

    def encode_chars(self, sentence: str | Sequence[str], reverse: bool = False,
                     split: bool = True) -> np.ndarray:
        """Character ids of a sentence with ``<S>``/``</S>``; shape (n_tokens + 2, max_chars).

        ``reverse`` (bilm-tf's meaning, as :meth:`encode`): ``</S>`` first and ``<S>`` last
        around the tokens *in the order given* — the caller has already reversed them.
        """
        tokens = sentence.split() if split else sentence
        rows = [self.word_to_char_ids(w) for w in tokens]
        if reverse:
            return np.vstack([self.eos_chars, *rows, self.bos_chars])
        return np.vstack([self.bos_chars, *rows, self.eos_chars])
