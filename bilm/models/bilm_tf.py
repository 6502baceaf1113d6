"""bilm-tf's and AllenNLP's released ELMo: ``options.json`` + HDF5 weights in a folder.

The folder holds one options file (``options.json``, or AllenNLP's ``*_options.json``) and one
HDF5 weight file (``weights.hdf5``, ``lm_weights.hdf5``, NLPL's ``model.hdf5``, AllenNLP's
``*_weights.hdf5``), and may hold the publisher's ``meta.json`` (NLPL) and vocabulary
(``vocab.txt``, or ``vocab.txt.gz``, unpacked into the cache).
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import shutil
from typing import Any

from bilm.models.registry import ModelError, ModelFamily, ModelFiles, register_family

__all__ = ["FAMILY", "find_pair", "read_meta"]

_WEIGHT_PATTERNS = ("*.hdf5", "*.h5")
_OPTION_PATTERNS = ("options.json", "*_options.json", "*options*.json")
_VOCABS = ("vocab.txt", "vocab.txt.gz", "tokens.txt")
MAX_META_BYTES = 1 << 20


def _one(folder: str, patterns: tuple[str, ...]) -> list[str]:
    for pattern in patterns:
        found = sorted(glob.glob(os.path.join(glob.escape(folder), pattern)))
        if found:
            return found
    return []


def find_pair(folder: str) -> tuple[str, str] | None:
    """The folder's options file and weight file, or None when it lacks either."""
    if not os.path.isdir(folder):
        return None
    options, weights = _one(folder, _OPTION_PATTERNS), _one(folder, _WEIGHT_PATTERNS)
    if not options or not weights:
        return None
    if len(options) > 1 or len(weights) > 1:
        raise ModelError(f"{folder} holds {len(options)} options files and {len(weights)} HDF5 "
                         "files; a model folder holds one of each (pass --options and "
                         "--weights to choose)")
    return options[0], weights[0]


def read_meta(folder: str) -> dict[str, Any] | None:
    """The folder's ``meta.json`` (NLPL's description of a model), or None."""
    path = os.path.join(folder, "meta.json")
    if not os.path.isfile(path):
        return None
    if os.path.getsize(path) > MAX_META_BYTES:
        raise ModelError(f"{path} is over {MAX_META_BYTES:,} bytes: not a model description")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{path} holds a JSON {type(meta).__name__}, not an object")
    return meta


def _vocab(folder: str) -> str | None:
    for name in _VOCABS:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return _gunzipped(path) if name.endswith(".gz") else path
    return None


def _gunzipped(path: str) -> str:
    from bilm.models.cache import converted

    def write(out: str) -> None:
        try:
            with gzip.open(path, "rb") as src, open(os.path.join(out, "vocab.txt"), "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (OSError, EOFError) as e:
            raise ModelError(f"{path} is not a readable gzip file ({e})") from None

    return os.path.join(converted("vocab", path, write), "vocab.txt")


def _detect(path: str) -> bool:
    return find_pair(path) is not None


def _open(path: str) -> ModelFiles:
    pair = find_pair(path)
    if pair is None:
        raise ModelError(f"{path} lacks an options.json or an HDF5 weight file")
    options_file, weight_file = pair
    return ModelFiles("bilm-tf", path, options_file, weight_file, vocab_file=_vocab(path),
                      meta=read_meta(path))


FAMILY = register_family(ModelFamily(
    "bilm-tf", "bilm-tf / AllenNLP ELMo (options.json + HDF5 weights)", _detect, _open))
