"""The ``bilm`` command's argument checks, run before TensorFlow is imported (a mistake costs a
fraction of a second), and the start of TensorFlow that follows them."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bilm._shell import UserError

if TYPE_CHECKING:
    from bilm.models import ModelFiles
    from bilm.options import BiLMOptions
    from bilm.training.run_folder import TrainingRun

__all__ = ["check_output", "check_replicas", "need_char_model", "need_file", "need_glob",
           "need_model", "need_options", "need_run", "need_softmax_model", "need_weights",
           "start_tensorflow"]

logger = logging.getLogger("bilm")


def start_tensorflow(args: argparse.Namespace) -> None:
    """Import TensorFlow, its start-up lines hidden unless --verbose (bilm.logs)."""
    from bilm.logs import import_tensorflow

    tf = import_tensorflow()
    logger.debug("TensorFlow %s, devices %s", tf.__version__,
                 [d.name for d in tf.config.list_physical_devices()])


# -- checks run before TensorFlow is imported: a mistake costs a fraction of a second ---------

def check_output(path: str, overwrite: bool, inputs: Sequence[str | None] = ()) -> None:
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory; give a file name for the output")
    ancestor = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise UserError(f"cannot write {path}: {ancestor} is a file, not a folder")
    for source in inputs:
        if source and os.path.exists(source) and os.path.exists(path) and os.path.samefile(
                source, path):
            raise UserError(f"the output {path} is also an input; write to another file")
    if os.path.exists(path) and not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it")


def need_file(path: str | None, what: str) -> None:
    if path is None:
        return
    if not os.path.exists(path):
        raise UserError(f"{what} not found: {path}")
    if os.path.isdir(path):
        raise UserError(f"{what} {path} is a directory; give the file inside it")


def need_model(args: argparse.Namespace, weights_required: bool = True) -> ModelFiles | None:
    """The model of ``--model`` (then ``args.options`` and ``args.weights`` become its files),
    or None when --options (and --weights) name one; one line when neither, or both, do."""
    if args.model is None:
        if args.options is None:
            raise UserError("name a model: --model PATH_OR_NAME, or --options options.json and "
                            "--weights weights.hdf5")
        if weights_required and args.weights is None:
            raise UserError("--options needs --weights (the HDF5 weights that came with it), "
                            "or pass the folder holding both as --model")
        return None
    if args.options is not None or args.weights is not None:
        raise UserError("--model names the options and weights itself; leave out --options and "
                        "--weights")
    from bilm.models import detect_model

    family, path = detect_model(args.model)  # ModelError: not found, not a model
    if family.needs_tensorflow:
        start_tensorflow(args)
    files = family.open(path)
    args.options, args.weights = files.options_file, files.weight_file
    return files


def need_options(path: str) -> BiLMOptions:
    from bilm.options import load_options

    return load_options(path)  # OptionsError: not found, not JSON, a wrong key or type


def need_char_model(path: str, command: str) -> BiLMOptions:
    options = need_options(path)
    if not options.use_character_inputs:
        raise UserError(f"{path} describes a word-input model (no 'char_cnn' section); "
                        f"bilm {command} needs a character-input model")
    return options


def need_weights(path: str) -> None:
    import h5py

    need_file(path, "weight file")
    if not h5py.is_hdf5(path):
        raise UserError(f"{path} is not an HDF5 weight file; pass the weights.hdf5 that came "
                        "with the options.json")


def need_glob(pattern: str, flag: str, what: str) -> None:
    import glob

    if not glob.glob(os.path.expanduser(pattern)):
        raise UserError(f"no {what} files match {pattern!r} ({flag}); check the path, and quote "
                        "the pattern so that bilm, not the shell, expands it")


def need_softmax_model(args: argparse.Namespace) -> None:
    """--save-dir, or --model resolved to the training directory holding its softmax
    (``args.save_dir`` set); one line when neither, both, or a model without a softmax."""
    if getattr(args, "model", None) is None:
        if args.save_dir is None:
            raise UserError("name a model with its softmax: --save-dir DIR or --model "
                            "PATH_OR_NAME")
        return
    if args.save_dir is not None:
        raise UserError("--model names the training directory itself; leave out --save-dir")
    from bilm.models import detect_model

    family, path = detect_model(args.model)
    start_tensorflow(args)
    files = family.open(path)
    if files.run_dir is None:
        raise UserError(f"{args.model} is a {family.title} model: an encoder without a softmax, "
                        "so it embeds but cannot score; give a training directory or an "
                        "AllenNLP language-model archive")
    args.save_dir = files.run_dir


def need_run(save_dir: str) -> TrainingRun:
    """A training directory: options.json and a checkpoint (RunError otherwise)."""
    from bilm.training.run_folder import TrainingRun

    run = TrainingRun(save_dir)
    run.check()
    return run


def check_replicas(n_gpus: int) -> None:
    """--n-gpus against the visible devices (tf.distribute's own error is a traceback)."""
    from bilm.training.distribute import cluster_configured, device_summary

    if n_gpus <= 1 or cluster_configured():
        return

    kind, count = device_summary()
    if n_gpus > count:
        raise UserError(f"--n-gpus {n_gpus} but only {count} {kind} device(s) are visible; "
                        "lower --n-gpus")
