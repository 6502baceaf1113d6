"""Training: the trainer and its step (trainer), the loop (loop) and what runs around its
steps (hooks), a run's inputs (inputs), starting, resuming and loading runs (runs), run
folders, optimizers, distribution and the multi-worker launcher.

bilm-tf's ``bilm.training`` names (``train``, ``test``, ``load_vocab``, ``dump_weights``,
``load_options_latest_checkpoint``) and ours are importable from here (``test`` and
``evaluate_run`` live in :mod:`bilm.evaluation`, ``dump_weights`` in :mod:`bilm.export`);
TensorFlow is imported on first use, so the run-folder and launcher modules stay light.
"""

from __future__ import annotations

from bilm._lazy import lazy_exports

_EXPORTS = {
    "Adagrad": "bilm.training.optimizers",
    "LoadedRun": "bilm.training.runs",
    "Trainer": "bilm.training.trainer",
    "TrainingError": "bilm.training.checkpointing",
    "TrainingInterrupted": "bilm.training.hooks",
    "count_tokens": "bilm.training.inputs",
    "dump_weights": "bilm.export",
    "evaluate_run": "bilm.evaluation",
    "load_language_model": "bilm.training.runs",
    "load_options_latest_checkpoint": "bilm.training.runs",
    "load_run": "bilm.training.runs",
    "load_vocab": "bilm.training.inputs",
    "resume_training": "bilm.training.runs",
    "start_training": "bilm.training.runs",
    "test": "bilm.evaluation",
    "train": "bilm.training.loop",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
