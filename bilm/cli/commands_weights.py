"""``bilm`` commands over a model's files (options.json + weights.hdf5): info, embed,
dump-tokens, export-savedmodel. Each checks its arguments, calls the library, prints."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from typing import TYPE_CHECKING

from bilm._shell import UserError
from bilm.cli.checks import (
    check_output,
    need_char_model,
    need_file,
    need_model,
    need_options,
    need_weights,
    start_tensorflow,
)

if TYPE_CHECKING:
    from bilm.models import ModelFiles

__all__ = ["cmd_dump_tokens", "cmd_embed", "cmd_export_savedmodel", "cmd_info"]

logger = logging.getLogger("bilm")


def _describe_model(files: ModelFiles) -> None:
    """bilm info's lines on a --model: its family, what came with it, where it was read."""
    from bilm.models import families

    titles = {f.name: f.title for f in families()}
    print(f"model: {files.path}")
    print(f"family: {' in '.join(titles.get(n, n) for n in reversed(files.family.split('/')))}")
    for note in files.notes:
        print(f"  {note}")
    if files.meta:
        for key, value in files.meta.items():
            print(f"  meta.json {key}: {json.dumps(value, ensure_ascii=False)[:200]}")
    if files.vocab_file:
        with open(files.vocab_file, encoding="utf-8", errors="replace") as f:
            n = sum(1 for _ in f)
        print(f"vocabulary: {n:,} tokens ({files.vocab_file})")
    print("softmax: " + (f"yes (a training directory: {files.run_dir})" if files.run_dir
                         else "no (an encoder: embeddings, not scores)"))
    if files.mix:
        print(f"output mix: weights {files.mix['weights']}, gamma {files.mix['gamma']}")


def cmd_info(args: argparse.Namespace) -> None:
    files = need_model(args, weights_required=False)
    options = need_options(args.options)
    if args.weights:
        need_weights(args.weights)
    if files is not None:
        _describe_model(files)
    print(f"options: {args.options}")
    print(f"input: {'characters' if options.use_character_inputs else 'words'}")
    from bilm.embedders import describe_embedder
    from bilm.encoders import describe_encoder

    print(describe_encoder(options))
    if options.embedder_options is not None:  # bilm-tf's word input: nothing more to say
        print(describe_embedder(options))
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
    start_tensorflow(args)
    from bilm.inference.language_model import BidirectionalLanguageModel

    BidirectionalLanguageModel(args.options, args.weights, stateful=False,
                               use_character_inputs=options.use_character_inputs)
    print("the weights match the options")


def cmd_embed(args: argparse.Namespace) -> None:
    need_file(args.input, "input file")
    for flag in ("use_sentence_keys", "forget_sentences"):
        if getattr(args, flag) and args.layout != "allennlp":
            raise UserError(f"--{flag.replace('_', '-')} applies to --format allennlp only "
                            "(AllenNLP's elmo layout); add --format allennlp or leave it out")
    check_output(args.output, args.overwrite, [args.input])
    need_model(args)
    options = need_char_model(args.options, "embed")
    if args.stateful and not options.encoder.stateful:
        raise UserError(f"--stateful: a {options.encoder_type} biLM is stateless (it carries "
                        "no state from line to line); leave it out")
    need_weights(args.weights)
    need_file(args.vocab, "vocabulary file")
    start_tensorflow(args)
    from bilm.inference.dumps import dump_bilm_embeddings

    if args.vocab and not args.stateful:
        logger.info("--vocab only caches character ids for --stateful; not needed here")
    try:
        dump_bilm_embeddings(args.vocab, args.input, args.options, args.weights, args.output,
                             stateful=args.stateful, batch_size=args.batch_size,
                             progress=not args.quiet, layers=args.layers, pool=args.pool,
                             layout=args.layout, precision=args.precision,
                             overwrite=args.overwrite,
                             use_sentence_keys=args.use_sentence_keys,
                             forget_sentences=args.forget_sentences)
    except UnicodeDecodeError as e:
        raise UserError(f"{args.input} is not UTF-8 text ({e.reason}); convert it, e.g. with "
                        "iconv") from None
    logger.info("wrote %s", args.output)


def cmd_dump_tokens(args: argparse.Namespace) -> None:
    need_file(args.vocab, "vocabulary file")
    check_output(args.output, args.overwrite, [args.vocab])
    need_model(args)
    need_char_model(args.options, "dump-tokens")
    need_weights(args.weights)
    start_tensorflow(args)
    from bilm.inference.dumps import dump_token_embeddings

    dump_token_embeddings(args.vocab, args.options, args.weights, args.output,
                          progress=not args.quiet, overwrite=args.overwrite)
    logger.info("wrote %s", args.output)


def cmd_export_savedmodel(args: argparse.Namespace) -> None:
    need_model(args)
    need_char_model(args.options, "export-savedmodel")
    need_weights(args.weights)
    if os.path.exists(args.output) and not args.overwrite:
        raise UserError(f"{args.output} exists; pass --overwrite to replace it")
    if os.path.isfile(args.output):
        raise UserError(f"{args.output} is a file; a SavedModel is a folder, give a new name")
    start_tensorflow(args)
    from bilm.export import export_savedmodel

    if args.model is not None:  # through the model: its output mix, if it ships one
        export_savedmodel(None, None, args.output, do_layer_norm=args.layer_norm,
                          overwrite=args.overwrite, model=args.model)
    else:
        export_savedmodel(args.options, args.weights, args.output,
                          do_layer_norm=args.layer_norm, overwrite=args.overwrite)
    print(f"wrote SavedModel {args.output} (signatures 'default' and 'tokens'); load it with "
          f"tf.saved_model.load({args.output!r})")
