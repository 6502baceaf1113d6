"""One line for a path no family claims: what it looks like, and what to pass instead."""

from __future__ import annotations

import json
import os

__all__ = ["guess"]


def _head(path: str, n: int = 8) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _json(path: str) -> object:
    try:
        with open(path, encoding="utf-8") as f:
            return json.loads(f.read(1 << 20))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _folder(path: str) -> str | None:
    names = set(os.listdir(path))
    if "char.dic" in names or "encoder.pkl" in names or "token_embedder.pkl" in names:
        missing = sorted({"config.json", "encoder.pkl", "token_embedder.pkl"} - names)
        return ("an incomplete ELMoForManyLangs folder: it lacks "
                f"{', '.join(missing) or 'char.dic and word.dic'}")
    if "saved_model.pb" in names:
        if "tfhub_module.pb" in names:
            return ("a TF Hub v1 module whose variables are not a bilm-tf ELMo's (bilm reads "
                    "ELMo modules: Google's elmo/1-3, DeepPavlov's)")
        return ("a TensorFlow SavedModel (a TF2 model serves its own embeddings, e.g. bilm "
                "export-savedmodel's output: load it with tf.saved_model.load); bilm reads TF "
                "Hub v1 ELMo modules, which hold tfhub_module.pb")
    config = _json(os.path.join(path, "config.json"))
    if isinstance(config, dict) and "model_type" in config:
        return (f"a Hugging Face transformers model ({config['model_type']}), not an ELMo "
                "biLM")
    if "options.json" in names:
        return "options.json without HDF5 weights beside it; add the weights file"
    if any(n.endswith((".hdf5", ".h5")) for n in names):
        return "HDF5 weights without their options.json; add the options file beside them"
    return "a folder holding no model of any family bilm reads ('bilm models' lists them)"


def guess(path: str) -> str:
    """What ``path`` looks like, and why bilm cannot read it as a model."""
    if os.path.isdir(path):
        return _folder(path)
    head = _head(path)
    lower = path.lower()
    if head.startswith(b"\x89HDF"):
        return ("HDF5 weights without their options: pass the folder holding both, or "
                "--options and --weights")
    if head.startswith(b"\x80") or lower.endswith((".pkl", ".pt", ".th", ".pth", ".bin")):
        return ("a PyTorch file; bilm reads PyTorch models as AllenNLP archives "
                "(model.tar.gz) or ELMoForManyLangs folders, not single files")
    if lower.endswith(".json"):
        return "a JSON file; pass the model's folder (options.json with its weights)"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file that is not a tar archive (an AllenNLP archive is a .tar.gz)"
    return "not a model of any family bilm reads ('bilm models' lists the families)"
