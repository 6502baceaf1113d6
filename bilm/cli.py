"""The ``bilm`` command line: a thin shell over the library. The only module (with the
``bin/`` scripts) that configures logging."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from bilm._shell import UserError, run_main

logger = logging.getLogger("bilm")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``bilm embed: error: ...; see 'bilm embed --help'``."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            extra = message.split(":", 1)[1].split()
            if extra and all(os.path.exists(x) for x in extra[:3]):
                message += (" (the shell expanded a pattern into many files: quote it, e.g. "
                            "--train-prefix 'corpus/train/*')")
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only when there is one (not for None or a False switch)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or "%(default)" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def _float_type(ok, requirement: str):
    """An argparse ``type``: a float for which ``ok(value)`` holds, else 'must be ...'."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value

    return parse


_positive_float = _float_type(lambda v: 0 < v < math.inf, "a positive number")
_rate = _float_type(lambda v: 0 <= v < 1, "in [0, 1)")  # a dropout rate


_positive = _int_at_least(1)
_non_negative = _int_at_least(0)


def _start_tensorflow(args: argparse.Namespace) -> None:
    """Import TensorFlow, its start-up lines hidden unless --verbose (bilm.logs)."""
    from bilm.logs import import_tensorflow

    tf = import_tensorflow()
    logger.debug("TensorFlow %s, devices %s", tf.__version__,
                 [d.name for d in tf.config.list_physical_devices()])


# -- checks run before TensorFlow is imported: a mistake costs a fraction of a second ---------

def _check_output(path: str, overwrite: bool, inputs: Sequence[str | None] = ()) -> None:
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


def _need_file(path: str | None, what: str) -> None:
    if path is None:
        return
    if not os.path.exists(path):
        raise UserError(f"{what} not found: {path}")
    if os.path.isdir(path):
        raise UserError(f"{what} {path} is a directory; give the file inside it")


def _need_options(path: str):  # -> bilm.options.BiLMOptions
    from bilm.options import load_options

    return load_options(path)  # OptionsError: not found, not JSON, a wrong key or type


def _need_char_model(path: str, command: str):  # -> bilm.options.BiLMOptions
    options = _need_options(path)
    if options.char_cnn is None:
        raise UserError(f"{path} describes a word-input model (no 'char_cnn' section); "
                        f"bilm {command} needs a character-input model")
    return options


def _need_weights(path: str) -> None:
    import h5py

    _need_file(path, "weight file")
    if not h5py.is_hdf5(path):
        raise UserError(f"{path} is not an HDF5 weight file; pass the weights.hdf5 that came "
                        "with the options.json")


def _need_glob(pattern: str, flag: str, what: str) -> None:
    import glob

    if not glob.glob(os.path.expanduser(pattern)):
        raise UserError(f"no {what} files match {pattern!r} ({flag}); check the path, and quote "
                        "the pattern so that bilm, not the shell, expands it")


def _need_run(save_dir: str):  # -> bilm.training.run_folder.TrainingRun
    """A training directory: options.json and a checkpoint (RunError otherwise)."""
    from bilm.training.run_folder import TrainingRun

    run = TrainingRun(save_dir)
    run.check()
    return run


def _check_replicas(n_gpus: int) -> None:
    """--n-gpus against the visible devices (tf.distribute's own error is a traceback)."""
    from bilm.training.distribute import cluster_configured, device_summary

    if n_gpus <= 1 or cluster_configured():
        return

    kind, count = device_summary()
    if n_gpus > count:
        raise UserError(f"--n-gpus {n_gpus} but only {count} {kind} device(s) are visible; "
                        "lower --n-gpus")


def _cmd_info(args: argparse.Namespace) -> None:
    options = _need_options(args.options)
    if args.weights:
        _need_weights(args.weights)
    print(f"options: {args.options}")
    print(f"input: {'characters' if options.use_character_inputs else 'words'}")
    from bilm.encoders import describe_encoder

    print(describe_encoder(options))
    if options.char_cnn is not None:
        cnn = options.char_cnn
        print(f"char_cnn: filters {[list(f) for f in cnn.filters]}, {cnn.n_highway} highway, "
              f"embedding {cnn.embedding_dim}, n_characters {cnn.n_characters}")
    if not args.weights:
        return
    from bilm.io.hdf5 import list_datasets

    total = 0
    for name, shape, same_as in list_datasets(args.weights):  # a damaged file fails here
        if same_as:
            print(f"  {name:<50} {shape} (another name for {same_as})")
            continue
        total += math.prod(shape)
        print(f"  {name:<50} {shape}")
    print(f"parameters: {total:,}")
    # the weights against the options: every dataset present, every shape right, finite
    _start_tensorflow(args)
    from bilm.inference.model import BidirectionalLanguageModel


    BidirectionalLanguageModel(args.options, args.weights, stateful=False,
                               use_character_inputs=options.use_character_inputs)
    print("the weights match the options")


def _cmd_embed(args: argparse.Namespace) -> None:
    _need_file(args.input, "input file")
    _check_output(args.output, args.overwrite, [args.input])
    options = _need_char_model(args.options, "embed")
    if args.stateful and not options.encoder.stateful:
        raise UserError(f"--stateful: a {options.encoder_type} biLM is stateless (it carries "
                        "no state from line to line); leave it out")
    _need_weights(args.weights)
    _need_file(args.vocab, "vocabulary file")
    _start_tensorflow(args)
    from bilm.inference.model import dump_bilm_embeddings

    if args.vocab and not args.stateful:
        logger.info("--vocab only caches character ids for --stateful; not needed here")
    try:
        dump_bilm_embeddings(args.vocab, args.input, args.options, args.weights, args.output,
                             stateful=args.stateful, batch_size=args.batch_size,
                             progress=not args.quiet, layers=args.layers, pool=args.pool,
                             layout=args.layout, precision=args.precision,
                             overwrite=args.overwrite)
    except UnicodeDecodeError as e:
        raise UserError(f"{args.input} is not UTF-8 text ({e.reason}); convert it, e.g. with "
                        "iconv") from None
    logger.info("wrote %s", args.output)


def _cmd_dump_tokens(args: argparse.Namespace) -> None:
    _need_file(args.vocab, "vocabulary file")
    _check_output(args.output, args.overwrite, [args.vocab])
    _need_char_model(args.options, "dump-tokens")
    _need_weights(args.weights)
    _start_tensorflow(args)
    from bilm.inference.model import dump_token_embeddings

    dump_token_embeddings(args.vocab, args.options, args.weights, args.output,
                          progress=not args.quiet, overwrite=args.overwrite)
    logger.info("wrote %s", args.output)


def _cmd_vocab(args: argparse.Namespace) -> None:
    _need_glob(args.train_prefix, "TRAIN_PREFIX", "training")
    _check_output(args.output, args.overwrite)
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


def _train_options(args: argparse.Namespace):  # -> bilm.options.BiLMOptions
    """The preset, merged with --options FILE, then the flags; parsed and validated once,
    before TensorFlow starts."""
    from bilm.options import BiLMOptions, read_options_json
    from bilm.presets import merge_options, preset

    options = preset(args.preset)
    source = f"preset {args.preset!r}"
    if args.options:
        _need_file(args.options, "options file")
        override = read_options_json(args.options)  # OptionsError: not JSON, HDF5, not UTF-8
        if not isinstance(override, dict):
            raise UserError(f"{args.options} must hold a JSON object of options, "
                            f"not a {type(override).__name__}")
        options = merge_options(options, override)
        source = f"{args.options} (over {source})"
    options.update(_flag_changes(args))
    return BiLMOptions.from_dict(options, source=source)


def _checkpoint_flags(args: argparse.Namespace) -> dict:
    """The checkpoint interval flags; none given: the library's default (bilm train: every
    10 minutes; bilm resume: as the run was started)."""
    if args.checkpoint_every is None and args.checkpoint_minutes is None:
        return {}
    return {"checkpoint_every": args.checkpoint_every,
            "checkpoint_minutes": args.checkpoint_minutes or None}


def _cmd_train(args: argparse.Namespace) -> None:
    _need_glob(args.train_prefix, "--train-prefix", "training")
    _need_file(args.vocab, "vocabulary file")
    options = _train_options(args)
    from bilm.training.run_folder import TrainingRun, writes_run

    if writes_run():  # (a cluster's other workers write nothing into the folder)
        TrainingRun(args.save_dir).check_new(args.overwrite)  # a run, or the user's files
    _start_tensorflow(args)
    _check_replicas(args.n_gpus)
    from bilm.training.core import start_training

    ckpt = start_training(args.save_dir, options, args.train_prefix, args.vocab,
                          n_gpus=args.n_gpus, seed=args.seed, n_batches=args.n_batches,
                          overwrite=args.overwrite, progress=not args.quiet,
                          collective_timeout=args.collective_timeout,
                          **_checkpoint_flags(args))
    print(f"checkpoint: {ckpt}")


def _cmd_resume(args: argparse.Namespace) -> None:
    _need_run(args.save_dir)
    _need_file(args.vocab, "vocabulary file")
    if args.train_prefix:
        _need_glob(args.train_prefix, "--train-prefix", "training")
    changes = _flag_changes(args)
    if args.unroll_steps is not None:
        changes["unroll_steps"] = args.unroll_steps
    _start_tensorflow(args)
    _check_replicas(args.n_gpus)
    from bilm.training.core import resume_training

    ckpt = resume_training(args.save_dir, train_prefix=args.train_prefix, vocab_file=args.vocab,
                           n_gpus=args.n_gpus, n_batches=args.n_batches, changes=changes,
                           progress=not args.quiet, collective_timeout=args.collective_timeout,
                           **_checkpoint_flags(args))
    print(f"checkpoint: {ckpt}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    _need_run(args.save_dir)
    _need_file(args.vocab, "vocabulary file")
    _need_glob(args.test_prefix, "--test-prefix", "held-out")
    _start_tensorflow(args)
    from bilm.training.core import evaluate_run

    ppl = evaluate_run(args.save_dir, args.test_prefix, vocab_file=args.vocab,
                       batch_size=args.batch_size, progress=not args.quiet)
    print(f"perplexity: {ppl:.3f}")


def _cmd_export(args: argparse.Namespace) -> None:
    run = _need_run(args.save_dir)
    if args.layers is not None:
        from bilm.options import load_options

        n_layers = load_options(run.options_file).n_layers
        if args.layers > n_layers:
            raise UserError(f"--layers {args.layers}: the model has {n_layers} contextual "
                            "layers")
    _check_output(args.output, args.overwrite)
    beside = os.path.join(os.path.dirname(os.path.abspath(args.output)), "options.json")
    if os.path.exists(beside) and not args.overwrite:
        raise UserError(f"{beside} exists (export writes options.json beside the weights); "
                        "pass --overwrite to replace it, or export to another folder")
    _start_tensorflow(args)
    from bilm.training.core import dump_weights

    dump_weights(args.save_dir, args.output, n_layers=args.layers, overwrite=args.overwrite)
    print(f"wrote {args.output} and options.json beside it")


def _cmd_launch(args: argparse.Namespace) -> None:
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


def _cmd_import_allennlp(args: argparse.Namespace) -> None:
    _need_file(args.archive, "archive")
    from bilm.training.run_folder import TrainingRun

    TrainingRun(args.save_dir).check_new(args.overwrite)  # a run, or the user's own files
    from bilm.io.allennlp import import_allennlp, read_archive

    archive = read_archive(args.archive)  # a broken or hostile archive fails before TensorFlow
    _start_tensorflow(args)
    ckpt = import_allennlp(archive, args.save_dir, overwrite=args.overwrite)
    print(f"checkpoint: {ckpt}")


def _cmd_export_savedmodel(args: argparse.Namespace) -> None:
    _need_char_model(args.options, "export-savedmodel")
    _need_weights(args.weights)
    if os.path.exists(args.output) and not args.overwrite:
        raise UserError(f"{args.output} exists; pass --overwrite to replace it")
    if os.path.isfile(args.output):
        raise UserError(f"{args.output} is a file; a SavedModel is a folder, give a new name")
    _start_tensorflow(args)
    from bilm.export import export_savedmodel

    export_savedmodel(args.options, args.weights, args.output, do_layer_norm=args.layer_norm,
                      overwrite=args.overwrite)
    print(f"wrote SavedModel {args.output} (signatures 'default' and 'tokens'); load it with "
          f"tf.saved_model.load({args.output!r})")


def _cmd_score(args: argparse.Namespace) -> None:
    import contextlib

    _need_file(args.input, "input file")
    _need_run(args.save_dir)
    _need_file(args.vocab, "vocabulary file")
    if args.output:
        _check_output(args.output, args.overwrite, [args.input])
    _start_tensorflow(args)
    from bilm.evaluation import score_sentences
    from bilm.training.core import load_run

    loaded = load_run(args.save_dir, args.vocab)
    try:
        # a line ends at "\n" only (not at \r, \x85, U+2028...): score i is line i
        with open(args.input, encoding="utf-8", newline="\n") as f:
            sentences = [line.split() for line in f]
    except UnicodeDecodeError as e:
        raise UserError(f"{args.input} is not UTF-8 text ({e.reason}); convert it, e.g. with "
                        "iconv") from None
    with contextlib.ExitStack() as stack:
        out = sys.stdout
        if args.output:
            from bilm.io.files import atomic_path

            tmp = stack.enter_context(atomic_path(args.output, overwrite=args.overwrite))
            out = stack.enter_context(open(tmp, "w", encoding="utf-8"))
        out.write("line\tn_tokens\tlogprob_forward\tlogprob_backward\tperplexity_forward\t"
                  "perplexity_backward\tperplexity\n")
        total_lp, total_n = 0.0, 0
        for i, sc in enumerate(score_sentences(loaded.lm, loaded.vocab, sentences,
                                               batch_size=args.batch_size)):
            bwd = sc.logprob_backward
            out.write(f"{i}\t{sc.n_tokens}\t{sc.logprob_forward:.4f}\t"
                      f"{'' if bwd is None else f'{bwd:.4f}'}\t{sc.perplexity_forward:.3f}\t"
                      f"{'' if bwd is None else f'{sc.perplexity_backward:.3f}'}\t"
                      f"{sc.perplexity:.3f}\n")
            directions = [sc.logprob_forward] + ([] if bwd is None else [bwd])
            total_lp += sum(directions) / len(directions)
            total_n += sc.n_predictions
        out.flush()
    print(f"corpus perplexity: {math.exp(-total_lp / max(total_n, 1)):.3f} over "
          f"{len(sentences)} sentences", file=sys.stderr if not args.output else sys.stdout)


def _cmd_demo(args: argparse.Namespace) -> None:
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
            _need_glob(str(corpus / part / "*"), "--corpus", part)
    _start_tensorflow(args)
    from bilm.demo import run_demo

    run_demo(out, Path(args.corpus) if args.corpus else None, n_batches=args.n_batches,
             quick=args.quick, progress=not args.quiet)


def _cluster_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collective-timeout", type=_positive_float, metavar="SECONDS",
                   help="in a cluster (TF_CONFIG, SLURM): how long a gradient all-reduce "
                   "waits for the other workers before the run stops (default 600)")


def _checkpoint_arguments(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--checkpoint-every", type=_positive, metavar="N",
                   help=f"save a checkpoint every N batches (default: {default})")
    p.add_argument("--checkpoint-minutes", type=_float_type(lambda v: 0 <= v < math.inf,
                                                            "a number >= 0"), metavar="M",
                   help=f"save a checkpoint every M minutes; 0: not by time (default: "
                   f"{default})")


def _version() -> str:
    """The installed distribution's version (bilm-tf2), else the package's own (a clone that
    was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bilm-tf2")
    except PackageNotFoundError:
        from bilm import __version__

        return __version__


# The top-level help's epilog: complete without docs/ (a wheel install has no docs folder).
_EPILOG = (
    "Global flags (-q, -v, --debug) go before COMMAND; 'bilm COMMAND --help' lists a "
    "command's arguments and their defaults. Exit codes: 0 success; 2 a mistake you can fix, "
    "told in one line on stderr ('bilm: error: what is wrong; how to fix it'); no mistake "
    "loses or half-writes a file; 130, 143 or 129 stopped by Ctrl-C, SIGTERM or SIGHUP (train and "
    "resume finish the batch and save a checkpoint first; the same signal again stops at "
    "once); 141 the reader of standard output went away (e.g. '| head'); 1 an unexpected "
    "error, a bug, shown with its traceback. --debug shows the traceback of any error.")


# bilm/presets.py: the LSTM presets train with Adagrad, the Transformer ones with Adam + noam
_LEARNING_RATE_HELP = ("the optimizer's learning rate: Adagrad for LSTM presets, Adam for "
                       "Transformer ones (with the noam schedule, its factor); default: the "
                       "options'")


def build_parser() -> argparse.ArgumentParser:
    """The ``bilm`` argument parser (no TensorFlow import)."""
    parser = _Parser(
        prog="bilm", description="ELMo-style bidirectional language models on TensorFlow 2.",
        epilog=_EPILOG, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"bilm {_version()}",
                        help="print bilm's version and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = _HelpFormatter

    p = sub.add_parser("info", help="what a model contains", formatter_class=fmt)
    p.add_argument("--options", required=True, help="options.json")
    p.add_argument("--weights", help="weights HDF5 file (lists its datasets)")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("embed", help="embed a tokenized text file (one sentence per line)",
                       formatter_class=fmt)
    p.add_argument("input", help="text file, one whitespace-tokenized sentence per line")
    p.add_argument("output", help="HDF5 output: one dataset per line, key = line index")
    p.add_argument("--options", required=True, help="options.json")
    p.add_argument("--weights", required=True, help="weights HDF5 file")
    p.add_argument("--vocab", help="vocabulary file (optional: only caches character ids)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--stateless", dest="stateful", action="store_false", default=False,
                      help="(default) each sentence from a zero LSTM state: reproducible, batched")
    mode.add_argument("--stateful", dest="stateful", action="store_true",
                      help="carry LSTM state line to line, one at a time (bilm-tf's numbers)")
    p.add_argument("--batch-size", type=_positive, default=64,
                   help="sentences per batch (stateless)")
    p.add_argument("--layers", choices=["all", "top", "average"], default="all",
                   help="all layers (n_layers + 1, ...), the top LSTM layer, or their average")
    p.add_argument("--pool", choices=["none", "mean", "max"], default="none",
                   help="one vector per token, or the mean/max over the sentence's tokens "
                   "(a blank line pools to zeros)")
    p.add_argument("--format", dest="layout", choices=["bilm", "allennlp"], default="bilm",
                   help="bilm: bilm-tf's dump_bilm_embeddings file; allennlp: also the "
                   "'sentence_to_index' dataset of AllenNLP's elmo command")
    p.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                   help="float32: exact (bilm-tf's numbers); bfloat16: bf16 matmuls, faster "
                   "on hardware with strong bf16 units, ~0.4%% relative error (the output "
                   "stays float32)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("dump-tokens", help="context-independent embeddings of a vocabulary",
                       formatter_class=fmt)
    p.add_argument("vocab", help="vocabulary file, one token per line")
    p.add_argument("output", help="HDF5 output with dataset 'embedding'")
    p.add_argument("--options", required=True, help="options.json")
    p.add_argument("--weights", required=True, help="weights HDF5 file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_cmd_dump_tokens)

    p = sub.add_parser("vocab", help="build a vocabulary from training shards",
                       formatter_class=fmt)
    p.add_argument("train_prefix", help="glob of the training shards (quote it)")
    p.add_argument("output", help="vocabulary file to write")
    p.add_argument("--min-count", type=_non_negative, default=1, help="drop rarer tokens")
    p.add_argument("--max-size", type=_int_at_least(3),
                   help="at most this many entries, <S> </S> <UNK> included")
    p.add_argument("--max-characters-per-token", type=_int_at_least(3), default=50,
                   help="the model's char_cnn.max_characters_per_token (counts long tokens)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_cmd_vocab)

    from bilm.presets import PRESETS

    p = sub.add_parser("train", help="train a biLM", formatter_class=fmt)
    p.add_argument("--train-prefix", required=True, help="glob of the training shards")
    p.add_argument("--vocab", required=True, help="vocabulary file (bilm vocab)")
    p.add_argument("--save-dir", required=True, help="checkpoints, options.json, logs")
    p.add_argument("--preset", default="tiny", choices=list(PRESETS),
                   help="built-in hyperparameters")
    p.add_argument("--options", help="JSON file overriding the preset's keys")
    p.add_argument("--n-gpus", type=_positive, default=1, help="replicas (GPUs, else CPU)")
    p.add_argument("--n-batches", type=_positive, help="stop after this many batches")
    p.add_argument("--batch-size", type=_positive, help="per replica")
    p.add_argument("--n-epochs", type=_positive, help="passes over the training tokens")
    p.add_argument("--n-train-tokens", type=_positive, help="default: counted from the shards")
    p.add_argument("--learning-rate", type=_positive_float, help=_LEARNING_RATE_HELP)
    p.add_argument("--dropout", type=_rate, help="drop rate on LSTM inputs, in [0, 1)")
    p.add_argument("--precision", choices=["float32", "mixed_bfloat16", "mixed_float16"],
                   help="training compute precision (default: the options' precision, "
                   "else float32)")
    p.add_argument("--jit", dest="jit_compile", action=argparse.BooleanOptionalAction,
                   default=None, help="XLA-compile the training step (default: the options' "
                   "jit_compile, else automatic by LSTM size)")
    p.add_argument("--seed", type=_non_negative,
                   help="seeds the initial weights, data order, dropout and negative sampling "
                   "(default: one is picked, logged and recorded in the run's run.json)")
    _checkpoint_arguments(p, "every 10 minutes")
    _cluster_arguments(p)
    p.add_argument("--overwrite", action="store_true",
                   help="remove an earlier run's files from --save-dir and start a new one")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("resume", help="continue training from the latest checkpoint",
                       formatter_class=fmt)
    p.add_argument("--save-dir", required=True, help="the directory given to bilm train")
    p.add_argument("--vocab", help="the vocabulary it was trained with (default: the run's "
                   "copy, SAVE_DIR/vocab.txt)")
    p.add_argument("--train-prefix", help="glob of the training shards (default: the ones "
                   "the run was started with)")
    p.add_argument("--n-gpus", type=_positive, default=1, help="replicas (GPUs, else CPU)")
    p.add_argument("--n-batches", type=_positive,
                   help="total batches to reach (default: the run's recorded target)")
    p.add_argument("--n-epochs", type=_positive, help="override the options' n_epochs")
    p.add_argument("--n-train-tokens", type=_positive,
                   help="override the options' n_train_tokens")
    p.add_argument("--batch-size", type=_positive,
                   help="per replica; a change restarts the carried LSTM states from zeros")
    p.add_argument("--unroll-steps", type=_positive, help="override the options' unroll_steps")
    p.add_argument("--learning-rate", type=_positive_float, help=_LEARNING_RATE_HELP)
    p.add_argument("--dropout", type=_rate, help="drop rate on LSTM inputs, in [0, 1)")
    p.add_argument("--precision", choices=["float32", "mixed_bfloat16", "mixed_float16"],
                   help="training compute precision")
    p.add_argument("--jit", dest="jit_compile", action=argparse.BooleanOptionalAction,
                   default=None, help="XLA-compile the training step")
    _checkpoint_arguments(p, "as the run was started")
    _cluster_arguments(p)
    p.set_defaults(func=_cmd_resume)

    p = sub.add_parser("evaluate", help="held-out perplexity of the latest checkpoint",
                       formatter_class=fmt)
    p.add_argument("--save-dir", required=True, help="training directory (latest checkpoint)")
    p.add_argument("--vocab", help="the vocabulary it was trained with (default: the run's "
                   "copy)")
    p.add_argument("--test-prefix", required=True, help="glob of the held-out shards")
    p.add_argument("--batch-size", type=_positive, default=256,
                   help="LSTM: rows streamed in parallel; Transformer: most sentences a batch "
                   "(also bounded by tokens: at most 16M softmax logits)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("export", help="latest checkpoint -> weights.hdf5 + options.json",
                       formatter_class=fmt)
    p.add_argument("--save-dir", required=True, help="training directory (latest checkpoint)")
    p.add_argument("output", help="HDF5 weights file to write (options.json goes beside it)")
    p.add_argument("--layers", type=_positive, metavar="N",
                   help="keep the token layer and the first N contextual layers (default: "
                   "all); e.g. 1 for the 'reduced ELMo'")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("launch", help="run train or resume as several workers on this "
                       "machine (a multi-worker try-out)", formatter_class=fmt)
    p.add_argument("--workers", type=_int_at_least(2), default=2, help="worker processes")
    p.add_argument("worker_command", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="-- train ... or -- resume ... (bilm's own arguments)")
    p.set_defaults(func=_cmd_launch)

    p = sub.add_parser("import-allennlp", help="an AllenNLP language-model archive (Transformer "
                       "ELMo's model.tar.gz) -> a training directory", formatter_class=fmt)
    p.add_argument("archive", help="model.tar.gz (or its unpacked folder)")
    p.add_argument("save_dir", help="the training directory to write")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a training run already in SAVE_DIR")
    p.set_defaults(func=_cmd_import_allennlp)

    p = sub.add_parser("export-savedmodel", help="weights -> TF SavedModel with the TF Hub "
                       "ELMo signatures (raw text in; TensorFlow only to serve)",
                       formatter_class=fmt)
    p.add_argument("output", help="SavedModel folder to write")
    p.add_argument("--options", required=True, help="options.json")
    p.add_argument("--weights", required=True, help="weights HDF5 file")
    p.add_argument("--layer-norm", action="store_true",
                   help="layer-normalise each layer before the 'elmo' mix")
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    p.set_defaults(func=_cmd_export_savedmodel)

    p = sub.add_parser("score", help="per-sentence log-probability and perplexity under a "
                       "trained checkpoint", formatter_class=fmt)
    p.add_argument("input", help="text file, one tokenized sentence per line")
    p.add_argument("--save-dir", required=True, help="training directory (latest checkpoint)")
    p.add_argument("--vocab", help="the vocabulary it was trained with (default: the run's "
                   "copy)")
    p.add_argument("--output", help="TSV file (default: standard output)")
    p.add_argument("--batch-size", type=_positive, default=64,
                   help="most sentences per batch (also bounded by tokens: at most 16M "
                   "softmax logits)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("demo", help="the whole toolkit in minutes, on text shipped with "
                       "Python", formatter_class=fmt)
    p.add_argument("--output", default="bilm-demo", help="folder for every artifact")
    p.add_argument("--corpus", help="a folder with train/* and heldout/* (default: Python's "
                   "own documentation)")
    p.add_argument("--n-batches", type=_positive, help="training batches (default 1500)")
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    p.add_argument("--overwrite", action="store_true", help="reuse a non-empty --output")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bilm`` command; returns the exit code (2 for a user mistake, 128 + N after
    signal N, e.g. 130 for Ctrl-C and 143 for SIGTERM once the checkpoint is saved)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from bilm.logs import configure_logging

    configure_logging(-1 if args.quiet else (1 if args.verbose else 0))
    return run_main("bilm", lambda: args.func(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
