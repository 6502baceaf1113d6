"""``bilm corpus-report``: the corpus audit before training (no TensorFlow import). Checks
its arguments, calls :mod:`bilm.data.corpus_report`, prints the table (and writes --json)."""

from __future__ import annotations

import argparse
import glob
import os

from bilm.cli.checks import check_output, need_file, need_glob

__all__ = ["cmd_corpus_report"]


def cmd_corpus_report(args: argparse.Namespace) -> None:
    need_glob(args.train_glob, "TRAIN_GLOB", "training")
    if args.heldout is not None:
        need_glob(args.heldout, "--heldout", "held-out")
    need_file(args.vocab, "vocabulary file")
    if args.json:
        inputs = [args.vocab, *(f for pattern in (args.train_glob, args.heldout) if pattern
                                for f in glob.glob(os.path.expanduser(pattern)))]
        check_output(args.json, args.overwrite, inputs=inputs)
    from bilm.data.corpus_report import corpus_report, format_report, write_report_json

    report = corpus_report(args.train_glob, heldout=args.heldout, vocab=args.vocab,
                           max_characters_per_token=args.max_characters_per_token,
                           progress=not args.quiet)
    print(format_report(report))
    if args.json:
        write_report_json(report, args.json, overwrite=args.overwrite)
