"""Training: the trainer and its step, the loop, run folders, optimizers, distribution and
the multi-worker launcher.

bilm-tf's ``bilm.training`` names (``train``, ``test``, ``load_vocab``, ``dump_weights``,
``load_options_latest_checkpoint``) and ours are importable from here; TensorFlow is imported
on first use, so the run-folder and launcher modules stay light.
"""

from __future__ import annotations

from bilm._lazy import lazy_exports

_EXPORTS = {
    "Adagrad": "bilm.training.core",
    "LoadedRun": "bilm.training.core",
    "TrainingError": "bilm.training.core",
    "TrainingInterrupted": "bilm.training.core",
    "count_tokens": "bilm.training.core",
    "dump_weights": "bilm.training.core",
    "evaluate_run": "bilm.training.core",
    "load_language_model": "bilm.training.core",
    "load_options_latest_checkpoint": "bilm.training.core",
    "load_run": "bilm.training.core",
    "load_vocab": "bilm.training.core",
    "resume_training": "bilm.training.core",
    "start_training": "bilm.training.core",
    "test": "bilm.training.core",
    "train": "bilm.training.core",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
