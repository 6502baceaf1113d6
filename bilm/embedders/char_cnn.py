"""bilm-tf's token embedder: a char CNN with highway layers and a projection (AllenNLP's
``CnnHighwayEncoder`` too, through four options), read from options.json's ``char_cnn`` section.

Registered as ``"char_cnn"``; a model with a ``char_cnn`` section uses it (bilm-tf's layout:
no ``token_embedder`` section). Its network is :class:`bilm.model.token_embedder.TokenEmbedder`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bilm.embedders.registry import EmbedderSpec, register
from bilm.schema import Rule, Section, fail

__all__ = ["MAX_CHARACTERS_PER_TOKEN", "CharCNNOptions", "parse_filters"]

# Upper bound of char_cnn.max_characters_per_token. Every released model uses 50 (a token is cut
# to 48 UTF-8 bytes); 1000 bytes is far longer than any word (longer "tokens" are URLs or encoded
# blobs), while memory grows linearly with it: the vocabulary's character-id table is
# n_vocab x max_characters int32 (3.2 GB for the 793K-word 1B Word Benchmark vocabulary at 1000)
# and the char CNN's activations are n_tokens x max_characters x n_filters floats. Without a
# bound, a typo (1000000) got the process killed for memory instead of an error here.
MAX_CHARACTERS_PER_TOKEN = 1000


def parse_filters(raw: Any, key: str, source: str | None) -> tuple[tuple[int, int], ...]:
    """``raw`` as ((width, n_filters), ...), every entry a pair of integers >= 1; otherwise an
    OptionsError naming ``key`` (and ``source``, the file). Shared with the EFML embedder."""
    def is_int(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and x >= 1

    def is_pair(x: Any) -> bool:
        return (isinstance(x, Sequence) and not isinstance(x, str) and len(x) == 2
                and is_int(x[0]) and is_int(x[1]))

    if (not isinstance(raw, Sequence) or isinstance(raw, str) or not raw
            or not all(is_pair(pair) for pair in raw)):
        fail(key, source, "a non-empty list of [width, count] pairs of integers >= 1",
             repr(raw))
    return tuple((w, c) for w, c in raw)


# max_characters_per_token's range is checked in __post_init__ (it depends on the filters).
# AllenNLP's variant keys (projection_dim and below) are written back only when they differ
# from bilm-tf's defaults.
_CHAR_CNN_RULES = {
    "filters": Rule("list", parse=parse_filters),
    "n_highway": Rule("int", low=0, default=0),
    "embedding_dim": Rule("int", low=1, name="embedding.dim"),
    "n_characters": Rule("int", choices=(261, 262),
                         choices_text="261 (training) or 262 (inference)"),
    "activation": Rule("str", choices=("relu", "tanh"), choices_text="'relu' or 'tanh'"),
    "max_characters_per_token": Rule("int"),
    "projection_dim": Rule("int", low=1, nullable=True, omit_default=True),
    "projection_location": Rule("str", nullable=True, choices=("after_highway", "after_cnn"),
                                choices_text="'after_highway', 'after_cnn' or null",
                                omit_default=True),
    "layer_norm": Rule("bool", omit_default=True),
    "highway_gate": Rule("str", choices=("transform", "carry"),
                         choices_text="'transform' (bilm-tf) or 'carry' (AllenNLP)",
                         omit_default=True),
    "padding_row": Rule("str", choices=("zero", "learned"),
                        choices_text="'zero' (bilm-tf) or 'learned' (AllenNLP)",
                        omit_default=True),
}


@dataclass(frozen=True)
class CharCNNOptions(Section):
    """The ``char_cnn`` section: character embedding, convolutions, highway layers and the
    projection to the model width (the token embedder).

    bilm-tf's defaults; AllenNLP's character encoder (``CnnHighwayEncoder``, which Transformer
    ELMo uses) sets ``projection_location`` (the projection is then always applied, after the
    CNN or after the highways), ``layer_norm`` (after the projection), ``highway_gate:
    carry`` (its gate weights the input: ``g x + (1 - g) relu(A x)``) and ``padding_row:
    learned`` (262 stored character rows, the padding one learned).
    """

    RULES: ClassVar[Mapping[str, Rule]] = _CHAR_CNN_RULES
    PREFIX: ClassVar[str] = "char_cnn"
    type: ClassVar[str] = "char_cnn"  # its name in the embedder registry
    input: ClassVar[str] = "chars"

    filters: tuple[tuple[int, int], ...]  # (width, n_filters) per convolution
    n_highway: int  # 0 when a file has no key
    embedding_dim: int  # char_cnn.embedding.dim
    n_characters: int = 262  # 261 in training files, 262 for inference (+ padding row)
    max_characters_per_token: int = 50
    activation: str = "relu"  # after the max-pool: relu | tanh
    projection_dim: int | None = None  # None: the encoder's width
    projection_location: str | None = None  # None: bilm-tf's (after the highways, if needed)
    layer_norm: bool = False  # AllenNLP's layer norm after the projection
    highway_gate: str = "transform"  # transform: bilm-tf's g relu(Ax) + (1-g) x; carry: AllenNLP
    padding_row: str = "zero"  # zero: bilm-tf (not stored); learned: AllenNLP (stored)
    extra: Mapping[str, Any] = field(default_factory=dict)
    embedding_extra: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)  # file, for messages

    def __post_init__(self) -> None:
        super().__post_init__()
        widest = max(w for w, _ in self.filters)
        low = max(widest, 3)  # a token needs its begin and end marks and 1 byte
        if not low <= self.max_characters_per_token <= MAX_CHARACTERS_PER_TOKEN:
            fail("char_cnn.max_characters_per_token", self.source,
                 f"in [{low}, {MAX_CHARACTERS_PER_TOKEN}] (at least 3 and the widest "
                 f"filter, {widest})", repr(self.max_characters_per_token))

    @property
    def n_filters(self) -> int:
        """Total number of convolution filters (the CNN output size)."""
        return sum(count for _, count in self.filters)

    @property
    def n_stored_characters(self) -> int:
        """Rows of ``char_embed`` in a weight file: bilm-tf never stores the padding row (the
        262nd); a learned one is stored (262)."""
        if self.padding_row == "learned":
            return 262
        return 261 if self.n_characters == 262 else self.n_characters


def _network(options: Any, *, n_word_vocab: int | None = None,
             compute_dtype: str = "float32") -> Any:
    from bilm.model.token_embedder import TokenEmbedder

    return TokenEmbedder(options, use_character_inputs=True, compute_dtype=compute_dtype)


def _describe(cnn: CharCNNOptions) -> str:
    return (f"char_cnn: filters {[list(f) for f in cnn.filters]}, {cnn.n_highway} highway, "
            f"embedding {cnn.embedding_dim}, n_characters {cnn.n_characters}")


register(EmbedderSpec(name="char_cnn", input="chars", network=_network,
                      options=CharCNNOptions, describe=_describe))
