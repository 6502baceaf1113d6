"""TF Hub v1 ELMo modules (Google's ``elmo/1``-``elmo/3``, DeepPavlov's Russian ELMo): a TF1
hub module folder (``saved_model.pb``, ``variables/``, ``tfhub_module.pb``) built from
bilm-tf's graph.

Only the variables are read (:func:`tf.train.load_checkpoint` on ``variables/``); the
module's graph is never executed. Each weight is found by its bilm-tf name after whatever
scope prefix the module used (``bilm/CNN/W_cnn_0``, ``module/bilm/...``), with the LSTM
variables of either TensorFlow naming generation (``.../LSTMCell/W_0``, ``B``, ``W_P_0`` or
``.../rnn/lstm_cell/kernel``, ``bias``, ``projection/kernel``), and written in bilm-tf's HDF5
layout (``char_embed`` without the module's padding row 0). The output mix
(``aggregation/weights`` and ``aggregation/scaling``, or bilm-tf's ``weight_layers`` names
``aggregation/*_ELMo_W`` and ``*_ELMo_gamma`` in DeepPavlov's modules) becomes the model's
initial scalar mix. The LSTM's carried states (``bilm/Variable*``) and training bookkeeping
are skipped; any other variable is refused, named, in one line.

The shapes give every size of options.json; what they cannot give -- ``cell_clip``,
``proj_clip``, ``use_skip_connections``, the char CNN's ``activation`` and
``max_characters_per_token`` -- are bilm-tf's training defaults (``bin/train_elmo.py``), the
values of the released English models (AllenNLP's options file of the original model), unless
an options file given to :func:`import_module` says otherwise.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from bilm.models.registry import ModelError, ModelFamily, ModelFiles, register_family

__all__ = ["DEFAULTS", "FAMILY", "import_module", "module_weights"]

# What the variables cannot tell: bilm-tf's training defaults (bin/train_elmo.py), which
# are also the released original model's options
DEFAULTS: dict[str, Any] = {
    "lstm": {"cell_clip": 3, "proj_clip": 3, "use_skip_connections": True},
    "char_cnn": {"activation": "relu", "max_characters_per_token": 50, "n_characters": 262},
}

_LSTM_NAMES = {"rnn/lstm_cell/kernel": "LSTMCell/W_0", "rnn/lstm_cell/bias": "LSTMCell/B",
               "rnn/lstm_cell/projection/kernel": "LSTMCell/W_P_0",
               "LSTMCell/W_0": "LSTMCell/W_0", "LSTMCell/B": "LSTMCell/B",
               "LSTMCell/W_P_0": "LSTMCell/W_P_0"}
_WEIGHT = re.compile(
    r"^(?P<prefix>(?:.*/)?)(?P<key>char_embed|embedding|CNN/[Wb]_cnn_\d+|"
    r"CNN_high_\d+/[Wb]_(?:carry|transform)|CNN_proj/[Wb]_proj|"
    r"RNN_[01]/RNN/MultiRNNCell/Cell\d+/(?P<lstm>" +
    "|".join(re.escape(k) for k in _LSTM_NAMES) + "))$")
_MIX_WEIGHTS = re.compile(r"^(?:.*/)?aggregation/(?:weights|.*_ELMo_W)$")
_MIX_GAMMA = re.compile(r"^(?:.*/)?aggregation/(?:scaling|.*_ELMo_gamma)$")
# carried LSTM states (bilm-tf's graph keeps them in unnamed variables) and bookkeeping
_SKIPPED = re.compile(r"(?:^|/)Variable(?:_\d+)?$|(?:^|/)global_step$|/Adagrad$|/Adam(?:_1)?$|"
                      r"(?:^|/)beta[12]_power$|/ExponentialMovingAverage$")


def _checkpoint(module: str) -> str:
    return os.path.join(module, "variables", "variables")


def _detect(path: str) -> bool:
    return (os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb"))
            and os.path.isfile(os.path.join(path, "tfhub_module.pb"))
            and os.path.isfile(_checkpoint(path) + ".index"))


def module_weights(module: str) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """The module's weights by bilm-tf HDF5 key, and its output mix (``{"weights": [...],
    "gamma": g}``, or None). ModelError (one line) for variables it cannot map."""
    import tensorflow as tf

    try:
        return _read_weights(module, tf.train.load_checkpoint(_checkpoint(module)))
    except (tf.errors.OpError, ValueError, IndexError, OSError) as e:
        if isinstance(e, ModelError):
            raise
        raise ModelError(f"{module}: its variables cannot be read (a damaged or truncated "
                         f"variables/ folder: {str(e).splitlines()[0]})") from None


def _check_sizes(module: str, reader: Any) -> None:
    """The variables the index declares must fit in the data files (a crafted index cannot
    make the reader allocate more than the files hold)."""
    import glob

    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    declared = sum(int(np.prod(shape, dtype=np.int64)) * max(dtypes[name].size, 1)
                   for name, shape in shapes.items())
    held = sum(os.path.getsize(p) for p in glob.glob(glob.escape(_checkpoint(module))
                                                     + ".data-*"))
    if declared > held:
        raise ModelError(f"{module}: its variables index declares {declared:,} bytes of values "
                         f"but variables/ holds {held:,}; the module is truncated or damaged")


def _read_weights(module: str, reader: Any,
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    _check_sizes(module, reader)
    names = sorted(reader.get_variable_to_shape_map())
    weights: dict[str, np.ndarray] = {}
    prefixes: set[str] = set()
    mix: dict[str, Any] = {}
    unmapped = []
    for name in names:
        m = _WEIGHT.match(name)
        if m:
            key = m["key"]
            if m["lstm"]:
                key = key[: -len(m["lstm"])] + _LSTM_NAMES[m["lstm"]]
            if key in weights:
                raise ModelError(f"{module}: two variables map to {key} (scopes "
                                 f"{sorted(prefixes | {m['prefix']})}); not one ELMo")
            prefixes.add(m["prefix"])
            weights[key] = np.asarray(reader.get_tensor(name), dtype=np.float32)
        elif _MIX_WEIGHTS.match(name):
            mix["weights"] = [float(x) for x in np.ravel(reader.get_tensor(name))]
        elif _MIX_GAMMA.match(name):
            mix["gamma"] = float(np.ravel(reader.get_tensor(name))[0])
        elif not _SKIPPED.search(name):
            unmapped.append(name)
    if unmapped:
        raise ModelError(f"{module}: cannot map {len(unmapped)} variable(s) to a bilm-tf ELMo: "
                         f"{', '.join(unmapped[:8])}{' ...' if len(unmapped) > 8 else ''}")
    if "char_embed" not in weights:
        what = "a word-input ELMo" if "embedding" in weights else "no ELMo weights"
        raise ModelError(f"{module}: holds {what} (no char_embed variable); bilm reads "
                         "character-input ELMo modules")
    if weights["char_embed"].shape[0] == 262:  # the graph's padding row 0: not stored
        weights["char_embed"] = weights["char_embed"][1:]
    return weights, (mix if {"weights", "gamma"} <= set(mix) else None)


def _options(weights: Mapping[str, np.ndarray], override: Mapping[str, Any] | None,
             ) -> dict[str, Any]:
    """options.json from the weights' shapes, :data:`DEFAULTS` and ``override``."""
    from bilm.presets import merge_options

    n_cnn = sum(1 for k in weights if k.startswith("CNN/W_cnn_"))
    filters = [[int(weights[f"CNN/W_cnn_{i}"].shape[1]), int(weights[f"CNN/W_cnn_{i}"].shape[3])]
               for i in range(n_cnn)]
    cells = {int(m[1]) for k in weights if (m := re.match(r"RNN_0/RNN/MultiRNNCell/Cell(\d+)/",
                                                          k))}
    if not filters or not cells:
        raise ModelError("the module lacks the char CNN or the LSTM weights")
    projection = weights["RNN_0/RNN/MultiRNNCell/Cell0/LSTMCell/W_P_0"]
    options = {
        "lstm": {"dim": int(projection.shape[0]), "projection_dim": int(projection.shape[1]),
                 "n_layers": len(cells)},
        "char_cnn": {"filters": filters,
                     "n_highway": sum(1 for k in weights if k.endswith("/W_carry")),
                     "embedding": {"dim": int(weights["char_embed"].shape[1])}},
        "bidirectional": True,
    }
    options = merge_options(options, DEFAULTS)
    return merge_options(options, dict(override)) if override else options


def import_module(module: str, out: str, options_file: str | None = None) -> dict[str, Any]:
    """Write the TF Hub module ``module`` into the folder ``out`` as ``options.json``,
    ``weights.hdf5`` (bilm-tf's layout) and ``mix.json`` (its output mix, when it has one);
    ``options_file`` overrides options keys (e.g. ``lstm.use_skip_connections``). Returns the
    options written."""
    import h5py

    weights, mix = module_weights(module)
    override = None
    if options_file is not None:
        with open(options_file, encoding="utf-8") as f:
            override = json.load(f)
    options = _options(weights, override)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "options.json"), "w", encoding="utf-8") as f:
        json.dump(options, f, indent=2)
    with h5py.File(os.path.join(out, "weights.hdf5"), "w") as f:
        for key, value in weights.items():
            f.create_dataset(key, data=value)
    if mix is not None:
        with open(os.path.join(out, "mix.json"), "w", encoding="utf-8") as f:
            json.dump(mix, f)
    return options


def _open(path: str) -> ModelFiles:
    from bilm.models.cache import converted

    folder = converted("tfhub", path, lambda out: import_module(path, out),
                       files=[os.path.join(path, "saved_model.pb"), _checkpoint(path) + ".index"])
    mix = None
    if os.path.isfile(os.path.join(folder, "mix.json")):
        with open(os.path.join(folder, "mix.json"), encoding="utf-8") as f:
            mix = json.load(f)
    return ModelFiles("tfhub", path, os.path.join(folder, "options.json"),
                      os.path.join(folder, "weights.hdf5"), mix=mix,
                      notes=(f"converted into {folder}",
                             "options the variables cannot give (clips, skip connections, "
                             "activation, max characters) are bilm-tf's defaults: "
                             "see docs/models.md"))


FAMILY = register_family(ModelFamily(
    "tfhub", "TF Hub v1 ELMo module (Google elmo/1-3, DeepPavlov)", _detect, _open,
    needs_tensorflow=True))
