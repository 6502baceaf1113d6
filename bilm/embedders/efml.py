"""ELMoForManyLangs' token embedder (HIT-SCIR's ``ConvTokenEmbedder``): a char CNN over its
own character vocabulary, highway layers, an optional word embedding, and a projection.

Registered as ``"efml_cnn"`` (``"token_embedder": {"type": "efml_cnn", ...}``); models of
this family are converted from ELMoForManyLangs' folders by :mod:`bilm.models.efml`. Its ids
are its own (:class:`EFMLTokenIds`), not bilm-tf's UTF-8 bytes: a token is its Unicode
characters looked up in ``chars`` (unknown ones as ``<oov>``), cut to ``max_characters - 2``,
framed by the ids of the entries named ``<eow>`` (first) and ``<bow>`` (last) -- the swap
ELMoForManyLangs' ``create_one_batch`` makes, which its released weights were trained with --
and padded with ``<pad>``; sentence boundaries are its ``<bos>``/``<eos>`` tokens, one
"character" each. With a word embedding (``word_dim`` > 0) each token's ids start with its
word id (``words``, unknown ones ``<oov>``). Semantics: tests/data/efml/NOTES.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from bilm.embedders.char_cnn import parse_filters
from bilm.embedders.registry import EmbedderSpec, register
from bilm.schema import OptionsError

__all__ = ["NAME", "SPECIAL_CHARS", "SPECIAL_WORDS", "EFMLOptions", "EFMLTokenIds"]

NAME = "efml_cnn"
SPECIAL_CHARS = ("<bow>", "<eow>", "<oov>", "<pad>", "<bos>", "<eos>")
SPECIAL_WORDS = ("<oov>", "<pad>")


def _fail(key: str, source: str | None, message: str) -> None:
    where = f" in {source}" if source else ""
    raise OptionsError(f"option 'token_embedder.{key}'{where} {message}")


def _int(d: Mapping[str, Any], key: str, low: int, source: str | None) -> int:
    value = d.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        _fail(key, source, f"must be an integer >= {low}, got {value!r}")
    return value


def _strings(d: Mapping[str, Any], key: str, need: Sequence[str],
             source: str | None) -> tuple[str, ...]:
    value = d.get(key)
    if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
        _fail(key, source, "must be a list of strings (the vocabulary, in id order)")
    missing = [s for s in need if s not in value]
    if missing:
        _fail(key, source, f"lacks {', '.join(missing)}")
    return tuple(value)


@dataclass(frozen=True)
class EFMLOptions:
    """The ``token_embedder`` section of ``"type": "efml_cnn"``."""

    type: ClassVar[str] = NAME
    input: ClassVar[str] = "chars"

    char_dim: int
    word_dim: int  # 0: characters only
    filters: tuple[tuple[int, int], ...]
    n_highway: int
    activation: str  # after the max-pool (the highways always use relu)
    max_characters: int  # ELMoForManyLangs' max_characters_per_token (markers included)
    chars: tuple[str, ...]  # char.dic, in id order
    words: tuple[str, ...] | None  # word.dic, in id order (None without a word embedding)
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)

    @property
    def max_characters_per_token(self) -> int:
        """Ids per token: the word id (with a word embedding), then ``max_characters``."""
        return self.max_characters + (1 if self.word_dim else 0)

    @property
    def n_filters(self) -> int:
        return sum(count for _, count in self.filters)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str | None = None) -> EFMLOptions:
        known = ("char_dim", "word_dim", "filters", "n_highway", "activation",
                 "max_characters", "chars", "words")
        word_dim = _int(d, "word_dim", 0, source)
        filters = parse_filters(d.get("filters"), "token_embedder.filters", source)
        max_characters = _int(d, "max_characters", 3, source)
        if max_characters < max(w for w, _ in filters):
            _fail("max_characters", source, "must be at least the widest filter")
        activation = d.get("activation", "relu")
        if activation not in ("relu", "tanh"):
            _fail("activation", source, f"must be 'relu' or 'tanh', got {activation!r}")
        return cls(char_dim=_int(d, "char_dim", 1, source), word_dim=word_dim, filters=filters,
                   n_highway=_int(d, "n_highway", 0, source), activation=activation,
                   max_characters=max_characters,
                   chars=_strings(d, "chars", SPECIAL_CHARS, source),
                   words=_strings(d, "words", SPECIAL_WORDS, source) if word_dim else None,
                   extra={k: v for k, v in d.items() if k not in known and k != "type"},
                   source=source)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "char_dim": self.char_dim, "word_dim": self.word_dim,
            "filters": [list(f) for f in self.filters], "n_highway": self.n_highway,
            "activation": self.activation, "max_characters": self.max_characters,
            "chars": list(self.chars)}
        if self.words is not None:
            d["words"] = list(self.words)
        return {**d, **self.extra}


def _index(tokens: Sequence[str]) -> dict[str, int]:
    """Token -> id; a later duplicate wins (ELMoForManyLangs fills a dict line by line)."""
    return {t: i for i, t in enumerate(tokens)}


class EFMLTokenIds:
    """ELMoForManyLangs' ids of tokens, with :class:`~bilm.Batcher`'s interface: unshifted
    ids of one token (:meth:`token_char_ids`) and shifted batches with the sentence
    boundaries added (:meth:`batch_sentences`)."""

    def __init__(self, options: EFMLOptions) -> None:
        chars = _index(options.chars)
        self._chars = chars
        self._first, self._last = chars["<eow>"], chars["<bow>"]  # its swap, kept
        self._oov, self._pad = chars["<oov>"], chars["<pad>"]
        self._words = None if options.words is None else _index(options.words)
        self._words_list = options.words
        self._cut = options.max_characters - 2
        self.max_token_length = options.max_characters_per_token
        self._max_characters = options.max_characters
        self._cache: dict[str, np.ndarray] = {}

    def token_char_ids(self, token: str) -> np.ndarray:
        """Unshifted ids of one token, (max_token_length,): [word id,] character ids."""
        ids = self._cache.get(token)
        if ids is None:
            if len(self._cache) >= 200_000:
                self._cache.clear()
            ids = self._cache[token] = self._ids(token)
        return ids

    def _ids(self, token: str) -> np.ndarray:
        from bilm.data.vocabulary import BOS, EOS

        token = {BOS: "<bos>", EOS: "<eos>"}.get(token, token)[: self._cut]
        chars = np.full(self._max_characters, self._pad, np.int32)
        chars[0] = self._first
        if token in ("<bos>", "<eos>"):
            body = [self._chars[token]]
        else:
            body = [self._chars.get(c, self._oov) for c in token]
        chars[1: len(body) + 1] = body
        chars[len(body) + 1] = self._last
        if self._words is None:
            return chars
        word = self._words.get(token, self._words["<oov>"])
        return np.concatenate([np.array([word], np.int32), chars])

    def graph_ids(self, tokens: Any, lengths: Any) -> Any:
        """:meth:`batch_sentences` in TensorFlow's graph (the Keras layer, the SavedModel):
        tokens (batch, T) strings, lengths (batch,) -> (batch, T + 2, max_token_length)
        int32. Lookups are sorted constants and searches (no table resources): characters by
        code point, words by fingerprint, each match checked."""
        from bilm.nn.efml_cnn import efml_graph_ids

        return efml_graph_ids(self, tokens, lengths)

    def batch_sentences(self, sentences: Sequence[Sequence[str]]) -> np.ndarray:
        """Ids shifted by +1 (0 is padding), ``<bos>``/``<eos>`` added:
        (n_sentences, max_n_tokens + 2, max_token_length) int32."""
        from bilm.data.batcher import check_sentences
        from bilm.data.vocabulary import BOS, EOS

        check_sentences(sentences)
        width = max(len(s) for s in sentences) + 2
        out = np.zeros((len(sentences), width, self.max_token_length), np.int32)
        for k, sentence in enumerate(sentences):
            for t, token in enumerate((BOS, *sentence, EOS)):
                out[k, t] = self.token_char_ids(token) + 1
        return out


def _network(options: Any, *, n_word_vocab: int | None = None,
             compute_dtype: str = "float32") -> Any:
    from bilm.nn.efml_cnn import EFMLTokenEmbedder

    return EFMLTokenEmbedder(options.token_embedder, options.dim, compute_dtype=compute_dtype)


def _describe(o: EFMLOptions) -> str:
    words = f"{len(o.words):,} words x {o.word_dim}" if o.words is not None else "no words"
    return (f"{NAME} (ELMoForManyLangs): filters {[list(f) for f in o.filters]}, "
            f"{o.n_highway} highway, {len(o.chars):,} characters x {o.char_dim}, {words}, "
            f"max_characters {o.max_characters}")


register(EmbedderSpec(name=NAME, input="chars", network=_network, options=EFMLOptions,
                      describe=_describe, token_ids=EFMLTokenIds))
