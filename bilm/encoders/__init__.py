"""Contextualizers: what turns token vectors into ELMo's contextual layers.

Every encoder implements :class:`Contextualizer`; training, evaluation, checkpoints, export,
inference, the Keras layer, the SavedModel, scoring and the command line go through it and
never name an encoder's internals. Adding an encoder is one module here, its options class
(:mod:`bilm.options`) and a line in :func:`build_contextualizer`.

    lstm         bilm-tf's projected LSTM stacks: stateful; trained on bilm-tf's packed
                 streams with the state carried (``protocol = "streams"``)
    transformer  AllenNLP's bidirectional Transformer LM: stateless; trained one sentence
                 per row (``protocol = "sentences"``)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bilm._lazy import lazy_exports
from bilm.options import BiLMOptions

if TYPE_CHECKING:
    from bilm.encoders.base import Contextualizer

__all__ = ["Contextualizer", "State", "build_contextualizer", "describe_encoder",
           "encoder_protocol", "truncated_encoder"]

# the network classes need TensorFlow: imported on first use, so options tools stay light
__getattr__, _ = lazy_exports(__name__, {"Contextualizer": "bilm.encoders.base",
                                         "State": "bilm.encoders.base"})

def encoder_protocol(options: BiLMOptions) -> str:
    """How the options' encoder trains and is evaluated (see :class:`Contextualizer`)."""
    return options.encoder.protocol


def build_contextualizer(options: BiLMOptions, n_directions: int = 2,
                         compute_dtype: str = "float32") -> Contextualizer:
    """The contextualizer the options describe (``options.encoder``)."""
    kind = options.encoder_type
    if kind == "lstm":
        from bilm.encoders.lstm import LSTMContextualizer

        return LSTMContextualizer(options.encoder, n_directions=n_directions,
                                  input_dropout=options.dropout, compute_dtype=compute_dtype)
    if kind == "transformer":
        from bilm.encoders.transformer import TransformerContextualizer

        return TransformerContextualizer(options.encoder, n_directions=n_directions,
                                         compute_dtype=compute_dtype)
    raise ValueError(f"unknown encoder type {kind!r}")


def describe_encoder(options: BiLMOptions) -> str:
    """One line for ``bilm info``: the encoder's type and shape."""
    enc = options.encoder
    if enc.type == "lstm":
        return (f"lstm: {enc.n_layers} layers, dim {enc.dim}, projection {enc.projection_dim}, "
                f"skip connections {enc.use_skip_connections}")
    return (f"{enc.type}: {enc.n_layers} layers, dim {enc.dim}, hidden {enc.hidden_dim}, "
            f"{enc.n_heads} heads")


def truncated_encoder(options: BiLMOptions, n_layers: int):
    """The encoder options of the first ``n_layers`` layers (``bilm export --layers``)."""
    import dataclasses

    changes: dict = {"n_layers": n_layers}
    if options.encoder_type == "transformer":  # the lower layers' top was not normalized
        changes["final_norm"] = False
    return dataclasses.replace(options.encoder, **changes)
