"""Typed, frozen options read from and written to bilm-tf's ``options.json`` schema.

Every key bilm-tf knew has a typed field; keys we do not know are kept in ``extra`` and written
back unchanged, so a file round-trips (a warning names each one, since most are typos).

This module is the one place that checks the type and range of every option: each dataclass
validates itself in ``__post_init__``, so ``from_dict``, ``BiLMOptions.replace`` and direct
construction share the same checks and the same one-line messages. Errors name the offending
key (dotted: ``char_cnn.embedding.dim``) and the file.
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn

__all__ = [
    "ENCODERS",
    "MAX_CHARACTERS_PER_TOKEN",
    "PRECISIONS",
    "UNTYPED_KEYS",
    "BiLMOptions",
    "CharCNNOptions",
    "EncoderOptions",
    "LSTMOptions",
    "OptionsError",
    "TransformerOptions",
    "load_options",
    "read_options_json",
    "save_options",
]

logger = logging.getLogger(__name__)

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

# Upper bound of char_cnn.max_characters_per_token. Every released model uses 50 (a token is cut
# to 48 UTF-8 bytes); 1000 bytes is far longer than any word (longer "tokens" are URLs or encoded
# blobs), while memory grows linearly with it: the vocabulary's character-id table is
# n_vocab x max_characters int32 (3.2 GB for the 793K-word 1B Word Benchmark vocabulary at 1000)
# and the char CNN's activations are n_tokens x max_characters x n_filters floats. Without a
# bound, a typo (1000000) got the process killed for memory instead of an error here.
MAX_CHARACTERS_PER_TOKEN = 1000

# Dotted keys ("my_key", "lstm.my_key", "char_cnn.embedding.my_key") that have no typed field
# here but that another part of the toolkit reads from ``extra``: declared here, they load
# without the unknown-key warning. Keys starting with "_" never warn (JSON's usual comments).
UNTYPED_KEYS: frozenset[str] = frozenset()


class OptionsError(ValueError):
    """An options file or dict is missing a key or holds a value of the wrong type or range."""


def _where(source: str | None) -> str:
    return f" in {source}" if source else ""


def _fail(key: str, source: str | None, rule: str, got: str) -> NoReturn:
    raise OptionsError(f"option '{key}'{_where(source)} must be {rule}, got {got}")


@dataclass(frozen=True)
class _Rule:
    """The type and range of one option."""

    kind: str  # int | float | bool | str; ints are accepted for floats, 0/1 for bools
    low: int | None = None
    high: int | None = None
    low_open: bool = False  # True: ``low`` itself is not allowed
    high_open: bool = False
    nullable: bool = False  # None (JSON null) allowed
    choices: tuple[Any, ...] = ()
    choices_text: str = ""  # how to say the choices, when a plain list is not clear enough
    name: str = ""  # the JSON key, when it is not the field's name

    def describe_range(self) -> str:
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{self.low}, "
                    f"{self.high}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"{'<' if self.high_open else '<='} {self.high}"

    def check(self, value: Any, key: str, source: str | None) -> Any:
        """``value`` with its type normalized (3 -> 3.0 for a float, 1 -> True for a bool)."""
        if value is None and self.nullable:
            return None
        null = " or null" if self.nullable else ""
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            # JSON written by hand often has 3 for 3.0; accept ints for floats.
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "bool": isinstance(value, bool) or value in (0, 1),
            "str": isinstance(value, str),
        }[self.kind]
        if not ok:
            _fail(key, source, f"{self.kind}{null}", f"{value!r} ({type(value).__name__})")
        if self.kind == "float":
            value = float(value)
            if not math.isfinite(value):  # Python's json reads NaN, Infinity and -Infinity
                _fail(key, source, f"a finite number{null}", repr(value))
        elif self.kind == "bool":
            value = bool(value)
        if self.choices and value not in self.choices:
            text = self.choices_text or f"one of {', '.join(map(str, self.choices))}"
            _fail(key, source, text, repr(value))
        if self.low is not None or self.high is not None:
            too_low = self.low is not None and (
                value <= self.low if self.low_open else value < self.low)
            too_high = self.high is not None and (
                value >= self.high if self.high_open else value > self.high)
            if too_low or too_high:
                _fail(key, source, f"{self.describe_range()}{null}", repr(value))
        return value


def _apply(options: Any, rules: Mapping[str, _Rule], prefix: str) -> None:
    """Check (and normalize in place) every field of a frozen dataclass that has a rule."""
    for attr, rule in rules.items():
        key = f"{prefix}.{rule.name or attr}" if prefix else rule.name or attr
        object.__setattr__(options, attr, rule.check(getattr(options, attr), key, options.source))


def _fetch(d: Mapping[str, Any], key: str, path: str, source: str | None,
           default: Any = ..., none_is_default: bool = False) -> Any:
    """``d[key]``, or ``default`` when absent (or null, with ``none_is_default``)."""
    if key not in d or (none_is_default and d[key] is None):
        if default is ...:
            raise OptionsError(f"missing option '{f'{path}.{key}' if path else key}'"
                               f"{_where(source)}")
        return default
    return d[key]


def _extra(d: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    known = set(known)
    return {k: v for k, v in d.items() if k not in known}


_warned: set[tuple[str | None, str]] = set()  # (source, dotted key): warn once per process


def _warn_unknown(d: Mapping[str, Any], known: Iterable[str], prefix: str,
                  source: str | None) -> None:
    """Warn (once per file and key) about keys nothing reads: most are misspelt known keys."""
    known = sorted(known)
    for key in d:
        key = str(key)
        dotted = f"{prefix}.{key}" if prefix else key
        if key in known or key.startswith("_") or dotted in UNTYPED_KEYS:
            continue
        # a dict without a file is usually the same options again, already warned about
        if (source, dotted) in _warned or (
                source is None and any(k == dotted for _, k in _warned)):
            continue
        _warned.add((source, dotted))
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        logger.warning("unknown option '%s'%s is not used (it is kept when the options are "
                       "written back)%s", dotted, _where(source), hint)


def _unit(name: str = "") -> _Rule:
    return _Rule("float", low=0, high=1, high_open=True, name=name)  # a rate in [0, 1)


_LSTM_RULES = {
    "dim": _Rule("int", low=1),
    "projection_dim": _Rule("int", low=1),
    "n_layers": _Rule("int", low=1),
    "cell_clip": _Rule("float", low=0, low_open=True, nullable=True),
    "proj_clip": _Rule("float", low=0, low_open=True, nullable=True),
    "use_skip_connections": _Rule("bool"),
}


@dataclass(frozen=True)
class LSTMOptions:
    """The ``lstm`` section: sizes and clipping of the projected LSTM stacks (bilm-tf's
    encoder; the section keeps its bilm-tf name, so every bilm-tf options.json loads)."""

    type: ClassVar[str] = "lstm"
    # carries its state from call to call; trains on bilm-tf's packed streams (see
    # bilm.encoders.Contextualizer)
    stateful: ClassVar[bool] = True
    protocol: ClassVar[str] = "streams"

    dim: int  # LSTM cell size
    projection_dim: int  # output size of each layer (= token embedding size)
    n_layers: int = 1  # bilm-tf's default when the key is absent
    cell_clip: float | None = None  # clip cell state to +-cell_clip (None: no clip)
    proj_clip: float | None = None  # clip projected output to +-proj_clip
    use_skip_connections: bool = False  # add input to output from the 2nd layer on
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)  # file, for messages

    _KEYS = tuple(_LSTM_RULES)

    def __post_init__(self) -> None:
        _apply(self, _LSTM_RULES, "lstm")
        if self.projection_dim > self.dim:
            raise OptionsError(
                f"option 'lstm.projection_dim'{_where(self.source)} ({self.projection_dim}) "
                f"must not exceed 'lstm.dim' ({self.dim})"
            )

    @property
    def use_projection(self) -> bool:
        """bilm-tf builds the projection (``W_P_0``) only when it shrinks the output."""
        return self.projection_dim < self.dim

    @property
    def width(self) -> int:
        """The model width: the token embedding size and each layer's output per direction."""
        return self.projection_dim

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str | None = None) -> LSTMOptions:
        p = "lstm"
        _warn_unknown(d, cls._KEYS, p, source)
        return cls(
            dim=_fetch(d, "dim", p, source),
            projection_dim=_fetch(d, "projection_dim", p, source),
            n_layers=_fetch(d, "n_layers", p, source, default=1),
            cell_clip=_fetch(d, "cell_clip", p, source, default=None),
            proj_clip=_fetch(d, "proj_clip", p, source, default=None),
            use_skip_connections=_fetch(d, "use_skip_connections", p, source, default=False,
                                        none_is_default=True),
            extra=_extra(d, cls._KEYS),
            source=source,
        )

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


_TRANSFORMER_RULES = {
    "dim": _Rule("int", low=1),
    "hidden_dim": _Rule("int", low=1),
    "n_layers": _Rule("int", low=1),
    "n_heads": _Rule("int", low=1),
    "dropout": _unit(),
    "input_dropout": _unit(),
    "final_norm": _Rule("bool"),
}


@dataclass(frozen=True)
class TransformerOptions:
    """The ``encoder`` section of ``"type": "transformer"``: AllenNLP's bidirectional
    Transformer LM (Transformer ELMo): per direction ``n_layers`` pre-layer-norm blocks of
    ``n_heads``-head attention and a ``hidden_dim`` feed-forward, width ``dim``."""

    type: ClassVar[str] = "transformer"
    stateful: ClassVar[bool] = False  # each sentence on its own
    protocol: ClassVar[str] = "sentences"  # trained one sentence per row

    dim: int  # model width: token embeddings, attention and each layer's output
    hidden_dim: int  # feed-forward width
    n_layers: int
    n_heads: int = 8  # AllenNLP fixes 8
    dropout: float = 0.1  # on attention probabilities, sublayer outputs and the FFN's hidden
    input_dropout: float = 0.1  # on the token embeddings plus positions
    # the top layer is layer-normalized (AllenNLP); false for the first layers of a deeper
    # model (bilm export --layers N), whose top was not
    final_norm: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)

    _KEYS = ("type", *_TRANSFORMER_RULES)

    def __post_init__(self) -> None:
        _apply(self, _TRANSFORMER_RULES, "encoder")
        if self.dim % self.n_heads:
            _fail("encoder.n_heads", self.source, f"a divisor of encoder.dim ({self.dim})",
                  repr(self.n_heads))
        if self.dim % 2:  # sin and cos channels pair up
            _fail("encoder.dim", self.source, "even", repr(self.dim))

    @property
    def width(self) -> int:
        return self.dim

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str | None = None) -> TransformerOptions:
        p = "encoder"
        _warn_unknown(d, cls._KEYS, p, source)
        return cls(
            dim=_fetch(d, "dim", p, source),
            hidden_dim=_fetch(d, "hidden_dim", p, source),
            n_layers=_fetch(d, "n_layers", p, source),
            n_heads=_fetch(d, "n_heads", p, source, default=8),
            dropout=_fetch(d, "dropout", p, source, default=0.1),
            input_dropout=_fetch(d, "input_dropout", p, source, default=0.1),
            final_norm=_fetch(d, "final_norm", p, source, default=True),
            extra=_extra(d, cls._KEYS),
            source=source,
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "dim": self.dim, "hidden_dim": self.hidden_dim,
                             "n_layers": self.n_layers, "n_heads": self.n_heads,
                             "dropout": self.dropout, "input_dropout": self.input_dropout}
        if not self.final_norm:
            d["final_norm"] = False
        d.update(self.extra)
        return d


EncoderOptions = LSTMOptions | TransformerOptions
ENCODERS: dict[str, type] = {"lstm": LSTMOptions, "transformer": TransformerOptions}


_CHAR_CNN_RULES = {  # filters and max_characters_per_token are checked in __post_init__
    "n_highway": _Rule("int", low=0),
    "embedding_dim": _Rule("int", low=1, name="embedding.dim"),
    "n_characters": _Rule("int", choices=(261, 262),
                          choices_text="261 (training) or 262 (inference)"),
    "activation": _Rule("str", choices=("relu", "tanh"), choices_text="'relu' or 'tanh'"),
    "max_characters_per_token": _Rule("int"),
    "projection_dim": _Rule("int", low=1, nullable=True),
    "projection_location": _Rule("str", nullable=True, choices=("after_highway", "after_cnn"),
                                 choices_text="'after_highway', 'after_cnn' or null"),
    "layer_norm": _Rule("bool"),
    "highway_gate": _Rule("str", choices=("transform", "carry"),
                          choices_text="'transform' (bilm-tf) or 'carry' (AllenNLP)"),
    "padding_row": _Rule("str", choices=("zero", "learned"),
                         choices_text="'zero' (bilm-tf) or 'learned' (AllenNLP)"),
}


def _filters(raw: Any, source: str | None) -> tuple[tuple[int, int], ...]:
    def is_int(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and x >= 1

    def is_pair(x: Any) -> bool:
        return (isinstance(x, Sequence) and not isinstance(x, str) and len(x) == 2
                and is_int(x[0]) and is_int(x[1]))

    if (not isinstance(raw, Sequence) or isinstance(raw, str) or not raw
            or not all(is_pair(pair) for pair in raw)):
        _fail("char_cnn.filters", source,
              "a non-empty list of [width, count] pairs of integers >= 1", repr(raw))
    return tuple((w, c) for w, c in raw)


@dataclass(frozen=True)
class CharCNNOptions:
    """The ``char_cnn`` section: character embedding, convolutions, highway layers and the
    projection to the model width (the token embedder).

    bilm-tf's defaults; AllenNLP's character encoder (``CnnHighwayEncoder``, which Transformer
    ELMo uses) sets ``projection_location`` (the projection is then always applied, after the
    CNN or after the highways), ``layer_norm`` (after the projection), ``highway_gate:
    carry`` (its gate weights the input: ``g x + (1 - g) relu(A x)``) and ``padding_row:
    learned`` (262 stored character rows, the padding one learned).
    """

    filters: tuple[tuple[int, int], ...]  # (width, n_filters) per convolution
    n_highway: int
    embedding_dim: int  # char_cnn.embedding.dim
    n_characters: int = 262  # 261 in training files, 262 for inference (+ padding row)
    max_characters_per_token: int = 50
    activation: str = "relu"  # after the max-pool: relu | tanh
    projection_dim: int | None = None  # None: the encoder's width
    projection_location: str | None = None  # None: bilm-tf's (after the highways, if needed)
    layer_norm: bool = False  # AllenNLP's layer norm after the projection
    highway_gate: str = "transform"  # transform: bilm-tf's g relu(Ax) + (1-g) x; carry: AllenNLP
    padding_row: str = "zero"  # zero: bilm-tf (not stored); learned: AllenNLP (stored)
    extra: Mapping[str, Any] = field(default_factory=dict)
    embedding_extra: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)  # file, for messages

    _KEYS = ("filters", "n_highway", "embedding", "n_characters",
             "max_characters_per_token", "activation", "projection_dim",
             "projection_location", "layer_norm", "highway_gate", "padding_row")
    # AllenNLP's variant keys: written back only when they differ from bilm-tf's defaults
    _VARIANT_DEFAULTS = {"projection_dim": None, "projection_location": None,
                         "layer_norm": False, "highway_gate": "transform",
                         "padding_row": "zero"}

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters", _filters(self.filters, self.source))
        _apply(self, _CHAR_CNN_RULES, "char_cnn")
        widest = max(w for w, _ in self.filters)
        low = max(widest, 3)  # a token needs its begin and end marks and 1 byte
        if not low <= self.max_characters_per_token <= MAX_CHARACTERS_PER_TOKEN:
            _fail("char_cnn.max_characters_per_token", self.source,
                  f"in [{low}, {MAX_CHARACTERS_PER_TOKEN}] (at least 3 and the widest "
                  f"filter, {widest})", repr(self.max_characters_per_token))

    @property
    def n_filters(self) -> int:
        """Total number of convolution filters (the CNN output size)."""
        return sum(count for _, count in self.filters)

    @property
    def n_stored_characters(self) -> int:
        """Rows of ``char_embed`` in a weight file: bilm-tf never stores the padding row (the
        262nd); a learned one is stored (262)."""
        if self.padding_row == "learned":
            return 262
        return 261 if self.n_characters == 262 else self.n_characters

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str | None = None) -> CharCNNOptions:
        p = "char_cnn"
        _warn_unknown(d, cls._KEYS, p, source)
        emb = d.get("embedding")
        if not isinstance(emb, Mapping):
            raise OptionsError(f"missing option 'char_cnn.embedding.dim'{_where(source)}")
        _warn_unknown(emb, ("dim",), "char_cnn.embedding", source)
        return cls(
            filters=_fetch(d, "filters", p, source),
            n_highway=_fetch(d, "n_highway", p, source, default=0),
            embedding_dim=_fetch(emb, "dim", "char_cnn.embedding", source),
            n_characters=_fetch(d, "n_characters", p, source, default=262),
            max_characters_per_token=_fetch(d, "max_characters_per_token", p, source,
                                            default=50),
            activation=_fetch(d, "activation", p, source, default="relu"),
            **{k: _fetch(d, k, p, source, default=v) for k, v in cls._VARIANT_DEFAULTS.items()},
            extra=_extra(d, cls._KEYS),
            embedding_extra=_extra(emb, ("dim",)),
            source=source,
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "activation": self.activation,
            "embedding": {"dim": self.embedding_dim, **self.embedding_extra},
            "filters": [list(f) for f in self.filters],
            "max_characters_per_token": self.max_characters_per_token,
            "n_characters": self.n_characters,
            "n_highway": self.n_highway,
        }
        for key, default in self._VARIANT_DEFAULTS.items():
            if getattr(self, key) != default:
                d[key] = getattr(self, key)
        d.update(self.extra)
        return d


# Training keys: (name, rule, default). Defaults are bilm-tf's, except n_train_tokens whose
# default is computed from the data by the trainer (None here).
_TRAIN_KEYS: tuple[tuple[str, _Rule, Any], ...] = (
    ("bidirectional", _Rule("bool"), True),
    ("dropout", _Rule("float", low=0, high=1, high_open=True), 0.1),  # drop rate, LSTM inputs
    ("n_tokens_vocab", _Rule("int", low=1, nullable=True), None),
    ("batch_size", _Rule("int", low=1), 128),  # per replica
    ("unroll_steps", _Rule("int", low=1), 20),
    ("n_negative_samples_batch", _Rule("int", low=1), 8192),
    ("all_clip_norm_val", _Rule("float", low=0, low_open=True, nullable=True), 10.0),  # null: off
    # Adagrad's learning rate (initial accumulator 1.0); with the noam schedule, its factor
    ("learning_rate", _Rule("float", low=0, low_open=True), 0.2),
    ("n_train_tokens", _Rule("int", low=1, nullable=True), None),
    ("n_epochs", _Rule("int", low=1), 10),
    ("share_embedding_softmax", _Rule("bool"), False),
    ("sample_softmax", _Rule("bool"), True),
    # Ours, training only (inference ignores them): compute precision of the training step
    # and XLA for the LSTMs + softmax (None: on for lstm.dim <= 2048).
    ("precision", _Rule("str", choices=PRECISIONS), "float32"),
    ("jit_compile", _Rule("bool", nullable=True), None),
    # Ours: the optimizer (bilm-tf: Adagrad; AllenNLP's Transformer ELMo: Adam with the noam
    # schedule, lr = learning_rate * width^-0.5 * min(step^-0.5, step * warmup_steps^-1.5)).
    ("optimizer", _Rule("str", choices=("adagrad", "adam")), "adagrad"),
    ("learning_rate_schedule", _Rule("str", choices=("constant", "noam")), "constant"),
    ("warmup_steps", _Rule("int", low=1), 6000),
    # Ours, for sentence-per-row training (the transformer): longer sentences are split
    # (AllenNLP dropped them); tokens per piece, <S> and </S> included
    ("max_sentence_length", _Rule("int", low=3), 400),
)
_TRAIN_RULES = {name: rule for name, rule, _ in _TRAIN_KEYS}
_TRAIN_DEFAULTS = {name: default for name, _, default in _TRAIN_KEYS}


@dataclass(frozen=True)
class BiLMOptions:
    """All options of a biLM: the network shape plus the training hyperparameters.

    ``char_cnn`` is None for a word-input model. Training fields default to bilm-tf's values;
    ``present`` records which training keys the file held, so writing back adds nothing.
    ``source`` is the file the options were read from (None when built in code or changed by
    ``replace``); error messages name it.
    """

    encoder: EncoderOptions
    char_cnn: CharCNNOptions | None = None
    bidirectional: bool = True
    dropout: float = 0.1
    n_tokens_vocab: int | None = None
    batch_size: int = 128
    unroll_steps: int = 20
    n_negative_samples_batch: int = 8192
    all_clip_norm_val: float | None = 10.0
    learning_rate: float = 0.2
    n_train_tokens: int | None = None
    n_epochs: int = 10
    share_embedding_softmax: bool = False
    sample_softmax: bool = True
    precision: str = "float32"  # float32 | mixed_bfloat16 | mixed_float16 (training)
    jit_compile: bool | None = None  # XLA for the training head; None: automatic
    optimizer: str = "adagrad"  # adagrad | adam
    learning_rate_schedule: str = "constant"  # constant | noam
    warmup_steps: int = 6000  # noam
    max_sentence_length: int = 400  # sentence-per-row training: longer ones are split
    present: frozenset[str] = frozenset()
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _apply(self, _TRAIN_RULES, "")
        if self.share_embedding_softmax and self.char_cnn is not None:  # bilm-tf raises too
            raise OptionsError(
                f"option 'share_embedding_softmax'{_where(self.source)} must be false for a "
                "character-input model (one with a 'char_cnn' section): only a word-input "
                "model can share its embedding with the softmax")
        # The default 8192 is not checked: a scoring-only model with a small vocabulary keeps
        # it, and training with it fails in the sampler with its own clear message.
        negatives = self.n_negative_samples_batch
        if (self.sample_softmax and self.n_tokens_vocab is not None
                and negatives > self.n_tokens_vocab
                and ("n_negative_samples_batch" in self.present
                     or negatives != _TRAIN_DEFAULTS["n_negative_samples_batch"])):
            _fail("n_negative_samples_batch", self.source,
                  f"<= n_tokens_vocab ({self.n_tokens_vocab}) with a sampled softmax",
                  repr(negatives))

    @property
    def use_character_inputs(self) -> bool:
        """True for a char-CNN model, False for a word-embedding model."""
        return self.char_cnn is not None

    @property
    def lstm(self) -> LSTMOptions | None:
        """The LSTM section of an LSTM biLM (bilm-tf's key); None for another encoder."""
        return self.encoder if isinstance(self.encoder, LSTMOptions) else None

    @property
    def dim(self) -> int:
        """The model width: token embeddings and each contextual layer, per direction."""
        return self.encoder.width

    @property
    def n_layers(self) -> int:
        """Contextual layers (ELMo's layers are these plus the token layer)."""
        return self.encoder.n_layers

    @property
    def encoder_type(self) -> str:
        return self.encoder.type

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str | None = None) -> BiLMOptions:
        """Build from a parsed ``options.json``; ``source`` names the file in errors."""
        if not isinstance(d, Mapping):
            raise OptionsError(f"options{_where(source)} must be a JSON object")
        known = {"lstm", "encoder", "char_cnn", *_TRAIN_RULES}
        _warn_unknown(d, known, "", source)
        encoder = _encoder_from_dict(d, source)
        char_cnn = d.get("char_cnn")
        if char_cnn is not None and not isinstance(char_cnn, Mapping):
            raise OptionsError(f"option 'char_cnn'{_where(source)} must be a JSON object")
        kwargs: dict[str, Any] = {}
        present = set()
        for key, _, default in _TRAIN_KEYS:
            if key in d and d[key] is not None:
                present.add(key)
            kwargs[key] = _fetch(d, key, "", source, default=default, none_is_default=True)
        return cls(
            encoder=encoder,
            char_cnn=CharCNNOptions.from_dict(char_cnn, source) if char_cnn else None,
            present=frozenset(present),
            extra=_extra(d, known),
            source=source,
            **kwargs,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``options.json`` dict: known keys that were read or set, plus unknown ones."""
        if isinstance(self.encoder, LSTMOptions):
            d: dict[str, Any] = {"lstm": self.encoder.to_dict()}  # bilm-tf's layout
        else:
            d = {"encoder": self.encoder.to_dict()}
        if self.char_cnn is not None:
            d["char_cnn"] = self.char_cnn.to_dict()
        for key, _, default in _TRAIN_KEYS:
            value = getattr(self, key)
            if key in self.present or (value is not None and value != default):
                d[key] = value
        d.update(self.extra)
        return d

    def replace(self, **changes: Any) -> BiLMOptions:
        """A copy with ``changes``, checked like a file; changed training keys are marked
        present. The copy's ``source`` is None: the new values did not come from the file."""
        present = self.present | (set(changes) & set(_TRAIN_RULES))
        changes.setdefault("source", None)
        return dataclasses.replace(self, present=frozenset(present), **changes)


def _encoder_from_dict(d: Mapping[str, Any], source: str | None) -> EncoderOptions:
    """The encoder: bilm-tf's ``lstm`` section, or ``encoder`` with a ``type``."""
    section = d.get("encoder")
    if section is None:
        if not isinstance(d.get("lstm"), Mapping):
            raise OptionsError(f"missing option 'lstm' (or 'encoder'){_where(source)}")
        return LSTMOptions.from_dict(d["lstm"], source)
    if "lstm" in d:
        raise OptionsError(f"options{_where(source)} have both 'lstm' and 'encoder'; keep one")
    if not isinstance(section, Mapping):
        raise OptionsError(f"option 'encoder'{_where(source)} must be a JSON object")
    kind = section.get("type")
    if kind not in ENCODERS:
        _fail("encoder.type", source, f"one of {', '.join(map(repr, ENCODERS))}", repr(kind))
    if kind == "lstm":
        return LSTMOptions.from_dict({k: v for k, v in section.items() if k != "type"}, source)
    return ENCODERS[kind].from_dict(section, source)


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def read_options_json(path: str | os.PathLike[str]) -> Any:
    """The parsed JSON of an options file; OptionsError (one line, naming ``path`` and the
    fix) when it is missing, a directory, unreadable, an HDF5 file, not UTF-8 or not JSON."""
    path = os.fspath(path)
    if os.path.isdir(path):
        inside = os.path.join(path, "options.json")
        hint = f": {inside}" if os.path.isfile(inside) else ""
        raise OptionsError(f"{path} is a directory; give the options.json inside it{hint}")
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            if head.startswith(_HDF5_SIGNATURE):
                raise OptionsError(f"{path} is an HDF5 file, not an options.json (did you swap "
                                   "--options and --weights?)")
            decoder = codecs.getincrementaldecoder("utf-8-sig")()  # a BOM is harmless
            text = decoder.decode(head)  # a binary file fails here, before the rest is read
            text += decoder.decode(f.read(), final=True)
    except FileNotFoundError:
        raise OptionsError(f"options file not found: {path}") from None
    except IsADirectoryError:  # made a directory since the check above
        raise OptionsError(f"{path} is a directory; give the options.json inside it") from None
    except PermissionError:
        raise OptionsError(f"permission denied reading the options file {path}") from None
    except UnicodeDecodeError as e:
        raise OptionsError(f"{path} is not a UTF-8 JSON file (byte 0x{e.object[e.start]:02x} "
                           "cannot be decoded); an options.json is UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise OptionsError(f"{path} is not valid JSON: {e}") from None


def load_options(path: str | os.PathLike[str]) -> BiLMOptions:
    """Read and validate an ``options.json`` file."""
    path = os.fspath(path)
    return BiLMOptions.from_dict(read_options_json(path), source=path)


def save_options(options: BiLMOptions, path: str | os.PathLike[str],
                 overwrite: bool = True) -> None:
    """Write ``options`` as JSON (atomically: a temporary file renamed into place); an
    existing ``path`` is replaced only when ``overwrite`` (else
    :class:`~bilm.io.files.OutputExistsError`, even for a file that appeared meanwhile)."""
    from bilm.io.files import atomic_path

    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(options.to_dict(), f, indent=2, sort_keys=True)
        f.write("\n")
