"""The registry of encoders: each one's options class, network, presets and hooks, by the
``type`` its options.json section names (no TensorFlow: options are parsed before it starts).

The built-in encoders (:mod:`bilm.encoders.lstm`, :mod:`bilm.encoders.transformer`) register
themselves when first looked up; another one is a module that calls :func:`register`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from bilm.registry import Registry, describe_fields

__all__ = ["EncoderOptions", "EncoderSpec", "get_spec", "names", "register", "spec_for"]

_BUILTINS = ("bilm.encoders.lstm", "bilm.encoders.transformer")


class EncoderOptions(Protocol):
    """What every encoder's options class has (besides ``from_dict(d, source)``)."""

    type: ClassVar[str]  # the encoder's name: ``"type"`` in options.json's ``encoder``
    # carries its state from call to call (see bilm.encoders.Contextualizer)
    stateful: ClassVar[bool]
    protocol: ClassVar[str]  # how it trains: "streams" (packed, state carried) or "sentences"

    @property
    def width(self) -> int: ...  # the model width: token vectors and each layer's output

    @property
    def n_layers(self) -> int: ...

    def to_dict(self) -> dict[str, Any]: ...


class ModelOptions(Protocol):
    """The part of a :class:`bilm.options.BiLMOptions` the registry reads."""

    @property
    def encoder(self) -> EncoderOptions: ...

    @property
    def dropout(self) -> float: ...


@dataclass(frozen=True)
class EncoderSpec:
    """Everything the toolkit knows about one encoder."""

    name: str  # "type" in options.json's "encoder" section
    # its options class: from_dict(d, source) / to_dict(); has width, n_layers, and ClassVars
    # type, stateful, protocol
    options: type
    # (encoder_options, *, n_directions: int, input_dropout: float, compute_dtype: str)
    # -> bilm.encoders.Contextualizer; imports its network (TensorFlow) when called
    network: Callable[..., Any]
    presets: Mapping[str, dict] = field(default_factory=dict)  # for `bilm train --preset`
    describe: Callable[[Any], str] | None = None  # bilm info's line; default: type + fields
    # the first n layers (bilm export --layers); default: replace(n_layers=n)
    truncate: Callable[[Any, int], Any] | None = None

    def describe_options(self, options: Any) -> str:
        """``bilm info``'s line for ``options`` (this encoder's)."""
        if self.describe is not None:
            return self.describe(options)
        return describe_fields(self.name, options)

    def truncated(self, options: Any, n_layers: int) -> Any:
        """The options of the first ``n_layers`` layers."""
        if self.truncate is not None:
            return self.truncate(options, n_layers)
        return dataclasses.replace(options, n_layers=n_layers)


_REGISTRY: Registry[EncoderSpec] = Registry("encoder", _BUILTINS)


def register(spec: EncoderSpec) -> EncoderSpec:
    """Make ``spec`` known by its name (ValueError when the name or a preset is taken)."""
    _REGISTRY.load_builtins()
    if spec.name in _REGISTRY.names():
        raise ValueError(f"encoder type {spec.name!r} is already registered")
    declared = getattr(spec.options, "type", spec.name)
    if declared != spec.name:
        raise ValueError(f"encoder type {spec.name!r}: its options class declares type "
                         f"{declared!r}")
    for other in _REGISTRY.specs():
        taken = sorted(set(spec.presets) & set(other.presets))
        if taken:
            raise ValueError(f"encoder type {spec.name!r}: preset {taken[0]!r} is taken (by "
                             f"encoder type {other.name!r})")
    return _REGISTRY.add(spec.name, spec)


def get_spec(name: str) -> EncoderSpec:
    """The registered encoder ``name`` (KeyError naming the registered ones)."""
    return _REGISTRY.get(name)


def spec_for(options: ModelOptions) -> EncoderSpec:
    """The spec of ``options``' encoder (a :class:`bilm.options.BiLMOptions`)."""
    return get_spec(options.encoder.type)


def names() -> list[str]:
    """The registered encoder types, sorted."""
    return _REGISTRY.names()
