"""``bilm substitutes``: the words a trained biLM predicts at a position of a sentence
(:mod:`bilm.substitutes`). Checks its arguments and reads the queries before TensorFlow
starts, calls the library, writes a TSV."""

from __future__ import annotations

import argparse
import glob
import os
from typing import TextIO

from bilm._shell import UserError
from bilm.cli.checks import (
    check_output,
    need_file,
    need_run,
    need_softmax_model,
    start_tensorflow,
)

__all__ = ["cmd_substitutes", "read_queries"]

_HEADER = "query\tposition\ttarget\trank\tsubstitute\tlogprob\n"

Query = tuple[int, list[str], int]  # (line index, tokens, 0-based position)


def _check_query(tokens: list[str], position: int, where: str) -> None:
    """:func:`bilm.substitutes.check_query` (no TensorFlow), its message after ``where``."""
    from bilm.substitutes import SubstitutesError, check_query

    try:
        check_query(tokens, position)
    except SubstitutesError as e:
        raise UserError(f"{where}: {e}") from None


def read_queries(path: str) -> list[Query]:
    """The queries of a ``POSITION<TAB>SENTENCE`` file, one a line (blank lines skipped;
    the query's index is its 0-based line number). A malformed line or a position out of
    range is a :class:`UserError` naming the line."""
    queries = []
    try:
        with open(path, encoding="utf-8", newline="\n") as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                head, tab, sentence = line.rstrip("\r\n").partition("\t")
                try:
                    position = int(head)
                except ValueError:
                    position = None
                if not tab or position is None:
                    raise UserError(f"{path} line {i + 1}: expected POSITION<TAB>SENTENCE "
                                    "(a 0-based word index, a tab, the tokenized sentence)")
                tokens = sentence.split()
                _check_query(tokens, position, f"{path} line {i + 1}")
                queries.append((i, tokens, position))
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e.reason}); convert it, e.g. with "
                        "iconv") from None
    return queries


def _cli_queries(args: argparse.Namespace) -> list[Query]:
    """The queries of the input file, or of --sentence/--position."""
    if (args.sentence is None) != (args.position is None):
        raise UserError("--sentence and --position go together: give both (or an input "
                        "file of POSITION<TAB>SENTENCE lines instead)")
    if (args.input is None) == (args.sentence is None):
        raise UserError("give either an input file of POSITION<TAB>SENTENCE lines or "
                        "--sentence TEXT --position N, not both or neither")
    if args.input is not None:
        need_file(args.input, "input file")
        return read_queries(args.input)
    tokens = args.sentence.split()
    _check_query(tokens, args.position, f"--position {args.position}")
    return [(0, tokens, args.position)]


def _need_softmax_model(save_dir: str) -> None:
    """A training run (its checkpoint has the softmax); a weights-only model or an archive
    is told what to do instead."""
    fix = ("a training run has one: adapt this model to your text with bilm train "
           f"--init-from {save_dir}, or import an AllenNLP archive with "
           "bilm import-allennlp, and pass the run's --save-dir")
    if os.path.isfile(save_dir):
        import h5py

        if h5py.is_hdf5(save_dir):
            raise UserError(f"{save_dir} is a weights-only model (no softmax): bilm "
                            f"substitutes needs a language model's softmax; {fix}")
        if save_dir.endswith((".tar.gz", ".tgz", ".tar")):
            raise UserError(f"{save_dir} is an archive: import it as a run first (bilm "
                            "import-allennlp ARCHIVE RUN) and pass --save-dir RUN")
    elif (os.path.isdir(save_dir) and os.path.exists(os.path.join(save_dir, "options.json"))
          and glob.glob(os.path.join(glob.escape(save_dir), "*.hdf5"))):
        from bilm.training.run_folder import TrainingRun

        if not TrainingRun(save_dir).checkpoints():
            raise UserError(f"{save_dir} holds a weights-only model (options.json + HDF5 "
                            f"weights, no checkpoint): it has no softmax, which bilm "
                            f"substitutes needs; {fix}")
    need_run(save_dir)


def _write(out: TextIO, query: Query, found) -> None:  # found: list[Substitute]
    i, tokens, position = query
    for rank, (word, logprob) in enumerate(found, 1):
        out.write(f"{i}\t{position}\t{tokens[position]}\t{rank}\t{word}\t{logprob:.4f}\n")


def cmd_substitutes(args: argparse.Namespace) -> None:
    queries = _cli_queries(args)
    need_softmax_model(args)
    _need_softmax_model(args.save_dir)
    need_file(args.vocab, "vocabulary file")
    if args.output:
        check_output(args.output, args.overwrite, [args.input])
    start_tensorflow(args)
    from bilm.substitutes import substitutes_many
    from bilm.training.runs import load_run

    loaded = load_run(args.save_dir, args.vocab)
    found = substitutes_many(loaded.lm, loaded.vocab, [(t, p) for _, t, p in queries],
                             top_k=args.top_k, direction=args.direction,
                             include_special=args.include_special,
                             batch_size=args.batch_size)
    from bilm.io.files import text_output

    with text_output(args.output or None, overwrite=args.overwrite) as out:
        out.write(_HEADER)
        for query, words in zip(queries, found, strict=True):
            _write(out, query, words)
    if args.output:
        print(f"wrote the substitutes of {len(queries)} queries to {args.output}")
