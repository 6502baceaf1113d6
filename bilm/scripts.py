"""bilm-tf's command-line scripts (``bin/train_elmo.py``, ``bin/run_test.py``,
``bin/restart.py``, ``bin/dump_weights.py``) with bilm-tf's flags, installed as commands.

Thin shells over the library, as the ``bilm`` command is (neither calls the other): each
parses bilm-tf's flags and calls one function of :mod:`bilm.training.runs`,
:mod:`bilm.evaluation` or :mod:`bilm.export`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

__all__ = ["dump_weights_main", "restart", "run_test", "train_elmo"]


def _main(prog: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None,
          body: Callable[[argparse.Namespace], object]) -> None:
    """Parse, set up logging, run ``body``; user mistakes end with one line and exit 2."""
    from bilm._shell import run_main
    from bilm.logs import configure_logging, import_tensorflow

    args = parser.parse_args(argv)
    configure_logging(0)
    import_tensorflow()
    code = run_main(prog, lambda: body(args))
    if code:
        sys.exit(code)


def train_elmo(argv: Sequence[str] | None = None) -> None:
    """``train_elmo.py --save_dir --vocab_file --train_prefix [--n_gpus] [--options]``:
    a new run with the released ELMo's hyperparameters (``--options`` overrides keys)."""
    p = argparse.ArgumentParser(prog="train_elmo.py", description="Train a biLM with ELMo's "
                                "hyperparameters (bilm-tf's bin/train_elmo.py).")
    p.add_argument("--save_dir", required=True, help="checkpoints, options.json, logs")
    p.add_argument("--vocab_file", required=True, help="vocabulary (<S>, </S>, <UNK> first)")
    p.add_argument("--train_prefix", required=True, help="glob of the training shards")
    p.add_argument("--n_gpus", type=int, default=1, help="replicas (GPUs, else CPU)")
    p.add_argument("--options", help="JSON file overriding the built-in hyperparameters")
    p.add_argument("--seed", type=int, help="default: picked, logged and recorded")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in --save_dir")

    def body(args: argparse.Namespace) -> None:
        from bilm.presets import merge_options, preset
        from bilm.training.runs import start_training

        options = preset("original")
        if args.options:
            with open(args.options, encoding="utf-8") as f:
                options = merge_options(options, json.load(f))
        start_training(args.save_dir, options, args.train_prefix, args.vocab_file,
                       n_gpus=args.n_gpus, seed=args.seed, overwrite=args.overwrite)

    _main("train_elmo.py", p, argv, body)


def run_test(argv: Sequence[str] | None = None) -> None:
    """``run_test.py --save_dir --vocab_file --test_prefix [--batch_size]``: perplexity."""
    p = argparse.ArgumentParser(prog="run_test.py", description="Held-out perplexity of the "
                                "latest checkpoint (bilm-tf's bin/run_test.py).")
    p.add_argument("--save_dir", required=True)
    p.add_argument("--vocab_file", help="default: the run's copy of its vocabulary")
    p.add_argument("--test_prefix", required=True, help="glob of the held-out shards")
    p.add_argument("--batch_size", type=int, default=256)

    def body(args: argparse.Namespace) -> None:
        from bilm.evaluation import evaluate_run

        ppl = evaluate_run(args.save_dir, args.test_prefix, vocab_file=args.vocab_file,
                           batch_size=args.batch_size)
        print(f"perplexity: {ppl:.3f}")

    _main("run_test.py", p, argv, body)


def restart(argv: Sequence[str] | None = None) -> None:
    """``restart.py --save_dir --vocab_file --train_prefix [--n_epochs --batch_size
    --n_train_tokens --n_gpus]``: continue training from the latest checkpoint."""
    p = argparse.ArgumentParser(prog="restart.py", description="Continue training from the "
                                "latest checkpoint (bilm-tf's bin/restart.py).")
    p.add_argument("--save_dir", required=True)
    p.add_argument("--vocab_file", help="default: the run's copy of its vocabulary")
    p.add_argument("--train_prefix", help="default: the files the run was started with")
    p.add_argument("--n_gpus", type=int, default=1)
    p.add_argument("--n_epochs", type=int, help="override the options' n_epochs")
    p.add_argument("--batch_size", type=int, help="override the options' batch_size")
    p.add_argument("--n_train_tokens", type=int, help="override the options' n_train_tokens")

    def body(args: argparse.Namespace) -> None:
        from bilm.training.runs import resume_training

        changes = {k: getattr(args, k) for k in ("n_epochs", "batch_size", "n_train_tokens")
                   if getattr(args, k) is not None}
        resume_training(args.save_dir, train_prefix=args.train_prefix,
                        vocab_file=args.vocab_file, n_gpus=args.n_gpus, changes=changes)

    _main("restart.py", p, argv, body)


def dump_weights_main(argv: Sequence[str] | None = None) -> None:
    """``dump_weights.py --save_dir --outfile``: latest checkpoint -> HDF5 + options.json."""
    p = argparse.ArgumentParser(prog="dump_weights.py", description="Export the latest "
                                "checkpoint to bilm-tf's HDF5 weights (bilm-tf's "
                                "bin/dump_weights.py).")
    p.add_argument("--save_dir", required=True)
    p.add_argument("--outfile", required=True)

    def body(args: argparse.Namespace) -> None:
        from bilm.export import dump_weights

        dump_weights(args.save_dir, args.outfile)

    _main("dump_weights.py", p, argv, body)


if __name__ == "__main__":
    sys.exit("run bin/train_elmo.py, bin/run_test.py, bin/restart.py or bin/dump_weights.py")
