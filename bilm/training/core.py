"""Training, evaluation and export of a biLM (bilm-tf's ``training.py``, on tf.distribute).

``train`` runs the one encoder (plus softmax) under the strategy of
:func:`bilm.training.distribute.make_strategy`. Each step is deterministic given the seed and
the step number (stateless dropout and negative sampling); the LSTM states and, through the run's
data history, the data position are restored on resume, so a resumed run continues exactly
where it stopped. SIGINT, SIGTERM and SIGHUP save a checkpoint before stopping; checkpoints
are saved only when every weight and accumulator is finite.

The run-level functions (:func:`start_training`, :func:`resume_training`,
:func:`evaluate_run`, :func:`load_run`) read and write a training directory
(:mod:`bilm.training.run_folder`); the command line and bilm-tf's ``bin/`` scripts are thin
shells over them.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import glob
import inspect
import logging
import math
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import tensorflow as tf

from bilm.data.dataset import BidirectionalLMDataset, LMDataset, read_lines
from bilm.data.sentences import SentenceDataset
from bilm.data.vocabulary import UnicodeCharsVocabulary, Vocabulary
from bilm.encoders import encoder_protocol, truncated_encoder
from bilm.evaluation import eval_max_tokens
from bilm.io.checkpoints import restore_first_intact
from bilm.io.files import DiskFullError, Progress, is_disk_full, output_error
from bilm.io.hdf5 import load_tf1_checkpoint, save_weights
from bilm.model.lm import LanguageModel, tf1_table, training_variables
from bilm.options import BiLMOptions, OptionsError, load_options, save_options
from bilm.training.distribute import (
    chief_value,
    is_chief,
    is_multi_worker,
    make_strategy,
    replica_device,
)
from bilm.training.optimizers import Adagrad, combine_rows, make_optimizer, map_gradient
from bilm.training.run_folder import LOG_FILE, RunError, RunState, TrainingRun, owned, writes_run

__all__ = [
    "Adagrad",
    "LoadedRun",
    "TrainingError",
    "TrainingInterrupted",
    "count_tokens",
    "dump_weights",
    "evaluate_run",
    "load_language_model",
    "load_options_latest_checkpoint",
    "load_run",
    "load_vocab",
    "resume_training",
    "start_training",
    "test",
    "train",
]

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT_MINUTES = 10.0  # a preempted or killed run loses at most this much


class TrainingError(RuntimeError):
    """Training stopped (e.g. a non-finite loss); the message says what is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal (Ctrl-C, SIGTERM, SIGHUP).

    ``checkpoint`` is the checkpoint saved before stopping, or None when a second signal
    stopped it at once; ``signum`` is the signal.
    """

    def __init__(self, signum: int, checkpoint: str | None, last_good: str | None = None,
                 ) -> None:
        self.signum, self.checkpoint = signum, checkpoint
        name = signal.Signals(signum).name
        if checkpoint:
            message = f"stopped by {name}; saved {checkpoint}"
        else:
            message = (f"stopped by {name} again, without saving; the last checkpoint is "
                       f"{last_good or '(none)'}")
        super().__init__(message)


def load_vocab(vocab_file: str, max_word_length: int | None = None) -> Vocabulary:
    """bilm-tf's helper: a char vocabulary when ``max_word_length`` is given."""
    if max_word_length:
        return UnicodeCharsVocabulary(vocab_file, max_word_length, validate_file=True)
    return Vocabulary(vocab_file, validate_file=True)


def count_corpus(filepattern: str, cache: dict[str, list[int]] | None = None,
                 ) -> tuple[int, int]:
    """(whitespace tokens, non-blank lines) of the files matching ``filepattern``.

    ``cache`` (e.g. a run's ``run.json``: never the corpus folder, which may be read-only or
    shared) maps each file, with its size and modification time, to its counts; it is read
    and updated. Invalid UTF-8 is counted as replacement characters, never an error. Lines
    end at "\\n" only, and are read in bounded memory, as training reads them
    (:func:`~bilm.data.dataset.read_lines`).
    """
    files = sorted(glob.glob(os.path.expanduser(filepattern)))
    if not files:
        raise FileNotFoundError(f"no training files match {filepattern!r}")
    cache = {} if cache is None else cache
    tokens = lines = 0
    for path in files:
        stat = os.stat(path)
        key = f"{os.path.abspath(path)}:{stat.st_size}:{int(stat.st_mtime)}"
        if not isinstance(cache.get(key), list):  # absent, or a bare count of an older run
            n_tokens = n_lines = counted = 0
            with open(path, "rb") as f:
                for lineno, text, _ in read_lines(f, errors="replace"):
                    n = len(text.split())
                    n_tokens += n
                    if n and counted != lineno:  # a long line's pieces count as one line
                        n_lines, counted = n_lines + 1, lineno
            cache[key] = [n_tokens, n_lines]
        tokens += cache[key][0]
        lines += cache[key][1]
    return tokens, lines


def count_tokens(filepattern: str, cache: dict[str, list[int]] | None = None) -> int:
    """Whitespace tokens in the files matching ``filepattern`` (see :func:`count_corpus`)."""
    return count_corpus(filepattern, cache)[0]


# What a collective raises when a peer worker died or stopped answering.
_CLUSTER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                   tf.errors.AbortedError, tf.errors.CancelledError, tf.errors.InternalError)


def _cause(error: BaseException) -> str:
    """The line of a TensorFlow error that says what happened (its message starts with
    "Graph execution error:" and the Python stack where the op was built)."""
    lines = [" ".join(line.split()) for line in str(error).splitlines()]
    telling = [line for line in lines if re.search(
        r"abort|unavailable|deadline|connect|socket|peer|heartbeat|task|worker", line, re.I)
        and not line.startswith(("Detected at node", "File ", "[["))]
    plain = [line for line in lines if line and not line.startswith(
        ("Graph execution error", "Detected at node", "File ", "[["))]
    return (telling or plain or [type(error).__name__])[0][:240]


def _any_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
    """Whether ``flag`` holds on any worker (a scalar all-reduce): decisions every worker
    must take together, such as saving on a clock."""
    value = strategy.run(lambda: tf.constant(1.0 if flag else 0.0))
    return float(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)) > 0


def _quiet_peer_watcher() -> None:
    """Keep TensorFlow's preemption watcher thread from printing a traceback at the end of a
    run. The thread blocks on the coordination service (hosted by the chief) until a peer is
    preempted; TensorFlow stops it only in the handler's ``__del__``, so when the chief exits
    first, another worker's thread gets UnavailableError and Python prints it. Once training
    is over (or the cluster is lost, which training reports itself) that is noise: logged at
    debug level instead. Other threads' errors are printed as before."""
    previous = threading.excepthook
    if getattr(previous, "_bilm_quiet", False):
        return

    def hook(args) -> None:
        thread = getattr(args.thread, "name", "") or ""
        if thread.startswith("PeerTerminationWatcher") and issubclass(
                args.exc_type, tf.errors.OpError):
            logger.debug("%s stopped: %s", thread, _cause(args.exc_value))
            return
        previous(args)

    hook._bilm_quiet = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def _preemption_handler(strategy: tf.distribute.Strategy, stop: _StopSignals,
                        save: Callable[[], str], folder: str):
    """TensorFlow's ``PreemptionCheckpointHandler`` over a cluster: when any worker gets
    SIGTERM, SIGHUP or Ctrl-C (our handler's flag, polled by TensorFlow's watcher), every
    worker saves at the same step, through ``save``, then raises TrainingInterrupted. Its
    own bookkeeping checkpoint lives in ``folder``, private and removed by the caller: the
    run's checkpoints are ours."""
    helper = tf.train.Checkpoint()
    _quiet_peer_watcher()

    def exit_after_save() -> None:
        raise TrainingInterrupted(stop.received or signal.SIGTERM, stop.last_saved)

    def save_fn() -> None:
        stop.last_saved = save()

    config = tf.distribute.experimental.TerminationConfig(
        termination_watcher_fn=lambda: stop.received is not None, exit_fn=exit_after_save,
        grace_period=0, save_fn=save_fn)
    return tf.distribute.experimental.PreemptionCheckpointHandler(
        strategy.cluster_resolver, tf.train.CheckpointManager(helper, folder, max_to_keep=1),
        termination_config=config)


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


def _trackable(states):
    """A state structure as tf.train.Checkpoint tracks it (lists, not tuples)."""
    if isinstance(states, (list, tuple)):
        return [_trackable(s) for s in states]
    return states


def _is_object_checkpoint(path: str) -> bool:
    """True for our tf.train.Checkpoint files, False for bilm-tf's name-based TF1 ones."""
    return any(n == "_CHECKPOINTABLE_OBJECT_GRAPH" for n, _ in tf.train.list_variables(path))


F = TypeVar("F", bound=Callable[..., Any])


def _owns_run(command: str) -> Callable[[F], F]:
    """Decorator: the function (which writes into the run folder named by its ``save_dir``
    or ``tf_save_dir`` argument) holds the folder's lock while it runs (:class:`RunLock`;
    one line naming the owner when another process has it)."""

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        name = "save_dir" if "save_dir" in signature.parameters else "tf_save_dir"

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with owned(signature.bind(*args, **kwargs).arguments[name], command):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _as_options(options: BiLMOptions | dict | str) -> BiLMOptions:
    if isinstance(options, BiLMOptions):
        return options
    if isinstance(options, dict):
        return BiLMOptions.from_dict(options)
    return load_options(options)


@dataclass
class _Trainer:
    """Model, optimizer, checkpoint and the compiled step, under one strategy."""

    options: BiLMOptions
    strategy: tf.distribute.Strategy
    seed: int = 0
    for_training: bool = True  # False (evaluation, export): no optimizer state, float32
    # Adagrad updates only the softmax (and word embedding) rows a batch touches: the dense
    # update's values without a vocabulary-sized gradient, all-reduce and update per step
    sparse_updates: bool = True

    # mixed_float16's dynamic loss scaling, as Keras' LossScaleOptimizer
    INITIAL_LOSS_SCALE = 2.0**15
    LOSS_SCALE_GROWTH_STEPS = 2000  # double the scale after this many finite steps
    MAX_SKIPPED_STEPS = 40  # consecutive overflow steps before training stops

    def __post_init__(self) -> None:
        opts = self.options
        self.n_replicas = self.strategy.num_replicas_in_sync
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
        self._names = list(self.variables)
        # sentence batches vary in length: one trace for every length
        self._train_step = tf.function(self._train_step_impl, reduce_retracing=True)
        self._all_finite = tf.function(self._all_finite_impl)

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
        variables = [self.variables[n] for n in self._names]
        clip = self.options.all_clip_norm_val
        unroll_steps = float(self.options.unroll_steps)
        bs = self.options.batch_size
        loss_scale = self.loss_scale.read_value() if self.loss_scaling else None

        def replica_fn(batch, states):
            ctx = tf.distribute.get_replica_context()
            if "lengths" in batch:
                # sentences (AllenNLP): the mean over the global batch's forward targets, so
                # that N replicas x b rows train as one replica x N*b rows
                n_local = tf.reduce_sum(tf.maximum(batch["lengths"] - 1, 0))
                n_global = ctx.all_reduce(tf.distribute.ReduceOp.SUM, n_local)
                scale = 1.0 / tf.cast(tf.maximum(n_global, 1), tf.float32)
            else:
                # bilm-tf differentiates loss * unroll_steps (a per-window sum over time),
                # averaged over replicas; Adagrad's step size depends on that scale.
                scale = unroll_steps / ctx.num_replicas_in_sync
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
                grads = [map_gradient(lambda t: t / loss_scale, g) for g in grads]
                finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(
                    g.values if isinstance(g, tf.IndexedSlices) else g)) for g in grads])
                # An overflow step is skipped: Adagrad with zero gradients changes nothing
                # (accumulator += 0, variable -= 0), with no control flow across replicas.
                grads = [map_gradient(lambda t: tf.where(finite, t, tf.zeros_like(t)), g)
                         for g in grads]
            if clip is None:
                norm = tf.linalg.global_norm(grads)
            else:
                grads, norm = tf.clip_by_global_norm(grads, clip)
            ctx.merge_call(lambda strategy, g: self.optimizer.apply(
                strategy, g, [v.value for v in variables], self._names, step,
                finite if loss_scale is not None else None), args=(grads,))
            return loss, norm, finals, finite

        loss, norm, finals, finite = self.strategy.run(replica_fn, args=(batch, states))
        self.step.assign_add(1)
        loss = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)
        norm = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, norm, axis=None)
        # every replica saw the same all-reduced gradients: one finite flag
        finite = self.strategy.experimental_local_results(finite)[0]
        if loss_scale is not None:
            self._update_loss_scale(finite)
        return loss, norm, finals, tf.logical_not(finite)

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
        return self._train_step(batch, states)

    # -- restore ------------------------------------------------------------------------------

    def restore(self, path: str, weights_only: bool = False) -> None:
        """Ours (tf.train.Checkpoint) or a bilm-tf TF1 checkpoint; ``weights_only`` skips the
        optimizer, step and LSTM states (evaluation, export).

        The carried LSTM states are restored when their shape matches this trainer's global
        batch; after a change of ``batch_size`` or of the number of replicas they start from
        zeros (said in one log line)."""
        if _is_object_checkpoint(path):
            shapes = dict(tf.train.list_variables(path))
            if weights_only:
                tf.train.Checkpoint(variables=dict(self.variables)).read(
                    path).expect_partial().assert_existing_objects_matched()
                logger.info("restored %s", path)
                return
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
            return
        slots = {}
        if isinstance(self.optimizer, Adagrad) and not weights_only:  # bilm-tf's slots
            slots = {id(v): self.optimizer.accumulators[n] for n, v in self.variables.items()}
        step = load_tf1_checkpoint(tf1_table(self.lm), path, slots)
        self.step.assign(step)
        logger.info("restored bilm-tf checkpoint %s (step %d)", path, step)

    def all_finite(self) -> bool:
        """Whether every weight (and Adagrad accumulator) is finite: checked before a
        checkpoint is saved, so that no saved checkpoint holds exploded weights."""
        return bool(self._all_finite())

    def _all_finite_impl(self) -> tf.Tensor:
        tensors = list(self.variables.values())
        if self.optimizer is not None:
            tensors += list(self.optimizer.slots().values())
        return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors])


def _scalar(tag: str, value: float) -> None:
    """A TensorBoard scalar without importing tensorboard (not a TensorFlow dependency)."""
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata.SerializeToString())


def _prefetch(it: Iterator[dict], size: int = 4) -> Iterator[dict]:
    """Produce batches in a background thread (tf.data) so input work overlaps compute.

    The first batch is read at once, here, so that unusable data is reported before a run
    writes anything. An exception raised later while reading (a damaged shard, say) is
    re-raised as it was: tf.data would wrap it in an ``[Op:IteratorGetNext]`` error that
    hides file and line. ``None`` entries (bilm-tf's ``tokens_characters`` of a word-input
    model) pass through.
    """
    first = next(it, None)
    if first is None:
        return iter(())
    return _prefetch_rest(first, it, size)


def _prefetch_rest(first: dict, it: Iterator[dict], size: int) -> Iterator[dict]:
    keys = [k for k, v in first.items() if v is not None]
    absent = dict.fromkeys(k for k, v in first.items() if v is None)
    # sentence batches vary in length: only the rank is fixed
    spec = {k: tf.TensorSpec([None] * first[k].ndim, tf.int32) for k in keys}
    errors: list[BaseException] = []

    def gen():
        try:
            yield {k: first[k] for k in keys}
            for batch in it:
                yield {k: batch[k] for k in keys}
        except Exception as e:  # handed to the consumer below
            errors.append(e)

    ds = tf.data.Dataset.from_generator(gen, output_signature=spec).prefetch(size)
    for batch in ds:
        yield {**{k: v.numpy() for k, v in batch.items()}, **absent}
    if errors:
        raise errors[0]


class _StopSignals:
    """SIGINT, SIGTERM and SIGHUP ask training to save and stop after the current batch; the
    same signal again stops it at once, without saving (:class:`TrainingInterrupted`).

    Our own handler rather than ``tf.distribute.experimental.PreemptionCheckpointHandler``:
    that one watches SIGTERM only, restores checkpoints itself on creation and exits the
    process after saving, while one process here must also honour Ctrl-C and SIGHUP, check
    the weights before saving and let the caller report what was saved.
    """

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self) -> None:
        self.received: int | None = None
        self.last_good: str | None = None
        self.last_saved: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for name in self.NAMES:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.received is None:
            self.received = signum
            logger.warning("%s received: saving a checkpoint after this batch, then stopping "
                           "(send it again to stop at once, without saving)",
                           signal.Signals(signum).name)
            return
        raise TrainingInterrupted(signum, None, self.last_good)


class _MetricsLog:
    """``training_log.csv``: one row per logging interval, continued across resumes (rows
    past the resumed step, from a run that went on without checkpointing, are dropped)."""

    FIELDS = ("batch", "train_perplexity", "gradient_norm", "tokens_per_second",
              "elapsed_seconds")

    def __init__(self, path: str, start: int, enabled: bool) -> None:
        self.path, self.enabled, self.elapsed0 = path, enabled, 0.0
        if not enabled:
            return
        rows = []
        if start > 0 and os.path.exists(path):
            with open(path, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if int(r["batch"]) <= start]
            if rows:
                self.elapsed0 = float(rows[-1]["elapsed_seconds"])
        try:
            with open(path, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, self.FIELDS)
                writer.writeheader()
                writer.writerows(rows)
        except OSError as e:
            raise output_error(path, e) from None

    def write(self, **row: float) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, self.FIELDS).writerow(
                    {k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
        except OSError as e:
            raise output_error(self.path, e) from None


def _check_data(options: BiLMOptions, data) -> None:
    """A stream of the encoder protocol's kind (ValueError otherwise)."""
    if encoder_protocol(options) == "sentences":
        if not isinstance(data, SentenceDataset):
            raise ValueError(f"a {options.encoder_type} biLM trains on sentences: give a "
                             "SentenceDataset")
    elif options.bidirectional != isinstance(data, BidirectionalLMDataset):
        raise ValueError("bidirectional options need a BidirectionalLMDataset (and a forward "
                         "LM an LMDataset)")


@_owns_run("bilm train")
def train(options: BiLMOptions | dict | str,
          data: BidirectionalLMDataset | LMDataset | SentenceDataset | Callable[[int], Any],
          n_gpus: int, tf_save_dir: str, tf_log_dir: str, restart_ckpt_file: str | None = None,
          *, seed: int | None = None, n_batches: int | None = None,
          checkpoint_every: int | None = None,
          checkpoint_minutes: float | None = DEFAULT_CHECKPOINT_MINUTES,
          log_every: int = 100, progress: bool = True, sparse_updates: bool = True,
          collective_timeout: float | None = None,
          restart_fallbacks: Sequence[str] = ()) -> str:
    """Train a biLM; returns the path of the final checkpoint.

    Args:
        options: options (training keys included); ``n_train_tokens`` defaults to the real
            token count of the training files.
        data: the training stream (bidirectional for a biLM), or a function of the run's
            seed that makes it (called once the seed is known: in a cluster, the chief's, so
            that every worker reads the same stream). Its vocabulary is copied into the run
            (``vocab.txt``), so later commands need not be given it.
        n_gpus: replicas (GPUs, or CPU devices when there is no GPU); ``batch_size`` is per
            replica.
        tf_save_dir: the run: options.json, run.json, checkpoints (the last 2),
            training_log.csv (see :mod:`bilm.training.run_folder`).
        tf_log_dir: TensorBoard scalars.
        restart_ckpt_file: resume from this checkpoint (ours or bilm-tf's): weights, Adagrad
            accumulators, step; ours also restores the LSTM states (unless the global batch
            changed) and, with the run's data history, the data position.
        seed: initial weights (it sets the Python, NumPy and TensorFlow global seeds),
            dropout and negative sampling; None picks one (logged, and recorded in run.json).
            In a cluster every worker uses the chief's. The data order has its own seed (the
            dataset's; a function given as ``data`` gets this one).
        n_batches: total batches to reach (default: n_epochs * n_train_tokens /
            (batch_size * unroll_steps * replicas)).
        checkpoint_every, checkpoint_minutes: save a checkpoint every this many batches
            and/or minutes (None: not by that measure), and always at the end and on
            SIGINT/SIGTERM/SIGHUP.
        log_every: batches between the entries of training_log.csv and TensorBoard.
        collective_timeout: in a cluster, seconds a gradient all-reduce waits for the other
            workers before failing (default
            :data:`bilm.training.distribute.DEFAULT_COLLECTIVE_TIMEOUT`).
        restart_fallbacks: older checkpoints to resume from, newest first, when
            ``restart_ckpt_file`` is damaged (each is verified by restoring it; a warning
            names the damaged one).
        sparse_updates: Adagrad updates only the softmax (and word-embedding) rows a batch
            touches (the same values as the dense update, see
            :mod:`bilm.training.optimizers`); False applies dense, vocabulary-sized gradients
            (for comparisons).

    Raises:
        TrainingError: a non-finite loss or weights (nothing non-finite is ever saved).
        TrainingInterrupted: a signal; its ``checkpoint`` says what was saved.
    """
    options = _as_options(options)
    if not callable(data):
        _check_data(options, data)
    strategy = make_strategy(n_gpus, collective_timeout)
    chief, multi_worker = is_chief(strategy), is_multi_worker(strategy)
    run = TrainingRun(tf_save_dir)
    recorded = run.read_state() if restart_ckpt_file else None
    state = recorded or RunState(seed=0)
    if seed is None:
        seed = recorded.seed if recorded else secrets.randbelow(2**31)
    if multi_worker:
        # Every worker draws as the chief does (weights, dropout, negatives, data order):
        # with the chief's seed, whatever each worker picked (an unseeded run) or was given.
        seed = chief_value(strategy, seed)
    state.seed = seed
    logger.log(logging.INFO if chief else logging.DEBUG, "seed %d", seed)
    if callable(data):  # the stream of this seed, built only now that it is agreed
        data = data(seed)
        _check_data(options, data)
    elif multi_worker and getattr(data, "seed", 0) is None:
        logger.warning("the training data has no seed: each worker reads its rows of its own "
                       "random stream; give the dataset a seed (or pass a function of the "
                       "seed as data)")
    n_lines = None
    if n_batches is None:
        n_tokens, n_lines = count_corpus(data.filepattern, state.token_counts)
        if n_tokens == 0:
            raise RunError(f"the files matching {data.filepattern!r} hold no tokens")
        if options.n_train_tokens is None:
            options = options.replace(n_train_tokens=n_tokens)
            logger.info("n_train_tokens = %d (counted from the training files)", n_tokens)
        else:  # the user's count: the sentences in proportion
            n_lines = max(round(n_lines * options.n_train_tokens / n_tokens), 1)

    trainer = _Trainer(options, strategy, seed, sparse_updates=sparse_updates)
    rows = options.batch_size * trainer.n_replicas
    tokens_per_batch = rows * options.unroll_steps  # streams; sentences: counted per batch
    if n_batches is None:
        if trainer.lm.protocol == "sentences":
            n_batches = max(int(options.n_epochs * n_lines / rows), 1)
        else:
            n_batches = int(options.n_epochs * options.n_train_tokens / tokens_per_batch)
    last_good = None
    if restart_ckpt_file:
        restart_ckpt_file = restore_first_intact(
            trainer.restore, [restart_ckpt_file, *restart_fallbacks], tf_save_dir)
        if not trainer.all_finite():
            raise TrainingError(f"{restart_ckpt_file} holds non-finite weights; resume from "
                                "an earlier checkpoint")
        last_good = restart_ckpt_file
    start = int(trainer.step.numpy())
    # Only our own checkpoints know the data position; bilm-tf's restart read afresh.
    ours = bool(restart_ckpt_file) and _is_object_checkpoint(restart_ckpt_file)
    history = state.history(start) if ours else []
    own = trainer.local_rows
    batches = _prefetch(data.iter_batches(rows, options.unroll_steps, history,
                                          rows=None if own == (0, rows) else own))
    state.continue_at(start, rows, options.unroll_steps)
    state.target_batches, state.data_seed = n_batches, getattr(data, "seed", None)
    # absolute, so that a resume started from another folder finds the files
    state.train_prefix = os.path.abspath(os.path.expanduser(data.filepattern))
    state.checkpoint_every, state.checkpoint_minutes = checkpoint_every, checkpoint_minutes
    # The run's files are written only now, after a successful restore: a resume that fails
    # leaves the run as it was.
    if chief:
        os.makedirs(tf_save_dir, exist_ok=True)
        run.remove_unfinished_checkpoints()
        if restart_ckpt_file and (restart_fallbacks or run.bookkeeping_problem()):
            # the list of checkpoints from what is on disk: the one resumed from is the
            # latest (a damaged newer one is replaced when its step is saved again)
            problem = run.bookkeeping_problem()
            if problem:
                logger.warning("%s; rebuilt it from the checkpoint files", problem)
            tf.compat.v1.train.update_checkpoint_state(
                tf_save_dir, restart_ckpt_file, all_model_checkpoint_paths=[restart_ckpt_file])
        save_options(options, run.options_file)
        if isinstance(data.vocab, Vocabulary):
            run.store_vocabulary(data.vocab, state)
        run.write_state(state)
    # Every worker saves (the variables' values are gathered collectively); only the chief
    # into the run, the others into a private folder removed at the end (TensorFlow's
    # documented pattern for MultiWorkerMirroredStrategy).
    ckpt_dir = tf_save_dir if chief else tempfile.mkdtemp(prefix="bilm-worker-")
    manager = tf.train.CheckpointManager(trainer.checkpoint, ckpt_dir, max_to_keep=2,
                                         checkpoint_name="model")
    metrics = _MetricsLog(run.path(LOG_FILE), start, chief)
    writer = (tf.summary.create_file_writer(tf_log_dir) if chief
              else tf.summary.create_noop_writer())
    if start >= n_batches:
        logger.info("already at batch %d of %d: nothing to train", start, n_batches)
        if not chief:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        return restart_ckpt_file or manager.latest_checkpoint

    states = trainer.distributed_states()

    saved: dict[int, str] = {}

    def save(done: int) -> str:
        if done in saved:
            return saved[done]
        trainer.store_states(states)
        if not trainer.all_finite():
            raise TrainingError(
                f"the weights became non-finite (NaN/inf) by batch {done}; not saved. The last "
                f"good checkpoint is {last_good or '(none)'}; resume from it with a lower "
                "learning_rate or all_clip_norm_val.")
        try:
            manager.save(checkpoint_number=done)
            saved[done] = os.path.join(tf_save_dir, f"model-{done}")  # the chief's
            return saved[done]
        except tf.errors.OpError as e:
            if not is_disk_full(e):
                raise
            run.remove_unfinished_checkpoints()
            raise DiskFullError(tf_save_dir, f"while saving checkpoint model-{done}; the "
                                f"last complete one is {last_good or '(none)'}") from None

    bar = Progress("train", total=n_batches, initial=start, unit="batches", enabled=progress)
    t0 = time.perf_counter()
    last_save = t0
    window_start, window_loss, window_n, window_tokens = t0, 0.0, 0, 0
    n_skipped = 0  # consecutive mixed_float16 overflow steps
    done = start
    with _StopSignals() as stop, writer.as_default():
        stop.last_good = last_good
        # several workers stop together, at a step they agree on (TensorFlow's handler)
        private = [ckpt_dir] if not chief else []  # removed at the end, whatever happens
        preemption = None
        try:
            if multi_worker:
                private.append(tempfile.mkdtemp(prefix="bilm-preemption-"))
                preemption = _preemption_handler(strategy, stop, lambda: save(done),
                                                 private[-1])
            for step in range(start, n_batches):
                batch = next(batches, None)
                if batch is None:
                    logger.info("training data exhausted after %d batches", step)
                    break
                loss, norm, states, skipped = trainer.train_step(
                    trainer.distribute_batch(batch), states)
                loss = float(loss)
                done = step + 1
                if bool(skipped):  # gradients overflowed in float16: skipped, scale halved
                    n_skipped += 1
                    logger.debug("batch %d: gradients overflowed, step skipped (loss scale %g)",
                                 done, float(trainer.loss_scale.numpy()))
                    if n_skipped >= trainer.MAX_SKIPPED_STEPS:
                        raise TrainingError(
                            f"{n_skipped} consecutive batches up to {done} overflowed in "
                            f"float16 (loss {loss}); stopped without saving. The last good "
                            f"checkpoint is {last_good or '(none)'}. Try precision float32 or "
                            "mixed_bfloat16.")
                else:
                    n_skipped = 0
                    if not math.isfinite(loss):
                        raise TrainingError(
                            f"loss became {loss} at batch {done}; stopped without saving. The "
                            f"last good checkpoint is {last_good or '(none)'}. Try a lower "
                            "learning_rate or all_clip_norm_val.")
                    window_loss, window_n = window_loss + loss, window_n + 1
                # tokens/s counts one direction's targets (bilm-tf's batch_size * unroll_steps);
                # sentences: this worker's rows' targets, scaled to the global batch (estimate)
                window_tokens += (tokens_per_batch if "lengths" not in batch else
                                  rows / (own[1] - own[0])
                                  * int(np.maximum(batch["lengths"] - 1, 0).sum()))
                bar.update()
                now = time.perf_counter()
                if done == start + 1:  # the first batch includes compilation: not timed
                    window_start, window_tokens = now, 0
                if done % log_every == 0 or done == n_batches:
                    rate = window_tokens / max(now - window_start, 1e-9)
                    ppl = math.exp(window_loss / window_n) if window_n else float("nan")
                    bar.set_postfix(f"perplexity {ppl:.1f}, {rate:,.0f} tokens/s")
                    metrics.write(batch=done, train_perplexity=ppl, gradient_norm=float(norm),
                                  tokens_per_second=rate,
                                  elapsed_seconds=metrics.elapsed0 + now - t0)
                    tf.summary.experimental.set_step(done)
                    _scalar("train_perplexity", ppl)
                    _scalar("gradient_norm", float(norm))
                    _scalar("tokens_per_second", rate)
                    window_start, window_loss, window_n, window_tokens = now, 0.0, 0, 0
                if preemption is not None:
                    preemption.save_checkpoint_if_preempted()  # raises after saving
                elif stop.received is not None:
                    path = save(done)
                    raise TrainingInterrupted(stop.received, path)
                due = bool(checkpoint_minutes and now - last_save >= 60 * checkpoint_minutes)
                if checkpoint_minutes and multi_worker:  # clocks differ: any worker's is due
                    due = _any_worker(strategy, due)
                if due or (checkpoint_every and done % checkpoint_every == 0):
                    last_good = stop.last_good = save(done)
                    last_save = time.perf_counter()
        except tf.errors.OpError as e:
            if multi_worker and isinstance(e, _CLUSTER_ERRORS):
                raise TrainingError(
                    f"the cluster lost a worker at batch {done + 1} ({_cause(e)}); "
                    f"stopped. The last checkpoint is {last_good or '(none)'}; relaunch every "
                    "worker (bilm resume) to continue from it.") from None
            raise
        finally:
            bar.close()
            writer.flush()
            for folder in private:
                shutil.rmtree(folder, ignore_errors=True)
    if getattr(data, "n_skipped_lines", 0):
        logger.warning("%d lines of the training files were not valid UTF-8 and were skipped",
                       data.n_skipped_lines)
    if getattr(data, "n_split_lines", 0):
        logger.warning("%d line(s) of the training files were longer than a sentence may be "
                       "and were split into pieces", data.n_split_lines)
    return save(done)


# -- trained runs: loading, evaluation, export -------------------------------------------------

def load_language_model(options: BiLMOptions | dict | str, ckpt_file: str) -> LanguageModel:
    """The :class:`~bilm.model.lm.LanguageModel` of a checkpoint (ours or bilm-tf's), weights only,
    float32, on the first GPU or else the CPU (for evaluation, scoring and export)."""
    return _load_first_intact(options, [ckpt_file])[0]


def _load_first_intact(options: BiLMOptions | dict | str, candidates: Sequence[str],
                       where: str | None = None) -> tuple[LanguageModel, str]:
    """(language model, checkpoint) of the first of ``candidates`` (newest first) that
    restores (:func:`bilm.io.checkpoints.restore_first_intact`)."""
    options = _as_options(options)
    trainer = _Trainer(options, tf.distribute.OneDeviceStrategy(replica_device()),
                       for_training=False)
    path = restore_first_intact(functools.partial(trainer.restore, weights_only=True),
                                candidates, where)
    return trainer.lm, path


def _run_checkpoints(run: TrainingRun) -> list[str]:
    """The run's checkpoints, newest first (RunError when there is none)."""
    candidates = run.checkpoints()
    problem = run.bookkeeping_problem()
    if problem:
        logger.warning("%s; found %d checkpoint(s) by their files", problem, len(candidates))
    if not candidates:
        raise RunError(f"no checkpoint in {run.save_dir}; run bilm train first")
    return candidates


@dataclass
class LoadedRun:
    """A trained run, ready to use: its options, checkpoint, vocabulary and language model."""

    save_dir: str
    options: BiLMOptions
    checkpoint: str
    vocab_file: str
    vocab: Vocabulary
    lm: LanguageModel


def load_run(save_dir: str, vocab_file: str | None = None,
             checkpoint: str | None = None) -> LoadedRun:
    """Load a training directory (ours or bilm-tf's) for evaluation, scoring or export.

    ``vocab_file`` defaults to the run's own copy; one given is checked against the run
    (its size must equal ``n_tokens_vocab``; its words, the recorded ones). ``checkpoint``
    defaults to the latest. Raises :class:`~bilm.training.run_folder.RunError` for a directory
    that is not a run or a vocabulary that does not match.
    """
    run = TrainingRun(save_dir)
    run.check()
    options = load_options(run.options_file)
    candidates = [checkpoint] if checkpoint is not None else _run_checkpoints(run)
    vocab_file = run.vocabulary_file(vocab_file, options.n_tokens_vocab, run.read_state())
    max_chars = options.char_cnn.max_characters_per_token if options.char_cnn else None
    vocab = load_vocab(vocab_file, max_chars)
    lm, checkpoint = _load_first_intact(options, candidates, save_dir)
    return LoadedRun(save_dir, options, checkpoint, vocab_file, vocab, lm)


def load_options_latest_checkpoint(tf_save_dir: str) -> tuple[BiLMOptions, str]:
    """(options, latest checkpoint path) of a training directory (ours or bilm-tf's)."""
    options = load_options(os.path.join(tf_save_dir, "options.json"))
    found = TrainingRun(tf_save_dir).checkpoints()
    if not found:
        raise FileNotFoundError(f"no checkpoint in {tf_save_dir}")
    return options, found[0]


def _perplexity(lm: LanguageModel, data: BidirectionalLMDataset | LMDataset,
                batch_size: int, progress: bool) -> float:
    """bilm-tf's held-out perplexity: unroll_steps 1, LSTM states carried, full softmax,
    exp of the mean batch loss (the mean of both directions for a biLM)."""

    @tf.function
    def eval_step(batch, states):
        return lm(batch, states, training=False)

    states = lm.zero_states(batch_size)
    losses = []
    with Progress("evaluate", unit="batches", enabled=progress) as bar:
        for batch in data.iter_batches(batch_size, 1):
            batch = {k: tf.constant(v) for k, v in batch.items() if v is not None}
            loss, states = eval_step(batch, states)
            losses.append(float(loss))
            bar.update()
    if not losses:
        raise RunError(f"the held-out text is smaller than one batch of {batch_size} rows; "
                       "lower the batch size")
    perplexity = math.exp(float(np.mean(losses)))
    logger.info("held-out perplexity %.2f over %d batches", perplexity, len(losses))
    return perplexity


def _sentence_perplexity(lm: LanguageModel, data: SentenceDataset, batch_size: int,
                         progress: bool, max_tokens: int | None = None) -> float:
    """AllenNLP's formula for held-out perplexity, over each sentence's own targets (not
    AllenNLP's padded-batch figure, see docs/transformer.md): each sentence scored whole,
    full softmax, exp(1/2 (NLL_forward + NLL_backward) / N) over the N forward targets. A
    batch holds at most ``batch_size`` sentences and ``max_tokens`` rows x steps (default:
    :func:`~bilm.evaluation.eval_max_tokens`); the result does not depend on the batching (to
    float rounding)."""

    @tf.function(reduce_retracing=True)
    def logprobs(batch):
        return tf.reduce_sum(lm.sentence_logprobs(batch), axis=1)  # shape (d,)

    if max_tokens is None:
        max_tokens = eval_max_tokens(batch_size, lm.options.n_tokens_vocab or 1)
    total, n_targets = np.zeros(lm.n_directions), 0
    with Progress("evaluate", unit="batches", enabled=progress) as bar:
        for batch in data.iter_batches(batch_size, max_tokens=max_tokens):
            n_targets += int(np.maximum(batch["lengths"] - 1, 0).sum())
            total += logprobs({k: tf.constant(v) for k, v in batch.items()
                               if v is not None}).numpy()
            bar.update()
    if not n_targets:
        raise RunError(f"the held-out files matching {data.filepattern!r} hold no sentence")
    perplexity = math.exp(-float(total.mean()) / n_targets)
    logger.info("held-out perplexity %.2f over %d targets", perplexity, n_targets)
    return perplexity


def _evaluate(lm: LanguageModel, options: BiLMOptions, data, batch_size: int,
              progress: bool, max_tokens: int | None = None) -> float:
    if lm.protocol == "sentences":
        return _sentence_perplexity(lm, data, batch_size, progress, max_tokens)
    return _perplexity(lm, data, batch_size, progress)


def test(options: BiLMOptions | dict | str, ckpt_file: str,
         data: BidirectionalLMDataset | LMDataset | SentenceDataset, batch_size: int = 256,
         progress: bool = True, max_tokens: int | None = None) -> float:
    """Held-out perplexity (bilm-tf's ``test``), by the encoder's protocol: bilm-tf's for
    the LSTM (unroll_steps 1, states carried across batches, full softmax; ``data`` an
    LMDataset), AllenNLP's for the transformer (sentences whole; ``data`` a test-mode
    SentenceDataset, in batches of at most ``batch_size`` sentences and ``max_tokens`` rows x
    steps, default :func:`~bilm.evaluation.eval_max_tokens`)."""
    options = _as_options(options).replace(batch_size=batch_size, unroll_steps=1)
    return _evaluate(load_language_model(options, ckpt_file), options, data, batch_size,
                     progress, max_tokens)


def evaluate_run(save_dir: str, test_prefix: str, vocab_file: str | None = None,
                 batch_size: int = 256, progress: bool = True,
                 max_tokens: int | None = None) -> float:
    """Held-out perplexity of a run's latest checkpoint on the files matching
    ``test_prefix`` (bilm-tf's ``run_test.py``), by the encoder's protocol (see
    :func:`test`)."""
    loaded = load_run(save_dir, vocab_file)
    data = _dataset(loaded.options, test_prefix, loaded.vocab, None, test=True)
    return _evaluate(loaded.lm, loaded.options, data, batch_size, progress, max_tokens)


def dump_weights(tf_save_dir: str, outfile: str, ckpt_file: str | None = None,
                 n_layers: int | None = None, overwrite: bool = True) -> None:
    """Latest checkpoint of ``tf_save_dir`` -> HDF5 weights in bilm-tf's layout (no softmax),
    with an ``options.json`` fit for inference (``n_characters`` 262) written beside
    ``outfile``.

    ``n_layers`` keeps the token layer and the first ``n_layers`` contextual layers (the
    "reduced ELMo"): their weights and values are the full model's (a Transformer's then lacks
    the top layer's normalization, which only the full model's top layer had).
    ``overwrite=False`` replaces neither file if it exists, not even one that another
    process wrote meanwhile (:class:`~bilm.io.files.OutputExistsError`).
    """
    from bilm.io.hdf5 import weight_table
    from bilm.model.encoder import BiLMEncoder

    options = load_options(os.path.join(tf_save_dir, "options.json"))
    candidates = ([ckpt_file] if ckpt_file is not None
                  else _run_checkpoints(TrainingRun(tf_save_dir)))
    lm, ckpt_file = _load_first_intact(options, candidates, tf_save_dir)
    encoder = lm.encoder
    inference = options
    if options.char_cnn is not None:
        inference = inference.replace(char_cnn=dataclasses.replace(options.char_cnn,
                                                                   n_characters=262))
    if n_layers is not None and n_layers != options.n_layers:
        if not 1 <= n_layers <= options.n_layers:
            raise ValueError(f"n_layers must be in [1, {options.n_layers}], got {n_layers}")
        inference = inference.replace(encoder=truncated_encoder(options, n_layers))
        full = {e.h5_key: e for e in weight_table(encoder)}
        reduced = BiLMEncoder(inference, n_word_vocab=options.n_tokens_vocab)
        for entry in weight_table(reduced):
            entry.set(full[entry.h5_key].get())
        encoder = reduced
    save_weights(encoder, outfile, overwrite=overwrite)
    save_options(inference, os.path.join(os.path.dirname(os.path.abspath(outfile)),
                                         "options.json"), overwrite=overwrite)


# -- runs: start and resume (the command line and bin/ scripts call these) ---------------------

def _dataset(options: BiLMOptions, prefix: str, vocab: Vocabulary, seed: int | None,
             test: bool = False) -> BidirectionalLMDataset | LMDataset | SentenceDataset:
    """The encoder protocol's data: packed streams (LSTM) or sentences (transformer)."""
    if encoder_protocol(options) == "sentences":
        return SentenceDataset(prefix, vocab, test=test, shuffle_on_load=not test, seed=seed,
                               max_length=options.max_sentence_length)
    cls = BidirectionalLMDataset if options.bidirectional else LMDataset
    return cls(prefix, vocab, test=test, shuffle_on_load=not test, seed=seed)


@_owns_run("bilm train")  # before anything is written into the folder
def start_training(save_dir: str, options: BiLMOptions | dict | str, train_prefix: str,
                   vocab_file: str, *, n_gpus: int = 1, seed: int | None = None,
                   n_batches: int | None = None, overwrite: bool = False,
                   checkpoint_every: int | None = None,
                   checkpoint_minutes: float | None = DEFAULT_CHECKPOINT_MINUTES,
                   progress: bool = True, collective_timeout: float | None = None) -> str:
    """Start a new training run in ``save_dir`` (``bilm train``, ``train_elmo.py``).

    ``options`` get ``n_tokens_vocab`` from the vocabulary. ``seed`` (None: picked, logged
    and recorded) seeds the weights, dropout, negative sampling and the data order, so the
    same seed gives the same run. A directory holding a run with checkpoints is refused
    unless ``overwrite``; the files of an earlier run (or of a start that stopped before its
    first checkpoint) are removed first, never other files. Returns the final checkpoint.
    """
    run = TrainingRun(save_dir)
    chief = writes_run()  # a cluster's other workers write nothing into the folder
    if chief:
        run.check_new(overwrite)
    options = _as_options(options)
    max_chars = options.char_cnn.max_characters_per_token if options.char_cnn else None
    vocab = load_vocab(vocab_file, max_chars)
    try:
        options = options.replace(n_tokens_vocab=vocab.size)
    except OptionsError as e:
        raise OptionsError(f"{e} (n_tokens_vocab is the size of the vocabulary {vocab_file})"
                           ) from None
    if chief:
        # an earlier run's files (or those of a start that stopped before its first
        # checkpoint); the user's own files were refused above unless overwrite
        run.clear()
    # The data order follows the run's seed, which train() settles (None: picked there; in a
    # cluster, the chief's on every worker) before it builds the stream.
    data = functools.partial(_dataset, options, train_prefix, vocab)
    return train(options, data, n_gpus, save_dir, save_dir, seed=seed, n_batches=n_batches,
                 checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes,
                 progress=progress, collective_timeout=collective_timeout)


AS_RECORDED: Any = object()  # resume_training's default: the run's recorded setting

# options a resume may change (the network's shape may not change)
RESUME_KEYS = ("batch_size", "n_epochs", "n_train_tokens", "learning_rate", "dropout",
               "precision", "jit_compile", "unroll_steps", "all_clip_norm_val")


@_owns_run("bilm resume")
def resume_training(save_dir: str, *, train_prefix: str | None = None,
                    vocab_file: str | None = None, n_gpus: int = 1,
                    n_batches: int | None = None, changes: dict[str, Any] | None = None,
                    checkpoint_every: Any = AS_RECORDED, checkpoint_minutes: Any = AS_RECORDED,
                    progress: bool = True, collective_timeout: float | None = None) -> str:
    """Continue a run from its latest checkpoint (``bilm resume``, ``restart.py``).

    By default the run goes on to the length it was started with, on the same data and
    vocabulary, with the same seeds, so that training N then resuming to N + M equals
    training N + M. ``changes`` overrides training options (:data:`RESUME_KEYS`; a new
    ``batch_size`` restarts the carried LSTM states); ``n_batches`` sets a new total; the
    checkpoint interval stays as recorded unless given. Options are rewritten only after
    the checkpoint restored. ``checkpoint_every``/``checkpoint_minutes`` default to the
    run's recorded interval. Returns the final checkpoint.
    """
    run = TrainingRun(save_dir)
    run.check()
    options = load_options(run.options_file)
    state = run.read_state()
    ckpt, *fallbacks = _run_checkpoints(run)
    changes = dict(changes or {})
    unknown = sorted(set(changes) - set(RESUME_KEYS))
    if unknown:
        raise RunError(f"a resume cannot change {', '.join(unknown)} (only "
                       f"{', '.join(RESUME_KEYS)})")
    if changes:
        options = options.replace(**changes)
    if train_prefix is None:
        if state is None or not state.train_prefix:
            raise RunError(f"{save_dir} does not record its training files (a bilm-tf run); "
                           "pass --train-prefix")
        train_prefix = state.train_prefix
        if not glob.glob(train_prefix):
            raise RunError(f"the training files recorded in {run.path('run.json')} "
                           f"({train_prefix}) match nothing now; pass --train-prefix to say "
                           "where they are")
    vocab_file = run.vocabulary_file(vocab_file, options.n_tokens_vocab, state)
    max_chars = options.char_cnn.max_characters_per_token if options.char_cnn else None
    vocab = load_vocab(vocab_file, max_chars)
    if n_batches is None and state is not None and not {"n_epochs", "n_train_tokens"} & set(
            changes):
        n_batches = state.target_batches
        if n_batches is not None and {"batch_size", "unroll_steps"} & set(changes):
            n_batches = None  # recomputed from n_epochs for the new batch geometry
    if checkpoint_every is AS_RECORDED and checkpoint_minutes is AS_RECORDED:
        if state is not None:
            checkpoint_every, checkpoint_minutes = (state.checkpoint_every,
                                                    state.checkpoint_minutes)
        else:
            checkpoint_every, checkpoint_minutes = None, DEFAULT_CHECKPOINT_MINUTES
    elif checkpoint_every is AS_RECORDED:
        checkpoint_every = None
    elif checkpoint_minutes is AS_RECORDED:
        checkpoint_minutes = None
    seed = state.seed if state is not None else None
    data_seed = state.data_seed if state is not None else None
    data = _dataset(options, train_prefix, vocab, data_seed)
    return train(options, data, n_gpus, save_dir, save_dir, restart_ckpt_file=ckpt, seed=seed,
                 n_batches=n_batches, checkpoint_every=checkpoint_every,
                 checkpoint_minutes=checkpoint_minutes, progress=progress,
                 collective_timeout=collective_timeout, restart_fallbacks=fallbacks)
