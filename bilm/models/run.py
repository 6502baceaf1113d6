"""Training directories (ours, bilm-tf's, imported AllenNLP archives): the latest checkpoint,
softmax included, its ``options.json`` and ``vocab.txt``. Its weights are exported once into
the cache (:func:`bilm.export.dump_weights`) for the commands that read HDF5."""

from __future__ import annotations

import glob
import os

from bilm.models.registry import ModelFamily, ModelFiles, register_family

__all__ = ["FAMILY", "open_run"]


def _detect(path: str) -> bool:
    from bilm.training.run_folder import TrainingRun

    return os.path.isdir(path) and bool(TrainingRun(path).checkpoints())


def open_run(path: str, family: str = "run", source: str | None = None) -> ModelFiles:
    """The run in ``path`` as model files (its weights exported into the cache, keyed by its
    checkpoint files); ``source`` is what the user named, when the run was made from it."""
    from bilm.models.cache import converted
    from bilm.training.run_folder import TrainingRun

    run = TrainingRun(path)
    run.check()  # RunError: no options.json, no checkpoint

    def write(out: str) -> None:
        from bilm.export import dump_weights

        dump_weights(path, os.path.join(out, "weights.hdf5"))

    latest = run.checkpoints()[0]  # newest first
    files = glob.glob(glob.escape(latest) + ".*")
    folder = converted("runs", path, write, files=[run.options_file, *files])
    vocab = os.path.join(path, "vocab.txt")
    return ModelFiles(family, source or path, os.path.join(folder, "options.json"),
                      os.path.join(folder, "weights.hdf5"),
                      vocab_file=vocab if os.path.isfile(vocab) else None, run_dir=path)


FAMILY = register_family(ModelFamily(
    "run", "a training directory (bilm train, bilm-tf, bilm import-allennlp)", _detect,
    open_run, needs_tensorflow=True))
