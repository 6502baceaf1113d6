"""The ``bilm`` command line. The only module that configures logging."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

logger = logging.getLogger("bilm")


class UserError(Exception):
    """A mistake the user can fix: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``bilm embed: error: ...; see 'bilm embed --help'``."""

    def error(self, message: str) -> NoReturn:
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


def _setup_logging(verbosity: int) -> None:
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if verbosity < 1:  # TensorFlow's start-up chatter
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _start_tensorflow(args: argparse.Namespace) -> None:
    """Import TensorFlow and find its devices, its native start-up lines hidden unless
    --verbose: absl writes them to stderr before any log level applies (TF_CPP_MIN_LOG_LEVEL
    does not silence them), and they would bury a one-line error."""
    if args.verbose or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        import keras  # noqa: F401  (its start-up lines too)
        import tensorflow as tf

        devices = tf.config.list_physical_devices()  # CUDA's start-up lines
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    logger.debug("TensorFlow %s, devices %s", tf.__version__, [d.name for d in devices])


# -- checks run before TensorFlow is imported: a mistake costs a fraction of a second ---------

def _check_output(path: str, overwrite: bool, inputs: Sequence[str | None] = ()) -> None:
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory; give a file name for the output")
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


def _need_run(save_dir: str) -> None:
    """A training directory: options.json and a checkpoint."""
    if not os.path.isdir(save_dir):
        raise UserError(f"training directory not found: {save_dir}; pass the --save-dir "
                        "given to bilm train")
    if not os.path.exists(os.path.join(save_dir, "options.json")):
        raise UserError(f"{save_dir} has no options.json: not a bilm training directory")
    if not os.path.exists(os.path.join(save_dir, "checkpoint")):
        raise UserError(f"no checkpoint in {save_dir}; run bilm train first")


def _check_replicas(n_gpus: int) -> None:
    """--n-gpus against the visible devices (tf.distribute's own error is a traceback)."""
    if n_gpus <= 1 or os.environ.get("TF_CONFIG"):
        return
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    if n_gpus > len(devices):
        raise UserError(f"--n-gpus {n_gpus} but only {len(devices)} "
                        f"{'GPU' if gpus else 'CPU'} device(s) are visible; lower --n-gpus")


def _user_message(error: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for a bug (a traceback).

    Every exception that reaches the command line is sorted here, in one place.
    """
    from bilm.data.vocabulary import VocabularyError
    from bilm.options import OptionsError

    if isinstance(error, (UserError, OptionsError, VocabularyError)):
        message = str(error)
    elif isinstance(error, UnicodeDecodeError):
        message = f"a text file is not UTF-8 ({error.reason}); convert it, e.g. with iconv"
    elif isinstance(error, OSError):  # a path that is missing or unwritable, a full disk
        message = str(error) or type(error).__name__
    elif type(error).__name__ == "ResourceExhaustedError":  # TensorFlow out of memory
        message = f"out of memory ({str(error).splitlines()[0]}); lower --batch-size"
    elif (isinstance(error, (ValueError, RuntimeError))
          and type(error).__module__.split(".")[0] == "bilm"):
        message = str(error)  # bilm's own error classes: WeightFileError, TrainingError
    else:
        return None
    return " ".join(message.split())


def _cmd_info(args: argparse.Namespace) -> None:
    options = _need_options(args.options)
    if args.weights:
        _need_weights(args.weights)
    print(f"options: {args.options}")
    print(f"input: {'characters' if options.use_character_inputs else 'words'}")
    lstm = options.lstm
    print(f"lstm: {lstm.n_layers} layers, dim {lstm.dim}, projection {lstm.projection_dim}, "
          f"skip connections {lstm.use_skip_connections}")
    if options.char_cnn is not None:
        cnn = options.char_cnn
        print(f"char_cnn: filters {[list(f) for f in cnn.filters]}, {cnn.n_highway} highway, "
              f"embedding {cnn.embedding_dim}, n_characters {cnn.n_characters}")
    if args.weights:
        import h5py

        total = 0
        with h5py.File(args.weights, "r") as f:
            rows = []
            f.visititems(lambda n, o: rows.append((n, o.shape))
                         if isinstance(o, h5py.Dataset) else None)
        for name, shape in rows:
            size = 1
            for s in shape:
                size *= s
            total += size
            print(f"  {name:<50} {shape}")
        print(f"parameters: {total:,}")


def _cmd_embed(args: argparse.Namespace) -> None:
    _need_file(args.input, "input file")
    _check_output(args.output, args.overwrite, [args.input])
    _need_char_model(args.options, "embed")
    _need_weights(args.weights)
    _need_file(args.vocab, "vocabulary file")
    _start_tensorflow(args)
    from bilm.model import dump_bilm_embeddings

    try:
        dump_bilm_embeddings(args.vocab, args.input, args.options, args.weights, args.output,
                             stateful=args.stateful, batch_size=args.batch_size,
                             progress=not args.quiet, layers=args.layers, pool=args.pool,
                             layout=args.layout)
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
    from bilm.model import dump_token_embeddings

    dump_token_embeddings(args.vocab, args.options, args.weights, args.output,
                          progress=not args.quiet)
    logger.info("wrote %s", args.output)


def _cmd_vocab(args: argparse.Namespace) -> None:
    _need_glob(args.train_prefix, "TRAIN_PREFIX", "training")
    _check_output(args.output, args.overwrite)
    from bilm.data.build_vocab import build_vocab

    stats = build_vocab(args.train_prefix, args.output, min_count=args.min_count,
                        max_size=args.max_size,
                        max_characters_per_token=args.max_characters_per_token,
                        progress=not args.quiet)
    print(f"{stats.n_written} entries written to {args.output} ({stats.n_tokens} tokens, "
          f"{stats.n_types} types, {stats.n_long} longer than "
          f"{args.max_characters_per_token - 2} bytes)")


# Command-line flags that override the options' training keys (flag dest -> options key).
_TRAIN_FLAGS = {"batch_size": "batch_size", "n_epochs": "n_epochs",
                "n_train_tokens": "n_train_tokens", "learning_rate": "learning_rate",
                "dropout": "dropout", "precision": "precision", "jit_compile": "jit_compile"}


def _train_options(args: argparse.Namespace) -> dict:
    """The preset, merged with --options FILE, then the flags; validated (no TensorFlow)."""
    from bilm.options import BiLMOptions, read_options_json
    from bilm.presets import preset
    from bilm.scripts import merge_options

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
    for dest, key in _TRAIN_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            options[key] = value
    BiLMOptions.from_dict(options, source=source)  # OptionsError names the key and the file
    return options


def _cmd_train(args: argparse.Namespace) -> None:
    _need_glob(args.train_prefix, "--train-prefix", "training")
    _need_file(args.vocab, "vocabulary file")
    options = _train_options(args)
    if os.path.exists(os.path.join(args.save_dir, "checkpoint")) and not args.overwrite:
        raise UserError(f"{args.save_dir} already holds a training run; continue it with "
                        "bilm resume, or pass --overwrite to start a new one there")
    _start_tensorflow(args)
    from bilm.options import BiLMOptions
    from bilm.scripts import _data
    from bilm.training import load_vocab, train

    _check_replicas(args.n_gpus)
    cnn = options.get("char_cnn")
    vocab = load_vocab(args.vocab, cnn["max_characters_per_token"] if cnn else None)
    options["n_tokens_vocab"] = vocab.size
    opts = BiLMOptions.from_dict(options)
    data = _data(args.train_prefix, vocab, opts.bidirectional, False, True)
    ckpt = train(opts, data, args.n_gpus, args.save_dir, args.save_dir, seed=args.seed,
                 n_batches=args.n_batches, progress=not args.quiet)
    print(f"checkpoint: {ckpt}")


def _cmd_resume(args: argparse.Namespace) -> None:
    _need_run(args.save_dir)
    _need_file(args.vocab, "vocabulary file")
    _need_glob(args.train_prefix, "--train-prefix", "training")
    _start_tensorflow(args)
    from bilm.scripts import restart

    _check_replicas(args.n_gpus)
    argv = ["--save_dir", args.save_dir, "--vocab_file", args.vocab, "--train_prefix",
            args.train_prefix, "--n_gpus", str(args.n_gpus)]
    for key in ("n_epochs", "batch_size", "n_train_tokens"):
        if getattr(args, key) is not None:
            argv += [f"--{key}", str(getattr(args, key))]
    restart(argv)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    _need_run(args.save_dir)
    _need_file(args.vocab, "vocabulary file")
    _need_glob(args.test_prefix, "--test-prefix", "held-out")
    _start_tensorflow(args)
    from bilm.scripts import run_test

    try:
        run_test(["--save_dir", args.save_dir, "--vocab_file", args.vocab, "--test_prefix",
                  args.test_prefix, "--batch_size", str(args.batch_size)])
    except ValueError as e:  # training.test's plain ValueError for too little text
        if "smaller than one batch" not in str(e):
            raise
        raise UserError(f"the held-out text is smaller than one batch of --batch-size "
                        f"{args.batch_size}; lower --batch-size") from None


def _cmd_export(args: argparse.Namespace) -> None:
    _need_run(args.save_dir)
    _check_output(args.output, args.overwrite)
    beside = os.path.join(os.path.dirname(os.path.abspath(args.output)), "options.json")
    if os.path.exists(beside) and not args.overwrite:
        raise UserError(f"{beside} exists (export writes options.json beside the weights); "
                        "pass --overwrite to replace it, or export to another folder")
    _start_tensorflow(args)
    from bilm.training import dump_weights

    dump_weights(args.save_dir, args.output)
    print(f"wrote {args.output} and options.json beside it")


def _cmd_export_savedmodel(args: argparse.Namespace) -> None:
    _need_char_model(args.options, "export-savedmodel")
    _need_weights(args.weights)
    if os.path.exists(args.output) and not args.overwrite:
        raise UserError(f"{args.output} exists; pass --overwrite to replace it")
    if os.path.isfile(args.output):
        raise UserError(f"{args.output} is a file; a SavedModel is a folder, give a new name")
    _start_tensorflow(args)
    from bilm.savedmodel import export_savedmodel

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
    from bilm.scoring import score_sentences
    from bilm.training import _Trainer, load_options_latest_checkpoint, load_vocab

    options, ckpt = load_options_latest_checkpoint(args.save_dir)
    vocab = load_vocab(args.vocab, options.char_cnn.max_characters_per_token
                       if options.char_cnn else None)
    import tensorflow as tf

    trainer = _Trainer(options, tf.distribute.get_strategy(), for_training=False)
    trainer.restore(ckpt, weights_only=True)
    try:
        with open(args.input, encoding="utf-8") as f:
            sentences = [line.split() for line in f]
    except UnicodeDecodeError as e:
        raise UserError(f"{args.input} is not UTF-8 text ({e.reason}); convert it, e.g. with "
                        "iconv") from None
    with contextlib.ExitStack() as stack:
        out = sys.stdout
        if args.output:
            from bilm._io import atomic_path

            tmp = stack.enter_context(atomic_path(args.output))
            out = stack.enter_context(open(tmp, "w", encoding="utf-8"))
        out.write("line\tn_tokens\tlogprob_forward\tlogprob_backward\tperplexity_forward\t"
                  "perplexity_backward\tperplexity\n")
        total_lp, total_n = 0.0, 0
        for i, sc in enumerate(score_sentences(trainer.lm, vocab, sentences,
                                               batch_size=args.batch_size)):
            bwd = sc.logprob_backward
            out.write(f"{i}\t{sc.n_tokens}\t{sc.logprob_forward:.4f}\t"
                      f"{'' if bwd is None else f'{bwd:.4f}'}\t{sc.perplexity_forward:.3f}\t"
                      f"{'' if bwd is None else f'{sc.perplexity_backward:.3f}'}\t"
                      f"{sc.perplexity:.3f}\n")
            directions = [sc.logprob_forward] + ([] if bwd is None else [bwd])
            total_lp += sum(directions) / len(directions)
            total_n += sc.n_predictions
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


def build_parser() -> argparse.ArgumentParser:
    """The ``bilm`` argument parser (no TensorFlow import)."""
    parser = _Parser(
        prog="bilm", description="ELMo-style bidirectional language models on TensorFlow 2.",
        epilog="User mistakes print one line and exit with code 2; --debug shows tracebacks. "
        "Reference: docs/cli.md.", formatter_class=_HelpFormatter)
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
    p.add_argument("--learning-rate", type=_positive_float, help="Adagrad's learning rate")
    p.add_argument("--dropout", type=_rate, help="drop rate on LSTM inputs, in [0, 1)")
    p.add_argument("--precision", choices=["float32", "mixed_bfloat16", "mixed_float16"],
                   help="training compute precision (default: the options' precision, "
                   "else float32)")
    p.add_argument("--jit", dest="jit_compile", action=argparse.BooleanOptionalAction,
                   default=None, help="XLA-compile the training step (default: the options' "
                   "jit_compile, else automatic by LSTM size)")
    p.add_argument("--seed", type=_non_negative, default=0,
                   help="initial weights, dropout and negative sampling")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a --save-dir that already holds checkpoints")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("resume", help="continue training from the latest checkpoint",
                       formatter_class=fmt)
    p.add_argument("--save-dir", required=True, help="the directory given to bilm train")
    p.add_argument("--vocab", required=True, help="the vocabulary it was trained with")
    p.add_argument("--train-prefix", required=True, help="glob of the training shards")
    p.add_argument("--n-gpus", type=_positive, default=1, help="replicas (GPUs, else CPU)")
    p.add_argument("--n-epochs", type=_positive, help="override the options' n_epochs")
    p.add_argument("--batch-size", type=_positive, help="override the options' batch_size")
    p.add_argument("--n-train-tokens", type=_positive,
                   help="override the options' n_train_tokens")
    p.set_defaults(func=_cmd_resume)

    p = sub.add_parser("evaluate", help="held-out perplexity of the latest checkpoint",
                       formatter_class=fmt)
    p.add_argument("--save-dir", required=True, help="training directory (latest checkpoint)")
    p.add_argument("--vocab", required=True, help="the vocabulary it was trained with")
    p.add_argument("--test-prefix", required=True, help="glob of the held-out shards")
    p.add_argument("--batch-size", type=_positive, default=256,
                   help="rows streamed in parallel")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("export", help="latest checkpoint -> weights.hdf5 + options.json",
                       formatter_class=fmt)
    p.add_argument("--save-dir", required=True, help="training directory (latest checkpoint)")
    p.add_argument("output", help="HDF5 weights file to write (options.json goes beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_cmd_export)

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
    p.add_argument("--vocab", required=True, help="the vocabulary it was trained with")
    p.add_argument("--output", help="TSV file (default: standard output)")
    p.add_argument("--batch-size", type=_positive, default=64, help="sentences per batch")
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
    """Run the ``bilm`` command; returns the exit code (2 for a user mistake)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(-1 if args.quiet else (1 if args.verbose else 0))
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("bilm: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = None if args.debug else _user_message(e)
        if message is None:
            raise
        print(f"bilm: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
