"""Our checkpoints: how they are named and how many are kept (the one place that says so),
and using a run's checkpoints when some are damaged: try the newest, fall back to the newest
intact one with a warning that names the damaged one, or one line when none is intact.

A checkpoint is verified by restoring it: TensorFlow's tensor bundles carry a CRC32C of every
tensor and check it on every read (``DataLossError``), and a truncated or missing ``.index``
or ``.data`` file fails to open or to read. Restoring is what every use of a checkpoint does
anyway, so the check costs nothing when the newest is intact; a failed restore is followed by
a full restore of the next checkpoint, which overwrites every value the failed one set (the
restore asserts that every object matched). TensorFlow is imported on the first restore
only: run folders read the names here without it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence

from bilm.training.run_errors import RunError

__all__ = ["CHECKPOINTS_KEPT", "CHECKPOINT_NAME", "TF1_CHECKPOINT_NAME", "CheckpointError",
           "restore_first_intact"]

logger = logging.getLogger(__name__)

#: Our checkpoints' prefix (tf.train.CheckpointManager's ``checkpoint_name``): ``model-N``.
CHECKPOINT_NAME = "model"
#: How many checkpoints a run keeps (the CheckpointManager's ``max_to_keep``): the last 2.
CHECKPOINTS_KEPT = 2
#: bilm-tf's checkpoints' prefix (``model.ckpt-N``), which a run folder also recognizes.
TF1_CHECKPOINT_NAME = "model.ckpt"


def _damage() -> tuple[type[BaseException], ...]:
    """What a damaged checkpoint raises while restoring: TensorFlow's errors (DataLossError for
    a checksum, NotFoundError for a missing file, OutOfRangeError for a short one, ...), and
    tf.train.Checkpoint's ValueError/AssertionError for an index that lost entries, and the
    checkpoint reader's IndexError ("Read less bytes than requested") for a short data file."""
    import tensorflow as tf

    return (tf.errors.OpError, ValueError, AssertionError, KeyError, IndexError, OSError)


class CheckpointError(RunError):
    """No checkpoint could be restored (the message names each and why)."""


def describe(error: BaseException) -> str:
    """One short line of what a restore raised."""
    lines = [" ".join(line.split()) for line in str(error).splitlines()]
    lines = [line for line in lines if line and not line.startswith(
        ("Graph execution error", "Detected at node", "File ", "[["))]
    text = lines[0] if lines else type(error).__name__
    return f"{type(error).__name__}: {text}"[:200]


def _name(path: str) -> str:
    return os.path.basename(path)


def restore_first_intact(restore: Callable[[str], None], candidates: Sequence[str],
                         where: str | None = None) -> str:
    """Call ``restore(path)`` on each of ``candidates`` (newest first) until one succeeds;
    returns that path.

    A fallback is logged as one warning naming the damaged checkpoint(s). When every candidate
    fails, raises :class:`CheckpointError` in one line (``where``: the run folder, for the
    message; with one candidate, the message is that checkpoint's error).
    """
    if not candidates:
        raise CheckpointError(f"no checkpoint in {where}; run bilm train first")
    failures = []
    damage = _damage()
    for path in candidates:
        try:
            restore(path)
        except damage as e:
            if isinstance(e, RunError):
                raise
            failures.append(f"{_name(path)} ({describe(e)})")
            logger.debug("cannot restore %s: %s", path, e)
            continue
        if failures:
            logger.warning("damaged checkpoint %s; using %s, the newest intact one (the "
                           "damaged files are left in place)", "; ".join(failures), path)
        return path
    if len(candidates) == 1:
        raise CheckpointError(f"cannot restore checkpoint {candidates[0]}: "
                              f"{failures[0].split(' (', 1)[1][:-1]}")
    raise CheckpointError(f"no intact checkpoint in {where}: "
                          f"{'; '.join(failures)}; retrain, or restore the files from a copy")


def step_of(path: str) -> int | None:
    """The step number at the end of a checkpoint prefix (``model-12`` -> 12)."""
    m = re.search(r"-(\d+)$", path)
    return int(m[1]) if m else None
