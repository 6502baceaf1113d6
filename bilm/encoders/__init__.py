"""Encoders: what turns token vectors into ELMo's contextual layers, by name.

Each encoder is one module here holding its options section, presets and hooks, registered as
an :class:`EncoderSpec` (:mod:`bilm.encoders.registry`); its network, a
:class:`Contextualizer`, is in :mod:`bilm.nn`. Training, evaluation, checkpoints, export,
inference, the Keras layer, the SavedModel, scoring and the command line go through the
functions below and never name an encoder. Adding one is a module that calls
:func:`register`; options.json's ``"encoder": {"type": "<name>", ...}`` then selects it.

    lstm         bilm-tf's projected LSTM stacks: stateful; trained on bilm-tf's packed
                 streams with the state carried (``protocol = "streams"``)
    transformer  AllenNLP's bidirectional Transformer LM: stateless; trained one sentence
                 per row (``protocol = "sentences"``)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bilm._lazy import lazy_exports
from bilm.encoders.registry import (
    EncoderOptions,
    EncoderSpec,
    ModelOptions,
    get_spec,
    names,
    register,
    spec_for,
)

if TYPE_CHECKING:
    from bilm.nn.contextualizer import Contextualizer

__all__ = ["Contextualizer", "EncoderOptions", "EncoderSpec", "State", "build_contextualizer",
           "describe_encoder", "encoder_protocol", "get_spec", "names", "register", "spec_for",
           "truncated_encoder"]

# the network classes need TensorFlow: imported on first use, so options tools stay light
__getattr__, _ = lazy_exports(__name__, {"Contextualizer": "bilm.nn.contextualizer",
                                         "State": "bilm.nn.contextualizer"})


def encoder_protocol(options: ModelOptions) -> str:
    """How the options' encoder trains and is evaluated (see :class:`Contextualizer`)."""
    return spec_for(options).options.protocol


def build_contextualizer(options: ModelOptions, n_directions: int = 2,
                         compute_dtype: str = "float32") -> Contextualizer:
    """The contextualizer the options describe (``options.encoder``)."""
    return spec_for(options).network(options.encoder, n_directions=n_directions,
                                     input_dropout=options.dropout,
                                     compute_dtype=compute_dtype)


def describe_encoder(options: ModelOptions) -> str:
    """One line for ``bilm info``: the encoder's type and shape."""
    return spec_for(options).describe_options(options.encoder)


def truncated_encoder(options: ModelOptions, n_layers: int) -> Any:
    """The encoder options of the first ``n_layers`` layers (``bilm export --layers``)."""
    return spec_for(options).truncated(options.encoder, n_layers)
