"""The registry of token embedders: each one's options section, network and input kind, by
the ``type`` its options.json section names (no TensorFlow: options are parsed before it
starts).

The built-in embedders (:mod:`bilm.embedders.char_cnn`, :mod:`bilm.embedders.word`) keep
bilm-tf's layout of options.json (a ``char_cnn`` section, or none for word input) and register
themselves when first looked up; another one is a module that calls :func:`register` and is
selected by ``"token_embedder": {"type": "<name>", ...}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from bilm.registry import Registry, describe_fields

__all__ = ["BUILTIN_EMBEDDERS", "INPUTS", "EmbedderOptions", "EmbedderSpec", "batcher_for",
           "get_spec", "names", "register"]

_BUILTINS = ("bilm.embedders.char_cnn", "bilm.embedders.word", "bilm.embedders.efml")
# bilm-tf's embedders, chosen by options.json's char_cnn section (or its absence), never by
# a "token_embedder" section
BUILTIN_EMBEDDERS = ("char_cnn", "word")

# what an embedder reads: "chars", (..., max_characters_per_token) character ids made by
# bilm.data's char vocabulary (bilm-tf's Batcher); "words", (...) word ids of the vocabulary
INPUTS = ("chars", "words")


class EmbedderOptions(Protocol):
    """What a registered embedder's options class has (besides ``from_dict(d, source)``)."""

    type: ClassVar[str]  # the embedder's name: ``"type"`` in options.json's section
    input: ClassVar[str]  # "chars" or "words" (see INPUTS)

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class EmbedderSpec:
    """Everything the toolkit knows about one token embedder."""

    name: str  # "type" in options.json's "token_embedder" section
    input: str  # "chars" or "words"
    # (options: bilm.options.BiLMOptions, *, n_word_vocab: int | None, compute_dtype: str)
    # -> bilm.nn.token_embedding.TokenEmbedderLayer; imports its network (TensorFlow) when
    # called. A registered embedder finds its own section in ``options.token_embedder``.
    network: Callable[..., Any]
    # its options class: from_dict(d, source) / to_dict(); ClassVars type and input; a
    # character embedder also has max_characters_per_token. None: the built-ins, which keep
    # bilm-tf's keys (char_cnn) instead of a "token_embedder" section
    options: type | None = None
    describe: Callable[[Any], str] | None = None  # bilm info's line; default: type + fields
    # (section) -> the ids of tokens, with Batcher's interface (token_char_ids(token),
    # batch_sentences(sentences), max_token_length), for an embedder whose ids are its own;
    # None: bilm-tf's character ids (bilm.data.Batcher)
    token_ids: Callable[[Any], Any] | None = None

    def describe_options(self, options: Any) -> str:
        """``bilm info``'s line for this embedder's ``options`` (its section)."""
        if self.describe is not None:
            return self.describe(options)
        return describe_fields(self.name, options)


_REGISTRY: Registry[EmbedderSpec] = Registry("token embedder", _BUILTINS)


def register(spec: EmbedderSpec) -> EmbedderSpec:
    """Make ``spec`` known by its name (ValueError when the name is taken or the spec is
    inconsistent)."""
    _REGISTRY.load_builtins()
    if spec.name in _REGISTRY.names():
        raise ValueError(f"token embedder type {spec.name!r} is already registered")
    if spec.input not in INPUTS:
        raise ValueError(f"token embedder type {spec.name!r}: input must be one of "
                         f"{', '.join(map(repr, INPUTS))}, got {spec.input!r}")
    if spec.options is not None:
        declared = (getattr(spec.options, "type", spec.name),
                    getattr(spec.options, "input", spec.input))
        if declared != (spec.name, spec.input):
            raise ValueError(f"token embedder type {spec.name!r}: its options class declares "
                             f"type {declared[0]!r} and input {declared[1]!r}")
    return _REGISTRY.add(spec.name, spec)


def get_spec(name: str) -> EmbedderSpec:
    """The registered token embedder ``name`` (KeyError naming the registered ones)."""
    return _REGISTRY.get(name)


def names() -> list[str]:
    """The registered token embedder types, sorted."""
    return _REGISTRY.names()


def batcher_for(options: Any, vocab_file: str | None = None) -> Any:
    """What makes a character-input model's ids (``options``: its BiLMOptions): its
    embedder's own (``EmbedderSpec.token_ids``), else bilm-tf's :class:`~bilm.Batcher`
    (``vocab_file`` only caches ids)."""
    spec = get_spec(options.embedder_type)
    if spec.token_ids is not None:
        return spec.token_ids(options.embedder_options)
    from bilm.data.batcher import Batcher

    return Batcher(vocab_file, options.max_characters_per_token)
