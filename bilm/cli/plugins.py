"""Plugins: modules that register encoders, token embedders or weight formats
(:mod:`bilm.encoders`, :mod:`bilm.embedders`, :mod:`bilm.io.formats`) for the command line.

A plugin is imported before the parser is built, so its presets and names are choices like
the built-ins'. Three ways to name one, all loaded:

* ``bilm --plugin MODULE COMMAND ...`` (repeatable; before COMMAND, as every global flag);
* ``BILM_PLUGINS=MODULE[,MODULE...]`` in the environment;
* an installed distribution's entry point in the group ``bilm.plugins`` (pytest's way).

The modules named by the first two are written back to ``BILM_PLUGINS``, so a ``bilm``
process this one starts (``bilm launch``'s workers) loads them too.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from importlib.metadata import entry_points

__all__ = ["ENTRY_POINT_GROUP", "ENV", "PluginError", "load_plugins", "plugin_names"]

ENV = "BILM_PLUGINS"
ENTRY_POINT_GROUP = "bilm.plugins"

logger = logging.getLogger(__name__)


class PluginError(Exception):
    """A plugin that cannot be imported (the message is one line)."""


def plugin_names(argv: Sequence[str]) -> list[str]:
    """The modules ``--plugin`` names among the global flags of ``argv`` (those before the
    command), then ``BILM_PLUGINS``'s, each once."""
    named: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args) and args[i].startswith("-"):
        arg = args[i]
        if arg == "--plugin" and i + 1 < len(args):
            named.append(args[i + 1])
            i += 1
        elif arg.startswith("--plugin="):
            named.append(arg.split("=", 1)[1])
        i += 1
    named += [m.strip() for m in os.environ.get(ENV, "").split(",") if m.strip()]
    return list(dict.fromkeys(named))


def load_plugins(argv: Sequence[str]) -> list[str]:
    """Import the plugins ``argv`` and the environment name, and the installed entry points;
    returns the module names loaded (PluginError naming the one that failed)."""
    modules = plugin_names(argv)
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as e:  # any error in the plugin's own code too
            raise PluginError(f"plugin {module!r} could not be imported ({type(e).__name__}: "
                              f"{e}); is it on PYTHONPATH?") from None
    if modules:
        os.environ[ENV] = ",".join(modules)  # for the bilm processes this one starts
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            point.load()
        except Exception as e:
            raise PluginError(f"plugin {point.name!r} ({point.value}, entry point group "
                              f"{ENTRY_POINT_GROUP}) could not be loaded ({type(e).__name__}: "
                              f"{e})") from None
        modules.append(point.value)
    if modules:
        logger.debug("plugins loaded: %s", ", ".join(modules))
    return modules
