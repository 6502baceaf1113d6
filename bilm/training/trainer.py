"""The trainer: a biLM's model, optimizer and checkpoint under one strategy, its distributed
training step, the LSTM states it carries across batches, and restoring a checkpoint (ours or
bilm-tf's) into it."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from bilm.data.batch import is_sentence_batch
from bilm.io.tf1 import load_tf1_checkpoint
from bilm.model.lm import LanguageModel, frozen_variables, tf1_table, training_variables
from bilm.options import BiLMOptions
from bilm.training.distribute import is_multi_worker
from bilm.training.optimizers import Adagrad, combine_rows, make_optimizer, map_gradient

__all__ = ["Trainer", "restore_weights"]

logger = logging.getLogger(__name__)


def _all_reduce(ctx: tf.distribute.ReplicaContext, grads: list) -> list:
    """The sum of every replica's gradients (float32). A vocabulary table's IndexedSlices are
    gathered from every replica (their rows then summed by ``combine_rows``): only the rows
    a batch touches cross the wire, never the whole table. (Ours rather than
    ``ReplicaContext.all_reduce`` of IndexedSlices, which the collective all-reduce of a
    MirroredStrategy on CPUs turns into a dense reduce of the values.)"""
    dense = [i for i, g in enumerate(grads) if not isinstance(g, tf.IndexedSlices)]
    out = list(grads)
    for i, g in zip(dense, ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                          [grads[i] for i in dense]), strict=True):
        out[i] = g
    if ctx.num_replicas_in_sync > 1:
        for i, g in enumerate(grads):
            if isinstance(g, tf.IndexedSlices):
                out[i] = tf.IndexedSlices(ctx.all_gather(g.values, axis=0),
                                          ctx.all_gather(g.indices, axis=0), g.dense_shape)
    return out


def _unscale(grads: list, loss_scale: tf.Tensor) -> tuple[list, tf.Tensor]:
    """mixed_float16: the gradients divided by the loss scale, and whether all are finite;
    an overflow's gradients are zeros."""
    grads = [map_gradient(lambda t: t / loss_scale, g) for g in grads]
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(
        g.values if isinstance(g, tf.IndexedSlices) else g)) for g in grads])
    # An overflow step is skipped: Adagrad with zero gradients changes nothing
    # (accumulator += 0, variable -= 0), with no control flow across replicas.
    grads = [map_gradient(lambda t: tf.where(finite, t, tf.zeros_like(t)), g)
             for g in grads]
    return grads, finite


def _trackable(states):
    """A state structure as tf.train.Checkpoint tracks it (lists, not tuples)."""
    if isinstance(states, (list, tuple)):
        return [_trackable(s) for s in states]
    return states


def _is_object_checkpoint(path: str) -> bool:
    """True for our tf.train.Checkpoint files, False for bilm-tf's name-based TF1 ones."""
    return any(n == "_CHECKPOINTABLE_OBJECT_GRAPH" for n, _ in tf.train.list_variables(path))


def restore_weights(lm: LanguageModel, path: str) -> int | None:
    """The weights of ``lm`` from a checkpoint, ours (tf.train.Checkpoint) or bilm-tf's TF1
    one: no optimizer state, step or LSTM states, and no trainer (evaluation, scoring,
    export). Returns the step of a bilm-tf checkpoint, None for ours."""
    if _is_object_checkpoint(path):
        tf.train.Checkpoint(variables=training_variables(lm)).read(
            path).expect_partial().assert_existing_objects_matched()
        logger.info("restored %s", path)
        return None
    step = load_tf1_checkpoint(tf1_table(lm), path, {})
    logger.info("restored bilm-tf checkpoint %s (step %d)", path, step)
    return step


@dataclass
class Trainer:
    """Model, optimizer, checkpoint and the compiled step, under one strategy."""

    options: BiLMOptions
    strategy: tf.distribute.Strategy
    seed: int = 0
    for_training: bool = True  # False: no optimizer state, float32 (weights only)
    # Adagrad updates only the softmax (and word embedding) rows a batch touches: the dense
    # update's values without a vocabulary-sized gradient, all-reduce and update per step
    sparse_updates: bool = True
    # parts held fixed (bilm.model.lm.frozen_variables: "token-embedder", "layer-K"): they
    # get no gradient and no update, and are checkpointed as the rest
    freeze: tuple[str, ...] = ()

    # mixed_float16's dynamic loss scaling, as Keras' LossScaleOptimizer
    INITIAL_LOSS_SCALE = 2.0**15
    LOSS_SCALE_GROWTH_STEPS = 2000  # double the scale after this many finite steps
    MAX_SKIPPED_STEPS = 40  # consecutive overflow steps before training stops

    def __post_init__(self) -> None:
        opts = self.options
        self.n_replicas = self.strategy.num_replicas_in_sync
        t0 = time.perf_counter()  # start-up is said as it goes: it may take a minute
        logger.info("building the model (%s encoder, %d replica(s))", opts.encoder_type,
                    self.n_replicas)
        import keras

        keras.utils.set_random_seed(self.seed)  # reproducible initial weights
        precision = opts.precision if self.for_training else "float32"
        self.loss_scaling = precision == "mixed_float16"
        with self.strategy.scope():
            self.lm = LanguageModel(opts, precision=precision)
            self.variables = training_variables(self.lm)
            self.optimizer = make_optimizer(opts, self.variables) if self.for_training else None
            self.lm.sparse_gradients = self.sparse_updates and isinstance(self.optimizer,
                                                                          Adagrad)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            if self.loss_scaling:
                self.loss_scale = tf.Variable(self.INITIAL_LOSS_SCALE, dtype=tf.float32,
                                              trainable=False, name="loss_scale")
                self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                              name="loss_scale_good_steps")
        # A stateful encoder's carried state for the global batch (the batch on axis 1),
        # checkpointed as '<encoder>_states' ('lstm_states' in every LSTM checkpoint so far).
        rows = opts.batch_size * self.n_replicas
        self.state_key = f"{opts.encoder_type}_states"
        initial = self.lm.initial_state(1)
        self.state_vars = None if initial is None else tf.nest.map_structure(
            lambda t: tf.Variable(tf.zeros([t.shape[0], rows, *t.shape[2:]]), trainable=False),
            initial)
        self.checkpoint = tf.train.Checkpoint(variables=dict(self.variables),
                                              global_step=self.step)
        if self.state_vars is not None:
            setattr(self.checkpoint, self.state_key, _trackable(self.state_vars))
        if self.optimizer is not None:
            self.checkpoint.optimizer = self.optimizer.slots()
        if self.loss_scaling:  # saved, so that a resumed run scales as the first would have
            self.checkpoint.loss_scale = {"scale": self.loss_scale,
                                          "good_steps": self.good_steps}
        frozen = frozen_variables(self.lm, self.freeze)
        self._names = [n for n in self.variables if n not in frozen]  # the trained ones
        if frozen:
            logger.info("frozen: %s (%d of %d variables)", ", ".join(self.freeze),
                        len(frozen), len(self.variables))
        # sentence batches vary in length: one trace for every length. autograph=False: the
        # step has no Python control flow on tensors, and AutoGraph's conversion of its source
        # was ~4 s of the first step (py-spy, small shape, 2026-12-03)
        self._train_step = tf.function(self._train_step_impl, reduce_retracing=True,
                                       autograph=False)
        self._all_finite = tf.function(self._all_finite_impl, autograph=False)
        self._first_step = True  # its tracing and compilation are timed and said
        logger.info("model built in %.1f s", time.perf_counter() - t0)

    # -- states -------------------------------------------------------------------------------

    def distributed_states(self):
        """The checkpointed states, split to the replicas (rows in replica order); None for
        a stateless encoder."""
        if self.state_vars is None:
            return None
        bs = self.options.batch_size

        def value_fn(ctx):
            i = ctx.replica_id_in_sync_group
            return tf.nest.map_structure(lambda v: v[:, i * bs : (i + 1) * bs],
                                         self.state_vars)

        return self.strategy.experimental_distribute_values_from_function(value_fn)

    def store_states(self, states) -> None:
        if self.state_vars is None:
            return
        if is_multi_worker(self.strategy):  # every worker's rows (a collective: all call it)
            for var, value in zip(tf.nest.flatten(self.state_vars), tf.nest.flatten(states),
                                  strict=True):
                var.assign(self.strategy.gather(value, axis=1))
            return
        local = self.strategy.experimental_local_results(states)
        flat = [tf.nest.flatten(r) for r in local]
        for k, var in enumerate(tf.nest.flatten(self.state_vars)):
            var.assign(tf.concat([r[k] for r in flat], axis=1))

    @functools.cached_property
    def local_rows(self) -> tuple[int, int]:
        """(start, stop): the rows of the global batch this process's replicas train on (all
        of them on one machine; a worker's slice in a cluster, replicas being numbered worker
        by worker)."""
        ids = self.strategy.experimental_local_results(
            self.strategy.experimental_distribute_values_from_function(
                lambda ctx: tf.constant(ctx.replica_id_in_sync_group)))
        ids = sorted(int(i) for i in ids)
        bs = self.options.batch_size
        return ids[0] * bs, (ids[-1] + 1) * bs

    def distribute_batch(self, batch: dict[str, np.ndarray]):
        """This process's rows of a batch (:meth:`local_rows`) to its replicas."""
        bs = self.options.batch_size
        first = self.local_rows[0] // bs
        batch = {k: tf.constant(v) for k, v in batch.items() if v is not None}

        def value_fn(ctx):
            i = ctx.replica_id_in_sync_group - first
            return {k: v[i * bs : (i + 1) * bs] for k, v in batch.items()}

        return self.strategy.experimental_distribute_values_from_function(value_fn)

    # -- the step -----------------------------------------------------------------------------

    def _train_step_impl(self, batch, states):
        # Same seed on every replica: negatives are shared, as in a one-replica step.
        seed = tf.stack([tf.constant(self.seed, tf.int64), self.step])
        step = self.step.read_value()
        loss_scale = self.loss_scale.read_value() if self.loss_scaling else None

        def replica_fn(batch, states):
            return self._replica_step(batch, states, seed, step, loss_scale)

        loss, norm, finals, finite = self.strategy.run(replica_fn, args=(batch, states))
        self.step.assign_add(1)
        loss = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)
        norm = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, norm, axis=None)
        # every replica saw the same all-reduced gradients: one finite flag
        finite = self.strategy.experimental_local_results(finite)[0]
        if loss_scale is not None:
            self._update_loss_scale(finite)
        return loss, norm, finals, tf.logical_not(finite)

    def _replica_step(self, batch, states, seed, step, loss_scale):
        """One replica's part of the step: its loss and gradients, all-reduced (under
        mixed_float16 unscaled, an overflow's zeroed), clipped and applied; returns (loss,
        gradient norm, final states, finite)."""
        ctx = tf.distribute.get_replica_context()
        variables = [self.variables[n] for n in self._names]
        clip = self.options.all_clip_norm_val
        bs = self.options.batch_size
        scale = self._loss_weight(ctx, batch)
        if loss_scale is not None:
            scale = scale * loss_scale
        rows = None  # one replica: its batch is the global batch
        if ctx.num_replicas_in_sync > 1:
            # every dropout mask is the global batch's, at this replica's rows (replica
            # i holds rows i*b..(i+1)*b, as distribute_batch gives them)
            first = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * bs
            rows = (first, bs * ctx.num_replicas_in_sync)
        loss, finals, grads = self.lm.train_gradients(batch, states, seed, variables,
                                                      scale=scale, rows=rows)
        grads = [combine_rows(g) for g in _all_reduce(ctx, grads)]
        finite = tf.constant(True)
        if loss_scale is not None:
            grads, finite = _unscale(grads, loss_scale)
        if clip is None:
            norm = tf.linalg.global_norm(grads)
        else:
            grads, norm = tf.clip_by_global_norm(grads, clip)
        ctx.merge_call(lambda strategy, g: self.optimizer.apply(
            strategy, g, [v.value for v in variables], self._names, step,
            finite if loss_scale is not None else None), args=(grads,))
        return loss, norm, finals, finite

    def _loss_weight(self, ctx: tf.distribute.ReplicaContext, batch):
        """What a replica's loss is multiplied by before differentiating."""
        if is_sentence_batch(batch):
            # sentences (AllenNLP): the mean over the global batch's forward targets, so
            # that N replicas x b rows train as one replica x N*b rows
            n_local = tf.reduce_sum(tf.maximum(batch["lengths"] - 1, 0))
            n_global = ctx.all_reduce(tf.distribute.ReduceOp.SUM, n_local)
            return 1.0 / tf.cast(tf.maximum(n_global, 1), tf.float32)
        # bilm-tf differentiates loss * unroll_steps (a per-window sum over time),
        # averaged over replicas; Adagrad's step size depends on that scale.
        return float(self.options.unroll_steps) / ctx.num_replicas_in_sync

    def _update_loss_scale(self, finite: tf.Tensor) -> None:
        """Halve the scale after an overflow; double it after ``LOSS_SCALE_GROWTH_STEPS``
        finite steps in a row (Keras' dynamic loss scaling)."""
        good = tf.where(finite, self.good_steps + 1, 0)
        grow = good >= self.LOSS_SCALE_GROWTH_STEPS
        factor = tf.where(finite, tf.where(grow, 2.0, 1.0), 0.5)
        self.loss_scale.assign(self.loss_scale * factor)
        self.good_steps.assign(tf.where(grow, tf.zeros_like(good), good))

    def train_step(self, batch, states):
        """One optimizer step: (mean loss, gradient norm, final states, skipped) where
        ``skipped`` is True for a mixed_float16 step whose gradients overflowed."""
        if self._first_step:
            return self._timed_first_step(batch, states)
        return self._train_step(batch, states)

    def _timed_first_step(self, batch, states):
        """The first step, which traces (and with ``jit_compile``, XLA-compiles) the step
        function, often for tens of seconds: said before, and its time after."""
        logger.info("compiling the first training step%s...",
                    " (XLA)" if self.lm.jit_compile else "")
        t0 = time.perf_counter()
        out = self._train_step(batch, states)
        out[0].numpy()  # the step's end (execution may be asynchronous)
        self._first_step = False
        logger.info("first step done in %.1f s", time.perf_counter() - t0)
        return out

    # -- restore ------------------------------------------------------------------------------

    def restore(self, path: str, weights_only: bool = False) -> None:
        """Ours (tf.train.Checkpoint) or a bilm-tf TF1 checkpoint; ``weights_only`` skips the
        optimizer, step and LSTM states (evaluation, export).

        The carried LSTM states are restored when their shape matches this trainer's global
        batch; after a change of ``batch_size`` or of the number of replicas they start from
        zeros (said in one log line)."""
        if weights_only:
            step = restore_weights(self.lm, path)
            if step is not None:  # bilm-tf's
                self.step.assign(step)
            return
        if _is_object_checkpoint(path):
            self._restore_object(path)
            return
        slots = {}
        if isinstance(self.optimizer, Adagrad):  # bilm-tf's slots
            slots = {id(v): self.optimizer.accumulators[n] for n, v in self.variables.items()}
        step = load_tf1_checkpoint(tf1_table(self.lm), path, slots)
        self.step.assign(step)
        logger.info("restored bilm-tf checkpoint %s (step %d)", path, step)

    def _restore_object(self, path: str) -> None:
        """Ours: weights, step, optimizer slots, loss scale and (if their shape fits) the
        carried LSTM states."""
        shapes = dict(tf.train.list_variables(path))
        parts: dict[str, Any] = {"variables": dict(self.variables),
                                 "global_step": self.step}
        if self.optimizer is not None:
            parts["optimizer"] = self.optimizer.slots()
        if self.state_vars is not None:
            saved = [shape for name, shape in sorted(shapes.items())
                     if name.startswith(f"{self.state_key}/")]
            saved_rows = saved[0][1] if saved else 0
            rows = int(tf.nest.flatten(self.state_vars)[0].shape[1])
            if saved_rows == rows:
                parts[self.state_key] = _trackable(self.state_vars)
            else:
                logger.warning("the global batch changed from %d rows (checkpoint) to %d: "
                               "the carried LSTM states start from zeros", saved_rows, rows)
        if self.loss_scaling and any(n.startswith("loss_scale/") for n in shapes):
            # (from a float32/bfloat16 run, the loss scale starts afresh)
            parts["loss_scale"] = self.checkpoint.loss_scale
        tf.train.Checkpoint(**parts).read(path).expect_partial(
            ).assert_existing_objects_matched()
        logger.info("restored %s (step %d)", path, int(self.step.numpy()))

    def all_finite(self) -> bool:
        """Whether every weight (and Adagrad accumulator) is finite: checked before a
        checkpoint is saved, so that no saved checkpoint holds exploded weights."""
        return bool(self._all_finite())

    def _all_finite_impl(self) -> tf.Tensor:
        tensors = list(self.variables.values())
        if self.optimizer is not None:
            tensors += list(self.optimizer.slots().values())
        return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors])
