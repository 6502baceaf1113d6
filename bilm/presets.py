"""Named option sets, gathered from the registered encoders (bilm-tf's published shapes,
Transformer ELMo's, and tiny ones for CPU experiments: see :mod:`bilm.encoders`)."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["PRESETS", "merge_options", "preset"]

PRESETS: dict[str, dict[str, Any]]  # every preset by name: served by __getattr__ below


def _gather() -> dict[str, dict[str, Any]]:
    """Every registered encoder's presets, by name (the encoders in name order)."""
    from bilm.encoders import get_spec, names

    return {name: options for encoder in names()
            for name, options in get_spec(encoder).presets.items()}


def __getattr__(name: str) -> Any:
    # PRESETS is gathered on each use, so an encoder registered later adds its own
    if name == "PRESETS":
        return _gather()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def preset(name: str) -> dict[str, Any]:
    """A copy of preset ``name``'s options dict (no ``n_tokens_vocab``: set from the vocab)."""
    presets = _gather()
    if name not in presets:
        raise KeyError(f"unknown preset {name!r}; choose from {', '.join(presets)}")
    return copy.deepcopy(presets[name])


def merge_options(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override``'s keys replaced, nested sections merged key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_options(out[key], value)
        else:
            out[key] = value
    return out
