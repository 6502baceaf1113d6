"""The ``transformer`` encoder (AllenNLP's Transformer ELMo): its options section, presets,
``bilm info`` line, ``export --layers`` hook and registration.

The network (:mod:`bilm.nn.transformer`, with its weight names) is imported only when one is
built: options are parsed before TensorFlow starts (``bilm --help``, every argument check), so
this module stays TensorFlow-free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bilm.encoders.registry import EncoderSpec, register
from bilm.schema import Rule, Section, fail

__all__ = ["PRESETS", "SPEC", "TransformerOptions"]


def _unit(name: str = "") -> Rule:
    return Rule("float", low=0, high=1, high_open=True, name=name)  # a rate in [0, 1)


_TRANSFORMER_RULES = {
    "dim": Rule("int", low=1),
    "hidden_dim": Rule("int", low=1),
    "n_layers": Rule("int", low=1),
    "n_heads": Rule("int", low=1),
    "dropout": _unit(),
    "input_dropout": _unit(),
    "final_norm": Rule("bool", omit_default=True),
}


@dataclass(frozen=True)
class TransformerOptions(Section):
    """The ``encoder`` section of ``"type": "transformer"``: AllenNLP's bidirectional
    Transformer LM (Transformer ELMo): per direction ``n_layers`` pre-layer-norm blocks of
    ``n_heads``-head attention and a ``hidden_dim`` feed-forward, width ``dim``."""

    type: ClassVar[str] = "transformer"
    stateful: ClassVar[bool] = False  # each sentence on its own
    protocol: ClassVar[str] = "sentences"  # trained one sentence per row
    RULES: ClassVar[Mapping[str, Rule]] = _TRANSFORMER_RULES
    PREFIX: ClassVar[str] = "encoder"
    READ_ELSEWHERE: ClassVar[tuple[str, ...]] = ("type",)

    dim: int  # model width: token embeddings, attention and each layer's output
    hidden_dim: int  # feed-forward width
    n_layers: int
    n_heads: int = 8  # AllenNLP fixes 8
    dropout: float = 0.1  # on attention probabilities, sublayer outputs and the FFN's hidden
    input_dropout: float = 0.1  # on the token embeddings plus positions
    # the top layer is layer-normalized (AllenNLP); false for the first layers of a deeper
    # model (bilm export --layers N), whose top was not
    final_norm: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dim % self.n_heads:
            fail("encoder.n_heads", self.source, f"a divisor of encoder.dim ({self.dim})",
                 repr(self.n_heads))
        if self.dim % 2:  # sin and cos channels pair up
            fail("encoder.dim", self.source, "even", repr(self.dim))

    @property
    def width(self) -> int:
        return self.dim


_FILTERS = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]


def _transformer(dim: int, hidden: int, n_layers: int, filters=_FILTERS, char_dim: int = 16,
                 n_highway: int = 2, batch_size: int = 64, negatives: int = 8192,
                 warmup: int = 6000) -> dict[str, Any]:
    """Transformer ELMo's recipe (allennlp-models' bidirectional_language_model.jsonnet):
    AllenNLP's character encoder (projection after the highways, then a layer norm), 8 heads,
    dropout 0.1, Adam with the noam schedule, no gradient clipping, one sentence per row."""
    return {
        "encoder": {"type": "transformer", "dim": dim, "hidden_dim": hidden,
                    "n_layers": n_layers, "n_heads": 8, "dropout": 0.1, "input_dropout": 0.1},
        "char_cnn": {"filters": filters, "n_highway": n_highway,
                     "embedding": {"dim": char_dim}, "n_characters": 262,
                     "max_characters_per_token": 50, "activation": "relu",
                     "projection_location": "after_highway", "layer_norm": True,
                     "highway_gate": "carry", "padding_row": "learned"},
        "bidirectional": True, "dropout": 0.1, "batch_size": batch_size,
        "n_negative_samples_batch": negatives, "all_clip_norm_val": None,
        "optimizer": "adam", "learning_rate_schedule": "noam", "learning_rate": 1.0,
        "warmup_steps": warmup, "max_sentence_length": 400, "n_epochs": 10,
    }


PRESETS: dict[str, dict[str, Any]] = {
    # the released Transformer ELMo (transformer-elmo-2019.01.10): 6 layers of 512 / 2048
    "transformer-elmo": _transformer(512, 2048, 6),
    # minutes on a laptop CPU, like "tiny"
    "transformer-tiny": _transformer(64, 256, 2, filters=[[1, 32], [2, 32], [3, 64], [4, 128]],
                                     char_dim=8, n_highway=1, batch_size=32, negatives=1024,
                                     warmup=200),
}


def _network(options: TransformerOptions, *, n_directions: int, input_dropout: float,
             compute_dtype: str):
    """The Transformer stacks (their input dropout is the section's own ``input_dropout``,
    not the options' LSTM-input ``dropout``)."""
    from bilm.nn.transformer import TransformerContextualizer

    return TransformerContextualizer(options, n_directions=n_directions,
                                     compute_dtype=compute_dtype)


def _describe(enc: TransformerOptions) -> str:
    return (f"{enc.type}: {enc.n_layers} layers, dim {enc.dim}, hidden {enc.hidden_dim}, "
            f"{enc.n_heads} heads")


def _truncate(enc: TransformerOptions, n_layers: int) -> TransformerOptions:
    # the lower layers' top was not normalized
    return dataclasses.replace(enc, n_layers=n_layers, final_norm=False)


SPEC = register(EncoderSpec("transformer", TransformerOptions, _network, presets=PRESETS,
                            describe=_describe, truncate=_truncate))
