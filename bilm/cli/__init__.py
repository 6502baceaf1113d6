"""The ``bilm`` command line: a thin shell over the library. The only package (with the
``bin/`` scripts) that configures logging.

:mod:`bilm.cli.parser` builds the argument parser from the shared flag groups of
:mod:`bilm.cli.flags`; each command (``bilm.cli.commands_*``) checks its arguments before
TensorFlow starts (:mod:`bilm.cli.checks`), calls the library and prints.
"""

from __future__ import annotations

from collections.abc import Sequence

from bilm._shell import run_main
from bilm.cli.parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bilm`` command; returns the exit code (2 for a user mistake, 128 + N after
    signal N, e.g. 130 for Ctrl-C and 143 for SIGTERM once the checkpoint is saved)."""
    import sys

    from bilm.cli.plugins import PluginError, load_plugins

    try:  # before the parser: a plugin's presets and names are choices like the built-ins'
        load_plugins(sys.argv[1:] if argv is None else argv)
    except PluginError as e:
        print(f"bilm: error: {e}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    from bilm.logs import configure_logging

    configure_logging(-1 if args.quiet else (1 if args.verbose else 0))
    return run_main("bilm", lambda: args.func(args), debug=args.debug)
