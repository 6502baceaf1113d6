"""Progress of a long loop: a tqdm bar on a terminal, else a log line every so often."""

from __future__ import annotations

import logging
import os
import sys
import time

logger = logging.getLogger(__name__)

__all__ = ["Progress"]

# Fewer columns than this (0: the pseudo-terminals of some job runners) and tqdm draws nothing
# readable (with 0, nothing at all, for as long as the loop runs): log lines instead.
MIN_BAR_COLUMNS = 10


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _stderr_columns() -> int | None:
    """The width of the terminal on stderr, as tqdm measures it (None: unknown)."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return None


def _bar_fits() -> bool:
    """Whether stderr is a terminal wide enough for a bar."""
    if not _stderr_is_terminal():
        return False
    columns = _stderr_columns()
    if columns is not None and columns < MIN_BAR_COLUMNS:
        logger.debug("stderr is a terminal %d columns wide: progress as log lines", columns)
        return False
    return True


class Progress:
    """Progress of a long loop: one stream, one total.

    On a terminal, a `tqdm <https://tqdm.github.io>`_ bar on stderr (log records are routed
    above it); otherwise, or on a terminal narrower than :data:`MIN_BAR_COLUMNS` (some job
    runners' pseudo-terminals say 0), one log line every ``interval`` seconds (or a plain
    stderr line when the program configured no logging at all). Rates and ETAs are measured
    from the end of the first update, so start-up and compilation do not inflate the ETA.

    Args:
        desc: a label. total: the count to reach (None: unknown). unit: what is counted.
        enabled: False makes every call a no-op. initial: already done (a resumed run).
        interval: seconds between log lines when stderr is not a terminal.
    """

    def __init__(self, desc: str, total: int | None = None, unit: str = "it",
                 enabled: bool = True, initial: int = 0, interval: float = 30.0) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.enabled = enabled
        self.done = initial
        self.postfix = ""
        self._interval = interval
        self._tty = enabled and _bar_fits()
        self._bar = None  # made at the first update: its clock then skips the warm-up
        self._redirect = None
        self._t0: float | None = None
        self._n0 = initial
        self._last_emit = 0.0
        self._emitted_at = -1

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_postfix(self, text: str) -> None:
        """Extra text shown after the counts (e.g. the latest perplexity)."""
        self.postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._t0 is None:  # the first update ends the warm-up
            self._t0, self._n0, self._last_emit = now, self.done, now
            if self._tty:
                self._open_bar()
            return
        if self._bar is not None:
            self._bar.update(n)
        elif now - self._last_emit >= self._interval:
            self._emit(now)

    def _open_bar(self) -> None:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._bar = tqdm(total=self.total, initial=self.done, desc=self.desc, unit=self.unit,
                         dynamic_ncols=True, mininterval=0.5, smoothing=0.1, leave=True,
                         file=sys.stderr)
        if self.postfix:
            self._bar.set_postfix_str(self.postfix, refresh=False)
        # log records print above the bar instead of breaking it
        self._redirect = logging_redirect_tqdm()
        self._redirect.__enter__()

    def line(self, now: float | None = None) -> str:
        """The log line: counts, rate and ETA (rate measured after the first update)."""
        now = time.perf_counter() if now is None else now
        rate = None
        if self._t0 is not None and now > self._t0 and self.done > self._n0:
            rate = (self.done - self._n0) / (now - self._t0)
        text = f"{self.desc}: {self.done:,}"
        if self.total is not None:
            text += f"/{self.total:,}"
        text += f" {self.unit}"
        if rate:
            text += f", {rate:,.1f} {self.unit}/s"
            if self.total is not None:
                text += f", ETA {_fmt_time(max(self.total - self.done, 0) / rate)}"
        if self.postfix:
            text += f", {self.postfix}"
        return text

    def _emit(self, now: float) -> None:
        self._last_emit, self._emitted_at = now, self.done
        text = self.line(now)
        if logger.hasHandlers():
            logger.info("%s", text)
        else:  # a library user who configured no logging still sees progress
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            if self._redirect is not None:
                self._redirect.__exit__(None, None, None)
                self._redirect = None
        elif not self._tty and self._t0 is not None and self._emitted_at != self.done:
            self._emit(time.perf_counter())  # the final count, once
        self.enabled = False


def _fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
