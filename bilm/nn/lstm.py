"""LSTM layer with projection and clipping, with TF1 ``LSTMCell`` semantics.

One layer runs all directions of the biLM at once: the forward and backward streams are
stacked on a leading ``directions`` axis and advance together in one loop, so the loop's
per-step overhead is paid once for both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import tensorflow as tf

from bilm.nn.dropout import Rows, stateless_dropout
from bilm.nn.matmul import matmul

FORGET_BIAS = 1.0  # added at run time, never stored (TF1 LSTMCell)


# per-direction weights: a (d, n, m) tensor or a list of d (n, m) matrices
Weights = tf.Tensor | Sequence[tf.Tensor]


def per_direction_matmul(x: tf.Tensor, w: Weights, w_t: Weights | None = None) -> tf.Tensor:
    """``x[k] @ w[k]`` for each direction k: (d, batch, n) x (d, n, m) -> (d, batch, m).

    Separate matmuls, stacked: on CPU they run 10-25% faster than one BatchMatMul at the
    per-step sizes of an LSTM (measured, TF 2.21). ``w`` is a (d, n, m) tensor or a list of d
    (n, m) matrices (sliced once, outside a loop). With ``w_t``, w transposed ((d, m, n) or a
    list), the gradient for x reads it instead of w (:func:`bilm.nn.matmul.matmul`).
    """
    d = len(w) if isinstance(w, (list, tuple)) else w.shape[0]
    if w_t is None:
        return tf.stack([tf.matmul(x[k], w[k]) for k in range(d)])
    return tf.stack([matmul(x[k], w[k], w_t[k]) for k in range(d)])


def _glorot_per_direction(fan_in: int, fan_out: int) -> keras.initializers.Initializer:
    """TF1's default (Glorot uniform) for each direction's 2-D matrix; Keras' GlorotUniform
    would count the directions axis into the fans of the stacked 3-D variable."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return keras.initializers.RandomUniform(-limit, limit)


class ProjectedLSTM(keras.layers.Layer):
    """One LSTM layer for ``n_directions`` independent streams.

    Per step (gates i, j, f, o in that order, as TF1's ``LSTMCell``)::

        [i, j, f, o] = [x, h_prev] W + B
        c = clip(sigmoid(f + 1) * c_prev + sigmoid(i) * tanh(j), cell_clip)
        h = clip((sigmoid(o) * tanh(c)) W_P, proj_clip)       # W_P only if use_projection

    Weights: ``kernel`` (n_directions, input_dim + out_dim, 4 dim), ``bias`` (n_directions,
    4 dim), ``projection`` (n_directions, dim, out_dim). With ``residual``, the layer's input is
    added to its output (not to its state), as TF1's ``ResidualWrapper``. ``compute_dtype``
    ``bfloat16``/``float16`` runs the matmuls in that dtype (mixed precision; float32 weights,
    state and gate arithmetic).
    """

    def __init__(self, input_dim: int, dim: int, projection_dim: int, n_directions: int,
                 cell_clip: float | None = None, proj_clip: float | None = None,
                 use_projection: bool = True, residual: bool = False,
                 compute_dtype: str = "float32", **kwargs) -> None:
        super().__init__(**kwargs)
        self.input_dim, self.dim = input_dim, dim
        # dtype of the matmuls (bfloat16/float16 for mixed precision); the weights, the cell
        # state, the gate arithmetic and the outputs stay float32
        self.matmul_dtype = tf.as_dtype(compute_dtype)
        self.use_projection = use_projection
        self.out_dim = projection_dim if use_projection else dim
        self.n_directions = n_directions
        self.cell_clip, self.proj_clip = cell_clip, proj_clip
        self.residual = residual
        self.kernel = self.add_weight(
            shape=(n_directions, input_dim + self.out_dim, 4 * dim), name="kernel",
            initializer=_glorot_per_direction(input_dim + self.out_dim, 4 * dim),
        )
        self.bias = self.add_weight(shape=(n_directions, 4 * dim), name="bias",
                                    initializer="zeros")
        self.projection = None
        if use_projection:
            self.projection = self.add_weight(
                shape=(n_directions, dim, projection_dim), name="projection",
                initializer=_glorot_per_direction(dim, projection_dim),
            )
        self.built = True

    def zero_state(self, batch_size: int | tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(c, h) zeros of shapes (n_directions, batch, dim) and (n_directions, batch, out)."""
        d = self.n_directions
        return (tf.zeros([d, batch_size, self.dim]), tf.zeros([d, batch_size, self.out_dim]))

    def call(self, x: tf.Tensor, lengths: tf.Tensor | None = None,
             initial_state: tuple[tf.Tensor, tf.Tensor] | None = None,
             input_dropout: float = 0.0, training: bool = False,
             dropout_seed: tf.Tensor | None = None, skip_finished_rows: bool = False,
             dropout_rows: Rows | None = None,
             ) -> tuple[tf.Tensor, tuple[tf.Tensor, tf.Tensor]]:
        """Run the layer over time.

        Args:
            x: (n_directions, T, batch, input_dim), time-major per direction.
            lengths: (batch,) valid steps per row, or None (all valid). Past its length a row
                outputs zeros and keeps its state (TF1 ``dynamic_rnn`` with sequence_length).
            initial_state: (c, h) as from :meth:`zero_state`; zeros if None.
            input_dropout: drop rate on the layer input (training only).
            dropout_seed: (2,) int seed for stateless (reproducible, resumable) dropout.
            dropout_rows: where this batch's rows lie in the global batch of a replicated
                step (:data:`bilm.nn.dropout.Rows`): the mask follows the global row.
            skip_finished_rows: with ``lengths``, compute each step for the rows still inside
                their sentence only (:meth:`_run_active_rows`): the same results, less work
                for batches of mixed lengths; dynamic shapes, so not under XLA.
        Returns:
            outputs (n_directions, T, batch, out_dim) and the final (c, h).
        """
        shape = tf.shape(x)
        n_steps, batch = shape[1], shape[2]
        if initial_state is None:
            initial_state = self.zero_state(batch)
        if training and input_dropout > 0.0:
            # bilm-tf's DropoutWrapper sits outside the ResidualWrapper: the skip connection
            # adds the dropped-out input.
            if dropout_seed is None:
                x = tf.nn.dropout(x, rate=input_dropout)
            else:
                x = stateless_dropout(x, input_dropout, dropout_seed, dropout_rows, axis=2)
        mm = self.matmul_dtype  # tf.cast to the same dtype adds no op: float32 is unchanged
        kernel = tf.cast(tf.convert_to_tensor(self.kernel), mm)
        w_x, w_h = kernel[:, : self.input_dim], kernel[:, self.input_dim :]
        bias = tf.convert_to_tensor(self.bias)
        proj = tf.cast(tf.convert_to_tensor(self.projection), mm) if self.use_projection else None
        if skip_finished_rows and lengths is not None:
            out, final = self._run_active_rows(x, tf.cast(lengths, tf.int32), initial_state,
                                               w_x, w_h, bias, proj)
        else:
            out, final = self._run_masked(x, lengths, initial_state, w_x, w_h, bias, proj,
                                          transposed_grads=training)
        if self.residual:  # outputs past a row's length stay zeros
            out = out + (x if lengths is None else x * self._valid(lengths, n_steps))
        return out, final

    def _run_masked(self, x, lengths, initial_state, w_x, w_h, bias, proj,
                    transposed_grads=False):
        """The loop over every row: past its length a row's state is kept and its output is
        zeros (``tf.where``); static shapes, so XLA can compile it and its gradient.

        ``transposed_grads`` (training): the weights are transposed once, before the loop, for
        the backward steps' products (``per_direction_matmul``'s ``w_t``)."""
        d, mm = self.n_directions, self.matmul_dtype
        # Each direction's matrices sliced here, once: sliced inside the loop, they are
        # intermediates that the loop's gradient stores at every step (a copy of each weight
        # per step; the XLA head 7-9% slower, measured).
        w_h_t = proj_t = None
        if transposed_grads:
            w_h_t = tf.unstack(tf.transpose(w_h, [0, 2, 1]))
            proj_t = None if proj is None else tf.unstack(tf.transpose(proj, [0, 2, 1]))
        w_h = tf.unstack(w_h)
        proj = None if proj is None else tf.unstack(proj)
        shape = tf.shape(x)
        n_steps, batch = shape[1], shape[2]
        # The input half of every gate for all steps in one matmul.
        gx = tf.matmul(tf.cast(tf.reshape(x, [d, -1, self.input_dim]), mm), w_x)
        gx = tf.cast(gx, x.dtype) + bias[:, tf.newaxis]
        gx = tf.reshape(gx, [d, n_steps, batch, 4 * self.dim])
        valid_all = None
        if lengths is not None:
            # shape (T, 1, batch, 1)
            valid_all = (tf.range(n_steps)[:, tf.newaxis] < tf.cast(lengths, tf.int32))
            valid_all = valid_all[:, tf.newaxis, :, tf.newaxis]

        outputs = tf.TensorArray(x.dtype, size=n_steps, element_shape=[d, None, self.out_dim])

        def step(t, c_prev, h_prev, outputs):
            gates = gx[:, t] + tf.cast(per_direction_matmul(tf.cast(h_prev, mm), w_h, w_h_t),
                                       gx.dtype)  # shape (d, batch, 4 dim)
            c, h = self._cell(gates, c_prev, proj, proj_t)
            out = h
            if valid_all is not None:
                valid = valid_all[t]
                c = tf.where(valid, c, c_prev)
                out = tf.where(valid, h, tf.zeros_like(h))
                h = tf.where(valid, h, h_prev)
            return t + 1, c, h, outputs.write(t, out)

        _, c, h, outputs = tf.while_loop(
            lambda t, *_: t < n_steps, step,
            (tf.constant(0), initial_state[0], initial_state[1], outputs),
            maximum_iterations=n_steps,  # lets XLA compile the loop's gradient
        )
        return tf.transpose(outputs.stack(), [1, 0, 2, 3]), (c, h)  # (d, T, batch, out_dim)

    @staticmethod
    def _valid(lengths: tf.Tensor, n_steps: tf.Tensor) -> tf.Tensor:
        """(1, T, batch, 1) float: 1 where step t is inside row b's length."""
        valid = tf.range(n_steps)[:, tf.newaxis] < tf.cast(lengths, tf.int32)
        return tf.cast(valid, tf.float32)[tf.newaxis, :, :, tf.newaxis]

    def _cell(self, gates: tf.Tensor, c_prev: tf.Tensor, proj: Weights | None,
              proj_t: Weights | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """TF1 LSTMCell's arithmetic from the summed gates (d, rows, 4 dim) -> (c, h);
        ``proj_t``: the projection transposed, for the gradient (``per_direction_matmul``)."""
        i, j, f, o = tf.split(gates, 4, axis=-1)
        c = tf.sigmoid(f + FORGET_BIAS) * c_prev + tf.sigmoid(i) * tf.tanh(j)
        if self.cell_clip is not None:
            c = tf.clip_by_value(c, -self.cell_clip, self.cell_clip)
        h = tf.sigmoid(o) * tf.tanh(c)
        if proj is not None:
            h = tf.cast(per_direction_matmul(tf.cast(h, self.matmul_dtype), proj, proj_t),
                        c.dtype)
            if self.proj_clip is not None:
                h = tf.clip_by_value(h, -self.proj_clip, self.proj_clip)
        return c, h

    def _run_active_rows(self, x, lengths, initial_state, w_x, w_h, bias, proj):
        """The loop over the rows still running only: rows are sorted longest first, so at
        step t the running rows are a prefix of n_t rows; the others keep their state (frozen
        at their length, as with ``lengths`` in :meth:`call`) and output zeros. The input
        half of the gates is computed for the valid (step, row) pairs only, packed time-major.
        Every row's arithmetic is the masked loop's; only the matmuls' row counts differ."""
        d, mm = self.n_directions, self.matmul_dtype
        shape = tf.shape(x)
        n_steps, batch = shape[1], shape[2]
        order = tf.argsort(lengths, direction="DESCENDING", stable=True)
        inverse = tf.math.invert_permutation(order)
        sorted_lengths = tf.gather(lengths, order)
        c, h = (tf.gather(s, order, axis=1) for s in initial_state)
        valid = tf.range(n_steps)[:, tf.newaxis] < sorted_lengths  # shape (T, batch)
        n_active = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)  # shape (T,)
        offsets = tf.cumsum(n_active, exclusive=True)
        # (step, original row) of every valid pair, in time-major packed order
        pairs = tf.where(valid)
        flat = pairs[:, 0] * tf.cast(batch, tf.int64) + tf.gather(tf.cast(order, tf.int64),
                                                                  pairs[:, 1])
        x_packed = tf.gather(tf.reshape(x, [d, -1, self.input_dim]), flat, axis=1)
        gx = tf.cast(tf.matmul(tf.cast(x_packed, mm), w_x), x.dtype) + bias[:, tf.newaxis]
        outputs = tf.TensorArray(x.dtype, size=n_steps, infer_shape=False,
                                 element_shape=[None, d, self.out_dim])

        def step(t, c_prev, h_prev, outputs):
            n, start = n_active[t], offsets[t]
            gates = gx[:, start : start + n] + tf.cast(
                per_direction_matmul(tf.cast(h_prev[:, :n], mm), w_h), gx.dtype)
            c_new, h_new = self._cell(gates, c_prev[:, :n], proj)
            c = tf.concat([c_new, c_prev[:, n:]], axis=1)
            h = tf.concat([h_new, h_prev[:, n:]], axis=1)
            c.set_shape(c_prev.shape)
            h.set_shape(h_prev.shape)
            return t + 1, c, h, outputs.write(t, tf.transpose(h_new, [1, 0, 2]))

        _, c, h, outputs = tf.while_loop(
            lambda t, *_: t < n_steps, step, (tf.constant(0), c, h, outputs),
            maximum_iterations=n_steps)
        packed = outputs.concat()  # shape (n_valid, d, out_dim)
        out = tf.scatter_nd(flat[:, tf.newaxis], packed,
                            tf.cast(tf.stack([n_steps * batch, d, self.out_dim]), tf.int64))
        out = tf.transpose(tf.reshape(out, [n_steps, batch, d, self.out_dim]), [2, 0, 1, 3])
        return out, (tf.gather(c, inverse, axis=1), tf.gather(h, inverse, axis=1))
