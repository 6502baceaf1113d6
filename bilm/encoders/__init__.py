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

from bilm.encoders.base import Contextualizer, State
from bilm.options import BiLMOptions

__all__ = ["Contextualizer", "State", "build_contextualizer", "encoder_protocol"]



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
