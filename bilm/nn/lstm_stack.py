"""bilm-tf's encoder network: per direction a stack of projected, clipped LSTMs (optionally
with skip connections), stateful as bilm-tf's inference was, trained on packed streams."""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf

from bilm.nn.contextualizer import Contextualizer
from bilm.nn.dropout import Rows
from bilm.nn.layout import WeightEntry
from bilm.nn.lstm import ProjectedLSTM

if TYPE_CHECKING:  # the options type only: bilm.nn never imports bilm.encoders
    from bilm.encoders.lstm import LSTMOptions

__all__ = ["LSTMContextualizer", "LSTMState"]

LSTMState = tuple[tf.Tensor, tf.Tensor]  # (c, h), each (n_directions, batch, size)


class LSTMContextualizer(Contextualizer):
    """The LSTM stacks of a biLM (``options.lstm``); the state is per layer (c, h).

    ``input_dropout`` (the options' ``dropout``) drops each layer's input in training, as
    bilm-tf's ``DropoutWrapper``.
    """

    def __init__(self, options: LSTMOptions, n_directions: int = 2, input_dropout: float = 0.0,
                 compute_dtype: str = "float32", **kwargs) -> None:
        kwargs.setdefault("name", "lstm")
        super().__init__(options, options.n_layers, options.projection_dim, n_directions,
                         **kwargs)
        self.input_dropout = input_dropout
        p = options.projection_dim
        self.lstms = [
            ProjectedLSTM(
                input_dim=p, dim=options.dim, projection_dim=p, n_directions=n_directions,
                cell_clip=options.cell_clip, proj_clip=options.proj_clip,
                use_projection=options.use_projection,
                residual=options.use_skip_connections and k > 0, compute_dtype=compute_dtype,
                name=f"lstm_{k}",
            )
            for k in range(options.n_layers)
        ]
        self.built = True

    def initial_state(self, batch_size: int | tf.Tensor) -> list[LSTMState]:
        """Zero (c, h) for each layer."""
        return [layer.zero_state(batch_size) for layer in self.lstms]

    def run(self, x: tf.Tensor, lengths: tf.Tensor | None = None,
            initial_states: list[LSTMState] | None = None, training: bool = False,
            dropout_seed: tf.Tensor | None = None, skip_finished_rows: bool = False,
            rows: Rows | None = None) -> tuple[list[tf.Tensor], list[LSTMState]]:
        """Run the stacks over per-direction streams.

        Args:
            x: (n_directions, T, batch, width) token embeddings, time-major, each direction
                already in its reading order.
            lengths: (batch,) valid steps, or None when every step is valid.
            initial_states: per layer (c, h); zeros if None.
            training, dropout_seed: dropout on each layer's input (training); with a (2,)
                seed it is stateless, each layer folding in its index.
            skip_finished_rows: compute only the rows still inside their sentence at each
                step (see :meth:`ProjectedLSTM.call`).
            rows: where the batch's rows lie in a replicated step's global batch (the
                dropout masks follow the global row; :data:`bilm.nn.dropout.Rows`).
        Returns:
            per layer outputs (n_directions, T, batch, width), and final states.
        """
        if rows is not None:  # a Keras layer's argument: tensors only (constants, for XLA)
            rows = tuple(tf.convert_to_tensor(r, tf.int32) for r in rows)
        outputs, states = [], []
        for k, layer in enumerate(self.lstms):
            state = None if initial_states is None else initial_states[k]
            seed = (None if dropout_seed is None
                    else tf.random.experimental.stateless_fold_in(dropout_seed, k))
            x, final = layer(x, lengths=lengths, initial_state=state,
                             input_dropout=self.input_dropout, training=training,
                             dropout_seed=seed, skip_finished_rows=skip_finished_rows,
                             dropout_rows=rows)
            outputs.append(x)
            states.append(final)
        return outputs, states

    def stream_top(self, x, state, training=False, seed=None, rows=None):
        outputs, finals = self.run(x, initial_states=state, training=training,
                                   dropout_seed=seed, rows=rows)
        return outputs[-1], finals

    def sentence_layers(self, x, lengths, state=None, training=False, seed=None,
                        skip_finished_rows=False, rows=None):
        # the backward LSTM reads each sentence reversed within its length
        xt = tf.transpose(x, [1, 0, 2])  # shape (T, batch, width)
        x_bwd = tf.reverse_sequence(xt, lengths, seq_axis=0, batch_axis=1)
        streams = tf.stack([xt, x_bwd][: self.n_directions])
        outputs, finals = self.run(streams, lengths, state, training, seed,
                                   skip_finished_rows=skip_finished_rows, rows=rows)
        layers = []
        for out in outputs:  # shape (d, T, batch, width)
            directions = [out[0]]
            if self.n_directions == 2:
                directions.append(tf.reverse_sequence(out[1], lengths, seq_axis=0,
                                                      batch_axis=1))
            layers.append(tf.transpose(tf.stack(directions), [0, 2, 1, 3]))
        return layers, finals

    def weight_entries(self) -> list[WeightEntry]:
        table = []
        for k, layer in enumerate(self.lstms):
            for d in range(self.n_directions):
                h5 = f"RNN_{d}/RNN/MultiRNNCell/Cell{k}/LSTMCell"
                tf1 = f"lm/RNN_{d}/rnn/multi_rnn_cell/cell_{k}/lstm_cell"
                # a 1-layer model's cells, as bilm-tf's own reader names them (no MultiRNNCell)
                alias = f"RNN_{d}/RNN/LSTMCell" if self.n_layers == 1 else None
                parts = [(layer.kernel, "W_0", "kernel"), (layer.bias, "B", "bias")]
                if layer.projection is not None:
                    parts.append((layer.projection, "W_P_0", "projection/kernel"))
                for variable, h5_name, tf1_name in parts:
                    table.append(WeightEntry(
                        variable, f"{h5}/{h5_name}", f"{tf1}/{tf1_name}", d,
                        alias=alias and f"{alias}/{h5_name}", name=f"lstm_{k}/{h5_name}"))
        return table

    def layer_variables(self, k: int) -> list:
        return list(self.lstms[k].trainable_variables)

    def layer_output_names(self) -> list[str]:
        # TF Hub ELMo's names, kept for its users
        return [f"lstm_outputs{k}" for k in range(1, self.n_layers + 1)]

    def default_jit(self, inference: bool = False) -> bool:
        # XLA fuses each step's gate arithmetic: faster up to 2048 units on CPU, slower
        # beyond (its matmuls lose to oneDNN's). Inference without XLA skips finished rows
        # (dynamic shapes), which wins from 2048 units on. See docs/performance.md.
        return self.options.dim <= (1024 if inference else 2048)
