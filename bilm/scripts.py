"""bilm-tf's command-line scripts (``bin/train_elmo.py``, ``bin/run_test.py``,
``bin/restart.py``, ``bin/dump_weights.py``) with their flags, installed as commands."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["dump_weights_main", "merge_options", "restart", "run_test", "train_elmo"]


def _setup() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")


def merge_options(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override``'s keys replaced, nested sections merged key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_options(out[key], value)
        else:
            out[key] = value
    return out


def _data(prefix: str, vocab, bidirectional: bool, test: bool, shuffle: bool):
    from bilm.data import BidirectionalLMDataset, LMDataset

    cls = BidirectionalLMDataset if bidirectional else LMDataset
    return cls(prefix, vocab, test=test, shuffle_on_load=shuffle)


def _max_chars(options: dict[str, Any]) -> int | None:
    cnn = options.get("char_cnn")
    return cnn["max_characters_per_token"] if cnn else None


def train_elmo(argv: Sequence[str] | None = None) -> None:
    """``train_elmo.py --save_dir --vocab_file --train_prefix [--n_gpus] [--options]``."""
    p = argparse.ArgumentParser(description="Train a biLM with ELMo's hyperparameters "
                                "(bilm-tf's bin/train_elmo.py).")
    p.add_argument("--save_dir", required=True, help="checkpoints, options.json, logs")
    p.add_argument("--vocab_file", required=True, help="vocabulary (<S>, </S>, <UNK> first)")
    p.add_argument("--train_prefix", required=True, help="glob of the training shards")
    p.add_argument("--n_gpus", type=int, default=1, help="replicas (GPUs, else CPU)")
    p.add_argument("--options", help="JSON file overriding the built-in hyperparameters")
    args = p.parse_args(argv)
    _setup()
    from bilm.presets import preset
    from bilm.training import load_vocab, train

    options = preset("original")
    if args.options:
        with open(args.options, encoding="utf-8") as f:
            options = merge_options(options, json.load(f))
    vocab = load_vocab(args.vocab_file, _max_chars(options))
    options["n_tokens_vocab"] = vocab.size
    data = _data(args.train_prefix, vocab, options.get("bidirectional", True), False, True)
    train(options, data, args.n_gpus, args.save_dir, args.save_dir)


def run_test(argv: Sequence[str] | None = None) -> float:
    """``run_test.py --save_dir --vocab_file --test_prefix [--batch_size]``: perplexity."""
    p = argparse.ArgumentParser(description="Held-out perplexity of the latest checkpoint "
                                "(bilm-tf's bin/run_test.py).")
    p.add_argument("--save_dir", required=True)
    p.add_argument("--vocab_file", required=True)
    p.add_argument("--test_prefix", required=True, help="glob of the held-out shards")
    p.add_argument("--batch_size", type=int, default=256)
    args = p.parse_args(argv)
    _setup()
    from bilm.training import load_options_latest_checkpoint, load_vocab, test

    options, ckpt = load_options_latest_checkpoint(args.save_dir)
    max_chars = options.char_cnn.max_characters_per_token if options.char_cnn else None
    vocab = load_vocab(args.vocab_file, max_chars)
    data = _data(args.test_prefix, vocab, options.bidirectional, True, False)
    ppl = test(options, ckpt, data, batch_size=args.batch_size)
    print(f"perplexity: {ppl:.3f}")
    return ppl


def restart(argv: Sequence[str] | None = None) -> None:
    """``restart.py --save_dir --vocab_file --train_prefix [--n_epochs --batch_size
    --n_train_tokens --n_gpus]``: continue training from the latest checkpoint."""
    p = argparse.ArgumentParser(description="Continue training from the latest checkpoint "
                                "(bilm-tf's bin/restart.py).")
    p.add_argument("--save_dir", required=True)
    p.add_argument("--vocab_file", required=True)
    p.add_argument("--train_prefix", required=True)
    p.add_argument("--n_gpus", type=int, default=1)
    p.add_argument("--n_epochs", type=int, help="override the options' n_epochs")
    p.add_argument("--batch_size", type=int, help="override the options' batch_size")
    p.add_argument("--n_train_tokens", type=int, help="override the options' n_train_tokens")
    args = p.parse_args(argv)
    _setup()
    from bilm.training import load_options_latest_checkpoint, load_vocab, train

    options, ckpt = load_options_latest_checkpoint(args.save_dir)
    changes = {k: getattr(args, k) for k in ("n_epochs", "batch_size", "n_train_tokens")
               if getattr(args, k) is not None}
    options = options.replace(**changes)
    max_chars = options.char_cnn.max_characters_per_token if options.char_cnn else None
    vocab = load_vocab(args.vocab_file, max_chars)
    data = _data(args.train_prefix, vocab, options.bidirectional, False, True)
    train(options, data, args.n_gpus, args.save_dir, args.save_dir, restart_ckpt_file=ckpt)


def dump_weights_main(argv: Sequence[str] | None = None) -> None:
    """``dump_weights.py --save_dir --outfile``: latest checkpoint -> HDF5 + options.json."""
    p = argparse.ArgumentParser(description="Export the latest checkpoint to bilm-tf's HDF5 "
                                "weights (bilm-tf's bin/dump_weights.py).")
    p.add_argument("--save_dir", required=True)
    p.add_argument("--outfile", required=True)
    args = p.parse_args(argv)
    _setup()
    from bilm.training import dump_weights

    dump_weights(args.save_dir, args.outfile)


if __name__ == "__main__":
    sys.exit("run bin/train_elmo.py, bin/run_test.py, bin/restart.py or bin/dump_weights.py")
