"""What the ``bilm`` command and bilm-tf's ``bin/`` scripts share: sorting the exceptions
that reach a program's top into one-line user messages (and exit codes) or bugs."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

__all__ = ["UserError", "exit_code", "run_main", "user_message"]


class UserError(Exception):
    """A mistake the user can fix: printed as one line, exit code 2."""


def user_message(error: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for a bug (a traceback).

    Every exception that reaches a program's top is sorted here, in one place.
    """
    from bilm.data.vocabulary import VocabularyError
    from bilm.io.output_errors import is_disk_full
    from bilm.options import OptionsError

    if isinstance(error, (UserError, OptionsError, VocabularyError)):
        message = str(error)
    elif is_disk_full(error):  # OSError ENOSPC, or TensorFlow's/HDF5's wrapped forms
        filename = getattr(error, "filename", None)
        message = (str(error) if type(error).__name__ == "DiskFullError" else
                   f"the disk is full{f' writing {filename}' if filename else ''}; free some "
                   "space or write elsewhere")
    elif isinstance(error, UnicodeDecodeError):
        message = f"a text file is not UTF-8 ({error.reason}); convert it, e.g. with iconv"
    elif isinstance(error, OSError):  # a path that is missing or unwritable
        if error.filename and error.strerror:
            message = f"{error.filename}: {error.strerror.lower()}"
        else:
            message = str(error) or type(error).__name__
    elif type(error).__name__ == "ResourceExhaustedError":  # TensorFlow out of memory
        message = f"out of memory ({str(error).splitlines()[0]}); lower --batch-size"
    elif (isinstance(error, (ValueError, RuntimeError))
          and type(error).__module__.split(".")[0] == "bilm"):
        message = str(error)  # bilm's own error classes: WeightFileError, TrainingError, ...
    else:
        return None
    return " ".join(message.split())


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal number, as a shell reports a process ended by that signal."""
    return 128 + getattr(interrupt, "signum", 2)


def run_main(prog: str, func: Callable[[], object], debug: bool = False) -> int:
    """Run ``func``: 0 on success; a user mistake prints ``prog: error: ...`` and returns 2;
    an interruption prints one line and returns 128 + the signal; a bug raises."""
    from bilm.allocator import keep_freed_memory

    keep_freed_memory()  # a program-wide setting, so here and not in the library
    try:
        func()
    except KeyboardInterrupt as e:
        text = str(e) if str(e) else "interrupted"
        print(f"{prog}: {text}", file=sys.stderr)
        return exit_code(e)
    except BrokenPipeError:
        # the reader went away (``bilm score ... | head``): stop quietly, as `yes | head` does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as e:
        message = None if debug else user_message(e)
        if message is None:
            raise
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    return 0
