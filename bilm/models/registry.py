"""The families of released (and trained) ELMo models, and how a model named by a path or a
catalogue name becomes files every command reads.

A family is one registration (:func:`register_family`): ``detect`` claims a path from its
contents (cheap, no TensorFlow), ``open`` gives the model as :class:`ModelFiles` -- our
layout (``options.json`` + HDF5 weights), converted into the cache
(:mod:`bilm.models.cache`) when the family's own files are another layout. The built-in
families register themselves when first looked up; a new one is one module (see
docs/models.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bilm.registry import Registry

__all__ = ["ModelError", "ModelFamily", "ModelFiles", "detect_model", "families",
           "model_files", "open_model", "register_family"]

# Registration order is detection order: the most specific layouts first, bilm-tf's plain
# options.json + HDF5 pair (which others may also hold) last.
_BUILTINS = ("bilm.models.run", "bilm.models.allennlp_archive", "bilm.models.nlpl",
             "bilm.models.tfhub", "bilm.models.efml", "bilm.models.bilm_tf")


class ModelError(ValueError):
    """A model that cannot be found, recognised or read (one line: what and why)."""


@dataclass(frozen=True)
class ModelFiles:
    """A model, as files in our layout.

    Attributes:
        family: the family's name (:attr:`ModelFamily.name`).
        path: the model as the user gave it (or where a catalogue name was downloaded).
        options_file: options.json fit for inference.
        weight_file: HDF5 weights in bilm-tf's layout (no softmax).
        vocab_file: the word vocabulary the model came with (softmax rows or the publisher's
            vocabulary file), one token per line; None when it has none.
        run_dir: a training directory holding the model's softmax (``score``, ``evaluate``,
            ``substitutes``); None for an encoder-only model.
        meta: the publisher's description (NLPL's ``meta.json``), when it ships one.
        mix: the output mix it ships, ``{"weights": [n_layers + 1 floats], "gamma": float}``
            (TF Hub's ``aggregation/weights`` and ``aggregation/scaling``), else None.
        notes: lines ``bilm info`` prints about where the files came from.
    """

    family: str
    path: str
    options_file: str
    weight_file: str
    vocab_file: str | None = None
    run_dir: str | None = None
    meta: Mapping[str, Any] | None = None
    mix: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ModelFamily:
    """One family of models.

    Attributes:
        name: short name (``bilm info`` and messages).
        title: what users call it ("ELMoForManyLangs").
        detect: path -> whether it is this family's (its contents, cheaply; no TensorFlow).
        open: path -> :class:`ModelFiles` (ModelError for a damaged model); may convert the
            model into the cache.
        needs_tensorflow: whether ``open`` imports TensorFlow (to read a checkpoint).
    """

    name: str
    title: str
    detect: Callable[[str], bool]
    open: Callable[[str], ModelFiles]
    needs_tensorflow: bool = False


_REGISTRY: Registry[ModelFamily] = Registry("model family", _BUILTINS)


def register_family(family: ModelFamily) -> ModelFamily:
    """Make ``family`` known to every ``--model`` (ValueError when the name is taken)."""
    return _REGISTRY.add(family.name, family)


def families() -> list[ModelFamily]:
    """The registered families, in detection order."""
    return _REGISTRY.specs()


def detect_model(model: str | os.PathLike[str]) -> tuple[ModelFamily, str]:
    """The family and local path of ``model``: a path of any registered family, or a
    catalogue name (downloaded into the cache first when it is not there yet). ModelError
    when it is neither, naming the family the path looks like."""
    path = os.path.expanduser(os.fspath(model))
    if not os.path.exists(path):
        from bilm.models.catalogue import fetch, find_entry

        entry = find_entry(path)
        if entry is None:
            raise ModelError(f"model {path} not found: neither a file or folder nor a name "
                             "in the catalogue ('bilm models' lists them)")
        path = fetch(entry)
    for family in families():
        if family.detect(path):
            return family, path
    from bilm.models.unsupported import guess

    raise ModelError(f"{path}: {guess(path)}")


def open_model(model: str | os.PathLike[str]) -> ModelFiles:
    """``model`` (a path or a catalogue name) as :class:`ModelFiles`."""
    family, path = detect_model(model)
    return family.open(path)


def model_files(options_file: str | os.PathLike[str] | None,
                weight_file: str | os.PathLike[str] | None,
                model: str | os.PathLike[str] | None,
                ) -> tuple[str, str | None, ModelFiles | None]:
    """The options and weight files an API call names: ``model``'s (a path or a catalogue
    name) when it is given, else ``options_file`` and ``weight_file`` (ValueError when both
    or neither are given)."""
    if model is None:
        if options_file is None:
            raise ValueError("give a model: model=PATH_OR_NAME, or options_file and "
                             "weight_file")
        weights = None if weight_file is None else os.fspath(weight_file)
        return os.fspath(options_file), weights, None
    if options_file is not None or weight_file is not None:
        raise ValueError("model= names the options and weights itself; leave out options_file "
                         "and weight_file")
    files = open_model(model)
    return files.options_file, files.weight_file, files
