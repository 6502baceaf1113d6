"""What the training loop runs around its steps: stop signals (SIGINT, SIGTERM, SIGHUP),
a cluster's preemption handling, the metrics log (``training_log.csv``) and TensorBoard
scalars, and batch prefetch."""

from __future__ import annotations

import csv
import logging
import math
import os
import queue
import re
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from bilm.io.output_errors import output_error
from bilm.io.progress import Progress

__all__ = ["TrainingInterrupted"]

logger = logging.getLogger(__name__)


# -- signals --------------------------------------------------------------------------------------

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


# -- a cluster: lost workers, decisions taken together, preemption -------------------------------

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


# -- metrics: training_log.csv and TensorBoard ---------------------------------------------------

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


@dataclass
class _Window:
    """One logging interval's figures: a row of training_log.csv, TensorBoard scalars and
    the progress bar's figures at its end."""

    t0: float  # when the steps began
    start: float  # when the interval began
    loss: float = 0.0  # the sum of its losses (overflow steps excluded)
    n: int = 0  # its steps (overflow steps excluded)
    tokens: float = 0

    def write(self, done: int, norm: Any, now: float, metrics: _MetricsLog,
              bar: Progress) -> None:
        rate = self.tokens / max(now - self.start, 1e-9)
        ppl = math.exp(self.loss / self.n) if self.n else float("nan")
        bar.set_postfix(f"perplexity {ppl:.1f}, {rate:,.0f} tokens/s")
        metrics.write(batch=done, train_perplexity=ppl, gradient_norm=float(norm),
                      tokens_per_second=rate, elapsed_seconds=metrics.elapsed0 + now - self.t0)
        tf.summary.experimental.set_step(done)
        _scalar("train_perplexity", ppl)
        _scalar("gradient_norm", float(norm))
        _scalar("tokens_per_second", rate)
        self.start, self.loss, self.n, self.tokens = now, 0.0, 0, 0


def _scalar(tag: str, value: float) -> None:
    """A TensorBoard scalar without importing tensorboard (not a TensorFlow dependency)."""
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata.SerializeToString())


# -- prefetch ------------------------------------------------------------------------------------

def _prefetch(it: Iterator[dict], size: int = 4) -> Iterator[dict]:
    """Produce batches in a background thread so input work overlaps compute.

    The first batch is read at once, here, so that unusable data is reported before a run
    writes anything. An exception raised later while reading (a damaged shard, say) is
    re-raised as it was, with its file and line. ``None`` entries (bilm-tf's
    ``tokens_characters`` of a word-input model) pass through; the others become int32 arrays.
    """
    first = next(it, None)
    if first is None:
        return iter(())
    return _prefetch_rest(first, it, size)


class _Raised:
    """An exception of the reading thread, handed to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def _prefetch_rest(first: dict, it: Iterator[dict], size: int) -> Iterator[dict]:
    # A daemon thread and a bounded queue, not tf.data.Dataset.from_generator(...).prefetch():
    # when training stops, deleting a tf.data iterator whose generator call is in flight held
    # the process for 3-18 s without using the CPU (py-spy at the end of whole `bilm train`
    # runs, docs/performance.md); this thread is told to stop and never waited for.
    def arrays(batch: dict) -> dict:
        return {k: None if v is None else np.asarray(v, np.int32) for k, v in batch.items()}

    queue_: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                queue_.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in it:
                if not put(arrays(batch)):
                    return
        except BaseException as e:  # handed to the consumer, re-raised there
            put(_Raised(e))
            return
        put(_END)

    threading.Thread(target=read, name="bilm-prefetch", daemon=True).start()
    try:
        yield arrays(first)
        while (item := queue_.get()) is not _END:
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
