"""A training run's directory: what ``bilm train`` writes and every later command reads.

    SAVE_DIR/
      options.json        the model and training options (bilm-tf's schema)
      run.json            ours: seed, target length, data history, vocabulary hash, settings
      vocab.txt           the vocabulary it was trained with (a copy)
      checkpoint, model-N.index, model-N.data-*     tf.train checkpoints (the last 2)
      training_log.csv    batch, train perplexity, gradient norm, tokens/s, time
      heldout.json        with --heldout: each evaluation's held-out perplexity, the best
      best/               with --heldout: the best checkpoint so far, a run of its own
                          (options.json, vocab.txt, checkpoint) plus its weights.hdf5
      events.out.tfevents.*                           TensorBoard scalars
      .bilm-run.lock      while a process trains into the folder: who (see RunLock)

A bilm-tf training directory (options.json + TF1 checkpoints) is a run too: it has no
run.json or vocab.txt, so the vocabulary must be named and the data stream starts afresh.
No TensorFlow here: the command line reads runs before it starts TensorFlow. The lock is
:mod:`bilm.training.run_lock`; checkpoint names are :mod:`bilm.io.checkpoints`'.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from bilm.data.vocabulary import Vocabulary
from bilm.io.checkpoints import CHECKPOINT_NAME, TF1_CHECKPOINT_NAME
from bilm.io.files import atomic_path
from bilm.training.run_errors import RunBusyError, RunError
from bilm.training.run_lock import LOCK_FILE, RunLock, owned, writes_run

# RunBusyError, RunError, RunLock, LOCK_FILE, owned and writes_run live in run_errors and
# run_lock, and stay importable from here.
__all__ = ["LOCK_FILE", "RunBusyError", "RunError", "RunLock", "RunState", "TrainingRun",
           "owned", "vocabulary_digest", "writes_run"]

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
HELDOUT_FILE = "heldout.json"  # early stopping's evaluations (bilm.training.early_stopping)
BEST_DIR = "best"  # the best checkpoint on held-out text
VOCAB_FILE = "vocab.txt"
LOG_FILE = "training_log.csv"
OPTIONS_FILE = "options.json"
BOOKKEEPING_FILE = "checkpoint"  # tf.train's list of a folder's checkpoints

# Checkpoint prefixes: ours (tf.train.CheckpointManager, "model-N") and bilm-tf's
# ("model.ckpt-N"); a checkpoint exists when its .index file does.
_CHECKPOINT_INDEX = re.compile(rf"^(?P<prefix>(?:{re.escape(CHECKPOINT_NAME)}|"
                               rf"{re.escape(TF1_CHECKPOINT_NAME)})-(?P<step>\d+))\.index$")


def vocabulary_digest(vocab: Vocabulary) -> str:
    """SHA-256 of the vocabulary's tokens in order: equal for files that give equal ids."""
    h = hashlib.sha256()
    for k in range(vocab.size):
        h.update(vocab.id_to_word(k).encode("utf-8") + b"\n")
    return h.hexdigest()


@dataclass
class RunState:
    """The contents of ``run.json``.

    ``segments`` lists each stretch of the run read with one batch geometry as
    ``[first_step, rows, unroll_steps]`` (rows: the global batch): replaying them brings a
    resumed run's data stream to where it stood, exactly.
    """

    seed: int
    target_batches: int | None = None
    data_seed: int | None = None
    train_prefix: str | None = None
    vocab_sha256: str | None = None
    segments: list[list[int]] = field(default_factory=list)
    checkpoint_every: int | None = None  # batches (None: not by count)
    checkpoint_minutes: float | None = None  # minutes (None: not by time)
    token_counts: dict[str, int] = field(default_factory=dict)  # count_tokens' cache
    # a run started from a model (bilm.training.adapt.Adaptation.settings): what it started
    # from, what is frozen, early stopping; kept for resume
    adapt: dict[str, Any] | None = None
    format: int = 1

    def history(self, step: int) -> list[tuple[int, int, int]]:
        """(n_batches, rows, unroll_steps) read before ``step``, segment by segment."""
        out = []
        for k, (start, rows, steps) in enumerate(self.segments):
            if start >= step:
                break
            end = self.segments[k + 1][0] if k + 1 < len(self.segments) else step
            out.append((min(end, step) - start, rows, steps))
        return out

    def continue_at(self, step: int, rows: int, unroll_steps: int) -> None:
        """Record that training continues from ``step`` with this geometry (forgetting
        segments a restart from an earlier checkpoint discards)."""
        self.segments = [s for s in self.segments if s[0] < step]
        if not self.segments or self.segments[-1][1:] != [rows, unroll_steps]:
            self.segments.append([step, rows, unroll_steps])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str) -> RunState:
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            state = cls(**{k: v for k, v in d.items() if k in known})
            state.segments = [[int(a), int(b), int(c)] for a, b, c in state.segments]
        except (TypeError, ValueError):
            raise RunError(f"{source} is damaged (not bilm's run.json layout); remove it to "
                           "treat the folder as a bilm-tf run") from None
        return state


class TrainingRun:
    """The files of one training directory (see the module doc)."""

    def __init__(self, save_dir: str | os.PathLike[str]) -> None:
        self.save_dir = os.fspath(save_dir)

    def path(self, name: str) -> str:
        return os.path.join(self.save_dir, name)

    @property
    def options_file(self) -> str:
        return self.path(OPTIONS_FILE)

    def has_checkpoint(self) -> bool:
        """Whether the folder holds a checkpoint (listed by tf.train's bookkeeping file, or
        found by its files when that file is missing or damaged)."""
        return os.path.exists(self.path(BOOKKEEPING_FILE)) or bool(self.checkpoints())

    def checkpoints(self) -> list[str]:
        """The checkpoints in the folder (paths without suffix), newest first.

        Found by their ``.index`` files, so that a damaged or missing bookkeeping file
        (``checkpoint``) loses none, with the entries the bookkeeping file lists; ordered
        by step, the number after the last ``-``."""
        try:
            names = os.listdir(self.save_dir)
        except OSError:
            return []
        found = {self.path(m["prefix"]) for m in map(_CHECKPOINT_INDEX.match, names) if m}
        found |= {p for p in self._bookkeeping()[1] if os.path.exists(p + ".index")}

        def step(p: str) -> int:
            m = re.search(r"-(\d+)$", p)
            return int(m[1]) if m else -1

        return sorted(found, key=lambda p: (-step(p), p))

    def _bookkeeping(self) -> tuple[str | None, list[str]]:
        """(problem, paths): the checkpoints tf.train's bookkeeping file lists, oldest first,
        and what is wrong with the file (None when it is readable or absent). Parsed here, as
        TensorFlow's text format, so that the command line needs no TensorFlow."""
        path = self.path(BOOKKEEPING_FILE)
        try:
            with open(path, "rb") as f:
                raw = f.read(1 << 20)
        except FileNotFoundError:
            return None, []
        except OSError as e:
            return f"cannot read {path} ({e.strerror})", []
        latest, listed = None, []
        try:
            for line in raw.decode("utf-8").split("\n"):
                if not line.strip():
                    continue
                m = re.fullmatch(r'\s*(model_checkpoint_path|all_model_checkpoint_paths|'
                                 r'(?:all_model_checkpoint|last_preserved)_timestamps?)\s*:'
                                 r'\s*(.*?)\s*', line)
                if m is None:
                    raise ValueError(line[:40])
                key, value = m.groups()
                if key.endswith(("_timestamp", "_timestamps")):
                    float(value)
                    continue
                if not (len(value) >= 2 and value[0] == value[-1] == '"'):
                    raise ValueError(value[:40])
                target = value[1:-1]
                target = target if os.path.isabs(target) else self.path(target)
                if key == "model_checkpoint_path":
                    latest = target
                else:
                    listed.append(target)
        except (UnicodeDecodeError, ValueError):
            return f"{path} is damaged (not tf.train's checkpoint list)", []
        if latest is None:
            return f"{path} is damaged (it names no latest checkpoint)", []
        if latest not in listed:
            listed.append(latest)
        return None, listed

    def bookkeeping_problem(self) -> str | None:
        """What is wrong with the bookkeeping file ``checkpoint``, or None."""
        return self._bookkeeping()[0]

    def check(self) -> None:
        """Raise :class:`RunError` unless this is a training directory with a checkpoint."""
        if not os.path.isdir(self.save_dir):
            raise RunError(f"training directory not found: {self.save_dir}; pass the "
                           "--save-dir given to bilm train")
        if not os.path.exists(self.options_file):
            raise RunError(f"{self.save_dir} has no options.json: not a bilm training "
                           "directory")
        if not self.checkpoints():
            problem = self.bookkeeping_problem()
            raise RunError(f"no checkpoint in {self.save_dir}"
                           f"{f' ({problem}, and no model-N.index file)' if problem else ''}"
                           "; run bilm train first")

    def check_new(self, overwrite: bool) -> None:
        """Raise :class:`RunError` unless a new run may start here: the folder is missing or
        empty, or holds an earlier bilm run (its run.json) without checkpoints. With
        ``overwrite`` any folder will do; the earlier run's files are then removed by
        :meth:`clear` (and nothing else)."""
        if overwrite:
            return
        if self.has_checkpoint():
            raise RunError(f"{self.save_dir} already holds a training run; continue it with "
                           "bilm resume, or pass --overwrite to start a new one there")
        try:
            names = sorted(n for n in os.listdir(self.save_dir) if n != LOCK_FILE)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            raise RunError(f"--save-dir {self.save_dir} is a file, not a folder") from None
        if not names or os.path.exists(self.path(RUN_FILE)):
            return  # empty, or the start of an earlier bilm run that saved no checkpoint
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise RunError(f"{self.save_dir} is not empty and holds no bilm run ({shown}); "
                       "choose a new or empty --save-dir (or pass --overwrite to train there, "
                       "replacing any options.json, vocab.txt, run.json and "
                       "training_log.csv in it)")

    def lock(self, command: str) -> RunLock:
        """The folder's :class:`RunLock` for ``command`` (use ``with run.lock(...):``)."""
        return RunLock(self.save_dir, command)

    # -- run.json ---------------------------------------------------------------------------

    def read_state(self) -> RunState | None:
        """run.json, or None for a run without one (bilm-tf's, or older)."""
        path = self.path(RUN_FILE)
        if not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except (OSError, ValueError) as e:
            raise RunError(f"cannot read {path} ({e}); remove it to treat the folder as a "
                           "bilm-tf run") from None
        if not isinstance(raw, dict):
            raise RunError(f"{path} is damaged (not a JSON object)")
        return RunState.from_dict(raw, path)

    def write_state(self, state: RunState) -> None:
        with atomic_path(self.path(RUN_FILE), overwrite=True) as tmp, \
                open(tmp, "w", encoding="utf-8") as f:  # the run's own record, rewritten
            json.dump(state.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")

    # -- the vocabulary ---------------------------------------------------------------------

    def store_vocabulary(self, vocab: Vocabulary, state: RunState) -> None:
        """Keep a copy of the training vocabulary in the run and its digest in ``state``."""
        digest = vocabulary_digest(vocab)
        copy = self.path(VOCAB_FILE)
        if os.path.exists(copy) and state.vocab_sha256 == digest:
            return
        with atomic_path(copy, overwrite=True) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(vocab.id_to_word(k) + "\n" for k in range(vocab.size)))
        state.vocab_sha256 = digest

    def vocabulary_file(self, requested: str | None, n_tokens_vocab: int | None,
                        state: RunState | None) -> str:
        """The vocabulary to use with this run: ``requested`` if given (checked against what
        the run was trained with), else the run's own copy."""
        copy = self.path(VOCAB_FILE)
        if requested is None:
            if not os.path.exists(copy):
                raise RunError(f"{self.save_dir} holds no copy of its vocabulary (a bilm-tf "
                               "run, or one from an older bilm); pass --vocab")
            recorded = state.vocab_sha256 if state is not None else None
            if recorded and vocabulary_digest(Vocabulary(copy)) != recorded:
                raise RunError(f"{copy} is not the vocabulary this run was trained with (it "
                               f"does not match the digest in {self.path(RUN_FILE)}): it was "
                               "changed or damaged; restore it, or pass --vocab with the "
                               "vocabulary the run was trained with")
            return copy
        vocab = Vocabulary(requested)
        hint = " (or omit --vocab to use the run's copy)" if os.path.exists(copy) else ""
        if n_tokens_vocab is not None and vocab.size != n_tokens_vocab:
            raise RunError(
                f"the vocabulary {requested} has {vocab.size:,} entries but this run was "
                f"trained with {n_tokens_vocab:,} (n_tokens_vocab); pass the vocabulary it "
                f"was trained with{hint}")
        recorded = state.vocab_sha256 if state is not None else None
        if recorded and vocabulary_digest(vocab) != recorded:
            raise RunError(f"the vocabulary {requested} is not the one this run was trained "
                           f"with (same size, other words or order); omit --vocab to use "
                           f"{copy}")
        return requested

    # -- clearing ---------------------------------------------------------------------------

    _RUN_FILES = (OPTIONS_FILE, RUN_FILE, VOCAB_FILE, LOG_FILE, "checkpoint", HELDOUT_FILE,
                  BEST_DIR)
    _RUN_PATTERNS = (f"{CHECKPOINT_NAME}-*.index", f"{CHECKPOINT_NAME}-*.data-*",
                     f"{CHECKPOINT_NAME}-*_temp", "events.out.tfevents.*",
                     f"{TF1_CHECKPOINT_NAME}-*")

    def clear(self) -> list[str]:
        """Remove the files of an earlier run (and nothing else) from the directory."""
        paths = [self.path(n) for n in self._RUN_FILES if os.path.exists(self.path(n))]
        for pattern in self._RUN_PATTERNS:
            paths += glob.glob(os.path.join(glob.escape(self.save_dir), pattern))
        for p in paths:
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.remove(p)
        if paths:
            logger.info("removed the earlier run's %d files from %s", len(paths), self.save_dir)
        return paths

    def remove_unfinished_checkpoints(self) -> None:
        """Folders TensorFlow leaves when a checkpoint write is cut short (``model-N_temp``)."""
        for p in glob.glob(os.path.join(glob.escape(self.save_dir), "*_temp")):
            if os.path.isdir(p) and re.search(r"-\d+_temp$", p):
                shutil.rmtree(p, ignore_errors=True)
                logger.info("removed an unfinished checkpoint %s", p)
