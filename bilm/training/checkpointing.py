"""The checkpoints one call of :func:`~bilm.training.loop.train` saves: into the run (the
chief) or a private folder (another worker), each batch's once, never one holding a
non-finite weight, and a full disk said as such (:class:`~bilm.io.output_errors.DiskFullError`,
no partial checkpoint left)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import tensorflow as tf

from bilm.io.checkpoints import CHECKPOINT_NAME, CHECKPOINTS_KEPT
from bilm.io.output_errors import DiskFullError, is_disk_full
from bilm.training.run_folder import TrainingRun
from bilm.training.trainer import Trainer

__all__ = ["CheckpointWriter", "TrainingError"]


class TrainingError(RuntimeError):
    """Training stopped (e.g. a non-finite loss); the message says what is kept."""


class CheckpointWriter:
    """The checkpoint manager of one training call (the last :data:`CHECKPOINTS_KEPT`) and
    what it saved, by step.

    Every worker saves (the variables' values are gathered collectively); only the chief
    into the run, the others into a private folder (:attr:`dir`, removed at the end by the
    loop): TensorFlow's documented pattern for MultiWorkerMirroredStrategy."""

    def __init__(self, trainer: Trainer, run: TrainingRun, tf_save_dir: str,
                 chief: bool) -> None:
        self.trainer, self.run, self.tf_save_dir = trainer, run, tf_save_dir
        self.dir = tf_save_dir if chief else tempfile.mkdtemp(prefix="bilm-worker-")
        self.manager = tf.train.CheckpointManager(trainer.checkpoint, self.dir,
                                                  max_to_keep=CHECKPOINTS_KEPT,
                                                  checkpoint_name=CHECKPOINT_NAME)
        self.saved: dict[int, str] = {}  # the checkpoints this call saved, by step

    def save(self, done: int, states: Any, last_good: str | None) -> str:
        """A checkpoint of batch ``done`` (once), with the carried ``states``, if every
        weight is finite; ``last_good`` (the newest good checkpoint) is named when not."""
        if done in self.saved:
            return self.saved[done]
        self.trainer.store_states(states)
        if not self.trainer.all_finite():
            raise TrainingError(
                f"the weights became non-finite (NaN/inf) by batch {done}; not saved. The last "
                f"good checkpoint is {last_good or '(none)'}; resume from it with a lower "
                "learning_rate or all_clip_norm_val.")
        try:
            self.manager.save(checkpoint_number=done)
            self.saved[done] = os.path.join(self.tf_save_dir, f"model-{done}")  # the chief's
            return self.saved[done]
        except tf.errors.OpError as e:
            if not is_disk_full(e):
                raise
            self.run.remove_unfinished_checkpoints()
            raise DiskFullError(self.tf_save_dir, f"while saving checkpoint model-{done}; the "
                                f"last complete one is {last_good or '(none)'}") from None
