"""The ``bilm`` command's flag vocabulary: argument types and the flag groups that several
commands share, each written once (no TensorFlow import)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["checkpoint_flags", "cluster_flags", "embedding_output_flags", "float_type",
           "int_at_least", "model_flags", "non_negative", "overwrite_flag", "positive",
           "positive_float", "rate", "run_flags", "training_flags"]


def int_at_least(low: int) -> Callable[[str], int]:
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


def float_type(ok: Callable[[float], bool], requirement: str) -> Callable[[str], float]:
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


positive_float = float_type(lambda v: 0 < v < math.inf, "a positive number")
rate = float_type(lambda v: 0 <= v < 1, "in [0, 1)")  # a dropout rate


positive = int_at_least(1)
non_negative = int_at_least(0)


# -- model files, outputs, run folders ----------------------------------------------------------

def model_flags(p: argparse.ArgumentParser, weights_help: str = "weights HDF5 file") -> None:
    """--model, or --options and --weights: a model of any family (a path or a catalogue
    name), or options.json and its HDF5 weights."""
    p.add_argument("--model", metavar="PATH_OR_NAME",
                   help="a model: a folder or archive of any family bilm reads (options.json + "
                   "HDF5, an NLPL .zip, an AllenNLP model.tar.gz, a training directory), or a "
                   "name 'bilm models' lists (downloaded on first use)")
    p.add_argument("--options", help="options.json (instead of --model)")
    p.add_argument("--weights", help=weights_help)


def overwrite_flag(p: argparse.ArgumentParser, help: str = "replace an existing output") -> None:
    """--overwrite: replace what the command would otherwise refuse to write over."""
    p.add_argument("--overwrite", action="store_true", help=help)


def run_flags(p: argparse.ArgumentParser, vocab: bool = True, model: bool = False) -> None:
    """--save-dir (and --vocab; with ``model``, --model instead of --save-dir) of a command
    that reads a run's latest checkpoint."""
    if not model:
        p.add_argument("--save-dir", required=True, help="training directory (latest checkpoint)")
    else:
        p.add_argument("--save-dir", help="training directory (latest checkpoint)")
        p.add_argument("--model", metavar="PATH_OR_NAME",
                       help="instead of --save-dir: a model with its softmax (a training "
                       "directory, an AllenNLP model.tar.gz, or a catalogue name of one)")
    if vocab:
        p.add_argument("--vocab", help="the vocabulary it was trained with (default: the run's "
                       "copy)")


def embedding_output_flags(p: argparse.ArgumentParser) -> None:
    """--layers, --pool, --format, --precision: what an embedding file holds, and how it is
    computed."""
    p.add_argument("--layers", choices=["all", "top", "average"], default="all",
                   help="all layers (n_layers + 1, ...), the top contextual layer, or their "
                   "average")
    p.add_argument("--pool", choices=["none", "mean", "max"], default="none",
                   help="one vector per token, or the mean/max over the sentence's tokens "
                   "(a blank line pools to zeros)")
    p.add_argument("--format", dest="layout", choices=["bilm", "allennlp"], default="bilm",
                   help="bilm: bilm-tf's dump_bilm_embeddings file; allennlp: also the "
                   "'sentence_to_index' dataset of AllenNLP's elmo command")
    # AllenNLP 0.9's `allennlp elmo` flags, same meaning (bilm/inference/dumps.py says more)
    p.add_argument("--use-sentence-keys", action="store_true",
                   help="--format allennlp: key each dataset by its sentence (the line, "
                   "stripped) instead of its line number; no 'sentence_to_index'. A repeated "
                   "sentence, a blank line, or one holding '/' is refused before embedding")
    p.add_argument("--forget-sentences", action="store_true",
                   help="--format allennlp: leave out the 'sentence_to_index' dataset (keys "
                   "stay line numbers)")
    p.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                   help="float32: exact (bilm-tf's numbers); bfloat16: bf16 matmuls, faster "
                   "on hardware with strong bf16 units, ~0.4%% relative error (the output "
                   "stays float32)")


# -- train and resume ----------------------------------------------------------------------------

# bilm/presets.py: the LSTM presets train with Adagrad, the Transformer ones with Adam + noam
_LEARNING_RATE_HELP = ("the optimizer's learning rate: Adagrad for LSTM presets, Adam for "
                       "Transformer ones (with the noam schedule, its factor); default: the "
                       "options'")

# The flags train and resume share, mostly overriding the options' training keys
# (bilm/options.py): argparse keywords, with "help" one text or one per command.
_TRAINING_FLAGS: dict[str, dict[str, Any]] = {
    "--n-gpus": {"type": positive, "default": 1, "help": "replicas (GPUs, else CPU)"},
    "--n-batches": {"type": positive, "help": {
        "train": "stop after this many batches",
        "resume": "total batches to reach (default: the run's recorded target)"}},
    "--batch-size": {"type": positive, "help": {
        "train": "per replica",
        "resume": "per replica; a change restarts a stateful encoder's carried states (the "
                  "LSTM's) from zeros"}},
    "--n-epochs": {"type": positive, "help": {
        "train": "passes over the training tokens",
        "resume": "override the options' n_epochs"}},
    "--n-train-tokens": {"type": positive, "help": {
        "train": "default: counted from the shards",
        "resume": "override the options' n_train_tokens"}},
    "--unroll-steps": {"type": positive, "help": "override the options' unroll_steps"},
    "--learning-rate": {"type": positive_float, "help": _LEARNING_RATE_HELP},
    "--dropout": {"type": rate, "help": "drop rate, in [0, 1): on the top layer's output and, "
                  "for an LSTM, on each layer's input (the encoder's own dropout keys set the "
                  "rest)"},
    "--precision": {"choices": ["float32", "mixed_bfloat16", "mixed_float16"], "help": {
        "train": "training compute precision (default: the options' precision, else float32)",
        "resume": "training compute precision"}},
    "--jit": {"dest": "jit_compile", "action": argparse.BooleanOptionalAction, "default": None,
              "help": {"train": "XLA-compile the training step (default: the options' "
                                "jit_compile, else the encoder's choice: an LSTM by its size, "
                                "a Transformer not)",
                       "resume": "XLA-compile the training step"}},
}


def training_flags(p: argparse.ArgumentParser, command: str, names: Sequence[str]) -> None:
    """Add the named train/resume flags, in that order, with ``command``'s help."""
    for name in names:
        spec = dict(_TRAINING_FLAGS[name])
        if isinstance(spec["help"], dict):
            spec["help"] = spec["help"][command]
        p.add_argument(name, **spec)


def cluster_flags(p: argparse.ArgumentParser) -> None:
    """--collective-timeout: a cluster's all-reduce deadline."""
    p.add_argument("--collective-timeout", type=positive_float, metavar="SECONDS",
                   help="in a cluster (TF_CONFIG, SLURM): how long a gradient all-reduce "
                   "waits for the other workers before the run stops (default 600)")


def checkpoint_flags(p: argparse.ArgumentParser, default: str) -> None:
    """--checkpoint-every and --checkpoint-minutes; ``default`` says what happens without."""
    p.add_argument("--checkpoint-every", type=positive, metavar="N",
                   help=f"save a checkpoint every N batches (default: {default})")
    p.add_argument("--checkpoint-minutes", type=float_type(lambda v: 0 <= v < math.inf,
                                                           "a number >= 0"), metavar="M",
                   help=f"save a checkpoint every M minutes; 0: not by time (default: "
                   f"{default})")
