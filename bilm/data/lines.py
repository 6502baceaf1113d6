"""Reading text a line at a time in bounded memory: a line ends at "\\n" only, and a line
longer than :data:`MAX_LINE_BYTES` comes in pieces cut at whitespace (see :func:`read_lines`)."""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterator
from typing import BinaryIO

__all__ = ["MAX_LINE_BYTES", "count_lines", "read_lines"]

# Bytes of a line read (and decoded) at a time: a longer line (a shard without newlines, say)
# comes in pieces cut at whitespace, so that reading one line never holds more than this.
MAX_LINE_BYTES = 1 << 20

# greedy: everything up to the last whitespace character (any that str.split() splits at)
_UP_TO_LAST_SPACE = re.compile(r".*\s", re.DOTALL)
_LEADING_NON_SPACE = re.compile(r"\S*")


def read_lines(f: BinaryIO, errors: str = "strict", max_bytes: int = MAX_LINE_BYTES,
               ) -> Iterator[tuple[int, str | UnicodeDecodeError, bool]]:
    """The lines of a binary file as ``(line number, text, whole)``, in bounded memory.

    A line ends at ``b"\\n"`` only: never at ``\\r``, ``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1e``,
    ``\\x85``, U+2028 or U+2029, where universal newlines or ``str.splitlines()`` would break
    it (so line i is always line i, in every reader). The text keeps its ``"\\n"``.

    A line of at most ``max_bytes`` bytes comes whole (``whole`` True). A longer one comes in
    pieces (``whole`` False) of at most about ``max_bytes`` characters, cut at whitespace so
    that no token spans two pieces: ``" ".join`` of the pieces' tokens is the line's tokens,
    except that a token longer than ``max_bytes`` characters is cut to that many (no
    vocabulary holds such a token, and the character CNN sees only its first bytes).

    With ``errors="strict"``, a line that is not valid UTF-8 comes as one
    ``UnicodeDecodeError`` instead of its text (``start``/``end`` are byte offsets in the
    line; pieces of it that came before are not taken back); other ``errors`` handlers
    (e.g. ``"replace"``) apply as in :meth:`bytes.decode`.
    """
    lineno = 0
    while True:
        raw = f.readline(max_bytes)
        if not raw:
            return
        lineno += 1
        if _ends_line(raw, max_bytes):  # the common case: the whole line
            try:
                yield lineno, raw.decode("utf-8", errors), True
            except UnicodeDecodeError as e:
                yield lineno, e, True
            continue
        for piece in _long_line_pieces(f, raw, errors, max_bytes):
            yield lineno, piece, False


def _ends_line(raw: bytes, max_bytes: int) -> bool:
    """Whether ``raw``, what one ``readline(max_bytes)`` returned, ends its line."""
    return not raw or raw.endswith(b"\n") or len(raw) < max_bytes


def _long_line_pieces(f: BinaryIO, raw: bytes, errors: str, max_bytes: int,
                      ) -> Iterator[str | UnicodeDecodeError]:
    """The pieces of a line longer than ``max_bytes`` bytes, whose first ``raw`` bytes are read
    (see :func:`read_lines`): text cut at whitespace, or one ``UnicodeDecodeError`` that ends
    them (the rest of the line is read past)."""
    decoder, carry, offset, dropping = codecs.getincrementaldecoder("utf-8")(errors), "", 0, False
    while True:
        last = _ends_line(raw, max_bytes)
        try:
            text = decoder.decode(raw, final=last)
        except UnicodeDecodeError as e:
            e.start, e.end = e.start + offset, e.end + offset
            while not last:  # skip the rest of the line
                raw = f.readline(max_bytes)
                last = _ends_line(raw, max_bytes)
            yield e
            return
        offset += len(raw)
        if dropping:  # the rest of a token already cut to max_bytes characters
            cut = _LEADING_NON_SPACE.match(text).end()
            dropping = cut == len(text)
            text = text[cut:]
        text, carry = carry + text, ""
        if last:
            if text:
                yield text
            return
        m = _UP_TO_LAST_SPACE.match(text)
        if m is None:  # no whitespace: all one token, so far
            carry = text
        else:
            yield text[: m.end()]
            carry = text[m.end():]
        if len(carry) > max_bytes:
            carry, dropping = carry[:max_bytes], True
        raw = f.readline(max_bytes)


def count_lines(path: str | os.PathLike[str]) -> int:
    """Lines of a text file as :func:`read_lines` reads them (a last line without its
    newline counts): newlines counted in raw 1 MiB blocks, at C speed (seconds a GB), in
    bounded memory."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            n, last = n + chunk.count(b"\n"), chunk[-1:]
    return n + (last != b"\n")
