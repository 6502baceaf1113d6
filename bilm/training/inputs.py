"""A run's inputs as a caller gives them: the options (an object, a dict or a file), the
vocabulary, and the training text (its token counts; the encoder protocol's dataset).
No TensorFlow."""

from __future__ import annotations

import glob
import os

from bilm.data.dataset import BidirectionalLMDataset, LMDataset, read_lines
from bilm.data.sentences import SentenceDataset
from bilm.data.vocabulary import UnicodeCharsVocabulary, Vocabulary
from bilm.encoders import encoder_protocol
from bilm.options import BiLMOptions, load_options

__all__ = ["count_corpus", "count_tokens", "load_vocab"]


def _as_options(options: BiLMOptions | dict | str) -> BiLMOptions:
    """Options given as an object, a dict or a file (options.json)."""
    if isinstance(options, BiLMOptions):
        return options
    if isinstance(options, dict):
        return BiLMOptions.from_dict(options)
    return load_options(options)


def load_vocab(vocab_file: str, max_word_length: int | None = None) -> Vocabulary:
    """bilm-tf's helper: a char vocabulary when ``max_word_length`` is given."""
    if max_word_length:
        return UnicodeCharsVocabulary(vocab_file, max_word_length, validate_file=True)
    return Vocabulary(vocab_file, validate_file=True)


def count_corpus(filepattern: str, cache: dict[str, list[int]] | None = None,
                 ) -> tuple[int, int]:
    """(whitespace tokens, non-blank lines) of the files matching ``filepattern``.

    ``cache`` (e.g. a run's ``run.json``: never the corpus folder, which may be read-only or
    shared) maps each file, with its size and modification time, to its counts; it is read
    and updated. Invalid UTF-8 is counted as replacement characters, never an error. Lines
    end at "\\n" only, and are read in bounded memory, as training reads them
    (:func:`~bilm.data.dataset.read_lines`).
    """
    files = sorted(glob.glob(os.path.expanduser(filepattern)))
    if not files:
        raise FileNotFoundError(f"no training files match {filepattern!r}")
    cache = {} if cache is None else cache
    tokens = lines = 0
    for path in files:
        stat = os.stat(path)
        key = f"{os.path.abspath(path)}:{stat.st_size}:{int(stat.st_mtime)}"
        if not isinstance(cache.get(key), list):  # absent, or a bare count of an older run
            n_tokens = n_lines = counted = 0
            with open(path, "rb") as f:
                for lineno, text, _ in read_lines(f, errors="replace"):
                    n = len(text.split())
                    n_tokens += n
                    if n and counted != lineno:  # a long line's pieces count as one line
                        n_lines, counted = n_lines + 1, lineno
            cache[key] = [n_tokens, n_lines]
        tokens += cache[key][0]
        lines += cache[key][1]
    return tokens, lines


def count_tokens(filepattern: str, cache: dict[str, list[int]] | None = None) -> int:
    """Whitespace tokens in the files matching ``filepattern`` (see :func:`count_corpus`)."""
    return count_corpus(filepattern, cache)[0]


def _dataset(options: BiLMOptions, prefix: str, vocab: Vocabulary, seed: int | None,
             test: bool = False) -> BidirectionalLMDataset | LMDataset | SentenceDataset:
    """The encoder protocol's data: packed streams (LSTM) or sentences (transformer)."""
    if encoder_protocol(options) == "sentences":
        return SentenceDataset(prefix, vocab, test=test, shuffle_on_load=not test, seed=seed,
                               max_length=options.max_sentence_length)
    cls = BidirectionalLMDataset if options.bidirectional else LMDataset
    return cls(prefix, vocab, test=test, shuffle_on_load=not test, seed=seed)


def _check_data(options: BiLMOptions, data) -> None:
    """A stream of the encoder protocol's kind (ValueError otherwise)."""
    if encoder_protocol(options) == "sentences":
        if not isinstance(data, SentenceDataset):
            raise ValueError(f"a {options.encoder_type} biLM trains on sentences: give a "
                             "SentenceDataset")
    elif options.bidirectional != isinstance(data, BidirectionalLMDataset):
        raise ValueError("bidirectional options need a BidirectionalLMDataset (and a forward "
                         "LM an LMDataset)")
