"""The training loop: :func:`train` (bilm-tf's name and arguments), phase by phase: set-up
(seed, data, trainer, length), restore, the run's files, the steps (signals, metrics,
checkpoints) and the final checkpoint."""

from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from bilm.data.batch import is_sentence_batch
from bilm.data.dataset import BidirectionalLMDataset, LMDataset
from bilm.data.sentences import SentenceDataset
from bilm.data.vocabulary import Vocabulary
from bilm.io.checkpoints import restore_first_intact
from bilm.io.progress import Progress
from bilm.options import BiLMOptions, save_options
from bilm.training.adapt import Adaptation
from bilm.training.checkpointing import CheckpointWriter, TrainingError
from bilm.training.distribute import chief_value, is_chief, is_multi_worker, make_strategy
from bilm.training.hooks import (
    _CLUSTER_ERRORS,
    TrainingInterrupted,
    _any_worker,
    _cause,
    _MetricsLog,
    _preemption_handler,
    _prefetch,
    _StopSignals,
    _Window,
)
from bilm.training.inputs import _as_options, _check_data, count_corpus
from bilm.training.run_folder import LOG_FILE, RunError, RunState, TrainingRun
from bilm.training.run_lock import owns_run
from bilm.training.trainer import Trainer, _is_object_checkpoint

__all__ = ["DEFAULT_CHECKPOINT_MINUTES", "TrainingError", "train"]

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT_MINUTES = 10.0  # a preempted or killed run loses at most this much


@owns_run("bilm train")
def train(options: BiLMOptions | dict | str,
          data: BidirectionalLMDataset | LMDataset | SentenceDataset | Callable[[int], Any],
          n_gpus: int, tf_save_dir: str, tf_log_dir: str, restart_ckpt_file: str | None = None,
          *, seed: int | None = None, n_batches: int | None = None,
          checkpoint_every: int | None = None,
          checkpoint_minutes: float | None = DEFAULT_CHECKPOINT_MINUTES,
          log_every: int = 100, progress: bool = True, sparse_updates: bool = True,
          collective_timeout: float | None = None,
          restart_fallbacks: Sequence[str] = (), adapt: Adaptation | None = None) -> str:
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
        adapt: start from a trained model (a new run), freeze parts, evaluate on held-out
            text at each checkpoint and stop early (:class:`bilm.training.adapt.Adaptation`).

    Raises:
        TrainingError: a non-finite loss or weights (nothing non-finite is ever saved).
        TrainingInterrupted: a signal; its ``checkpoint`` says what was saved.
    """
    options = _as_options(options)
    if not callable(data):
        _check_data(options, data)
    strategy = make_strategy(n_gpus, collective_timeout)
    t = _Training(options, data, strategy, tf_save_dir, restart_ckpt_file, seed, n_batches,
                  sparse_updates, adapt)
    restart_ckpt_file = t.restore(restart_ckpt_file, restart_fallbacks)
    t.record(restart_ckpt_file, restart_fallbacks, checkpoint_every, checkpoint_minutes)
    metrics, writer = t.open_outputs(tf_log_dir)
    if t.start >= t.n_batches or (t.stopping is not None and t.stopping.exhausted):
        logger.info("already at batch %d of %d%s: nothing to train", t.start, t.n_batches,
                    "" if t.start >= t.n_batches else " (stopped early)")
        if not t.chief:
            shutil.rmtree(t.checkpoints.dir, ignore_errors=True)
        return restart_ckpt_file or t.checkpoints.manager.latest_checkpoint
    t.states = t.trainer.distributed_states()
    t.run_steps(_Schedule(checkpoint_every, checkpoint_minutes, log_every), metrics, writer,
                progress)
    return t.finish()


@dataclass
class _Schedule:
    """When :func:`train` saves and logs (its arguments of those names)."""

    checkpoint_every: int | None
    checkpoint_minutes: float | None
    log_every: int


class _Training:
    """One call of :func:`train`, phase by phase: set-up (the constructor: seed, data,
    trainer, length), :meth:`restore`, :meth:`record` (the run's files),
    :meth:`open_outputs` (checkpoints, metrics, TensorBoard), :meth:`run_steps` (each
    :meth:`step`; checkpoints through :meth:`save`, see :mod:`bilm.training.checkpointing`)
    and :meth:`finish`."""

    def __init__(self, options: BiLMOptions, data: Any, strategy: tf.distribute.Strategy,
                 tf_save_dir: str, restart_ckpt_file: str | None, seed: int | None,
                 n_batches: int | None, sparse_updates: bool,
                 adapt: Adaptation | None = None) -> None:
        self.options, self.strategy, self.tf_save_dir = options, strategy, tf_save_dir
        self.adapt, self.stopping = adapt, adapt and adapt.early_stopping
        self.chief, self.multi_worker = is_chief(strategy), is_multi_worker(strategy)
        self.run = TrainingRun(tf_save_dir)
        recorded = self.run.read_state() if restart_ckpt_file else None
        self.state = recorded or RunState(seed=0)
        seed = self._settle_seed(seed, recorded)
        self.data = self._stream(data, seed)
        n_lines = self._count_corpus() if n_batches is None else None
        self.trainer = Trainer(self.options, strategy, seed, sparse_updates=sparse_updates,
                               freeze=adapt.freeze if adapt else ())
        self.rows = self.options.batch_size * self.trainer.n_replicas
        # streams; sentences: counted per batch
        self.tokens_per_batch = self.rows * self.options.unroll_steps
        if n_batches is None:
            if self.trainer.lm.protocol == "sentences":
                n_batches = max(int(self.options.n_epochs * n_lines / self.rows), 1)
            else:
                n_batches = int(self.options.n_epochs * self.options.n_train_tokens
                                / self.tokens_per_batch)
        self.n_batches = n_batches
        self.last_good: str | None = None  # the newest checkpoint known to be good
        self.start = self.done = self.n_skipped = 0  # n_skipped: overflow steps in a row
        self.states: Any = None

    def _settle_seed(self, seed: int | None, recorded: RunState | None) -> int:
        """The run's seed (given, else recorded, else picked), recorded and logged."""
        if seed is None:
            seed = recorded.seed if recorded else secrets.randbelow(2**31)
        if self.multi_worker:
            # Every worker draws as the chief does (weights, dropout, negatives, data order):
            # with the chief's seed, whatever each worker picked (an unseeded run) or was given.
            seed = chief_value(self.strategy, seed)
        self.state.seed = seed
        logger.log(logging.INFO if self.chief else logging.DEBUG, "seed %d", seed)
        return seed

    def _stream(self, data: Any, seed: int) -> Any:
        if callable(data):  # the stream of this seed, built only now that it is agreed
            data = data(seed)
            _check_data(self.options, data)
        elif self.multi_worker and getattr(data, "seed", 0) is None:
            logger.warning("the training data has no seed: each worker reads its rows of its "
                           "own random stream; give the dataset a seed (or pass a function of "
                           "the seed as data)")
        return data

    def _count_corpus(self) -> int:
        """The training lines (sentences; in proportion to a count of tokens the options
        give), setting ``n_train_tokens`` when the options lack it."""
        n_tokens, n_lines = count_corpus(self.data.filepattern, self.state.token_counts)
        if n_tokens == 0:
            raise RunError(f"the files matching {self.data.filepattern!r} hold no tokens")
        if self.options.n_train_tokens is None:
            self.options = self.options.replace(n_train_tokens=n_tokens)
            logger.info("n_train_tokens = %d (counted from the training files)", n_tokens)
        else:  # the user's count: the sentences in proportion
            n_lines = max(round(n_lines * self.options.n_train_tokens / n_tokens), 1)
        return n_lines

    def restore(self, restart_ckpt_file: str | None, restart_fallbacks: Sequence[str],
                ) -> str | None:
        """The first intact checkpoint to resume from (its weights checked finite), then the
        data stream at its step; returns the checkpoint restored."""
        if restart_ckpt_file:
            restart_ckpt_file = restore_first_intact(
                self.trainer.restore, [restart_ckpt_file, *restart_fallbacks],
                self.tf_save_dir)
            if not self.trainer.all_finite():
                raise TrainingError(f"{restart_ckpt_file} holds non-finite weights; resume "
                                    "from an earlier checkpoint")
            self.last_good = restart_ckpt_file
        elif self.adapt is not None:  # a new run from a model: its weights
            self.adapt.initialize(self.trainer, self.data.vocab)
        self.start = int(self.trainer.step.numpy())
        if self.stopping is not None:
            self.stopping.attach(self.trainer, self.data.vocab, self.run, self.start,
                                 self.chief)
        # Only our own checkpoints know the data position; bilm-tf's restart read afresh.
        ours = bool(restart_ckpt_file) and _is_object_checkpoint(restart_ckpt_file)
        history = self.state.history(self.start) if ours else []
        rows, self.own = self.rows, self.trainer.local_rows
        self.batches: Iterator[dict] = _prefetch(self.data.iter_batches(
            rows, self.options.unroll_steps, history,
            rows=None if self.own == (0, rows) else self.own))
        return restart_ckpt_file

    def record(self, restart_ckpt_file: str | None, restart_fallbacks: Sequence[str],
               checkpoint_every: int | None, checkpoint_minutes: float | None) -> None:
        """The run's files (the chief's): options, vocabulary, run.json, checkpoint list."""
        state, data, run = self.state, self.data, self.run
        state.continue_at(self.start, self.rows, self.options.unroll_steps)
        state.target_batches, state.data_seed = self.n_batches, getattr(data, "seed", None)
        # absolute, so that a resume started from another folder finds the files
        state.train_prefix = os.path.abspath(os.path.expanduser(data.filepattern))
        state.checkpoint_every, state.checkpoint_minutes = checkpoint_every, checkpoint_minutes
        state.adapt = self.adapt.settings if self.adapt else None
        # The run's files are written only now, after a successful restore: a resume that
        # fails leaves the run as it was.
        if not self.chief:
            return
        os.makedirs(self.tf_save_dir, exist_ok=True)
        run.remove_unfinished_checkpoints()
        if restart_ckpt_file and (restart_fallbacks or run.bookkeeping_problem()):
            # the list of checkpoints from what is on disk: the one resumed from is the
            # latest (a damaged newer one is replaced when its step is saved again)
            problem = run.bookkeeping_problem()
            if problem:
                logger.warning("%s; rebuilt it from the checkpoint files", problem)
            tf.compat.v1.train.update_checkpoint_state(
                self.tf_save_dir, restart_ckpt_file,
                all_model_checkpoint_paths=[restart_ckpt_file])
        save_options(self.options, run.options_file)
        if isinstance(data.vocab, Vocabulary):
            run.store_vocabulary(data.vocab, state)
        run.write_state(state)

    def open_outputs(self, tf_log_dir: str) -> tuple[_MetricsLog, Any]:
        """The checkpoints, and (metrics log, TensorBoard writer)."""
        self.checkpoints = CheckpointWriter(self.trainer, self.run, self.tf_save_dir, self.chief)
        metrics = _MetricsLog(self.run.path(LOG_FILE), self.start, self.chief)
        writer = (tf.summary.create_file_writer(tf_log_dir) if self.chief
                  else tf.summary.create_noop_writer())
        return metrics, writer

    def save(self, done: int) -> str:
        """A checkpoint of batch ``done`` (once), if every weight is finite."""
        return self.checkpoints.save(done, self.states, self.last_good)

    def run_steps(self, schedule: _Schedule, metrics: _MetricsLog, writer: Any,
                  progress: bool) -> None:
        """The steps up to ``n_batches`` (or the end of the data), under the stop signals
        (and, in a cluster, TensorFlow's preemption handler)."""
        self.schedule, self.metrics = schedule, metrics
        self.bar = Progress("train", total=self.n_batches, initial=self.start,
                            unit="batches", enabled=progress)
        t0 = time.perf_counter()
        self.last_save, self.window = t0, _Window(t0, t0)
        self.done = self.start
        with _StopSignals() as self.stop, writer.as_default():
            self.stop.last_good = self.last_good
            # several workers stop together, at a step they agree on (TensorFlow's handler)
            private = [self.checkpoints.dir] if not self.chief else []  # removed at the end
            self.preemption = None
            try:
                if self.multi_worker:
                    private.append(tempfile.mkdtemp(prefix="bilm-preemption-"))
                    self.preemption = _preemption_handler(
                        self.strategy, self.stop, lambda: self.save(self.done), private[-1])
                for step in range(self.start, self.n_batches):
                    if not self.step(step):
                        break
            except tf.errors.OpError as e:
                if self.multi_worker and isinstance(e, _CLUSTER_ERRORS):
                    raise TrainingError(
                        f"the cluster lost a worker at batch {self.done + 1} ({_cause(e)}); "
                        f"stopped. The last checkpoint is {self.last_good or '(none)'}; "
                        "relaunch every worker (bilm resume) to continue from it.") from None
                raise
            finally:
                self.bar.close()
                writer.flush()
                for folder in private:
                    shutil.rmtree(folder, ignore_errors=True)

    def step(self, step: int) -> bool:
        """Train on the next batch, log, then stop on a signal or save when due; False when
        the data ran out."""
        batch = next(self.batches, None)
        if batch is None:
            logger.info("training data exhausted after %d batches", step)
            return False
        loss, norm, self.states, skipped = self.trainer.train_step(
            self.trainer.distribute_batch(batch), self.states)
        loss = float(loss)
        self.done = done = step + 1
        self._check_loss(loss, bool(skipped))
        # tokens/s counts one direction's targets (bilm-tf's batch_size * unroll_steps);
        # sentences: this worker's rows' targets, scaled to the global batch (estimate)
        own = self.own
        self.window.tokens += (self.tokens_per_batch if not is_sentence_batch(batch) else
                               self.rows / (own[1] - own[0])
                               * int(np.maximum(batch["lengths"] - 1, 0).sum()))
        self.bar.update()
        now = time.perf_counter()
        if done == self.start + 1:  # the first batch includes compilation: not timed
            self.window.start, self.window.tokens = now, 0
        if done % self.schedule.log_every == 0 or done == self.n_batches:
            self.window.write(self.done, norm, now, self.metrics, self.bar)
        if self.preemption is not None:
            self.preemption.save_checkpoint_if_preempted()  # raises after saving
        elif self.stop.received is not None:
            path = self.save(done)
            raise TrainingInterrupted(self.stop.received, path)
        return self._checkpoint_if_due(now)

    def _check_loss(self, loss: float, skipped: bool) -> None:
        """Stop on a non-finite loss, or on too many float16 overflows in a row."""
        if skipped:  # gradients overflowed in float16: skipped, scale halved
            self.n_skipped += 1
            logger.debug("batch %d: gradients overflowed, step skipped (loss scale %g)",
                         self.done, float(self.trainer.loss_scale.numpy()))
            if self.n_skipped >= self.trainer.MAX_SKIPPED_STEPS:
                raise TrainingError(
                    f"{self.n_skipped} consecutive batches up to {self.done} overflowed in "
                    f"float16 (loss {loss}); stopped without saving. The last good "
                    f"checkpoint is {self.last_good or '(none)'}. Try precision float32 or "
                    "mixed_bfloat16.")
        else:
            self.n_skipped = 0
            if not math.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss} at batch {self.done}; stopped without saving. The "
                    f"last good checkpoint is {self.last_good or '(none)'}. Try a lower "
                    "learning_rate or all_clip_norm_val.")
            self.window.loss, self.window.n = self.window.loss + loss, self.window.n + 1

    def _checkpoint_if_due(self, now: float) -> bool:
        """Save when due (and evaluate on held-out text); False: stop early."""
        minutes, every = self.schedule.checkpoint_minutes, self.schedule.checkpoint_every
        due = bool(minutes and now - self.last_save >= 60 * minutes)
        if minutes and self.multi_worker:  # clocks differ: any worker's is due
            due = _any_worker(self.strategy, due)
        if due or (every and self.done % every == 0):
            self.last_good = self.stop.last_good = self.save(self.done)
            self.last_save = time.perf_counter()
            if self.stopping is not None:
                return not self.stopping.after_checkpoint(self.last_good, self.done)
        return True

    def finish(self) -> str:
        """Warnings about the training text, then the final checkpoint."""
        if getattr(self.data, "n_skipped_lines", 0):
            logger.warning("%d lines of the training files were not valid UTF-8 and were "
                           "skipped", self.data.n_skipped_lines)
        if getattr(self.data, "n_split_lines", 0):
            logger.warning("%d line(s) of the training files were longer than a sentence may "
                           "be and were split into pieces", self.data.n_split_lines)
        path = self.save(self.done)
        if self.stopping is not None and not self.stopping.evaluated(self.done):
            self.stopping.after_checkpoint(path, self.done)
        return path
