"""The errors of a run folder (no TensorFlow): what the command line reports in one line."""

from __future__ import annotations

__all__ = ["RunBusyError", "RunError"]


class RunError(ValueError):
    """A training directory cannot be used as asked (the message says why and what to do)."""


class RunBusyError(RunError):
    """Another process holds the run folder (trains or resumes into it)."""

