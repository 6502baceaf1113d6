"""Writing an AllenNLP archive as a bilm training run: ``options.json``, ``vocab.txt`` (the
vocabulary's layout is in :mod:`bilm.io.allennlp`'s doc), ``run.json`` and a checkpoint at
step 0 with the softmax."""

from __future__ import annotations

import logging
import os

from bilm.io.allennlp import AllenNLPArchive, ArchiveError, read_archive
from bilm.io.allennlp_options import options_from_config
from bilm.io.allennlp_weights import archive_values, softmax_rows
from bilm.io.checkpoints import CHECKPOINT_NAME, CHECKPOINTS_KEPT

__all__ = ["import_allennlp", "vocabulary_tokens"]

logger = logging.getLogger(__name__)

UNKNOWN, PADDING = "@@UNKNOWN@@", "@@PADDING@@"


def vocabulary_tokens(archive: AllenNLPArchive, n_softmax_rows: int) -> list[str]:
    """vocab.txt's lines: softmax row r's token (see :mod:`bilm.io.allennlp`'s doc)."""
    tokens = list(archive.tokens)
    if UNKNOWN in tokens and "<UNK>" not in tokens:
        tokens[tokens.index(UNKNOWN)] = "<UNK>"
    if archive.padded:
        tokens.append(PADDING)  # the softmax row of the id past the last token
    if len(tokens) != n_softmax_rows:
        raise ArchiveError(f"{archive.path}: the vocabulary has {len(archive.tokens)} tokens "
                           f"but the softmax {n_softmax_rows} rows")
    missing = [t for t in ("<S>", "</S>") if t not in tokens]
    if missing:
        raise ArchiveError(f"{archive.path}: the vocabulary lacks {', '.join(missing)} (a "
                           "language model archive has them)")
    return tokens


def import_allennlp(archive_path: str | os.PathLike[str] | AllenNLPArchive,
                    save_dir: str | os.PathLike[str], overwrite: bool = False) -> str:
    """Turn an AllenNLP language-model archive into a bilm training run in ``save_dir``
    (options.json, vocab.txt, run.json and a checkpoint at step 0 with the softmax and fresh
    optimizer slots); returns the checkpoint's path. ``bilm evaluate``, ``score``, ``export``
    and ``resume`` (fine-tuning, given ``--train-prefix``) then take it. ``archive_path`` may
    be an archive :func:`read_archive` already read."""
    import tensorflow as tf

    from bilm.data.vocabulary import Vocabulary
    from bilm.options import save_options
    from bilm.training.run_folder import RunState, TrainingRun, owned
    from bilm.training.trainer import Trainer

    archive = (archive_path if isinstance(archive_path, AllenNLPArchive)
               else read_archive(archive_path))
    rows = softmax_rows(archive)
    options = options_from_config(archive.config, rows, archive.path)
    tokens = vocabulary_tokens(archive, rows)
    run = TrainingRun(save_dir)
    run.check_new(overwrite)  # a run, or the user's own files: refused unless overwrite
    trainer = Trainer(options, tf.distribute.OneDeviceStrategy("/cpu:0"), seed=0)
    values = archive_values(archive, trainer.lm)
    for variable in trainer.variables.values():
        variable.assign(values[id(variable)])
    with owned(save_dir, "bilm import-allennlp"):  # one process writes into a run folder
        run.check_new(overwrite)  # again, under the lock
        run.clear()
        save_options(options, run.options_file)
        state = RunState(seed=0)
        run.store_vocabulary(Vocabulary(tokens=tokens), state)
        run.write_state(state)
        manager = tf.train.CheckpointManager(trainer.checkpoint, os.fspath(save_dir),
                                             max_to_keep=CHECKPOINTS_KEPT,
                                             checkpoint_name=CHECKPOINT_NAME)
        path = manager.save(checkpoint_number=0)
    logger.info("imported %s: %d-layer transformer, width %d, %d softmax rows -> %s",
                archive.path, options.n_layers, options.dim, rows, path)
    return path
