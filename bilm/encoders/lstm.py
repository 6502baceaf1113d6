"""The ``lstm`` encoder (bilm-tf's): its options section, presets, ``bilm info`` line and
registration.

The network (:mod:`bilm.nn.lstm_stack`) is imported only when one is built: options are
parsed before TensorFlow starts (``bilm --help``, every argument check), so this module stays
TensorFlow-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bilm.encoders.registry import EncoderSpec, register
from bilm.schema import OptionsError, Rule, Section, where

__all__ = ["PRESETS", "SPEC", "LSTMOptions"]

_LSTM_RULES = {
    "dim": Rule("int", low=1),
    "projection_dim": Rule("int", low=1),
    "n_layers": Rule("int", low=1),
    "cell_clip": Rule("float", low=0, low_open=True, nullable=True, omit_default=True),
    "proj_clip": Rule("float", low=0, low_open=True, nullable=True, omit_default=True),
    "use_skip_connections": Rule("bool", none_is_default=True),
}


@dataclass(frozen=True)
class LSTMOptions(Section):
    """The ``lstm`` section: sizes and clipping of the projected LSTM stacks (bilm-tf's
    encoder; the section keeps its bilm-tf name, so every bilm-tf options.json loads)."""

    type: ClassVar[str] = "lstm"
    # carries its state from call to call; trains on bilm-tf's packed streams (see
    # bilm.encoders.Contextualizer)
    stateful: ClassVar[bool] = True
    protocol: ClassVar[str] = "streams"
    RULES: ClassVar[Mapping[str, Rule]] = _LSTM_RULES
    PREFIX: ClassVar[str] = "lstm"

    dim: int  # LSTM cell size
    projection_dim: int  # output size of each layer (= token embedding size)
    n_layers: int = 1  # bilm-tf's default when the key is absent
    cell_clip: float | None = None  # clip cell state to +-cell_clip (None: no clip)
    proj_clip: float | None = None  # clip projected output to +-proj_clip
    use_skip_connections: bool = False  # add input to output from the 2nd layer on
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)  # file, for messages

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.projection_dim > self.dim:
            raise OptionsError(
                f"option 'lstm.projection_dim'{where(self.source)} ({self.projection_dim}) "
                f"must not exceed 'lstm.dim' ({self.dim})"
            )

    @property
    def use_projection(self) -> bool:
        """bilm-tf builds the projection (``W_P_0``) only when it shrinks the output."""
        return self.projection_dim < self.dim

    @property
    def width(self) -> int:
        """The model width: the token embedding size and each layer's output per direction."""
        return self.projection_dim


_FILTERS = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]


def _shape(dim: int, proj: int, n_highway: int, filters=_FILTERS, char_dim: int = 16,
           negatives: int = 8192, batch_size: int = 128) -> dict[str, Any]:
    return {
        "lstm": {"dim": dim, "projection_dim": proj, "n_layers": 2, "cell_clip": 3,
                 "proj_clip": 3, "use_skip_connections": True},
        "char_cnn": {"filters": filters, "n_highway": n_highway, "embedding": {"dim": char_dim},
                     "n_characters": 261, "max_characters_per_token": 50,
                     "activation": "relu"},
        "bidirectional": True, "dropout": 0.1, "batch_size": batch_size, "unroll_steps": 20,
        "n_negative_samples_batch": negatives, "all_clip_norm_val": 10.0,
        "learning_rate": 0.2, "n_epochs": 10,
    }


PRESETS: dict[str, dict[str, Any]] = {
    # bilm-tf's train_elmo.py (the released ELMo): 4096 / 512, 2 highways
    "original": _shape(4096, 512, 2),
    "medium": _shape(2048, 256, 1),
    "small": _shape(1024, 128, 1),
    # minutes on a laptop CPU: a few hundred thousand parameters
    "tiny": _shape(256, 64, 1, filters=[[1, 32], [2, 32], [3, 64], [4, 128]], char_dim=8,
                   negatives=1024, batch_size=64),
}


def _network(options: LSTMOptions, *, n_directions: int, input_dropout: float,
             compute_dtype: str):
    """The LSTM stacks; ``input_dropout`` (the options' ``dropout``) on each layer's input."""
    from bilm.nn.lstm_stack import LSTMContextualizer

    return LSTMContextualizer(options, n_directions=n_directions, input_dropout=input_dropout,
                              compute_dtype=compute_dtype)


def _describe(enc: LSTMOptions) -> str:
    return (f"lstm: {enc.n_layers} layers, dim {enc.dim}, projection {enc.projection_dim}, "
            f"skip connections {enc.use_skip_connections}")


SPEC = register(EncoderSpec("lstm", LSTMOptions, _network, presets=PRESETS,
                            describe=_describe))
