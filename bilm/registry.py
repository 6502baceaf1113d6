"""A registry of named specs whose built-ins register themselves: the encoders'
(:mod:`bilm.encoders.registry`) and the token embedders' (:mod:`bilm.embedders.registry`).

No TensorFlow: options are parsed, and every name checked, before it starts. The built-in
modules are imported on the first lookup (not at import time), and each calls its registry's
``register`` while it is imported.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Generic, TypeVar

__all__ = ["Registry", "describe_fields"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Specs by name. ``kind`` names them in messages ("encoder", "token embedder");
    ``builtins`` are the modules that register the built-in ones."""

    def __init__(self, kind: str, builtins: tuple[str, ...]) -> None:
        self.kind, self._builtins = kind, builtins
        self._specs: dict[str, T] = {}
        self._loaded = False  # the built-ins are registered (or being registered)

    def load_builtins(self) -> None:
        """Import the built-in modules once (a failed import is tried again next time)."""
        if self._loaded:
            return
        self._loaded = True  # first: each built-in module registers while it is imported
        try:
            for module in self._builtins:
                importlib.import_module(module)
        except BaseException:
            self._loaded = False
            raise

    def add(self, name: str, spec: T) -> T:
        """Register ``spec`` as ``name`` (ValueError when the name is taken)."""
        self.load_builtins()
        if name in self._specs:
            raise ValueError(f"{self.kind} type {name!r} is already registered")
        self._specs[name] = spec
        return spec

    def get(self, name: str) -> T:
        """The spec registered as ``name`` (KeyError naming the registered ones)."""
        self.load_builtins()
        if name not in self._specs:
            raise KeyError(f"unknown {self.kind} type {name!r}; registered: "
                           f"{', '.join(map(repr, self.names()))}")
        return self._specs[name]

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self.load_builtins()
        return sorted(self._specs)

    def specs(self) -> list[T]:
        """The registered specs, in registration order."""
        self.load_builtins()
        return list(self._specs.values())


def describe_fields(name: str, options: Any) -> str:
    """``bilm info``'s default line for a section: its type, then each field and value."""
    if not dataclasses.is_dataclass(options):
        return f"{name}: {options!r}"
    shown = [f"{f.name} {getattr(options, f.name)}" for f in dataclasses.fields(options)
             if f.name not in ("extra", "source")]
    return f"{name}: {', '.join(shown)}"
