"""Typed, frozen options read from and written to bilm-tf's ``options.json`` schema.

Every key bilm-tf knew has a typed field; keys we do not know are kept in ``extra`` and written
back unchanged, so a file round-trips. Errors name the offending key and the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PRECISIONS",
    "BiLMOptions",
    "CharCNNOptions",
    "LSTMOptions",
    "OptionsError",
    "load_options",
    "save_options",
]


class OptionsError(ValueError):
    """An options file or dict is missing a key or holds a value of the wrong type."""


def _where(source: str | None) -> str:
    return f" in {source}" if source else ""


def _get(d: Mapping[str, Any], key: str, kind: str, path: str, source: str | None,
         default: Any = ..., optional: bool = False) -> Any:
    """Fetch ``d[key]`` and check its type; ``kind`` is int|float|bool|str."""
    full = f"{path}.{key}" if path else key
    if key not in d or (optional and d[key] is None):
        if default is ...:
            raise OptionsError(f"missing option '{full}'{_where(source)}")
        return default
    value = d[key]
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        # JSON written by hand often has 3 for 3.0; accept ints for floats.
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool) or value in (0, 1),
        "str": isinstance(value, str),
    }[kind]
    if not ok:
        raise OptionsError(
            f"option '{full}'{_where(source)} must be {kind}, got {value!r} "
            f"({type(value).__name__})"
        )
    if kind == "float":
        return float(value)
    if kind == "bool":
        return bool(value)
    return value


def _extra(d: Mapping[str, Any], known: set[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in known}


@dataclass(frozen=True)
class LSTMOptions:
    """The ``lstm`` section: sizes and clipping of the projected LSTM stacks."""

    dim: int  # LSTM cell size
    projection_dim: int  # output size of each layer (= token embedding size)
    n_layers: int = 1  # bilm-tf's default when the key is absent
    cell_clip: float | None = None  # clip cell state to +-cell_clip (None: no clip)
    proj_clip: float | None = None  # clip projected output to +-proj_clip
    use_skip_connections: bool = False  # add input to output from the 2nd layer on
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS = ("dim", "projection_dim", "n_layers", "cell_clip", "proj_clip",
             "use_skip_connections")

    @property
    def use_projection(self) -> bool:
        """bilm-tf builds the projection (``W_P_0``) only when it shrinks the output."""
        return self.projection_dim < self.dim

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str | None = None) -> LSTMOptions:
        p = "lstm"
        opts = cls(
            dim=_get(d, "dim", "int", p, source),
            projection_dim=_get(d, "projection_dim", "int", p, source),
            n_layers=_get(d, "n_layers", "int", p, source, default=1),
            cell_clip=_get(d, "cell_clip", "float", p, source, default=None, optional=True),
            proj_clip=_get(d, "proj_clip", "float", p, source, default=None, optional=True),
            use_skip_connections=_get(d, "use_skip_connections", "bool", p, source,
                                      default=False, optional=True),
            extra=_extra(d, set(cls._KEYS)),
        )
        for key in ("dim", "projection_dim", "n_layers"):
            if getattr(opts, key) < 1:
                raise OptionsError(f"option 'lstm.{key}'{_where(source)} must be >= 1")
        if opts.projection_dim > opts.dim:
            raise OptionsError(
                f"option 'lstm.projection_dim'{_where(source)} ({opts.projection_dim}) "
                f"must not exceed 'lstm.dim' ({opts.dim})"
            )
        return opts

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"dim": self.dim, "projection_dim": self.projection_dim,
                             "n_layers": self.n_layers,
                             "use_skip_connections": self.use_skip_connections}
        if self.cell_clip is not None:
            d["cell_clip"] = self.cell_clip
        if self.proj_clip is not None:
            d["proj_clip"] = self.proj_clip
        d.update(self.extra)
        return d


@dataclass(frozen=True)
class CharCNNOptions:
    """The ``char_cnn`` section: character embedding, convolutions and highway layers."""

    filters: tuple[tuple[int, int], ...]  # (width, n_filters) per convolution
    n_highway: int
    embedding_dim: int  # char_cnn.embedding.dim
    n_characters: int = 262  # 261 in training files, 262 for inference (+ padding row)
    max_characters_per_token: int = 50
    activation: str = "relu"  # after the max-pool: relu | tanh
    extra: Mapping[str, Any] = field(default_factory=dict)
    embedding_extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS = ("filters", "n_highway", "embedding", "n_characters",
             "max_characters_per_token", "activation")

    @property
    def n_filters(self) -> int:
        """Total number of convolution filters (the CNN output size)."""
        return sum(count for _, count in self.filters)

    @property
    def n_stored_characters(self) -> int:
        """Rows of ``char_embed`` in a weight file: the padding row (262nd) is never stored."""
        return 261 if self.n_characters == 262 else self.n_characters

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str | None = None) -> CharCNNOptions:
        p = "char_cnn"
        raw_filters = d.get("filters")
        if raw_filters is None:
            raise OptionsError(f"missing option 'char_cnn.filters'{_where(source)}")
        try:
            filters = tuple((int(w), int(c)) for w, c in raw_filters)
            if not filters or any(w < 1 or c < 1 for w, c in filters):
                raise ValueError
            if any(isinstance(x, bool) or not isinstance(x, int)
                   for pair in raw_filters for x in pair):
                raise ValueError
        except (TypeError, ValueError):
            raise OptionsError(
                f"option 'char_cnn.filters'{_where(source)} must be a non-empty list of "
                f"[width, count] integer pairs, got {raw_filters!r}"
            ) from None
        emb = d.get("embedding")
        if not isinstance(emb, Mapping):
            raise OptionsError(f"missing option 'char_cnn.embedding.dim'{_where(source)}")
        opts = cls(
            filters=filters,
            n_highway=_get(d, "n_highway", "int", p, source, default=0),
            embedding_dim=_get(emb, "dim", "int", "char_cnn.embedding", source),
            n_characters=_get(d, "n_characters", "int", p, source, default=262),
            max_characters_per_token=_get(d, "max_characters_per_token", "int", p, source,
                                          default=50),
            activation=_get(d, "activation", "str", p, source, default="relu"),
            extra=_extra(d, set(cls._KEYS)),
            embedding_extra=_extra(emb, {"dim"}),
        )
        if opts.activation not in ("relu", "tanh"):
            raise OptionsError(
                f"option 'char_cnn.activation'{_where(source)} must be 'relu' or 'tanh', "
                f"got {opts.activation!r}"
            )
        if opts.n_characters not in (261, 262):
            raise OptionsError(
                f"option 'char_cnn.n_characters'{_where(source)} must be 261 (training) or "
                f"262 (inference), got {opts.n_characters}"
            )
        max_width = max(w for w, _ in filters)
        if opts.max_characters_per_token < max(max_width, 3):
            raise OptionsError(
                f"option 'char_cnn.max_characters_per_token'{_where(source)} "
                f"({opts.max_characters_per_token}) is smaller than the widest filter "
                f"({max_width}) or 3"
            )
        return opts

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "activation": self.activation,
            "embedding": {"dim": self.embedding_dim, **self.embedding_extra},
            "filters": [list(f) for f in self.filters],
            "max_characters_per_token": self.max_characters_per_token,
            "n_characters": self.n_characters,
            "n_highway": self.n_highway,
        }
        d.update(self.extra)
        return d


# Training keys: (name, type, default). Defaults are bilm-tf's, except n_train_tokens whose
# default is computed from the data by the trainer (None here).
_TRAIN_KEYS: tuple[tuple[str, str, Any], ...] = (
    ("bidirectional", "bool", True),
    ("dropout", "float", 0.1),  # drop rate on LSTM inputs
    ("n_tokens_vocab", "int", None),
    ("batch_size", "int", 128),  # per replica
    ("unroll_steps", "int", 20),
    ("n_negative_samples_batch", "int", 8192),
    ("all_clip_norm_val", "float", 10.0),
    ("learning_rate", "float", 0.2),  # Adagrad, initial accumulator 1.0
    ("n_train_tokens", "int", None),
    ("n_epochs", "int", 10),
    ("share_embedding_softmax", "bool", False),
    ("sample_softmax", "bool", True),
    # Ours, training only (inference ignores them): compute precision of the training step
    # and XLA for the LSTMs + softmax (None: on for lstm.dim <= 2048).
    ("precision", "str", "float32"),
    ("jit_compile", "bool", None),
)

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclass(frozen=True)
class BiLMOptions:
    """All options of a biLM: the network shape plus the training hyperparameters.

    ``char_cnn`` is None for a word-input model. Training fields default to bilm-tf's values;
    ``present`` records which training keys the file held, so writing back adds nothing.
    """

    lstm: LSTMOptions
    char_cnn: CharCNNOptions | None = None
    bidirectional: bool = True
    dropout: float = 0.1
    n_tokens_vocab: int | None = None
    batch_size: int = 128
    unroll_steps: int = 20
    n_negative_samples_batch: int = 8192
    all_clip_norm_val: float = 10.0
    learning_rate: float = 0.2
    n_train_tokens: int | None = None
    n_epochs: int = 10
    share_embedding_softmax: bool = False
    sample_softmax: bool = True
    precision: str = "float32"  # float32 | mixed_bfloat16 | mixed_float16 (training)
    jit_compile: bool | None = None  # XLA for the training head; None: lstm.dim <= 2048
    present: frozenset[str] = frozenset()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:  # also for replace(); from_dict names the file
            raise OptionsError(f"option 'precision' must be one of {', '.join(PRECISIONS)}, "
                               f"got {self.precision!r}")

    @property
    def use_character_inputs(self) -> bool:
        """True for a char-CNN model, False for a word-embedding model."""
        return self.char_cnn is not None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str | None = None) -> BiLMOptions:
        """Build from a parsed ``options.json``; ``source`` names the file in errors."""
        if not isinstance(d, Mapping):
            raise OptionsError(f"options{_where(source)} must be a JSON object")
        if not isinstance(d.get("lstm"), Mapping):
            raise OptionsError(f"missing option 'lstm'{_where(source)}")
        char_cnn = d.get("char_cnn")
        if char_cnn is not None and not isinstance(char_cnn, Mapping):
            raise OptionsError(f"option 'char_cnn'{_where(source)} must be a JSON object")
        kwargs: dict[str, Any] = {}
        present = set()
        for key, kind, default in _TRAIN_KEYS:
            if key in d and d[key] is not None:
                present.add(key)
            kwargs[key] = _get(d, key, kind, "", source, default=default, optional=True)
        if kwargs["precision"] not in PRECISIONS:
            raise OptionsError(
                f"option 'precision'{_where(source)} must be one of {', '.join(PRECISIONS)}, "
                f"got {kwargs['precision']!r}"
            )
        known = {"lstm", "char_cnn"} | {k for k, _, _ in _TRAIN_KEYS}
        return cls(
            lstm=LSTMOptions.from_dict(d["lstm"], source),
            char_cnn=CharCNNOptions.from_dict(char_cnn, source) if char_cnn else None,
            present=frozenset(present),
            extra=_extra(d, known),
            **kwargs,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``options.json`` dict: known keys that were read or set, plus unknown ones."""
        d: dict[str, Any] = {"lstm": self.lstm.to_dict()}
        if self.char_cnn is not None:
            d["char_cnn"] = self.char_cnn.to_dict()
        for key, _, default in _TRAIN_KEYS:
            value = getattr(self, key)
            if key in self.present or (value is not None and value != default):
                d[key] = value
        d.update(self.extra)
        return d

    def replace(self, **changes: Any) -> BiLMOptions:
        """A copy with ``changes``; changed training keys are marked present."""
        train_keys = {k for k, _, _ in _TRAIN_KEYS}
        present = self.present | (set(changes) & train_keys)
        return dataclasses.replace(self, present=frozenset(present), **changes)


def load_options(path: str | os.PathLike[str]) -> BiLMOptions:
    """Read and validate an ``options.json`` file."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise OptionsError(f"options file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise OptionsError(f"{path} is not valid JSON: {e}") from None
    return BiLMOptions.from_dict(raw, source=path)


def save_options(options: BiLMOptions, path: str | os.PathLike[str]) -> None:
    """Write ``options`` as JSON (atomically: a temporary file renamed into place)."""
    from bilm._io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(options.to_dict(), f, indent=2, sort_keys=True)
        f.write("\n")
