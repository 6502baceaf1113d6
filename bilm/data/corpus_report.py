"""A corpus audit before training (``bilm corpus-report``): what a user must know about a
training text (and a held-out text) before a week of training a biLM on it. Pure Python: the
files are streamed a line at a time as training reads them (:func:`~bilm.data.lines.read_lines`:
lines end at ``"\\n"`` only; a line that is not valid UTF-8 is counted and skipped, as training
skips it), in bounded memory apart from the type counts.

The suggestions' rules (also in ``bilm corpus-report --help`` and docs/cli.md):
``max_characters_per_token``: the smallest N >= 50 (bilm-tf's default) whose N - 2 bytes keep
at least 99.9% of the training tokens whole: the character CNN sees a token's first
``max_characters_per_token - 2`` UTF-8 bytes (:func:`~bilm.data.vocabulary.token_to_char_ids`;
50 keeps 48 bytes: 48 ASCII, 24 Cyrillic or 16 CJK characters). The vocabulary cut-off: the
largest ``bilm vocab --min-count`` whose vocabulary covers at least 98% of the training tokens.
"""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field

from bilm.data.dataset import DataError
from bilm.data.lines import read_lines
from bilm.data.vocabulary import BOS, EOS, UNK, Vocabulary
from bilm.io.files import atomic_path
from bilm.io.progress import Progress

__all__ = ["DEFAULT_MAX_CHARACTERS", "INVALID_EXAMPLES", "TOKEN_COVERAGE", "VOCAB_COVERAGE",
           "CorpusReport", "TextSummary", "corpus_report", "format_report", "kept_bytes",
           "write_report_json"]

DEFAULT_MAX_CHARACTERS = 50  # bilm-tf's char_cnn.max_characters_per_token
TOKEN_COVERAGE = 0.999  # share of tokens the suggested max_characters_per_token keeps whole
VOCAB_COVERAGE = 0.98  # share of training tokens the suggested vocabulary covers
INVALID_EXAMPLES = 5  # invalid UTF-8 lines named (file:line); the rest are counted
_SPECIALS = (BOS, EOS, UNK)


def kept_bytes(max_characters_per_token: int) -> int:
    """UTF-8 bytes of a token the character CNN sees: ``max_characters_per_token - 2`` (the
    begin- and end-of-word marks take two places), as
    :func:`~bilm.data.vocabulary.token_to_char_ids` cuts them."""
    return max_characters_per_token - 2


@dataclass(frozen=True)
class TextSummary:
    """The counts of one text (the training files, or the held-out ones).

    ``sentences`` are the lines that hold a token (``blank_lines`` the valid ones that hold
    none; an ``invalid_lines`` line is skipped, as training skips it). ``sentence_length``:
    tokens per sentence, ``min``, ``median``, ``p95``, ``p99``, ``max`` (nearest rank: the
    p-th percentile is the smallest length that at least p% of the sentences do not exceed).
    ``invalid_examples``: the first few invalid UTF-8 lines, as ``file:line``.
    """

    files: int
    lines: int
    sentences: int
    blank_lines: int
    tokens: int
    types: int
    invalid_lines: int
    invalid_examples: list[str]
    sentence_length: dict[str, int]


@dataclass(frozen=True)
class CorpusReport:
    """What :func:`corpus_report` found; every share is a fraction in [0, 1] (None where
    there is no held-out text). See the module docstring for the suggestions' rules."""

    train: TextSummary
    heldout: TextSummary | None
    max_characters_per_token: int
    kept_bytes: int  # max_characters_per_token - 2
    longest_token_bytes: int
    tokens_cut: int  # training tokens longer than kept_bytes UTF-8 bytes
    tokens_cut_share: float
    types_cut: int
    types_cut_share: float
    characters: int  # distinct characters of the training text
    unseen_characters: list[str] | None  # held-out characters absent from the training text
    unseen_character_occurrences: int | None  # how often they occur in the held-out text
    vocab: str  # the vocabulary file, or how `bilm vocab` would build it
    vocab_size: int  # entries, <S> </S> <UNK> included
    train_oov_rate: float  # share of training tokens outside the vocabulary
    heldout_oov_rate: float | None
    n_train_tokens: int  # tokens training reads per epoch (the options' n_train_tokens)
    suggested_max_characters_per_token: int
    suggested_min_count: int
    suggested_vocab_size: int  # entries with the suggested min count, specials included
    suggested_vocab_coverage: float  # share of training tokens it covers
    suggested_heldout_oov_rate: float | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The report as JSON-ready data (what ``--json`` writes)."""
        return asdict(self)


@dataclass
class _Scan:
    """Running counts while a text is read."""

    counts: Counter[str] = field(default_factory=Counter)
    lengths: Counter[int] = field(default_factory=Counter)  # tokens per sentence -> sentences
    files: int = 0
    lines: int = 0
    blank: int = 0
    invalid: int = 0
    invalid_at: list[str] = field(default_factory=list)

    def end_line(self, n_tokens: int, invalid: bool) -> None:
        self.lines += 1
        if n_tokens:
            self.lengths[n_tokens] += 1
        elif not invalid:
            self.blank += 1


def _files(pattern: str, what: str) -> list[str]:
    """The files of a glob, sorted; DataError when none match."""
    files = sorted(glob.glob(os.path.expanduser(pattern)))
    if not files:
        raise DataError(f"no {what} files match {pattern!r}")
    return files


def _scan_file(path: str, scan: _Scan, bar: Progress) -> None:
    """Count one file's lines into ``scan`` (an invalid line: counted, named, skipped; the
    pieces of a line over 1 MiB read before its invalid byte count, as training reads them)."""
    current, n_tokens, invalid, done = 0, 0, False, 0
    with open(path, "rb") as f:
        for lineno, text, _ in read_lines(f):
            if lineno != current:
                if current:
                    scan.end_line(n_tokens, invalid)
                current, n_tokens, invalid = lineno, 0, False
            if isinstance(text, UnicodeDecodeError):
                invalid = True
                scan.invalid += 1
                if len(scan.invalid_at) < INVALID_EXAMPLES:
                    scan.invalid_at.append(f"{path}:{lineno}")
            else:
                tokens = text.split()
                scan.counts.update(tokens)
                n_tokens += len(tokens)
            position = f.tell()
            bar.update(position - done)
            done = position
        if current:
            scan.end_line(n_tokens, invalid)
    scan.files += 1


def _scan(files: list[str], what: str, progress: bool) -> _Scan:
    scan = _Scan()
    bar = Progress(f"reading the {what} text", total=sum(os.path.getsize(f) for f in files),
                   unit="bytes", enabled=progress)
    for path in files:
        _scan_file(path, scan, bar)
    bar.close()
    if not scan.counts:
        bad = f" ({scan.invalid} lines are not valid UTF-8)" if scan.invalid else ""
        raise DataError(f"the {what} files hold no tokens{bad}: {', '.join(files[:3])}"
                        f"{' ...' if len(files) > 3 else ''}")
    return scan


def _percentile(lengths: Counter[int], percent: int) -> int:
    """Nearest rank: the smallest length that at least ``percent``% of the sentences do not
    exceed (exact integer arithmetic)."""
    total = sum(lengths.values())
    rank = max(-(-percent * total // 100), 1)
    seen = 0
    for length in sorted(lengths):
        seen += lengths[length]
        if seen >= rank:
            break
    return length


def _summary(scan: _Scan) -> TextSummary:
    lengths = scan.lengths
    dist = {"min": min(lengths), "median": _percentile(lengths, 50),
            "p95": _percentile(lengths, 95), "p99": _percentile(lengths, 99),
            "max": max(lengths)}
    return TextSummary(scan.files, scan.lines, sum(lengths.values()), scan.blank,
                       sum(scan.counts.values()), len(scan.counts), scan.invalid,
                       list(scan.invalid_at), dist)


def _suggested_max_characters(byte_lengths: Counter[int], total: int) -> int:
    """The smallest N >= 50 whose N - 2 bytes keep at least 99.9% of the tokens whole."""
    seen = 0
    for length in sorted(byte_lengths):
        seen += byte_lengths[length]
        if seen * 1000 >= round(TOKEN_COVERAGE * 1000) * total:
            break
    return max(DEFAULT_MAX_CHARACTERS, length + 2)


def _suggested_min_count(counts: Counter[str], total: int) -> tuple[int, float]:
    """The largest min count whose vocabulary (specials always in) covers >= 98% of the
    tokens, and the share it covers."""
    covered = sum(counts[s] for s in _SPECIALS)
    by_count = Counter(c for w, c in counts.items() if w not in _SPECIALS)
    for count in sorted(by_count, reverse=True):
        covered += count * by_count[count]
        if covered * 1000 >= round(VOCAB_COVERAGE * 1000) * total:
            break
    return count, covered / total


def _oov_rate(counts: Counter[str], known: Vocabulary | set[str] | Counter[str],
              min_count: int = 1) -> float:
    """Share of the tokens of ``counts`` outside ``known`` (a Counter: the training counts,
    a token known when seen at least ``min_count`` times, as ``bilm vocab`` keeps it)."""
    if isinstance(known, Counter):
        missing = sum(c for w, c in counts.items()
                      if w not in _SPECIALS and known.get(w, 0) < min_count)
    else:
        missing = sum(c for w, c in counts.items() if w not in known)
    return missing / sum(counts.values())


def _unseen(seen: set[str], heldout: Counter[str]) -> tuple[list[str], int]:
    """The held-out characters absent from ``seen`` (the training text's), by descending
    count then code point, and their occurrences in the held-out text."""
    missing: Counter[str] = Counter()
    for word, count in heldout.items():
        for ch in word:
            if ch not in seen:
                missing[ch] += count
    order = sorted(missing, key=lambda ch: (-missing[ch], ch))
    return order, sum(missing.values())


def _vocabulary(vocab: Vocabulary | None, counts: Counter[str],
                ) -> tuple[str, Vocabulary | Counter[str], int]:
    """(its description, the known tokens, its entries): the file, or what ``bilm vocab``
    builds with its default cut-off (every training type, --min-count 1)."""
    if vocab is not None:
        return vocab.filename, vocab, len(vocab)
    size = len(counts) - sum(s in counts for s in _SPECIALS) + len(_SPECIALS)
    return "bilm vocab's default (--min-count 1: every training type)", counts, size


def corpus_report(train: str, heldout: str | None = None,
                  vocab: str | os.PathLike[str] | None = None,
                  max_characters_per_token: int = DEFAULT_MAX_CHARACTERS,
                  progress: bool = False) -> CorpusReport:
    """Audit the training text (the files matching the glob ``train``) and the held-out
    text (``heldout``'s) for a biLM with ``max_characters_per_token``.

    ``vocab``: the vocabulary file whose OOV rates to report (default: the one ``bilm vocab``
    would build from the training text). Raises :class:`~bilm.data.dataset.DataError` when
    no file matches or the files hold no token, :class:`~bilm.data.vocabulary.VocabularyError`
    for a bad vocabulary file.
    """
    # first the vocabulary (VocabularyError: missing, not UTF-8, blank line, duplicate), the
    # globs: a mistake costs no reading
    vocabulary = Vocabulary(vocab) if vocab is not None else None
    train_files = _files(train, "training")
    heldout_files = _files(heldout, "held-out") if heldout is not None else None
    tr = _scan(train_files, "training", progress)
    ho = _scan(heldout_files, "held-out", progress) if heldout_files else None
    counts, total = tr.counts, sum(tr.counts.values())
    limit = kept_bytes(max_characters_per_token)
    byte_lengths: Counter[int] = Counter()
    types_cut = 0
    for word, count in counts.items():
        n_bytes = len(word.encode("utf-8"))
        byte_lengths[n_bytes] += count
        types_cut += n_bytes > limit
    tokens_cut = sum(c for n, c in byte_lengths.items() if n > limit)
    seen: set[str] = set()
    for word in counts:
        seen.update(word)
    unseen, occurrences = _unseen(seen, ho.counts) if ho else (None, None)
    described, known, size = _vocabulary(vocabulary, counts)
    min_count, coverage = _suggested_min_count(counts, total)
    kept = sum(1 for w, c in counts.items() if c >= min_count and w not in _SPECIALS)
    report = CorpusReport(
        train=_summary(tr), heldout=_summary(ho) if ho else None,
        max_characters_per_token=max_characters_per_token, kept_bytes=limit,
        longest_token_bytes=max(byte_lengths), tokens_cut=tokens_cut,
        tokens_cut_share=tokens_cut / total, types_cut=types_cut,
        types_cut_share=types_cut / len(counts), characters=len(seen),
        unseen_characters=unseen, unseen_character_occurrences=occurrences,
        vocab=described, vocab_size=size, train_oov_rate=_oov_rate(counts, known),
        heldout_oov_rate=_oov_rate(ho.counts, known) if ho else None, n_train_tokens=total,
        suggested_max_characters_per_token=_suggested_max_characters(byte_lengths, total),
        suggested_min_count=min_count, suggested_vocab_size=kept + len(_SPECIALS),
        suggested_vocab_coverage=coverage,
        suggested_heldout_oov_rate=_oov_rate(ho.counts, counts, min_count) if ho else None)
    report.notes.extend(_notes(report))
    return report


def _notes(r: CorpusReport) -> list[str]:
    """What to act on, in words."""
    notes = []
    if r.suggested_max_characters_per_token > r.max_characters_per_token:
        notes.append(f"max_characters_per_token {r.max_characters_per_token} cuts "
                     f"{_share(r.tokens_cut_share)} of the training tokens: set char_cnn."
                     f"max_characters_per_token to {r.suggested_max_characters_per_token}")
    for name, text in (("training", r.train), ("held-out", r.heldout)):
        if text is not None and text.invalid_lines:
            notes.append(f"invalid UTF-8 lines in the {name} text: {_int(text.invalid_lines)},"
                         f" skipped (first: {', '.join(text.invalid_examples)}); convert them, "
                         "e.g. with iconv")
    return notes


# -- the terminal table and the JSON file --------------------------------------------------------

_LABEL = 42  # width of the label column


def _int(n: int) -> str:
    return f"{n:,}"


def _row(label: str, value: str) -> str:
    return f"{label:<{_LABEL}}{value}"


def _share(x: float) -> str:
    """A share as the table prints it: a percentage with 3 decimals."""
    return f"{100 * x:.3f}%"


def _char(ch: str) -> str:
    return f"{ch} (U+{ord(ch):04X})" if ch.isprintable() else f"U+{ord(ch):04X}"


def _text_rows(r: CorpusReport) -> list[str]:
    """The training and held-out columns."""
    texts = [r.train] + ([r.heldout] if r.heldout else [])
    rows = [f"{'':<{_LABEL}}{'training':>14}" + (f"{'held-out':>14}" if r.heldout else "")]
    fields = [("files", "files"), ("lines", "lines"),
              ("sentences (lines with tokens)", "sentences"), ("blank lines", "blank_lines"),
              ("invalid UTF-8 lines (skipped)", "invalid_lines"), ("tokens", "tokens"),
              ("types", "types")]
    for label, name in fields:
        rows.append(f"{label:<{_LABEL}}" + "".join(f"{_int(getattr(t, name)):>14}"
                                                   for t in texts))
    for key in ("min", "median", "p95", "p99", "max"):
        rows.append(f"{'sentence length, ' + key + ' (tokens)':<{_LABEL}}"
                    + "".join(f"{_int(t.sentence_length[key]):>14}" for t in texts))
    return rows


def format_report(r: CorpusReport) -> str:
    """The report as a table for the terminal (the figures ``to_dict`` holds, formatted:
    counts with thousands separators, shares as percentages with 3 decimals)."""
    cut = f"over {r.kept_bytes} bytes"
    rows = [*_text_rows(r), "",
            _row("max_characters_per_token (this report)", f"{r.max_characters_per_token} (keeps "
                 f"{r.kept_bytes} UTF-8 bytes: {r.kept_bytes} ASCII, {r.kept_bytes // 2} "
                 f"Cyrillic or {r.kept_bytes // 3} CJK characters)"),
            _row(f"tokens cut ({cut})", f"{_int(r.tokens_cut)} ({_share(r.tokens_cut_share)})"),
            _row(f"types cut ({cut})", f"{_int(r.types_cut)} ({_share(r.types_cut_share)})"),
            _row("longest token (bytes)", _int(r.longest_token_bytes)),
            _row("characters (training)", _int(r.characters))]
    if r.unseen_characters is not None:
        shown = ", ".join(map(_char, r.unseen_characters[:10]))
        more = " ..." if len(r.unseen_characters) > 10 else ""
        rows.append(_row("held-out characters unseen in training",
                         f"{_int(len(r.unseen_characters))} "
                         f"({_int(r.unseen_character_occurrences)} occurrences)"
                         + (f": {shown}{more}" if shown else "")))
    rows += [_row("vocabulary", f"{r.vocab} ({_int(r.vocab_size)} entries)"),
             _row("OOV rate, training", _share(r.train_oov_rate))]
    if r.heldout_oov_rate is not None:
        rows.append(_row("OOV rate, held-out", _share(r.heldout_oov_rate)))
    rows += ["", _row("n_train_tokens", _int(r.n_train_tokens)),
             _row("suggested max_characters_per_token", f"{r.suggested_max_characters_per_token}"
                  f" (>= {DEFAULT_MAX_CHARACTERS}, keeps {TOKEN_COVERAGE:.1%} of tokens whole)"),
             _row("suggested vocabulary --min-count", f"{r.suggested_min_count} ("
                  f"{_int(r.suggested_vocab_size)} entries, {_share(r.suggested_vocab_coverage)}"
                  f" of training tokens; the largest covering {VOCAB_COVERAGE:.0%})")]
    if r.suggested_heldout_oov_rate is not None:
        rows.append(_row("OOV rate, held-out, suggested vocabulary",
                         _share(r.suggested_heldout_oov_rate)))
    rows += [f"note: {note}" for note in r.notes]
    return "\n".join(rows)


def write_report_json(r: CorpusReport, path: str | os.PathLike[str],
                      overwrite: bool = False) -> None:
    """Write ``r.to_dict()`` as JSON (UTF-8, characters as they are), atomically: never a
    half-written file; an existing ``path`` is replaced only with ``overwrite``."""
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(r.to_dict(), f, ensure_ascii=False, indent=2)
        f.write("\n")
