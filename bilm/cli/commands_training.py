"""``bilm`` commands that make a training run: vocab, train, resume, launch, import-allennlp,
demo. Each checks its arguments, calls the library, prints."""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import TYPE_CHECKING

from bilm._shell import UserError
from bilm.cli.checks import (
    check_output,
    check_replicas,
    need_file,
    need_glob,
    need_run,
    start_tensorflow,
)

if TYPE_CHECKING:
    from bilm.options import BiLMOptions

__all__ = ["cmd_demo", "cmd_import_allennlp", "cmd_launch", "cmd_resume", "cmd_train",
           "cmd_vocab"]


def cmd_vocab(args: argparse.Namespace) -> None:
    need_glob(args.train_prefix, "TRAIN_PREFIX", "training")
    check_output(args.output, args.overwrite)
    from bilm.data.build_vocab import build_vocab

    stats = build_vocab(args.train_prefix, args.output, min_count=args.min_count,
                        max_size=args.max_size,
                        max_characters_per_token=args.max_characters_per_token,
                        progress=not args.quiet, overwrite=args.overwrite)
    def n(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"

    print(f"{n(stats.n_written, 'entry').replace('entrys', 'entries')} written to "
          f"{args.output} ({n(stats.n_tokens, 'token')}, {n(stats.n_types, 'type')}, "
          f"{stats.n_long} longer than {args.max_characters_per_token - 2} bytes)")


# Command-line flags that override the options' training keys (flag dest -> options key).
_TRAIN_FLAGS = {"batch_size": "batch_size", "n_epochs": "n_epochs",
                "n_train_tokens": "n_train_tokens", "learning_rate": "learning_rate",
                "dropout": "dropout", "precision": "precision", "jit_compile": "jit_compile"}


def _flag_changes(args: argparse.Namespace) -> dict:
    return {key: getattr(args, dest) for dest, key in _TRAIN_FLAGS.items()
            if getattr(args, dest, None) is not None}


def _options_file(path: str) -> dict:
    """--options FILE's JSON object."""
    from bilm.options import read_options_json

    need_file(path, "options file")
    override = read_options_json(path)  # OptionsError: not JSON, HDF5, not UTF-8
    if not isinstance(override, dict):
        raise UserError(f"{path} must hold a JSON object of options, "
                        f"not a {type(override).__name__}")
    return override


def _train_options(args: argparse.Namespace) -> BiLMOptions:
    """The preset, merged with --options FILE, then the flags; parsed and validated once,
    before TensorFlow starts."""
    from bilm.options import BiLMOptions
    from bilm.presets import merge_options, preset

    name = args.preset or "tiny"
    options = preset(name)
    source = f"preset {name!r}"
    if args.options:
        options = merge_options(options, _options_file(args.options))
        source = f"{args.options} (over {source})"
    options.update(_flag_changes(args))
    return BiLMOptions.from_dict(options, source=source)


def _adaptation_flags(args: argparse.Namespace) -> tuple[str, ...]:
    """--init-from's companions, checked before TensorFlow starts; returns the --freeze
    parts (empty when none)."""
    from bilm.training.adapt import check_heldout

    check_heldout(args.heldout, args.patience)  # AdaptError: one line
    if args.init_from is None:
        if args.new_rows is not None:
            raise UserError("--new-rows sets how --init-from's new softmax rows start; give "
                            "--init-from MODEL")
    elif args.preset is not None:
        raise UserError("--init-from takes the network's shape from MODEL: leave out --preset "
                        "(set training keys with --options or the flags)")
    freeze = tuple(p.strip() for p in (args.freeze or "").split(",") if p.strip())
    for part in freeze:
        if part != "token-embedder" and not re.fullmatch(r"layer-[1-9][0-9]*", part):
            raise UserError(f"--freeze {part!r}: name token-embedder or layer-K (K from 1, "
                            "the contextual layers from the bottom), comma-separated")
    return freeze


def _checkpoint_flags(args: argparse.Namespace) -> dict:
    """The checkpoint interval flags; none given: the library's default (bilm train: every
    10 minutes; bilm resume: as the run was started)."""
    if args.checkpoint_every is None and args.checkpoint_minutes is None:
        return {}
    return {"checkpoint_every": args.checkpoint_every,
            "checkpoint_minutes": args.checkpoint_minutes or None}


def cmd_train(args: argparse.Namespace) -> None:
    need_glob(args.train_prefix, "--train-prefix", "training")
    need_file(args.vocab, "vocabulary file")
    freeze = _adaptation_flags(args)
    options = None if args.init_from else _train_options(args)
    # --init-from's --options keys, read once (a broken file: one line, before TensorFlow)
    override = _options_file(args.options) if args.init_from and args.options else None
    from bilm.training.run_folder import BEST_DIR, TrainingRun, writes_run

    if writes_run():  # (a cluster's other workers write nothing into the folder)
        TrainingRun(args.save_dir).check_new(args.overwrite)  # a run, or the user's files
    start_tensorflow(args)
    check_replicas(args.n_gpus)
    from bilm.training.adapt import NEW_ROWS, Adaptation, adapted_options, read_init_model
    from bilm.training.runs import start_training

    model = None
    if args.init_from:
        model = read_init_model(args.init_from, args.options)
        options = adapted_options(model, override, _flag_changes(args))
    adapt = None
    if model is not None or freeze or args.heldout:
        adapt = Adaptation(model, freeze, args.new_rows or NEW_ROWS[0], args.heldout,
                           args.patience)

    ckpt = start_training(args.save_dir, options, args.train_prefix, args.vocab,
                          n_gpus=args.n_gpus, seed=args.seed, n_batches=args.n_batches,
                          overwrite=args.overwrite, progress=not args.quiet,
                          collective_timeout=args.collective_timeout, adapt=adapt,
                          **_checkpoint_flags(args))
    print(f"checkpoint: {ckpt}")
    if adapt is not None and adapt.early_stopping is not None:
        best = adapt.early_stopping.best
        if best is not None:
            print(f"best held-out perplexity: {best[1]:.3f} at batch {best[0]} "
                  f"({os.path.join(args.save_dir, BEST_DIR)})")


def cmd_resume(args: argparse.Namespace) -> None:
    need_run(args.save_dir)
    need_file(args.vocab, "vocabulary file")
    if args.train_prefix:
        need_glob(args.train_prefix, "--train-prefix", "training")
    changes = _flag_changes(args)
    if args.unroll_steps is not None:
        changes["unroll_steps"] = args.unroll_steps
    start_tensorflow(args)
    check_replicas(args.n_gpus)
    from bilm.training.runs import resume_training

    ckpt = resume_training(args.save_dir, train_prefix=args.train_prefix, vocab_file=args.vocab,
                           n_gpus=args.n_gpus, n_batches=args.n_batches, changes=changes,
                           progress=not args.quiet, collective_timeout=args.collective_timeout,
                           **_checkpoint_flags(args))
    print(f"checkpoint: {ckpt}")


def cmd_launch(args: argparse.Namespace) -> None:
    command = list(args.worker_command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command or command[0] not in ("train", "resume"):
        raise UserError("bilm launch runs 'train' or 'resume' as several workers: bilm launch "
                        "--workers 2 -- train ...")
    from bilm.training.launch import launch_local

    code = launch_local(args.workers, command)
    if code:
        sys.exit(code)


def cmd_import_allennlp(args: argparse.Namespace) -> None:
    need_file(args.archive, "archive")
    from bilm.training.run_folder import TrainingRun

    TrainingRun(args.save_dir).check_new(args.overwrite)  # a run, or the user's own files
    from bilm.io.allennlp import import_allennlp, read_archive

    archive = read_archive(args.archive)  # a broken or hostile archive fails before TensorFlow
    start_tensorflow(args)
    ckpt = import_allennlp(archive, args.save_dir, overwrite=args.overwrite)
    print(f"checkpoint: {ckpt}")


def cmd_demo(args: argparse.Namespace) -> None:
    from pathlib import Path

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; --output needs a folder")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UserError(f"{out} is not empty; pass --overwrite or another --output")
    if args.corpus:
        corpus = Path(args.corpus)
        if not corpus.is_dir():
            raise UserError(f"corpus folder not found: {corpus}")
        for part in ("train", "heldout"):
            need_glob(str(corpus / part / "*"), "--corpus", part)
    start_tensorflow(args)
    from bilm.demo import run_demo

    run_demo(out, Path(args.corpus) if args.corpus else None, n_batches=args.n_batches,
             quick=args.quick, progress=not args.quiet)
