"""Held-out perplexity during training, the best checkpoint kept, and early stopping
(``bilm train --heldout GLOB [--patience N]``).

At every checkpoint the schedule saves (``--checkpoint-every`` / ``--checkpoint-minutes``)
and at the end, the weights are evaluated on the held-out files as ``bilm evaluate`` would
(the encoder's protocol, full softmax, float32, ``batch_size`` rows). Each figure goes into
``heldout.json``; a new best is copied to ``best/`` (a run of its own: ``options.json``,
``vocab.txt``, the checkpoint, and its exported ``weights.hdf5``), replaced atomically.
With ``patience`` N, training stops after N evaluations in a row without a new best. A
resumed run reads ``heldout.json`` back (evaluations after the checkpoint it resumes from are
forgotten), so that stopping happens where it would have without the interruption.

Every worker of a cluster evaluates (the same weights and text give the same figure, so all
stop together, without a collective); only the chief writes.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
from typing import Any

import numpy as np
import tensorflow as tf

from bilm.io.files import atomic_dir, atomic_path
from bilm.options import BiLMOptions, save_options
from bilm.training.run_folder import BEST_DIR, HELDOUT_FILE, VOCAB_FILE, RunError, TrainingRun

__all__ = ["EarlyStopping"]

logger = logging.getLogger(__name__)


class EarlyStopping:
    """Held-out evaluation at checkpoints, the best kept, and the stop (see the module doc).

    Call :meth:`attach` once the trainer and the step training continues from are known,
    :meth:`after_checkpoint` after each scheduled checkpoint (True: stop now), and
    :attr:`exhausted` to know whether patience has run out.
    """

    def __init__(self, heldout: str, patience: int | None = None) -> None:
        self.heldout, self.patience = heldout, patience
        self.history: list[list[float]] = []  # [step, perplexity] per evaluation

    def attach(self, trainer: Any, vocab: Any, run: TrainingRun, start: int,
               chief: bool) -> None:
        """Prepare for a call of :func:`~bilm.training.loop.train` that continues from
        ``start`` (0: a new run) with ``trainer``'s options and ``vocab``."""
        from bilm.model.lm import LanguageModel, training_variables
        from bilm.training.distribute import replica_device

        self.trainer, self.vocab, self.run, self.chief = trainer, vocab, run, chief
        options: BiLMOptions = trainer.options
        self.options = options
        with tf.device(replica_device()):
            self.lm = LanguageModel(options.replace(unroll_steps=1), precision="float32")
        self.lm_variables = training_variables(self.lm)
        self.history = []
        if start and os.path.exists(run.path(HELDOUT_FILE)):
            self.history = [[s, p] for s, p in _read_history(run.path(HELDOUT_FILE))
                            if s <= start]

    @property
    def best(self) -> tuple[int, float] | None:
        """(step, perplexity) of the best evaluation so far (the earliest of equals)."""
        if not self.history:
            return None
        k = int(np.argmin([p for _, p in self.history]))
        return int(self.history[k][0]), self.history[k][1]

    @property
    def exhausted(self) -> bool:
        """Whether ``patience`` evaluations in a row have not bettered the best."""
        best = self.best
        if self.patience is None or best is None:
            return False
        return sum(1 for s, _ in self.history if s > best[0]) >= self.patience

    def evaluated(self, step: int) -> bool:
        return any(s == step for s, _ in self.history)

    def perplexity(self) -> float:
        """The held-out perplexity of the evaluation copy of the weights (:meth:`sync`)."""
        from bilm.evaluation import heldout_perplexity
        from bilm.training.inputs import _dataset

        data = _dataset(self.options, self.heldout, self.vocab, None, test=True)
        return heldout_perplexity(self.lm, data, self.options.batch_size, progress=False)

    def sync(self) -> None:
        """The evaluation copy (float32, unroll 1) takes the trainer's current weights."""
        for name, variable in self.lm_variables.items():
            variable.assign(self.trainer.variables[name].numpy())

    def after_checkpoint(self, checkpoint: str, step: int) -> bool:
        """Evaluate the weights just saved as ``checkpoint`` (batch ``step``); keep them if
        best; True when patience has run out."""
        self.sync()
        perplexity = self.perplexity()
        previous = self.best
        self.history.append([step, perplexity])
        improved = previous is None or perplexity < previous[1]
        if self.chief:
            if improved:
                self._keep(checkpoint, step, perplexity)
            with atomic_path(self.run.path(HELDOUT_FILE), overwrite=True) as tmp, \
                    open(tmp, "w", encoding="utf-8") as f:
                json.dump({"heldout": self.heldout, "patience": self.patience,
                           "evaluations": self.history}, f, indent=1)
        best_step, best = self.best  # type: ignore[misc]
        logger.info("batch %d: held-out perplexity %.3f (best %.3f, batch %d)", step,
                    perplexity, best, best_step)
        if self.exhausted:
            logger.info("no better held-out perplexity in %d evaluations: stopping early; the "
                        "best (batch %d) is in %s", self.patience, best_step,
                        self.run.path(BEST_DIR))
        return self.exhausted

    def _keep(self, checkpoint: str, step: int, perplexity: float) -> None:
        """``best/``: the checkpoint's files, options, vocabulary, exported weights."""
        from bilm.io.weights import save_weights

        with atomic_dir(self.run.path(BEST_DIR), overwrite=True) as tmp:
            for path in glob.glob(glob.escape(checkpoint) + ".*"):
                shutil.copy2(path, tmp)
            name = os.path.basename(checkpoint)
            tf.compat.v1.train.update_checkpoint_state(tmp, name,
                                                       all_model_checkpoint_paths=[name])
            save_options(self.options, os.path.join(tmp, "options.json"))
            if os.path.exists(self.run.path(VOCAB_FILE)):
                shutil.copy2(self.run.path(VOCAB_FILE), tmp)
            save_weights(self.lm.encoder, os.path.join(tmp, "weights.hdf5"))
            with open(os.path.join(tmp, "best.json"), "w", encoding="utf-8") as f:
                json.dump({"step": step, "perplexity": perplexity, "checkpoint": name}, f)


def _read_history(path: str) -> list[tuple[int, float]]:
    """heldout.json's evaluations; RunError (one line) for a damaged file."""
    try:
        with open(path, encoding="utf-8") as f:
            return [(int(s), float(p)) for s, p in json.load(f)["evaluations"]]
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise RunError(f"{path} is damaged (not the held-out record bilm train writes); "
                       "remove it to count patience afresh from this resume") from None
