"""The ``bilm`` command line. The only module that configures logging."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence

logger = logging.getLogger("bilm")


class UserError(Exception):
    """A mistake the user can fix: printed as one line, exit code 2."""


def _setup_logging(verbosity: int) -> None:
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if verbosity < 1:  # TensorFlow's start-up chatter
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _check_output(path: str, overwrite: bool) -> None:
    if os.path.exists(path) and not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it")


def _cmd_info(args: argparse.Namespace) -> None:
    import h5py

    from bilm.options import load_options

    options = load_options(args.options)
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
    from bilm.model import dump_bilm_embeddings

    if not os.path.exists(args.input):
        raise UserError(f"input file not found: {args.input}")
    _check_output(args.output, args.overwrite)
    dump_bilm_embeddings(args.vocab, args.input, args.options, args.weights, args.output,
                         stateful=args.stateful, batch_size=args.batch_size,
                         progress=not args.quiet)
    logger.info("wrote %s", args.output)


def _cmd_dump_tokens(args: argparse.Namespace) -> None:
    from bilm.model import dump_token_embeddings

    _check_output(args.output, args.overwrite)
    dump_token_embeddings(args.vocab, args.options, args.weights, args.output)
    logger.info("wrote %s", args.output)


def _cmd_vocab(args: argparse.Namespace) -> None:
    from bilm.data.build_vocab import build_vocab

    _check_output(args.output, args.overwrite)
    stats = build_vocab(args.train_prefix, args.output, min_count=args.min_count,
                        max_size=args.max_size,
                        max_characters_per_token=args.max_characters_per_token,
                        progress=not args.quiet)
    print(f"{stats.n_written} entries written to {args.output} ({stats.n_tokens} tokens, "
          f"{stats.n_types} types, {stats.n_long} longer than "
          f"{args.max_characters_per_token - 2} bytes)")


def _train_options(args: argparse.Namespace) -> dict:
    import json

    from bilm.presets import preset
    from bilm.scripts import merge_options

    options = preset(args.preset)
    if args.options:
        try:
            with open(args.options, encoding="utf-8") as f:
                options = merge_options(options, json.load(f))
        except FileNotFoundError:
            raise UserError(f"options file not found: {args.options}") from None
        except json.JSONDecodeError as e:
            raise UserError(f"{args.options} is not valid JSON: {e}") from None
    for key in ("batch_size", "n_epochs", "n_train_tokens", "learning_rate", "dropout"):
        value = getattr(args, key, None)
        if value is not None:
            options[key] = value
    return options


def _cmd_train(args: argparse.Namespace) -> None:
    from bilm.options import BiLMOptions
    from bilm.scripts import _data
    from bilm.training import load_vocab, train

    options = _train_options(args)
    cnn = options.get("char_cnn")
    vocab = load_vocab(args.vocab, cnn["max_characters_per_token"] if cnn else None)
    options["n_tokens_vocab"] = vocab.size
    opts = BiLMOptions.from_dict(options)
    data = _data(args.train_prefix, vocab, opts.bidirectional, False, True)
    ckpt = train(opts, data, args.n_gpus, args.save_dir, args.save_dir, seed=args.seed,
                 n_batches=args.n_batches, progress=not args.quiet)
    print(f"checkpoint: {ckpt}")


def _cmd_resume(args: argparse.Namespace) -> None:
    from bilm.scripts import restart

    argv = ["--save_dir", args.save_dir, "--vocab_file", args.vocab, "--train_prefix",
            args.train_prefix, "--n_gpus", str(args.n_gpus)]
    for key in ("n_epochs", "batch_size", "n_train_tokens"):
        if getattr(args, key) is not None:
            argv += [f"--{key}", str(getattr(args, key))]
    restart(argv)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from bilm.scripts import run_test

    run_test(["--save_dir", args.save_dir, "--vocab_file", args.vocab, "--test_prefix",
              args.test_prefix, "--batch_size", str(args.batch_size)])


def _cmd_export(args: argparse.Namespace) -> None:
    from bilm.training import dump_weights

    _check_output(args.output, args.overwrite)
    dump_weights(args.save_dir, args.output)
    print(f"wrote {args.output} and options.json beside it")


def _cmd_score(args: argparse.Namespace) -> None:
    import contextlib

    from bilm.scoring import score_sentences
    from bilm.training import _Trainer, load_options_latest_checkpoint, load_vocab

    if not os.path.exists(args.input):
        raise UserError(f"input file not found: {args.input}")
    if args.output:
        _check_output(args.output, args.overwrite)
    options, ckpt = load_options_latest_checkpoint(args.save_dir)
    vocab = load_vocab(args.vocab, options.char_cnn.max_characters_per_token
                       if options.char_cnn else None)
    import tensorflow as tf

    trainer = _Trainer(options, tf.distribute.get_strategy(), for_training=False)
    trainer.restore(ckpt, weights_only=True)
    with open(args.input, encoding="utf-8") as f:
        sentences = [line.split() for line in f]
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

    from bilm.demo import run_demo

    out = Path(args.output)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UserError(f"{out} is not empty; pass --overwrite or another --output")
    run_demo(out, Path(args.corpus) if args.corpus else None, n_batches=args.n_batches,
             quick=args.quick, progress=not args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bilm", description="ELMo-style bidirectional language models on TensorFlow 2.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.ArgumentDefaultsHelpFormatter

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
                      help="each sentence from a zero LSTM state: reproducible and batched")
    mode.add_argument("--stateful", dest="stateful", action="store_true",
                      help="carry LSTM state line to line, one at a time (bilm-tf's numbers)")
    p.add_argument("--batch-size", type=int, default=64, help="sentences per batch (stateless)")
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
    p.add_argument("train_prefix", help="glob of the training shards")
    p.add_argument("output", help="vocabulary file to write")
    p.add_argument("--min-count", type=int, default=1, help="drop rarer tokens")
    p.add_argument("--max-size", type=int, help="at most this many entries")
    p.add_argument("--max-characters-per-token", type=int, default=50)
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
    p.add_argument("--n-gpus", type=int, default=1, help="replicas (GPUs, else CPU)")
    p.add_argument("--n-batches", type=int, help="stop after this many batches")
    p.add_argument("--batch-size", type=int, help="per replica")
    p.add_argument("--n-epochs", type=int)
    p.add_argument("--n-train-tokens", type=int, help="default: counted from the shards")
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--dropout", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("resume", help="continue training from the latest checkpoint",
                       formatter_class=fmt)
    p.add_argument("--save-dir", required=True)
    p.add_argument("--vocab", required=True)
    p.add_argument("--train-prefix", required=True)
    p.add_argument("--n-gpus", type=int, default=1)
    p.add_argument("--n-epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--n-train-tokens", type=int)
    p.set_defaults(func=_cmd_resume)

    p = sub.add_parser("evaluate", help="held-out perplexity of the latest checkpoint",
                       formatter_class=fmt)
    p.add_argument("--save-dir", required=True)
    p.add_argument("--vocab", required=True)
    p.add_argument("--test-prefix", required=True, help="glob of the held-out shards")
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("export", help="latest checkpoint -> weights.hdf5 + options.json",
                       formatter_class=fmt)
    p.add_argument("--save-dir", required=True)
    p.add_argument("output", help="HDF5 weights file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("score", help="per-sentence log-probability and perplexity under a "
                       "trained checkpoint", formatter_class=fmt)
    p.add_argument("input", help="text file, one tokenized sentence per line")
    p.add_argument("--save-dir", required=True, help="training directory (latest checkpoint)")
    p.add_argument("--vocab", required=True)
    p.add_argument("--output", help="TSV file (default: standard output)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("demo", help="the whole toolkit in minutes, on text shipped with "
                       "Python", formatter_class=fmt)
    p.add_argument("--output", default="bilm-demo", help="folder for every artifact")
    p.add_argument("--corpus", help="a folder with train/* and heldout/* (default: Python's "
                   "own documentation)")
    p.add_argument("--n-batches", type=int, help="training batches (default 1500)")
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    p.add_argument("--overwrite", action="store_true", help="reuse a non-empty --output")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(-1 if args.quiet else (1 if args.verbose else 0))
    for flag in ("batch_size", "n_batches", "n_epochs", "n_gpus", "n_train_tokens"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    from bilm.data.vocabulary import VocabularyError
    from bilm.options import OptionsError

    try:
        args.func(args)
    except KeyboardInterrupt:
        print("bilm: interrupted", file=sys.stderr)
        return 130
    except (UserError, OptionsError, VocabularyError, FileNotFoundError) as e:
        if args.debug:
            raise
        print(f"bilm: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as e:  # weight-file mismatches, training stops
        if args.debug or type(e).__module__.split(".")[0] != "bilm":
            raise
        print(f"bilm: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
