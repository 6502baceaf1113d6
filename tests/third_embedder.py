"""A third token embedder, defined and registered entirely here, outside the package: the
proof that a token embedder is one file plus one registration (issue 19).

``char_bag``: the mean of a token's character vectors, projected to the model width::

    e_t = tanh(W mean_{c in token t} E[c] + b)     (the begin/end-of-word marks included)

A bag of characters ("dog" and "god" share a vector): a test of the interface, not a good
embedder. It reads the same character ids as bilm-tf's char CNN (``input = "chars"``), so
bilm's vocabularies, batchers, datasets and the Keras layer feed it unchanged.

Importing this module registers it (once); the contract suite (tests/test_encoder_contract.py)
runs it under the third encoder (tests/third_encoder.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import keras
import tensorflow as tf

from bilm.embedders import EmbedderSpec, TokenEmbedderLayer, get_spec, names, register
from bilm.nn.layout import WeightEntry
from bilm.nn.token_embedding import char_mask
from bilm.options import OptionsError

__all__ = ["NAME", "TINY_CHAR_BAG", "CharBagEmbedder", "CharBagOptions"]

NAME = "char_bag"
N_CHARACTERS = 262  # inference ids (bilm-tf's 261 training ids, shifted by one)


@dataclass(frozen=True)
class CharBagOptions:
    """The ``token_embedder`` section of ``"type": "char_bag"``."""

    type: ClassVar[str] = NAME
    input: ClassVar[str] = "chars"  # reads character ids

    char_dim: int
    max_characters_per_token: int = 50
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for key in ("char_dim", "max_characters_per_token"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                where = f" in {self.source}" if self.source else ""
                raise OptionsError(f"option 'token_embedder.{key}'{where} must be an integer "
                                   f">= 1, got {value!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str | None = None) -> CharBagOptions:
        """The section (its ``"type"`` ignored: the registry chose this class)."""
        if "char_dim" not in d:
            where = f" in {source}" if source else ""
            raise OptionsError(f"missing option 'token_embedder.char_dim'{where}")
        known = {"char_dim": d["char_dim"],
                 "max_characters_per_token": d.get("max_characters_per_token", 50)}
        extra = {k: v for k, v in d.items() if k not in known and k != "type"}
        return cls(**known, extra=extra, source=source)

    def to_dict(self) -> dict[str, Any]:
        """The section's keys (options.json adds ``"type"``)."""
        return {"char_dim": self.char_dim,
                "max_characters_per_token": self.max_characters_per_token, **self.extra}


class CharBagEmbedder(TokenEmbedderLayer):
    """The mean character vector of each token, through a tanh projection."""

    def __init__(self, options: CharBagOptions, dim: int, compute_dtype: str = "float32",
                 **kwargs) -> None:
        super().__init__(dim, use_character_inputs=True, **kwargs)
        self.matmul_dtype = tf.as_dtype(compute_dtype)
        self.char_embed = self.add_weight(
            shape=(N_CHARACTERS, options.char_dim), name="char_embed",
            initializer=keras.initializers.RandomUniform(-1.0, 1.0))
        self.w = self.add_weight(
            shape=(options.char_dim, dim), name="W",
            initializer=keras.initializers.RandomNormal(stddev=math.sqrt(1.0 / options.char_dim)))
        self.b = self.add_weight(shape=(dim,), name="b", initializer="zeros")
        self.built = True

    def call(self, ids: tf.Tensor, shifted: bool = True) -> tf.Tensor:
        mask = tf.cast(char_mask(ids, shifted), tf.float32)[..., tf.newaxis]
        rows = ids if shifted else ids + 1  # one table for both id layouts
        chars = tf.gather(self.char_embed, rows) * mask  # shape (..., max_chars, char_dim)
        mean = tf.reduce_sum(chars, -2) / tf.maximum(tf.reduce_sum(mask, -2), 1.0)
        x = tf.matmul(tf.cast(tf.reshape(mean, [-1, mean.shape[-1]]), self.matmul_dtype),
                      tf.cast(self.w, self.matmul_dtype))
        x = tf.tanh(tf.cast(x, tf.float32) + self.b)
        return tf.reshape(x, tf.concat([tf.shape(ids)[:-1], [self.dim]], axis=0))

    def weight_entries(self) -> list[WeightEntry]:
        return [WeightEntry(v, f"CharBag/{k}", f"lm/CharBag/{k}")
                for k, v in (("char_embed", self.char_embed), ("W", self.w), ("b", self.b))]


def _network(options: Any, *, n_word_vocab: int | None = None,
             compute_dtype: str = "float32") -> CharBagEmbedder:
    """``options``: the whole model's (a :class:`bilm.options.BiLMOptions`); this embedder's
    section is ``options.token_embedder``, its width the encoder's."""
    return CharBagEmbedder(options.token_embedder, options.dim, compute_dtype=compute_dtype)


# a tiny section: the third encoder's tiny model and preset
TINY_CHAR_BAG = {"type": NAME, "char_dim": 6, "max_characters_per_token": 12}

SPEC = EmbedderSpec(name=NAME, input="chars", network=_network, options=CharBagOptions,
                    describe=lambda o: f"{NAME}: char_dim {o.char_dim}, "
                                       f"max_characters_per_token {o.max_characters_per_token}")

if NAME not in names():  # imported twice (as tests.third_embedder and third_embedder): once
    register(SPEC)
else:
    SPEC = get_spec(NAME)
