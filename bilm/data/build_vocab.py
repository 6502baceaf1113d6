"""Build a training vocabulary from text shards."""

from __future__ import annotations

import glob
import logging
import os
from collections import Counter
from dataclasses import dataclass

from bilm._io import Progress, atomic_path

__all__ = ["VocabStats", "build_vocab"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VocabStats:
    """What :func:`build_vocab` counted and wrote."""

    n_tokens: int  # running tokens in the shards
    n_types: int  # distinct tokens seen
    n_written: int  # vocabulary size, specials included
    n_long: int  # distinct tokens longer than max_characters_per_token - 2 UTF-8 bytes


def build_vocab(filepattern: str, outfile: str | os.PathLike[str], min_count: int = 1,
                max_size: int | None = None, max_characters_per_token: int = 50,
                progress: bool = True) -> VocabStats:
    """Count the whitespace tokens of the shards and write ``<S>``, ``</S>``, ``<UNK>``, then
    the tokens by descending count (ties in code-point order, so the file is deterministic).

    ``min_count`` drops rarer tokens; ``max_size`` caps the file (specials included). Tokens
    longer than ``max_characters_per_token - 2`` bytes are counted in the result: the char
    CNN sees only their first bytes.
    """
    files = sorted(glob.glob(os.path.expanduser(filepattern)))
    if not files:
        raise FileNotFoundError(f"no files match {filepattern!r}")
    counts: Counter[str] = Counter()
    total_bytes = sum(os.path.getsize(f) for f in files)
    bar = Progress("counting", total=total_bytes, unit="bytes", enabled=progress)
    for path in files:
        with open(path, encoding="utf-8") as f:
            for line in f:
                counts.update(line.split())
                bar.update(len(line.encode("utf-8")))
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
    with atomic_path(outfile) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join([*specials, *kept]) + "\n")
    stats = VocabStats(sum(counts.values()), len(counts), len(kept) + len(specials), n_long)
    logger.info("vocabulary: %d tokens, %d types, wrote %d entries to %s; %d types are longer "
                "than %d bytes (the char CNN sees their first %d)", stats.n_tokens,
                stats.n_types, stats.n_written, outfile, n_long, limit, limit)
    return stats
