"""The interface every encoder's network implements (see :mod:`bilm.encoders`)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from bilm.encoders.registry import EncoderOptions
from bilm.nn.dropout import Rows
from bilm.nn.layout import WeightEntry

__all__ = ["Contextualizer", "State"]

State = Any  # an encoder's carried state (nested tensors), or None for a stateless encoder


class Contextualizer(keras.layers.Layer):
    """Token vectors in, per-layer contextual vectors out, for each direction.

    Attributes:
        stateful: carries a state from call to call (the LSTM); a stateless encoder's
            :meth:`initial_state` is None.
        protocol: how it trains and is evaluated: ``"streams"`` (bilm-tf's packed windows,
            each direction its own stream, state carried; held-out perplexity streamed with
            unroll 1) or ``"sentences"`` (one sentence per row, both directions over it;
            held-out sentences scored whole).
        n_layers: contextual layers; width: each layer's output per direction;
        n_directions: 2 for a biLM, 1 for a forward LM.
    """

    def __init__(self, options: EncoderOptions, n_layers: int, width: int,
                 n_directions: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.options = options
        self.n_layers, self.width, self.n_directions = n_layers, width, n_directions

    @property
    def stateful(self) -> bool:
        return self.options.stateful  # declared with the encoder's options

    @property
    def protocol(self) -> str:
        return self.options.protocol

    def initial_state(self, batch_size: int | tf.Tensor) -> State:
        """The state a stream starts from (zeros); None for a stateless encoder. Its tensors
        hold the batch on axis 1 (callers carry rows by slicing there)."""
        return None

    def sentence_layers(self, x: tf.Tensor, lengths: tf.Tensor, state: State = None,
                        training: bool = False, seed: tf.Tensor | None = None,
                        skip_finished_rows: bool = False, rows: Rows | None = None,
                        ) -> tuple[list[tf.Tensor], State]:
        """Contextual layers of whole sentences.

        Args:
            x: (batch, T, width) token vectors in sentence order, ``<S>``/``</S>`` included.
            lengths: (batch,) tokens per row, boundaries included (0: a padding row).
            state: the carried state (a stateful encoder); None starts from zeros.
            training, seed: dropout, stateless given a (2,) int seed.
            skip_finished_rows: a hint that the encoder may skip the work of rows past their
                length (the same results; dynamic shapes, so never under XLA). Recurrent
                encoders gain from it; others may ignore it.
            rows: in a replicated training step, where the batch's rows lie in the global
                batch (:data:`bilm.nn.dropout.Rows`): every dropout mask must follow the
                global row (:func:`bilm.nn.dropout.stateless_dropout`), so that N
                replicas x b rows train as one replica x N*b rows. None: the whole batch.
        Returns:
            per layer (n_directions, batch, T, width), each direction aligned to the sentence's
            positions (the backward direction at position t has read t..end); the new state.
        """
        raise NotImplementedError

    def stream_top(self, x: tf.Tensor, state: State, training: bool = False,
                   seed: tf.Tensor | None = None, rows: Rows | None = None,
                   ) -> tuple[tf.Tensor, State]:
        """The top layer over per-direction streams (the ``"streams"`` protocol):
        x (n_directions, T, batch, width), time-major, each direction in its reading order ->
        (n_directions, T, batch, width) and the final state. ``training``, ``seed``, ``rows``:
        as for :meth:`sentence_layers`."""
        raise NotImplementedError(f"{type(self).__name__} trains on sentences, not streams")

    def weight_entries(self) -> list[WeightEntry]:
        """Every weight with its HDF5 key (and TF1 name): the export layout."""
        raise NotImplementedError

    def layer_variables(self, k: int) -> list:
        """The variables of contextual layer ``k`` (0: the lowest), both directions: what
        ``bilm train --freeze layer-<k+1>`` holds fixed."""
        raise NotImplementedError(f"{type(self).__name__} does not say which variables "
                                  "make each layer")

    def layer_output_names(self) -> list[str]:
        """Names of the contextual layers in the Keras layer's and SavedModel's outputs."""
        return [f"layer_outputs{k}" for k in range(1, self.n_layers + 1)]

    def default_jit(self, inference: bool = False) -> bool:
        """Whether XLA compiles the training head by default, or with ``inference`` the
        contextual layers of ``embed_sentences`` (measured per encoder)."""
        return False
