"""Small I/O helpers: atomic writes and progress reporting."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A crash or exception never leaves a half-written file under the final name.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part",
                               dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


class Progress:
    """Reports progress of a long loop: a bar on a terminal, periodic log lines otherwise.

    ``total`` may be None (unknown). Call :meth:`update` with the amount done, then
    :meth:`close`. Silent when ``enabled`` is False.
    """

    def __init__(self, desc: str, total: int | None = None, unit: str = "it",
                 enabled: bool = True, interval: float = 10.0) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.enabled = enabled
        self.done = 0
        self.start = time.perf_counter()
        self._last = 0.0
        self._tty = enabled and sys.stderr.isatty()
        self._interval = 0.2 if self._tty else interval

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and now - self._last >= self._interval:
            self._last = now
            self._emit(final=False)

    def _line(self) -> str:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            frac = min(self.done / self.total, 1.0)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            bar = "#" * int(frac * 20)
            return (f"{self.desc}: [{bar:<20}] {self.done}/{self.total} {self.unit} "
                    f"{rate:,.1f} {self.unit}/s ETA {_fmt_time(eta)}")
        return f"{self.desc}: {self.done} {self.unit} {rate:,.1f} {self.unit}/s"

    def _emit(self, final: bool) -> None:
        if self._tty:
            sys.stderr.write("\r" + self._line() + ("\n" if final else ""))
            sys.stderr.flush()
        else:
            logger.info("%s", self._line())

    def close(self) -> None:
        if self.enabled:
            self._emit(final=True)


def _fmt_time(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
