"""The ``bilm`` argument parser: one builder per command, over the shared flag groups of
:mod:`bilm.cli.flags` (no TensorFlow import)."""

from __future__ import annotations

import argparse
import os
from typing import NoReturn

from bilm.cli import commands_checkpoint as checkpoint
from bilm.cli import commands_training as training
from bilm.cli import commands_weights as weights
from bilm.cli.flags import (
    checkpoint_flags,
    cluster_flags,
    embedding_output_flags,
    int_at_least,
    model_flags,
    non_negative,
    overwrite_flag,
    positive,
    run_flags,
    training_flags,
)

__all__ = ["build_parser"]

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
    "Global flags (-q, -v, --debug, --plugin) go before COMMAND; 'bilm COMMAND --help' lists a "
    "command's arguments and their defaults. Exit codes: 0 success; 2 a mistake you can fix, "
    "told in one line on stderr ('bilm: error: what is wrong; how to fix it'); no mistake "
    "loses or half-writes a file; 130, 143 or 129 stopped by Ctrl-C, SIGTERM or SIGHUP (train and "
    "resume finish the batch and save a checkpoint first; the same signal again stops at "
    "once); 141 the reader of standard output went away (e.g. '| head'); 1 an unexpected "
    "error, a bug, shown with its traceback. --debug shows the traceback of any error.")


def _command(sub: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, formatter_class=_HelpFormatter)


# -- commands over a model's files ----------------------------------------------------------------

def _add_info(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "info", "what a model contains")
    model_flags(p, weights_help="weights HDF5 file (lists its datasets)")
    p.set_defaults(func=weights.cmd_info)


def _add_embed(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "embed", "embed a tokenized text file (one sentence per line)")
    p.add_argument("input", help="text file, one whitespace-tokenized sentence per line")
    p.add_argument("output", help="HDF5 output: one dataset per line, key = line index (the "
                   "sentence with --format allennlp --use-sentence-keys)")
    model_flags(p)
    p.add_argument("--vocab", help="vocabulary file (optional: only caches character ids)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--stateless", dest="stateful", action="store_false", default=False,
                      help="(default) each sentence from a zero LSTM state: reproducible, batched")
    mode.add_argument("--stateful", dest="stateful", action="store_true",
                      help="carry LSTM state line to line, one at a time (bilm-tf's numbers)")
    p.add_argument("--batch-size", type=positive, default=64,
                   help="sentences per batch (stateless)")
    embedding_output_flags(p)
    overwrite_flag(p)
    p.set_defaults(func=weights.cmd_embed)


def _add_dump_tokens(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "dump-tokens", "context-independent embeddings of a vocabulary")
    p.add_argument("vocab", help="vocabulary file, one token per line")
    p.add_argument("output", help="HDF5 output with dataset 'embedding'")
    model_flags(p)
    overwrite_flag(p)
    p.set_defaults(func=weights.cmd_dump_tokens)


def _add_export_savedmodel(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "export-savedmodel", "weights -> TF SavedModel with the TF Hub ELMo "
                 "signatures (raw text in; TensorFlow only to serve)")
    p.add_argument("output", help="SavedModel folder to write")
    model_flags(p)
    p.add_argument("--layer-norm", action="store_true",
                   help="layer-normalise each layer before the 'elmo' mix")
    overwrite_flag(p, "replace an existing folder")
    p.set_defaults(func=weights.cmd_export_savedmodel)


def _add_models(sub: argparse._SubParsersAction) -> None:
    from bilm.cli import commands_models

    p = _command(sub, "models", "the released models bilm knows: name, family, language, size")
    p.add_argument("--urls", dest="verbose_urls", action="store_true",
                   help="also list each model's files and their URLs")
    p.epilog = ("Environment: BILM_CACHE (default ~/.cache/bilm) holds downloads; "
                "BILM_MODELS_URL fetches NAME's file F from BILM_MODELS_URL/NAME/F (a mirror); "
                "BILM_CATALOGUE adds entries from a JSON file.")
    p.set_defaults(func=commands_models.cmd_models)


def _add_download(sub: argparse._SubParsersAction) -> None:
    from bilm.cli import commands_models

    p = _command(sub, "download", "fetch a released model into the cache (resumable, "
                 "verified by loading it) and print where it is")
    p.add_argument("name", help="a name 'bilm models' lists")
    p.set_defaults(func=commands_models.cmd_download)


def _add_import_tfhub(sub: argparse._SubParsersAction) -> None:
    from bilm.cli import commands_models

    p = _command(sub, "import-tfhub", "a TF Hub v1 ELMo module (Google's elmo/1-3, "
                 "DeepPavlov's) -> options.json + weights.hdf5 (+ mix.json); reads its "
                 "variables only, never runs its graph")
    p.add_argument("module", help="the module's folder (saved_model.pb, variables/)")
    p.add_argument("output", help="folder to write")
    p.add_argument("--options", help="JSON overriding what the variables cannot tell "
                   "(default: bilm-tf's: cell_clip 3, proj_clip 3, skip connections, relu, "
                   "50 characters per token)")
    overwrite_flag(p, "replace an existing folder")
    p.set_defaults(func=commands_models.cmd_import_tfhub)


def _add_import_efml(sub: argparse._SubParsersAction) -> None:
    from bilm.cli import commands_models

    p = _command(sub, "import-efml", "an ELMoForManyLangs model (a folder, or its NLPL .zip) "
                 "-> options.json + weights.hdf5 (+ vocab.txt); its pickles read without torch")
    p.add_argument("model", help="the model's folder (config.json, char.dic, word.dic, "
                   "token_embedder.pkl, encoder.pkl) or its NLPL .zip")
    p.add_argument("output", help="folder to write")
    overwrite_flag(p, "replace an existing folder")
    p.set_defaults(func=commands_models.cmd_import_efml)


# -- commands that make a training run ------------------------------------------------------------

def _add_vocab(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "vocab", "build a vocabulary from training shards")
    p.add_argument("train_prefix", help="glob of the training shards (quote it)")
    p.add_argument("output", help="vocabulary file to write")
    p.add_argument("--min-count", type=non_negative, default=1, help="drop rarer tokens")
    p.add_argument("--max-size", type=int_at_least(3),
                   help="at most this many entries, <S> </S> <UNK> included")
    p.add_argument("--max-characters-per-token", type=int_at_least(3), default=50,
                   help="the model's char_cnn.max_characters_per_token (counts long tokens)")
    overwrite_flag(p)
    p.set_defaults(func=training.cmd_vocab)


def _add_corpus_report(sub: argparse._SubParsersAction) -> None:
    from bilm.cli.commands_corpus import cmd_corpus_report

    p = _command(sub, "corpus-report", "audit a corpus before training: tokens, sentence "
                 "lengths, tokens the char CNN cuts, invalid UTF-8, held-out OOV rate, "
                 "suggested settings")
    p.add_argument("train_glob", metavar="TRAIN_GLOB",
                   help="glob of the training shards (quote it)")
    p.add_argument("--heldout", metavar="GLOB", help="glob of the held-out shards: their OOV "
                   "rate and the characters the training text lacks")
    p.add_argument("--vocab", metavar="FILE", help="vocabulary file whose OOV rates to report "
                   "(default: the one bilm vocab builds from TRAIN_GLOB, --min-count 1)")
    p.add_argument("--max-characters-per-token", type=int_at_least(3), default=50, metavar="N",
                   help="the model's char_cnn.max_characters_per_token: the char CNN sees a "
                   "token's first N - 2 UTF-8 bytes (48: 24 Cyrillic or 16 CJK characters)")
    p.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT")
    overwrite_flag(p, "replace an existing --json file")
    p.epilog = ("Suggested max_characters_per_token: the smallest N >= 50 whose N - 2 bytes "
                "keep 99.9% of the training tokens whole. Suggested vocabulary cut-off: the "
                "largest 'bilm vocab --min-count' whose vocabulary covers 98% of the "
                "training tokens.")
    p.set_defaults(func=cmd_corpus_report)


def _add_train(sub: argparse._SubParsersAction) -> None:
    from bilm.presets import PRESETS

    p = _command(sub, "train", "train a biLM")
    p.add_argument("--train-prefix", required=True, help="glob of the training shards")
    p.add_argument("--vocab", required=True, help="vocabulary file (bilm vocab)")
    p.add_argument("--save-dir", required=True, help="checkpoints, options.json, logs")
    p.add_argument("--preset", choices=list(PRESETS),
                   help="built-in hyperparameters (default: tiny; not with --init-from)")
    p.add_argument("--options", help="JSON file overriding the preset's keys (with "
                   "--init-from: MODEL's keys; required for an .hdf5 MODEL, whose options it "
                   "is)")
    p.add_argument("--init-from", metavar="MODEL",
                   help="adapt a trained model to this text and vocabulary: a run, an "
                   "AllenNLP archive, or options + HDF5 weights")
    p.add_argument("--new-rows", choices=["zeros", "token-embedding"],
                   help="--init-from: how softmax rows of words MODEL lacks start (default: "
                   "zeros; token-embedding: the direction of the word's embedding under "
                   "MODEL's token embedder)")
    p.add_argument("--freeze", metavar="PARTS",
                   help="hold parts fixed, comma-separated: token-embedder, layer-1, "
                   "layer-2, ... (contextual layers from the bottom)")
    p.add_argument("--heldout", metavar="GLOB",
                   help="held-out files: their perplexity at every checkpoint, the best "
                   "checkpoint kept in SAVE_DIR/best (with its weights.hdf5)")
    p.add_argument("--patience", type=positive,
                   help="with --heldout: stop after this many checkpoints without a better "
                   "held-out perplexity")
    training_flags(p, "train", ["--n-gpus", "--n-batches", "--batch-size", "--n-epochs",
                                "--n-train-tokens", "--learning-rate", "--dropout",
                                "--precision", "--jit"])
    p.add_argument("--seed", type=non_negative,
                   help="seeds the initial weights, data order, dropout and negative sampling "
                   "(default: one is picked, logged and recorded in the run's run.json)")
    checkpoint_flags(p, "every 10 minutes")
    cluster_flags(p)
    overwrite_flag(p, "remove an earlier run's files from --save-dir and start a new one")
    p.set_defaults(func=training.cmd_train)


def _add_resume(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "resume", "continue training from the latest checkpoint")
    p.add_argument("--save-dir", required=True, help="the directory given to bilm train")
    p.add_argument("--vocab", help="the vocabulary it was trained with (default: the run's "
                   "copy, SAVE_DIR/vocab.txt)")
    p.add_argument("--train-prefix", help="glob of the training shards (default: the ones "
                   "the run was started with)")
    training_flags(p, "resume", ["--n-gpus", "--n-batches", "--n-epochs", "--n-train-tokens",
                                 "--batch-size", "--unroll-steps", "--learning-rate",
                                 "--dropout", "--precision", "--jit"])
    checkpoint_flags(p, "as the run was started")
    cluster_flags(p)
    p.set_defaults(func=training.cmd_resume)


def _add_launch(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "launch", "run train or resume as several workers on this machine (a "
                 "multi-worker try-out)")
    p.add_argument("--workers", type=int_at_least(2), default=2, help="worker processes")
    p.add_argument("worker_command", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="-- train ... or -- resume ... (bilm's own arguments)")
    p.set_defaults(func=training.cmd_launch)


def _add_import_allennlp(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "import-allennlp", "an AllenNLP language-model archive (Transformer "
                 "ELMo's model.tar.gz) -> a training directory")
    p.add_argument("archive", help="model.tar.gz (or its unpacked folder)")
    p.add_argument("save_dir", help="the training directory to write")
    overwrite_flag(p, "replace a training run already in SAVE_DIR")
    p.set_defaults(func=training.cmd_import_allennlp)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "demo", "the whole toolkit in minutes, on text shipped with Python")
    p.add_argument("--output", default="bilm-demo", help="folder for every artifact")
    p.add_argument("--corpus", help="a folder with train/* and heldout/* (default: Python's "
                   "own documentation)")
    p.add_argument("--n-batches", type=positive, help="training batches (default 1500)")
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    overwrite_flag(p, "reuse a non-empty --output")
    p.set_defaults(func=training.cmd_demo)


# -- commands that read a run's latest checkpoint -------------------------------------------------

def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "evaluate", "held-out perplexity of the latest checkpoint")
    run_flags(p, model=True)
    p.add_argument("--test-prefix", required=True, help="glob of the held-out shards")
    p.add_argument("--batch-size", type=positive, default=256,
                   help="LSTM: rows streamed in parallel; Transformer: most sentences a batch "
                   "(also bounded by tokens: at most 16M softmax logits)")
    p.set_defaults(func=checkpoint.cmd_evaluate)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "export", "latest checkpoint -> weights.hdf5 + options.json")
    run_flags(p, vocab=False)
    p.add_argument("output", help="HDF5 weights file to write (options.json goes beside it)")
    p.add_argument("--layers", type=positive, metavar="N",
                   help="keep the token layer and the first N contextual layers (default: "
                   "all); e.g. 1 for the 'reduced ELMo'")
    overwrite_flag(p)
    p.set_defaults(func=checkpoint.cmd_export)


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "score", "per-sentence log-probability and perplexity under a trained "
                 "checkpoint")
    p.add_argument("input", help="text file, one tokenized sentence per line")
    run_flags(p, model=True)
    p.add_argument("--output", help="TSV file (default: standard output)")
    p.add_argument("--batch-size", type=positive, default=64,
                   help="most sentences per batch (also bounded by tokens: at most 16M "
                   "softmax logits)")
    overwrite_flag(p)
    p.set_defaults(func=checkpoint.cmd_score)


def _add_substitutes(sub: argparse._SubParsersAction) -> None:
    from bilm.cli.commands_substitutes import cmd_substitutes

    p = _command(sub, "substitutes", "the top-k words the forward and backward LMs predict at "
                 "a position of a sentence (lexical substitutes)")
    p.add_argument("input", nargs="?", metavar="INPUT",
                   help="TSV file, one query a line: POSITION<TAB>SENTENCE "
                   "(0-based word index, tokenized sentence); or use --sentence/--position")
    run_flags(p, model=True)
    p.add_argument("--sentence", help="one tokenized sentence (instead of an input file)")
    p.add_argument("--position", type=non_negative, help="0-based word of --sentence")
    p.add_argument("--top-k", type=positive, default=10, help="words per query")
    p.add_argument("--direction", choices=["both", "forward", "backward"], default="both",
                   help="both: log p_fwd(w | left) + log p_bwd(w | right); forward or "
                   "backward: that LM's log-probability")
    p.add_argument("--include-special", action="store_true",
                   help="keep <S>, </S>, <UNK> (and an imported AllenNLP vocabulary's "
                   "@@PADDING@@) among the substitutes (left out by default)")
    p.add_argument("--output", help="TSV file (default: standard output)")
    p.add_argument("--batch-size", type=positive, default=64, help="queries per batch")
    overwrite_flag(p)
    p.set_defaults(func=cmd_substitutes)


# In the order `bilm --help` lists the commands.
_COMMANDS = [_add_info, _add_embed, _add_dump_tokens, _add_models, _add_download,
             _add_vocab, _add_corpus_report,
             _add_train, _add_resume,
             _add_evaluate, _add_export, _add_launch, _add_import_allennlp, _add_import_tfhub,
             _add_import_efml,
             _add_export_savedmodel, _add_score, _add_substitutes, _add_demo]


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
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first: an encoder, token embedder or weight format "
                        "it registers is then known to every command (repeatable; also "
                        "BILM_PLUGINS=MOD1,MOD2 and the 'bilm.plugins' entry point group)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser
