"""Typed, frozen options read from and written to bilm-tf's ``options.json`` schema.

Every key bilm-tf knew has a typed field; keys we do not know are kept in ``extra`` and written
back unchanged, so a file round-trips (a warning names each one, since most are typos).

This module holds the top level (the training keys) and the ``char_cnn`` section; the encoder
section is parsed by its registered encoder (:mod:`bilm.encoders`), and every section checks
itself with :mod:`bilm.schema`'s rules: ``from_dict``, ``BiLMOptions.replace`` and direct
construction share the same checks and the same one-line messages. Errors name the offending
key (dotted: ``char_cnn.embedding.dim``) and the file.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bilm.encoders import get_spec, names
from bilm.encoders.lstm import LSTMOptions
from bilm.encoders.registry import EncoderOptions
from bilm.encoders.transformer import TransformerOptions
from bilm.schema import (
    UNTYPED_KEYS,
    OptionsError,
    Rule,
    Section,
    apply_rules,
    extra_keys,
    fail,
    fetch,
    warn_unknown,
    where,
)

__all__ = [
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

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

# Upper bound of char_cnn.max_characters_per_token. Every released model uses 50 (a token is cut
# to 48 UTF-8 bytes); 1000 bytes is far longer than any word (longer "tokens" are URLs or encoded
# blobs), while memory grows linearly with it: the vocabulary's character-id table is
# n_vocab x max_characters int32 (3.2 GB for the 793K-word 1B Word Benchmark vocabulary at 1000)
# and the char CNN's activations are n_tokens x max_characters x n_filters floats. Without a
# bound, a typo (1000000) got the process killed for memory instead of an error here.
MAX_CHARACTERS_PER_TOKEN = 1000

def _filters(raw: Any, key: str, source: str | None) -> tuple[tuple[int, int], ...]:
    def is_int(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and x >= 1

    def is_pair(x: Any) -> bool:
        return (isinstance(x, Sequence) and not isinstance(x, str) and len(x) == 2
                and is_int(x[0]) and is_int(x[1]))

    if (not isinstance(raw, Sequence) or isinstance(raw, str) or not raw
            or not all(is_pair(pair) for pair in raw)):
        fail(key, source, "a non-empty list of [width, count] pairs of integers >= 1",
             repr(raw))
    return tuple((w, c) for w, c in raw)


# max_characters_per_token's range is checked in __post_init__ (it depends on the filters).
# AllenNLP's variant keys (projection_dim and below) are written back only when they differ
# from bilm-tf's defaults.
_CHAR_CNN_RULES = {
    "filters": Rule("list", parse=_filters),
    "n_highway": Rule("int", low=0, default=0),
    "embedding_dim": Rule("int", low=1, name="embedding.dim"),
    "n_characters": Rule("int", choices=(261, 262),
                         choices_text="261 (training) or 262 (inference)"),
    "activation": Rule("str", choices=("relu", "tanh"), choices_text="'relu' or 'tanh'"),
    "max_characters_per_token": Rule("int"),
    "projection_dim": Rule("int", low=1, nullable=True, omit_default=True),
    "projection_location": Rule("str", nullable=True, choices=("after_highway", "after_cnn"),
                                choices_text="'after_highway', 'after_cnn' or null",
                                omit_default=True),
    "layer_norm": Rule("bool", omit_default=True),
    "highway_gate": Rule("str", choices=("transform", "carry"),
                         choices_text="'transform' (bilm-tf) or 'carry' (AllenNLP)",
                         omit_default=True),
    "padding_row": Rule("str", choices=("zero", "learned"),
                        choices_text="'zero' (bilm-tf) or 'learned' (AllenNLP)",
                        omit_default=True),
}


@dataclass(frozen=True)
class CharCNNOptions(Section):
    """The ``char_cnn`` section: character embedding, convolutions, highway layers and the
    projection to the model width (the token embedder).

    bilm-tf's defaults; AllenNLP's character encoder (``CnnHighwayEncoder``, which Transformer
    ELMo uses) sets ``projection_location`` (the projection is then always applied, after the
    CNN or after the highways), ``layer_norm`` (after the projection), ``highway_gate:
    carry`` (its gate weights the input: ``g x + (1 - g) relu(A x)``) and ``padding_row:
    learned`` (262 stored character rows, the padding one learned).
    """

    RULES: ClassVar[Mapping[str, Rule]] = _CHAR_CNN_RULES
    PREFIX: ClassVar[str] = "char_cnn"

    filters: tuple[tuple[int, int], ...]  # (width, n_filters) per convolution
    n_highway: int  # 0 when a file has no key
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

    def __post_init__(self) -> None:
        super().__post_init__()
        widest = max(w for w, _ in self.filters)
        low = max(widest, 3)  # a token needs its begin and end marks and 1 byte
        if not low <= self.max_characters_per_token <= MAX_CHARACTERS_PER_TOKEN:
            fail("char_cnn.max_characters_per_token", self.source,
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


# Training keys: (name, rule, default). Defaults are bilm-tf's, except n_train_tokens whose
# default is computed from the data by the trainer (None here).
_TRAIN_KEYS: tuple[tuple[str, Rule, Any], ...] = (
    ("bidirectional", Rule("bool"), True),
    ("dropout", Rule("float", low=0, high=1, high_open=True), 0.1),  # drop rate, LSTM inputs
    ("n_tokens_vocab", Rule("int", low=1, nullable=True), None),
    ("batch_size", Rule("int", low=1), 128),  # per replica
    ("unroll_steps", Rule("int", low=1), 20),
    ("n_negative_samples_batch", Rule("int", low=1), 8192),
    ("all_clip_norm_val", Rule("float", low=0, low_open=True, nullable=True), 10.0),  # null: off
    # Adagrad's learning rate (initial accumulator 1.0); with the noam schedule, its factor
    ("learning_rate", Rule("float", low=0, low_open=True), 0.2),
    ("n_train_tokens", Rule("int", low=1, nullable=True), None),
    ("n_epochs", Rule("int", low=1), 10),
    ("share_embedding_softmax", Rule("bool"), False),
    ("sample_softmax", Rule("bool"), True),
    # Ours, training only (inference ignores them): compute precision of the training step
    # and XLA for the LSTMs + softmax (None: on for lstm.dim <= 2048).
    ("precision", Rule("str", choices=PRECISIONS), "float32"),
    ("jit_compile", Rule("bool", nullable=True), None),
    # Ours: the optimizer (bilm-tf: Adagrad; AllenNLP's Transformer ELMo: Adam with the noam
    # schedule, lr = learning_rate * width^-0.5 * min(step^-0.5, step * warmup_steps^-1.5)).
    ("optimizer", Rule("str", choices=("adagrad", "adam")), "adagrad"),
    ("learning_rate_schedule", Rule("str", choices=("constant", "noam")), "constant"),
    ("warmup_steps", Rule("int", low=1), 6000),
    # Ours, for sentence-per-row training (the transformer): longer sentences are split
    # (AllenNLP dropped them); tokens per piece, <S> and </S> included
    ("max_sentence_length", Rule("int", low=3), 400),
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
        apply_rules(self, _TRAIN_RULES, "")
        if self.share_embedding_softmax and self.char_cnn is not None:  # bilm-tf raises too
            raise OptionsError(
                f"option 'share_embedding_softmax'{where(self.source)} must be false for a "
                "character-input model (one with a 'char_cnn' section): only a word-input "
                "model can share its embedding with the softmax")
        # The default 8192 is not checked: a scoring-only model with a small vocabulary keeps
        # it, and training with it fails in the sampler with its own clear message.
        negatives = self.n_negative_samples_batch
        if (self.sample_softmax and self.n_tokens_vocab is not None
                and negatives > self.n_tokens_vocab
                and ("n_negative_samples_batch" in self.present
                     or negatives != _TRAIN_DEFAULTS["n_negative_samples_batch"])):
            fail("n_negative_samples_batch", self.source,
                 f"<= n_tokens_vocab ({self.n_tokens_vocab}) with a sampled softmax",
                 repr(negatives))

    @property
    def use_character_inputs(self) -> bool:
        """True for a char-CNN model, False for a word-embedding model."""
        return self.char_cnn is not None

    @property
    def lstm(self) -> EncoderOptions | None:
        """The LSTM section of an LSTM biLM (bilm-tf's key); None for another encoder."""
        return self.encoder if self.encoder.type == "lstm" else None

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
            raise OptionsError(f"options{where(source)} must be a JSON object")
        known = {"lstm", "encoder", "char_cnn", *_TRAIN_RULES}
        warn_unknown(d, known, "", source)
        encoder = _encoder_from_dict(d, source)
        char_cnn = d.get("char_cnn")
        if char_cnn is not None and not isinstance(char_cnn, Mapping):
            raise OptionsError(f"option 'char_cnn'{where(source)} must be a JSON object")
        kwargs: dict[str, Any] = {}
        present = set()
        for key, _, default in _TRAIN_KEYS:
            if key in d and d[key] is not None:
                present.add(key)
            kwargs[key] = fetch(d, key, "", source, default=default, none_is_default=True)
        return cls(
            encoder=encoder,
            char_cnn=CharCNNOptions.from_dict(char_cnn, source) if char_cnn else None,
            present=frozenset(present),
            extra=extra_keys(d, known),
            source=source,
            **kwargs,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``options.json`` dict: known keys that were read or set, plus unknown ones."""
        if self.encoder.type == "lstm":
            d: dict[str, Any] = {"lstm": self.encoder.to_dict()}  # bilm-tf's layout
        else:
            d = {"encoder": {"type": self.encoder.type, **self.encoder.to_dict()}}
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
    """The encoder: bilm-tf's ``lstm`` section, or ``encoder`` with a registered ``type``."""
    section = d.get("encoder")
    if section is None:
        if not isinstance(d.get("lstm"), Mapping):
            raise OptionsError(f"missing option 'lstm' (or 'encoder'){where(source)}")
        return get_spec("lstm").options.from_dict(d["lstm"], source)
    if "lstm" in d:
        raise OptionsError(f"options{where(source)} have both 'lstm' and 'encoder'; keep one")
    if not isinstance(section, Mapping):
        raise OptionsError(f"option 'encoder'{where(source)} must be a JSON object")
    kind = section.get("type")
    if kind not in names():
        fail("encoder.type", source, f"one of {', '.join(map(repr, names()))}", repr(kind))
    rest = {k: v for k, v in section.items() if k != "type"}
    return get_spec(kind).options.from_dict(rest, source)


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
