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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bilm.embedders.char_cnn import MAX_CHARACTERS_PER_TOKEN, CharCNNOptions
from bilm.embedders.registry import BUILTIN_EMBEDDERS, EmbedderOptions
from bilm.embedders.registry import get_spec as get_embedder
from bilm.embedders.registry import names as embedder_names
from bilm.encoders import get_spec, names
from bilm.encoders.lstm import LSTMOptions
from bilm.encoders.registry import EncoderOptions
from bilm.encoders.transformer import TransformerOptions
from bilm.schema import (
    UNTYPED_KEYS,
    OptionsError,
    Rule,
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
    # a registered token embedder's section (bilm.embedders); None: bilm-tf's, by char_cnn
    token_embedder: EmbedderOptions | None = None
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
        if self.token_embedder is not None:
            _check_token_embedder(self.token_embedder, self.char_cnn, self.source)
        if self.share_embedding_softmax and self.use_character_inputs:  # bilm-tf raises too
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
    def embedder_type(self) -> str:
        """The token embedder's registered name (:mod:`bilm.embedders`): the
        ``token_embedder`` section's type, else bilm-tf's ``char_cnn`` or ``word``."""
        if self.token_embedder is not None:
            return self.token_embedder.type
        return "char_cnn" if self.char_cnn is not None else "word"

    @property
    def embedder_options(self) -> Any:
        """The token embedder's section (``char_cnn``'s for bilm-tf's; None for words)."""
        return self.token_embedder if self.token_embedder is not None else self.char_cnn

    @property
    def use_character_inputs(self) -> bool:
        """True for a character-input model (a char CNN, or a registered embedder of
        characters), False for a word-embedding model."""
        if self.token_embedder is not None:
            return self.token_embedder.input == "chars"
        return self.char_cnn is not None

    @property
    def max_characters_per_token(self) -> int | None:
        """Characters per token of a character-input model's ids (None for word input)."""
        if not self.use_character_inputs:
            return None
        return self.embedder_options.max_characters_per_token

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
        known = {"lstm", "encoder", "char_cnn", "token_embedder", *_TRAIN_RULES}
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
            token_embedder=_token_embedder_from_dict(d, source),
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
        if self.token_embedder is not None:
            d["token_embedder"] = {"type": self.token_embedder.type,
                                   **self.token_embedder.to_dict()}
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


def _token_embedder_from_dict(d: Mapping[str, Any],
                              source: str | None) -> EmbedderOptions | None:
    """A registered token embedder's ``token_embedder`` section (None when absent: bilm-tf's
    embedders are chosen by ``char_cnn``)."""
    section = d.get("token_embedder")
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise OptionsError(f"option 'token_embedder'{where(source)} must be a JSON object")
    kind = section.get("type")
    sectioned = [n for n in embedder_names() if get_embedder(n).options is not None
                 and n not in BUILTIN_EMBEDDERS]
    if kind in BUILTIN_EMBEDDERS:
        raise OptionsError(f"option 'token_embedder.type'{where(source)}: {kind!r} is "
                           "bilm-tf's own embedder, chosen without this section (a 'char_cnn' "
                           "section, or none for word input); remove 'token_embedder'")
    if kind not in sectioned:
        fail("token_embedder.type", source,
             f"one of {', '.join(map(repr, sectioned))}" if sectioned
             else "a registered token embedder (none is registered)", repr(kind))
    rest = {k: v for k, v in section.items() if k != "type"}
    return get_embedder(kind).options.from_dict(rest, source)


def _check_token_embedder(section: Any, char_cnn: CharCNNOptions | None,
                          source: str | None) -> None:
    """A registered embedder's section is alone, and a character one says how many
    characters its ids hold."""
    if char_cnn is not None:
        raise OptionsError(f"options{where(source)} have both 'char_cnn' and "
                           "'token_embedder'; keep one")
    if section.input == "chars":
        n = getattr(section, "max_characters_per_token", None)
        if (not isinstance(n, int) or isinstance(n, bool)
                or not 3 <= n <= MAX_CHARACTERS_PER_TOKEN):
            fail("token_embedder.max_characters_per_token", source,
                 f"an integer in [3, {MAX_CHARACTERS_PER_TOKEN}] (a character embedder's "
                 "ids hold this many characters per token)", repr(n))


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
