"""Optimizers and learning-rate schedules of training: bilm-tf's Adagrad (TF1 semantics) and
AllenNLP's Adam with the noam schedule (Transformer ELMo's recipe).

Ours rather than ``keras.optimizers``: the updates are applied in cross-replica context to
every device's copy after our own all-reduce and clipping, the slots are named by the
variable table (stable checkpoint names), TF1 checkpoints' Adagrad slots restore into them,
and a mixed_float16 step that overflowed must leave every slot untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from bilm.options import BiLMOptions

__all__ = ["Adagrad", "Adam", "combine_rows", "learning_rate_schedule", "make_optimizer",
           "map_gradient"]

Schedule = Callable[[tf.Tensor], tf.Tensor]  # global step (int64) -> learning rate (float32)


def combine_rows(g):
    """IndexedSlices with each row once (repeated rows summed), so that norms, clipping and
    sparse updates equal the dense gradient's; a dense gradient as it is."""
    if not isinstance(g, tf.IndexedSlices):
        return g
    rows, position = tf.unique(g.indices)
    values = tf.math.unsorted_segment_sum(g.values, position, tf.shape(rows)[0])
    return tf.IndexedSlices(values, rows, g.dense_shape)


def map_gradient(fn, g):
    """``fn`` applied to a gradient's values (dense, or an IndexedSlices' rows)."""
    if isinstance(g, tf.IndexedSlices):
        return tf.IndexedSlices(fn(g.values), g.indices, g.dense_shape)
    return fn(g)


def learning_rate_schedule(options: BiLMOptions) -> Schedule:
    """The options' schedule: ``constant`` (``learning_rate``) or ``noam`` (AllenNLP's):
    ``learning_rate * width^-0.5 * min(t^-0.5, t * warmup_steps^-1.5)`` for update t
    (1-based), rising linearly for ``warmup_steps`` updates, then falling as 1/sqrt(t)."""
    lr = options.learning_rate
    if options.learning_rate_schedule == "constant":
        return lambda step: tf.constant(lr, tf.float32)
    width, warmup = float(options.dim), float(options.warmup_steps)

    def noam(step: tf.Tensor) -> tf.Tensor:
        t = tf.maximum(tf.cast(step, tf.float32) + 1.0, 1.0)
        return lr * width**-0.5 * tf.minimum(t**-0.5, t * warmup**-1.5)

    return noam


class Adagrad(tf.Module):
    """TF1's Adagrad (``accum += g^2; var -= lr * g / sqrt(accum)``), accumulators starting at
    ``initial_accumulator_value``; applied in cross-replica context to every device's copy.

    A sparse gradient (IndexedSlices with each row once, see :func:`combine_rows`) updates
    only its rows: the same values as the dense update, whose other rows get
    ``accum += 0, var -= 0``, without touching the whole table."""

    def __init__(self, variables: dict[str, object], learning_rate: float | Schedule,
                 initial_accumulator_value: float = 1.0) -> None:
        super().__init__(name="Adagrad")
        self.learning_rate = learning_rate
        self.accumulators = {
            name: tf.Variable(tf.fill(var.shape, initial_accumulator_value), trainable=False,
                              name=name.replace("/", "_") + "_Adagrad")
            for name, var in variables.items()
        }

    def slots(self) -> dict[str, tf.Variable]:
        """What the checkpoint keeps (``optimizer/<variable name>``)."""
        return dict(self.accumulators)

    def apply(self, strategy: tf.distribute.Strategy, grads: list, variables: list,
              names: list[str], step: tf.Tensor, finite: tf.Tensor | None = None) -> None:
        """One update of ``variables`` (named ``names``) with ``grads``; with ``finite``
        False nothing changes (zero gradients are a no-op for Adagrad)."""
        lr = self.learning_rate
        lr = lr(step) if callable(lr) else lr

        # TensorFlow's fused Adagrad kernels, TF1's own (``accum += g * g; var -= lr * g /
        # sqrt(accum)``): one pass over each variable instead of five element-wise ops. The
        # sparse kernel updates rows in parallel, so its rows must be unique (combine_rows);
        # its 1-D path divides by sqrt where the others multiply by rsqrt (float32 rounding).
        def update(var, grad, acc):
            lr_t = tf.cast(lr, var.dtype)
            if isinstance(grad, tf.IndexedSlices):
                return tf.raw_ops.ResourceSparseApplyAdagrad(
                    var=var.handle, accum=acc.handle, lr=lr_t, grad=grad.values,
                    indices=grad.indices)
            return tf.raw_ops.ResourceApplyAdagrad(var=var.handle, accum=acc.handle, lr=lr_t,
                                                   grad=grad)

        for g, v, name in zip(grads, variables, names, strict=True):
            strategy.extended.update(v, update, args=(g, self.accumulators[name]))


class Adam(tf.Module):
    """Adam with bias correction, as ``torch.optim.Adam`` (AllenNLP's): ``m``, ``v`` start at
    zero; ``var -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)`` for update t."""

    def __init__(self, variables: dict[str, object], learning_rate: float | Schedule,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8) -> None:
        super().__init__(name="Adam")
        self.learning_rate = learning_rate
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.m = {name: tf.Variable(tf.zeros(var.shape), trainable=False,
                                    name=name.replace("/", "_") + "_m")
                  for name, var in variables.items()}
        self.v = {name: tf.Variable(tf.zeros(var.shape), trainable=False,
                                    name=name.replace("/", "_") + "_v")
                  for name, var in variables.items()}

    def slots(self) -> dict[str, tf.Variable]:
        return {**{f"{n}/m": s for n, s in self.m.items()},
                **{f"{n}/v": s for n, s in self.v.items()}}

    def apply(self, strategy: tf.distribute.Strategy, grads: list, variables: list,
              names: list[str], step: tf.Tensor, finite: tf.Tensor | None = None) -> None:
        lr = self.learning_rate
        lr = lr(step) if callable(lr) else tf.constant(lr, tf.float32)
        t = tf.cast(step, tf.float32) + 1.0
        b1, b2, eps = self.beta_1, self.beta_2, self.epsilon
        step_size = lr / (1.0 - b1**t)
        correction = tf.sqrt(1.0 - b2**t)
        keep = tf.constant(True) if finite is None else finite

        def update(var, grad, m, v):
            grad = tf.convert_to_tensor(grad)  # Adam moves every row's moments
            new_m = tf.where(keep, b1 * m + (1.0 - b1) * grad, m)
            new_v = tf.where(keep, b2 * v + (1.0 - b2) * tf.square(grad), v)
            m.assign(new_m)
            v.assign(new_v)
            delta = step_size * new_m / (tf.sqrt(new_v) / correction + eps)
            return var.assign_sub(tf.where(keep, delta, tf.zeros_like(delta)))

        for g, v, name in zip(grads, variables, names, strict=True):
            strategy.extended.update(v, update, args=(g, self.m[name], self.v[name]))


def make_optimizer(options: BiLMOptions, variables: dict[str, object]) -> Adagrad | Adam:
    """The options' optimizer over ``variables`` (name -> variable)."""
    schedule = learning_rate_schedule(options)
    if options.optimizer == "adam":
        return Adam(variables, schedule)
    return Adagrad(variables, schedule)
