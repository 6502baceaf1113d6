"""Build a training vocabulary from text shards."""

from __future__ import annotations

import glob
import logging
import os
from collections import Counter
from dataclasses import dataclass

from bilm.data.lines import read_lines
from bilm.io.files import atomic_path
from bilm.io.progress import Progress

__all__ = ["VocabStats", "build_vocab"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VocabStats:
    """What :func:`build_vocab` counted and wrote."""

    n_tokens: int  # running tokens in the shards
    n_types: int  # distinct tokens seen
    n_written: int  # vocabulary size, specials included
    n_long: int  # distinct tokens longer than max_characters_per_token - 2 UTF-8 bytes


def _count(n: int, one: str, many: str | None = None) -> str:
    """``1 type``, ``2 types``: ``n`` with the word in the right number."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def build_vocab(filepattern: str, outfile: str | os.PathLike[str], min_count: int = 1,
                max_size: int | None = None, max_characters_per_token: int = 50,
                progress: bool = True, overwrite: bool = True) -> VocabStats:
    """Count the whitespace tokens of the shards and write ``<S>``, ``</S>``, ``<UNK>``, then
    the tokens by descending count (ties in code-point order, so the file is deterministic).

    ``min_count`` drops rarer tokens; ``max_size`` caps the file (specials included). Tokens
    longer than ``max_characters_per_token - 2`` bytes are counted in the result: the char
    CNN sees only their first bytes. ``overwrite=False`` never replaces an existing
    ``outfile``, not even one that another process wrote meanwhile.
    """
    files = sorted(glob.glob(os.path.expanduser(filepattern)))
    if not files:
        raise FileNotFoundError(f"no files match {filepattern!r}")
    counts: Counter[str] = Counter()
    total_bytes = sum(os.path.getsize(f) for f in files)
    bar = Progress("counting", total=total_bytes, unit="bytes", enabled=progress)
    for path in files:
        # lines end at "\n" only, as training reads them, in bounded memory however long
        with open(path, "rb") as f:
            for _, text, _ in read_lines(f):
                if isinstance(text, UnicodeDecodeError):
                    raise text
                counts.update(text.split())
                bar.update(len(text.encode("utf-8")))
    bar.close()
    specials = ["<S>", "</S>", "<UNK>"]
    for s in specials:
        counts.pop(s, None)
    kept = sorted((w for w, c in counts.items() if c >= min_count),
                  key=lambda w: (-counts[w], w))
    if max_size is not None:
        kept = kept[: max(max_size - len(specials), 0)]
    limit = max_characters_per_token - 2
    n_long = sum(1 for w in counts if len(w.encode("utf-8")) > limit)
    with atomic_path(outfile, overwrite=overwrite) as tmp, \
            open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join([*specials, *kept]) + "\n")
    stats = VocabStats(sum(counts.values()), len(counts), len(kept) + len(specials), n_long)
    # DEBUG: `bilm vocab` prints its own summary line; the returned stats are the result
    logger.debug("vocabulary: %s, %s, wrote %s to %s; %s longer than %d bytes (the char CNN "
                 "sees their first %d)", _count(stats.n_tokens, "token"),
                 _count(stats.n_types, "type"), _count(stats.n_written, "entry", "entries"),
                 outfile, _count(n_long, "type is", "types are"), limit, limit)
    return stats
