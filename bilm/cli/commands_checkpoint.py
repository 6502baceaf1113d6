"""``bilm`` commands that read a training run's latest checkpoint: evaluate, export, score.
Each checks its arguments, calls the library, prints."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from bilm._shell import UserError
from bilm.cli.checks import (
    check_output,
    need_file,
    need_glob,
    need_run,
    need_softmax_model,
    start_tensorflow,
)

__all__ = ["cmd_evaluate", "cmd_export", "cmd_score"]


def cmd_evaluate(args: argparse.Namespace) -> None:
    need_softmax_model(args)
    need_run(args.save_dir)
    need_file(args.vocab, "vocabulary file")
    need_glob(args.test_prefix, "--test-prefix", "held-out")
    start_tensorflow(args)
    from bilm.evaluation import evaluate_run

    ppl = evaluate_run(args.save_dir, args.test_prefix, vocab_file=args.vocab,
                       batch_size=args.batch_size, progress=not args.quiet)
    print(f"perplexity: {ppl:.3f}")


def cmd_export(args: argparse.Namespace) -> None:
    run = need_run(args.save_dir)
    if args.layers is not None:
        from bilm.options import load_options

        n_layers = load_options(run.options_file).n_layers
        if args.layers > n_layers:
            raise UserError(f"--layers {args.layers}: the model has {n_layers} contextual "
                            "layers")
    check_output(args.output, args.overwrite)
    beside = os.path.join(os.path.dirname(os.path.abspath(args.output)), "options.json")
    if os.path.exists(beside) and not args.overwrite:
        raise UserError(f"{beside} exists (export writes options.json beside the weights); "
                        "pass --overwrite to replace it, or export to another folder")
    start_tensorflow(args)
    from bilm.export import dump_weights

    dump_weights(args.save_dir, args.output, n_layers=args.layers, overwrite=args.overwrite)
    print(f"wrote {args.output} and options.json beside it")


_SCORE_HEADER = ("line\tn_tokens\tlogprob_forward\tlogprob_backward\tperplexity_forward\t"
                 "perplexity_backward\tperplexity\n")


def _read_sentences(path: str) -> list[list[str]]:
    """The input's tokenized lines; a line ends at "\\n" only (not at \\r, \\x85, U+2028...):
    score i is line i."""
    try:
        with open(path, encoding="utf-8", newline="\n") as f:
            return [line.split() for line in f]
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e.reason}); convert it, e.g. with "
                        "iconv") from None


def _write_score(out: TextIO, i: int, sc) -> None:  # sc: bilm.evaluation.SentenceScore
    bwd = sc.logprob_backward
    out.write(f"{i}\t{sc.n_tokens}\t{sc.logprob_forward:.4f}\t"
              f"{'' if bwd is None else f'{bwd:.4f}'}\t{sc.perplexity_forward:.3f}\t"
              f"{'' if bwd is None else f'{sc.perplexity_backward:.3f}'}\t"
              f"{sc.perplexity:.3f}\n")


def cmd_score(args: argparse.Namespace) -> None:
    need_file(args.input, "input file")
    need_softmax_model(args)
    need_run(args.save_dir)
    need_file(args.vocab, "vocabulary file")
    if args.output:
        check_output(args.output, args.overwrite, [args.input])
    start_tensorflow(args)
    from bilm.evaluation import corpus_perplexity, score_sentences
    from bilm.training.runs import load_run

    loaded = load_run(args.save_dir, args.vocab)
    sentences = _read_sentences(args.input)
    scores = []
    from bilm.io.files import text_output

    with text_output(args.output or None, overwrite=args.overwrite) as out:
        out.write(_SCORE_HEADER)
        for i, sc in enumerate(score_sentences(loaded.lm, loaded.vocab, sentences,
                                               batch_size=args.batch_size)):
            _write_score(out, i, sc)
            scores.append(sc)
    print(f"corpus perplexity: {corpus_perplexity(scores):.3f} over "
          f"{len(sentences)} sentences", file=sys.stderr if not args.output else sys.stdout)
