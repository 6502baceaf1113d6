"""Named option sets: bilm-tf's published shapes and a tiny one for CPU experiments."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["PRESETS", "merge_options", "preset"]

_FILTERS = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]


def _shape(dim: int, proj: int, n_highway: int, filters=_FILTERS, char_dim: int = 16,
           negatives: int = 8192, batch_size: int = 128) -> dict[str, Any]:
    return {
        "lstm": {"dim": dim, "projection_dim": proj, "n_layers": 2, "cell_clip": 3,
                 "proj_clip": 3, "use_skip_connections": True},
        "char_cnn": {"filters": filters, "n_highway": n_highway, "embedding": {"dim": char_dim},
                     "n_characters": 261, "max_characters_per_token": 50,
                     "activation": "relu"},
        "bidirectional": True, "dropout": 0.1, "batch_size": batch_size, "unroll_steps": 20,
        "n_negative_samples_batch": negatives, "all_clip_norm_val": 10.0,
        "learning_rate": 0.2, "n_epochs": 10,
    }


PRESETS: dict[str, dict[str, Any]] = {
    # bilm-tf's train_elmo.py (the released ELMo): 4096 / 512, 2 highways
    "original": _shape(4096, 512, 2),
    "medium": _shape(2048, 256, 1),
    "small": _shape(1024, 128, 1),
    # minutes on a laptop CPU: a few hundred thousand parameters
    "tiny": _shape(256, 64, 1, filters=[[1, 32], [2, 32], [3, 64], [4, 128]], char_dim=8,
                   negatives=1024, batch_size=64),
}


def preset(name: str) -> dict[str, Any]:
    """A copy of preset ``name``'s options dict (no ``n_tokens_vocab``: set from the vocab)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def merge_options(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override``'s keys replaced, nested sections merged key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_options(out[key], value)
        else:
            out[key] = value
    return out
