"""Word input: one embedding row per vocabulary word (bilm-tf's ``use_character_inputs=False``;
a model without a ``char_cnn`` section, or a character model read through the token embeddings
that ``dump_token_embeddings`` wrote). Registered as ``"word"``; it has no options section.
"""

from __future__ import annotations

from typing import Any

from bilm.embedders.registry import EmbedderSpec, register

__all__: list[str] = []


def _network(options: Any, *, n_word_vocab: int | None = None,
             compute_dtype: str = "float32") -> Any:
    from bilm.model.token_embedder import TokenEmbedder

    return TokenEmbedder(options, use_character_inputs=False, n_word_vocab=n_word_vocab,
                         compute_dtype=compute_dtype)


register(EmbedderSpec(name="word", input="words", network=_network,
                      describe=lambda _: "word embedding"))
