"""Logging set-up for the command line, the bin/ scripts and the examples: bilm's own
records at the chosen level, TensorFlow's start-up chatter hidden unless verbose.

Library code never calls these (no import-time side effects); programs do, once, first.
"""

from __future__ import annotations

import logging
import os
import sys
from types import ModuleType

__all__ = ["configure_logging", "import_tensorflow"]

_VERBOSE = False


def configure_logging(verbosity: int = 0) -> None:
    """Log bilm's records to stderr: -1 warnings only, 0 info (default), 1 debug and
    TensorFlow's own messages. Call before TensorFlow is imported."""
    global _VERBOSE
    _VERBOSE = verbosity >= 1
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if not _VERBOSE:
        # TensorFlow's C++ log level, read when TensorFlow loads; and its Python loggers:
        # retracing warnings ('tensorflow'), checkpoint and SavedModel chatter ('absl').
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.WARNING)


def import_tensorflow() -> ModuleType:
    """Import TensorFlow (and find its devices) with its native start-up lines hidden, unless
    :func:`configure_logging` was called verbose.

    absl writes those lines to stderr before any log level applies (TF_CPP_MIN_LOG_LEVEL
    does not silence them), so stderr's file descriptor is pointed at /dev/null meanwhile.
    """
    if _VERBOSE or "tensorflow" in sys.modules:
        import tensorflow as tf

        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        import keras  # noqa: F401  (its start-up lines too)
        import tensorflow as tf

        tf.config.list_physical_devices()  # CUDA's start-up lines
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # tf may have reset it
    return tf
