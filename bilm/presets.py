"""Named option sets: bilm-tf's published shapes, Transformer ELMo's, and tiny ones for CPU
experiments."""

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


def _transformer(dim: int, hidden: int, n_layers: int, filters=_FILTERS, char_dim: int = 16,
                 n_highway: int = 2, batch_size: int = 64, negatives: int = 8192,
                 warmup: int = 6000) -> dict[str, Any]:
    """Transformer ELMo's recipe (allennlp-models' bidirectional_language_model.jsonnet):
    AllenNLP's character encoder (projection after the highways, then a layer norm), 8 heads,
    dropout 0.1, Adam with the noam schedule, no gradient clipping, one sentence per row."""
    return {
        "encoder": {"type": "transformer", "dim": dim, "hidden_dim": hidden,
                    "n_layers": n_layers, "n_heads": 8, "dropout": 0.1, "input_dropout": 0.1},
        "char_cnn": {"filters": filters, "n_highway": n_highway,
                     "embedding": {"dim": char_dim}, "n_characters": 262,
                     "max_characters_per_token": 50, "activation": "relu",
                     "projection_location": "after_highway", "layer_norm": True,
                     "highway_gate": "carry", "padding_row": "learned"},
        "bidirectional": True, "dropout": 0.1, "batch_size": batch_size,
        "n_negative_samples_batch": negatives, "all_clip_norm_val": None,
        "optimizer": "adam", "learning_rate_schedule": "noam", "learning_rate": 1.0,
        "warmup_steps": warmup, "max_sentence_length": 400, "n_epochs": 10,
    }


PRESETS: dict[str, dict[str, Any]] = {
    # bilm-tf's train_elmo.py (the released ELMo): 4096 / 512, 2 highways
    "original": _shape(4096, 512, 2),
    "medium": _shape(2048, 256, 1),
    "small": _shape(1024, 128, 1),
    # minutes on a laptop CPU: a few hundred thousand parameters
    "tiny": _shape(256, 64, 1, filters=[[1, 32], [2, 32], [3, 64], [4, 128]], char_dim=8,
                   negatives=1024, batch_size=64),
    # the released Transformer ELMo (transformer-elmo-2019.01.10): 6 layers of 512 / 2048
    "transformer-elmo": _transformer(512, 2048, 6),
    # minutes on a laptop CPU, like "tiny"
    "transformer-tiny": _transformer(64, 256, 2, filters=[[1, 32], [2, 32], [3, 64], [4, 128]],
                                     char_dim=8, n_highway=1, batch_size=32, negatives=1024,
                                     warmup=200),
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
