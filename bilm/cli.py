"""The ``bilm`` command line. The only module that configures logging."""

from __future__ import annotations

import argparse
import logging
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(-1 if args.quiet else (1 if args.verbose else 0))
    if getattr(args, "batch_size", 1) < 1:
        parser.error("--batch-size must be >= 1")
    from bilm.data.vocabulary import VocabularyError
    from bilm.options import OptionsError

    try:
        args.func(args)
    except (UserError, OptionsError, VocabularyError, FileNotFoundError) as e:
        if args.debug:
            raise
        print(f"bilm: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # weight-file mismatches and bad inputs
        if args.debug or type(e).__module__.split(".")[0] != "bilm":
            raise
        print(f"bilm: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
