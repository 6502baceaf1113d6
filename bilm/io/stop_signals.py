"""Stop signals while an output is written: SIGINT, SIGTERM or SIGHUP raise
:class:`OutputInterrupted`, so that the unfinished temporary file is removed, not left."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["OutputInterrupted"]


class OutputInterrupted(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) arrived while an output was being written;
    its temporary file is removed and the message says so. ``signum`` is the signal (the
    command line exits with 128 + ``signum``, as a shell reports a process it killed)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.outputs: list[tuple[str, str, bool]] = []  # (temporary file, output, published)

    def __str__(self) -> str:
        text = f"stopped by {signal.Signals(self.signum).name}"
        notes = [f"{path} was written" if published else
                 f"removed the unfinished {tmp}; {path} was not written"
                 for tmp, path, published in self.outputs]
        return f"{text}: {'; '.join(notes)}" if notes else text


# The signals that stop a command: each raises OutputInterrupted while an output is written.
_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                      if hasattr(signal, n))


class _SignalsInterrupt:
    """While an output is written, a stop signal raises :class:`OutputInterrupted` (whose
    cleanup removes the temporary file) instead of killing the process on the spot.

    Only in the main thread, and only for signals left at their default (a program's own
    handler, e.g. training's save-then-stop, is kept). A second signal during the cleanup is
    ignored; ``hold()`` defers a signal until the output is published (or not)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._holding = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _SignalsInterrupt:
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in _STOP_SIGNALS:
            try:
                current = signal.getsignal(sig)
                default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
                if current is default:
                    self._previous[sig] = signal.signal(sig, self._handle)
            except (OSError, ValueError):  # not settable here
                continue
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            return  # already stopping: let the cleanup finish
        self.received = signum
        if not self._holding:
            raise OutputInterrupted(signum)

    def raise_received(self) -> None:
        """Raise :class:`OutputInterrupted` for a signal that came earlier: its exception,
        raised at whatever bytecode ran when it came, may have been swallowed there (by a
        finalizer or a library's ``except BaseException``), letting the write go on."""
        if self.received is not None:
            raise OutputInterrupted(self.received)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Defer a signal until the block ends (the publishing rename or link)."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self.received is not None:
            raise OutputInterrupted(self.received)
