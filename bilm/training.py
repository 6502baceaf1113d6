"""Training, evaluation and export of a biLM (bilm-tf's ``training.py``, on tf.distribute).

``train`` runs the one encoder (plus softmax) under ``MirroredStrategy`` over ``n_gpus`` devices
(CPU when there is no GPU; ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names a cluster).
Each step is deterministic given ``seed`` and the step number (stateless dropout and negative
sampling), the LSTM states and the data position are checkpointed, so a resumed run continues
exactly where it stopped.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from bilm._io import Progress, atomic_path
from bilm.data.dataset import BidirectionalLMDataset, LMDataset
from bilm.data.vocabulary import UnicodeCharsVocabulary, Vocabulary
from bilm.lm import LanguageModel
from bilm.options import BiLMOptions, load_options, save_options
from bilm.weights import WeightFileError, load_tf1_checkpoint, save_weights, training_variables

__all__ = [
    "Adagrad",
    "TrainingError",
    "count_tokens",
    "dump_weights",
    "load_options_latest_checkpoint",
    "load_vocab",
    "test",
    "train",
]

logger = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training stopped (e.g. a non-finite loss); the message says what is kept."""


def load_vocab(vocab_file: str, max_word_length: int | None = None) -> Vocabulary:
    """bilm-tf's helper: a char vocabulary when ``max_word_length`` is given."""
    if max_word_length:
        return UnicodeCharsVocabulary(vocab_file, max_word_length, validate_file=True)
    return Vocabulary(vocab_file, validate_file=True)


def count_tokens(filepattern: str) -> int:
    """Whitespace tokens in the files matching ``filepattern`` (cached beside them, keyed on
    each file's size and modification time)."""
    files = sorted(glob.glob(os.path.expanduser(filepattern)))
    if not files:
        raise FileNotFoundError(f"no training files match {filepattern!r}")
    total = 0
    for path in files:
        stat = os.stat(path)
        cache = os.path.join(os.path.dirname(path), ".bilm_token_counts.json")
        key = f"{os.path.basename(path)}:{stat.st_size}:{int(stat.st_mtime)}"
        try:
            with open(cache) as f:
                counts = json.load(f)
        except (OSError, ValueError):
            counts = {}
        if key not in counts:
            with open(path, encoding="utf-8") as f:
                counts[key] = sum(len(line.split()) for line in f)
            try:
                with atomic_path(cache) as tmp, open(tmp, "w") as f:
                    json.dump(counts, f)
            except OSError:  # a read-only corpus: count again next time
                pass
        total += counts[key]
    return total


class Adagrad(tf.Module):
    """TF1's Adagrad (``accum += g^2; var -= lr * g / sqrt(accum)``), accumulators starting at
    ``initial_accumulator_value``; applied in cross-replica context to every device's copy."""

    def __init__(self, variables: dict[str, object], learning_rate: float,
                 initial_accumulator_value: float = 1.0) -> None:
        super().__init__(name="Adagrad")
        self.learning_rate = learning_rate
        self.accumulators = {
            name: tf.Variable(tf.fill(var.shape, initial_accumulator_value), trainable=False,
                              name=name.replace("/", "_") + "_Adagrad")
            for name, var in variables.items()
        }

    def apply(self, strategy: tf.distribute.Strategy, grads: list, variables: list,
              accumulators: list) -> None:
        lr = self.learning_rate

        def update(var, grad, acc):
            new_acc = acc.assign_add(tf.square(grad))
            return var.assign_sub(lr * grad * tf.math.rsqrt(new_acc))

        for g, v, a in zip(grads, variables, accumulators):
            strategy.extended.update(v, update, args=(g, a))


def _make_strategy(n_gpus: int) -> tf.distribute.Strategy:
    if os.environ.get("TF_CONFIG") and json.loads(os.environ["TF_CONFIG"]).get("cluster"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus if gpus else tf.config.list_logical_devices("CPU")
    if n_gpus > len(devices):
        raise ValueError(f"n_gpus={n_gpus} but only {len(devices)} "
                         f"{'GPU' if gpus else 'CPU'} device(s) are visible")
    if n_gpus <= 1:
        return tf.distribute.OneDeviceStrategy(devices[0].name)
    return tf.distribute.MirroredStrategy([d.name for d in devices[:n_gpus]])


def _is_object_checkpoint(path: str) -> bool:
    """True for our tf.train.Checkpoint files, False for bilm-tf's name-based TF1 ones."""
    return any(n == "_CHECKPOINTABLE_OBJECT_GRAPH" for n, _ in tf.train.list_variables(path))


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
            self.optimizer = (Adagrad(self.variables, opts.learning_rate)
                              if self.for_training else None)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            if self.loss_scaling:
                self.loss_scale = tf.Variable(self.INITIAL_LOSS_SCALE, dtype=tf.float32,
                                              trainable=False, name="loss_scale")
                self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                              name="loss_scale_good_steps")
        rows = opts.batch_size * self.n_replicas
        self.state_vars = [
            (tf.Variable(tf.zeros([c.shape[0], rows, c.shape[2]]), trainable=False),
             tf.Variable(tf.zeros([h.shape[0], rows, h.shape[2]]), trainable=False))
            for c, h in self.lm.zero_states(1)
        ]
        self.checkpoint = tf.train.Checkpoint(
            variables=dict(self.variables), global_step=self.step,
            lstm_states=[list(s) for s in self.state_vars])
        if self.optimizer is not None:
            self.checkpoint.optimizer = dict(self.optimizer.accumulators)
        if self.loss_scaling:  # saved, so that a resumed run scales as the first would have
            self.checkpoint.loss_scale = {"scale": self.loss_scale,
                                          "good_steps": self.good_steps}
        self._names = list(self.variables)
        self._train_step = tf.function(self._train_step_impl)

    # -- states -------------------------------------------------------------------------------

    def distributed_states(self):
        """The checkpointed LSTM states, split to the replicas (rows in replica order)."""
        bs = self.options.batch_size

        def value_fn(ctx):
            i = ctx.replica_id_in_sync_group
            return [(c[:, i * bs : (i + 1) * bs], h[:, i * bs : (i + 1) * bs])
                    for c, h in self.state_vars]

        return self.strategy.experimental_distribute_values_from_function(value_fn)

    def store_states(self, states) -> None:
        local = self.strategy.experimental_local_results(states)
        for k, (c_var, h_var) in enumerate(self.state_vars):
            c_var.assign(tf.concat([r[k][0] for r in local], axis=1))
            h_var.assign(tf.concat([r[k][1] for r in local], axis=1))

    def distribute_batch(self, batch: dict[str, np.ndarray]):
        bs = self.options.batch_size
        batch = {k: tf.constant(v) for k, v in batch.items()}

        def value_fn(ctx):
            i = ctx.replica_id_in_sync_group
            return {k: v[i * bs : (i + 1) * bs] for k, v in batch.items()}

        return self.strategy.experimental_distribute_values_from_function(value_fn)

    # -- the step -----------------------------------------------------------------------------

    def _train_step_impl(self, batch, states):
        # Same seed on every replica: negatives are shared, as in a one-replica step.
        seed = tf.stack([tf.constant(self.seed, tf.int64), self.step])
        variables = [self.variables[n] for n in self._names]
        accumulators = [self.optimizer.accumulators[n] for n in self._names]
        clip = self.options.all_clip_norm_val
        unroll_steps = float(self.options.unroll_steps)
        loss_scale = self.loss_scale.read_value() if self.loss_scaling else None

        def replica_fn(batch, states):
            ctx = tf.distribute.get_replica_context()
            # bilm-tf differentiates loss * unroll_steps (a per-window sum over time),
            # averaged over replicas; Adagrad's step size depends on that scale.
            scale = unroll_steps / ctx.num_replicas_in_sync
            if loss_scale is not None:
                scale = scale * loss_scale
            loss, finals, grads = self.lm.train_gradients(batch, states, seed, variables,
                                                          scale=scale)
            grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)  # float32
            finite = tf.constant(True)
            if loss_scale is not None:
                grads = [g / loss_scale for g in grads]
                finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
                # An overflow step is skipped: Adagrad with zero gradients changes nothing
                # (accumulator += 0, variable -= 0), with no control flow across replicas.
                grads = [tf.where(finite, g, tf.zeros_like(g)) for g in grads]
            grads, norm = tf.clip_by_global_norm(grads, clip)
            ctx.merge_call(lambda strategy, g: self.optimizer.apply(
                strategy, g, [v.value for v in variables],
                [a for a in accumulators]), args=(grads,))
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
        optimizer, step and LSTM states (evaluation, export)."""
        if _is_object_checkpoint(path):
            if weights_only:
                tf.train.Checkpoint(variables=dict(self.variables)).read(
                    path).expect_partial().assert_existing_objects_matched()
            else:
                checkpoint = self.checkpoint
                if self.loss_scaling and not any(
                        n.startswith("loss_scale/") for n, _ in tf.train.list_variables(path)):
                    # from a float32/bfloat16 run: the loss scale starts afresh
                    checkpoint = tf.train.Checkpoint(**{
                        k: getattr(self.checkpoint, k) for k in
                        ("variables", "global_step", "lstm_states", "optimizer")})
                checkpoint.read(path).assert_existing_objects_matched()
            logger.info("restored %s%s", path, "" if weights_only else
                        f" (step {int(self.step.numpy())})")
            return
        slots = {}
        if self.optimizer is not None and not weights_only:
            slots = {id(v): self.optimizer.accumulators[n] for n, v in self.variables.items()}
        step = load_tf1_checkpoint(self.lm, path, slots)
        self.step.assign(step)
        logger.info("restored bilm-tf checkpoint %s (step %d)", path, step)


def _scalar(tag: str, value: float) -> None:
    """A TensorBoard scalar without importing tensorboard (not a TensorFlow dependency)."""
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata.SerializeToString())


def _global_batches(data, options: BiLMOptions, n_replicas: int, skip: int) -> Iterator[dict]:
    it = data.iter_batches(options.batch_size * n_replicas, options.unroll_steps)
    for _ in range(skip):  # resume: the same stream, fast-forwarded
        next(it, None)
    yield from it


def _prefetch(it: Iterator[dict], size: int = 4) -> Iterator[dict]:
    """Produce batches in a background thread (tf.data) so input work overlaps compute."""
    first = next(it, None)
    if first is None:
        return
    spec = {k: tf.TensorSpec(v.shape, tf.int32) for k, v in first.items()}

    def gen():
        yield first
        yield from it

    ds = tf.data.Dataset.from_generator(gen, output_signature=spec).prefetch(size)
    for batch in ds:
        yield {k: v.numpy() for k, v in batch.items()}


def train(options: BiLMOptions | dict | str, data: BidirectionalLMDataset | LMDataset,
          n_gpus: int, tf_save_dir: str, tf_log_dir: str, restart_ckpt_file: str | None = None,
          *, seed: int = 0, n_batches: int | None = None, checkpoint_every: int = 1250,
          log_every: int = 100, progress: bool = True) -> str:
    """Train a biLM; returns the path of the final checkpoint.

    Args:
        options: options (training keys included); ``n_train_tokens`` defaults to the real
            token count of the training files.
        data: the training stream (bidirectional for a biLM).
        n_gpus: replicas (GPUs, or CPU devices when there is no GPU); ``batch_size`` is per
            replica.
        tf_save_dir: options.json and checkpoints (the last 2 kept).
        tf_log_dir: TensorBoard scalars.
        restart_ckpt_file: resume from this checkpoint (ours or bilm-tf's): weights, Adagrad
            accumulators, step; ours also restores LSTM states and the data position.
        seed: initial weights (it sets the Python, NumPy and TensorFlow global seeds), dropout
            and negative sampling; the data order has its own seed (the dataset's).
        n_batches: total batches to reach (default: n_epochs * n_train_tokens /
            (batch_size * unroll_steps * n_gpus)).
    """
    options = _as_options(options)
    strategy = _make_strategy(n_gpus)
    if options.n_train_tokens is None and n_batches is None:
        pattern = getattr(getattr(data, "_forward", data), "_shards", None)
        n_tokens = sum(count_tokens(p) for p in pattern) if pattern else None
        options = options.replace(n_train_tokens=n_tokens)
        logger.info("n_train_tokens = %s (counted from the training files)", n_tokens)
    if options.bidirectional != isinstance(data, BidirectionalLMDataset):
        raise ValueError("bidirectional options need a BidirectionalLMDataset (and a forward "
                         "LM an LMDataset)")
    trainer = _Trainer(options, strategy, seed)
    n_replicas = trainer.n_replicas
    if n_batches is None:
        tokens_per_batch = options.batch_size * options.unroll_steps * n_replicas
        n_batches = int(options.n_epochs * options.n_train_tokens / tokens_per_batch)
    os.makedirs(tf_save_dir, exist_ok=True)
    save_options(options, os.path.join(tf_save_dir, "options.json"))
    manager = tf.train.CheckpointManager(trainer.checkpoint, tf_save_dir, max_to_keep=2,
                                         checkpoint_name="model")
    if restart_ckpt_file:
        trainer.restore(restart_ckpt_file)
    start = int(trainer.step.numpy())
    # Only our own checkpoints know the data position; bilm-tf's restart read afresh.
    ours = restart_ckpt_file and _is_object_checkpoint(restart_ckpt_file)
    batches = _prefetch(_global_batches(data, options, n_replicas, start if ours else 0))
    states = trainer.distributed_states()
    writer = tf.summary.create_file_writer(tf_log_dir)
    tokens_per_batch = options.batch_size * options.unroll_steps * n_replicas
    bar = Progress("train", total=n_batches - start, unit="batches", enabled=progress)
    last_good = manager.latest_checkpoint
    t0 = time.perf_counter()
    window_start, window_loss, window_n, window_batches = t0, 0.0, 0, 0
    step = start
    n_skipped = 0  # consecutive mixed_float16 overflow steps
    try:
        for step in range(start, n_batches):
            batch = next(batches, None)
            if batch is None:
                logger.info("training data exhausted after %d batches", step)
                break
            loss, norm, states, skipped = trainer.train_step(trainer.distribute_batch(batch),
                                                             states)
            loss = float(loss)
            if bool(skipped):  # gradients overflowed in float16: step skipped, scale halved
                n_skipped += 1
                logger.debug("batch %d: gradients overflowed, step skipped (loss scale %g)",
                             step + 1, float(trainer.loss_scale.numpy()))
                if n_skipped >= trainer.MAX_SKIPPED_STEPS:
                    raise TrainingError(
                        f"{n_skipped} consecutive batches up to {step + 1} overflowed in "
                        f"float16 (loss {loss}); stopped without saving. The last good "
                        f"checkpoint is {last_good or '(none)'}. Try precision float32 or "
                        "mixed_bfloat16.")
            else:
                n_skipped = 0
                if not math.isfinite(loss):
                    raise TrainingError(
                        f"loss became {loss} at batch {step + 1}; stopped without saving. The "
                        f"last good checkpoint is {last_good or '(none)'}. Try a lower "
                        "learning_rate or all_clip_norm_val.")
                window_loss, window_n = window_loss + loss, window_n + 1
            window_batches += 1
            bar.update()
            done = step + 1
            if done % log_every == 0 or done == n_batches:
                now = time.perf_counter()
                rate = window_batches * tokens_per_batch / (now - window_start)
                eta = (n_batches - done) * tokens_per_batch / rate
                ppl = math.exp(window_loss / window_n) if window_n else float("nan")
                logger.info("batch %d/%d: train perplexity %.1f, %.0f tokens/s, ETA %.0f s",
                            done, n_batches, ppl, rate, eta)
                with writer.as_default(step=done):
                    _scalar("train_perplexity", ppl)
                    _scalar("gradient_norm", float(norm))
                    _scalar("tokens_per_second", rate)
                window_start, window_loss, window_n, window_batches = now, 0.0, 0, 0
            if done % checkpoint_every == 0:
                trainer.store_states(states)
                last_good = manager.save(checkpoint_number=done)
    except KeyboardInterrupt:
        trainer.store_states(states)
        path = manager.save(checkpoint_number=int(trainer.step.numpy()))
        logger.warning("interrupted: saved %s", path)
        raise
    finally:
        bar.close()
        writer.flush()
    trainer.store_states(states)
    return manager.save(checkpoint_number=int(trainer.step.numpy()))


def load_options_latest_checkpoint(tf_save_dir: str) -> tuple[BiLMOptions, str]:
    """(options, latest checkpoint path) of a training directory (ours or bilm-tf's)."""
    options = load_options(os.path.join(tf_save_dir, "options.json"))
    ckpt = tf.train.latest_checkpoint(tf_save_dir)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {tf_save_dir}")
    return options, ckpt


def test(options: BiLMOptions | dict | str, ckpt_file: str,
         data: BidirectionalLMDataset | LMDataset, batch_size: int = 256,
         progress: bool = True) -> float:
    """Held-out perplexity as bilm-tf computed it: unroll_steps 1, LSTM states carried, full
    softmax, exp of the mean batch loss (the mean of both directions for a biLM)."""
    options = _as_options(options).replace(batch_size=batch_size, unroll_steps=1)
    trainer = _Trainer(options, tf.distribute.OneDeviceStrategy(
        tf.config.list_logical_devices("CPU" if not tf.config.list_logical_devices("GPU")
                                       else "GPU")[0].name), for_training=False)
    trainer.restore(ckpt_file, weights_only=True)
    lm = trainer.lm

    @tf.function
    def eval_step(batch, states):
        return lm(batch, states, training=False)

    states = lm.zero_states(batch_size)
    losses = []
    bar = Progress("test", unit="batches", enabled=progress)
    for batch in data.iter_batches(batch_size, 1):
        loss, states = eval_step({k: tf.constant(v) for k, v in batch.items()}, states)
        losses.append(float(loss))
        bar.update()
    bar.close()
    if not losses:
        raise ValueError("the test data is smaller than one batch; lower batch_size")
    perplexity = math.exp(float(np.mean(losses)))
    logger.info("test perplexity %.2f over %d batches", perplexity, len(losses))
    return perplexity


def dump_weights(tf_save_dir: str, outfile: str, ckpt_file: str | None = None) -> None:
    """Latest checkpoint of ``tf_save_dir`` -> bilm-tf's HDF5 weights (no softmax), with an
    ``options.json`` fit for inference (``n_characters`` 262) written beside ``outfile``."""
    options = load_options(os.path.join(tf_save_dir, "options.json"))
    if ckpt_file is None:
        ckpt_file = tf.train.latest_checkpoint(tf_save_dir)
        if ckpt_file is None:
            raise FileNotFoundError(f"no checkpoint in {tf_save_dir}")
    trainer = _Trainer(options, tf.distribute.get_strategy(), for_training=False)
    try:
        trainer.restore(ckpt_file, weights_only=True)
    except (ValueError, tf.errors.NotFoundError) as e:
        raise WeightFileError(f"{ckpt_file}: {e}") from None
    save_weights(trainer.lm.encoder, outfile)
    inference = options
    if options.char_cnn is not None:
        import dataclasses

        inference = options.replace(char_cnn=dataclasses.replace(options.char_cnn,
                                                                 n_characters=262))
    save_options(inference, os.path.join(os.path.dirname(os.path.abspath(outfile)),
                                         "options.json"))
