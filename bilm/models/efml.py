"""ELMoForManyLangs (HIT-SCIR; the CoNLL 2018 models of 44 languages): a folder with
``config.json`` (its training arguments; ``config_path`` names the model configuration),
``char.dic`` and ``word.dic`` (``token<TAB>id``), ``token_embedder.pkl`` and ``encoder.pkl``
(PyTorch state dicts, read by :mod:`bilm.io.torch_pickle`: no torch, nothing in the file run).

Converted once into the cache (or by ``bilm import-efml`` into a folder) as our layout: its
token embedder as ``efml_cnn`` (:mod:`bilm.embedders.efml`, its vocabularies in options.json),
its encoder -- AllenNLP's ELMo LSTM with projection, gates [i, f, g, o], the forget bias
stored -- as bilm-tf's LSTM (gates reordered to [i, g, f, o], 1.0 taken off the stored forget
bias, which bilm-tf adds back at run time; residual connections from the second layer are
bilm-tf's skip connections). Released models name a ``config_path`` on their authors' disk: as
ELMoForManyLangs does, the configuration is then looked for beside ``config.json``, then among
its released configurations (:data:`CONFIGS`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from bilm.models.registry import ModelError, ModelFamily, ModelFiles, register_family

__all__ = ["CONFIGS", "FAMILY", "convert", "read_dic"]

_RELEASED = {
    "encoder": {"name": "elmo", "projection_dim": 512, "cell_clip": 3, "proj_clip": 3,
                "dim": 4096, "n_layers": 2},
    "token_embedder": {"name": "cnn", "activation": "relu",
                       "filters": [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512],
                                   [7, 1024]],
                       "n_highway": 2, "word_dim": 100, "char_dim": 50,
                       "max_characters_per_token": 50},
}
# ELMoForManyLangs' configurations (elmoformanylangs/configs/ at b3de5f1): the two files hold
# the same values
CONFIGS = {"cnn_50_100_512_4096_sample.json": _RELEASED,
           "cnn_0_100_512_4096_sample.json": _RELEASED}
_FILES = ("config.json", "token_embedder.pkl", "encoder.pkl")
MAX_DIC_BYTES = 256 << 20


def _detect(path: str) -> bool:
    return (os.path.isdir(path) and all(os.path.isfile(os.path.join(path, f)) for f in _FILES)
            and (os.path.isfile(os.path.join(path, "char.dic"))
                 or os.path.isfile(os.path.join(path, "word.dic"))))


def _json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{path} is not readable JSON ({e})") from None


def _configuration(folder: str) -> dict[str, Any]:
    """The model configuration ``config.json``'s ``config_path`` names, found as
    ELMoForManyLangs' ``Embedder`` finds it."""
    args = _json(os.path.join(folder, "config.json"))
    name = args.get("config_path") if isinstance(args, dict) else None
    if not isinstance(name, str):
        raise ModelError(f"{folder}/config.json has no 'config_path' (the model configuration)")
    base = os.path.basename(name)
    for candidate in (os.path.join(folder, name), os.path.join(folder, base)):
        if os.path.isfile(candidate):
            return _json(candidate)
    if base in CONFIGS:
        return CONFIGS[base]
    raise ModelError(f"{folder}: its configuration {name} is neither beside config.json nor "
                     f"one of ELMoForManyLangs' ({', '.join(CONFIGS)}); copy it into the folder")


def read_dic(path: str) -> list[str]:
    """``char.dic`` / ``word.dic`` as the token of each id (ids must be 0..n-1); a line with
    only an id is U+3000 (its token was a space, eaten by ``strip``, as ELMoForManyLangs
    reads it)."""
    if os.path.getsize(path) > MAX_DIC_BYTES:
        raise ModelError(f"{path} is over {MAX_DIC_BYTES:,} bytes: not a vocabulary")
    by_id: dict[int, str] = {}
    with open(path, encoding="utf-8", errors="strict") as f:
        for n, line in enumerate(f, 1):
            fields = line.strip().split("\t")
            if fields == [""]:
                continue
            token, raw = ("\u3000", fields[0]) if len(fields) == 1 else (fields[0], fields[1])
            if len(fields) > 2 or not raw.isdigit():
                raise ModelError(f"{path}, line {n}: not 'token<TAB>id'")
            by_id[int(raw)] = token
    if sorted(by_id) != list(range(len(by_id))):
        raise ModelError(f"{path}: its ids are not 0..{len(by_id) - 1}")
    return [by_id[i] for i in range(len(by_id))]


def _weights(folder: str) -> dict[str, np.ndarray]:
    from bilm.io.torch_pickle import TorchWeightsError, load_torch_state_dict

    out = {}
    for part in ("token_embedder", "encoder"):
        path = os.path.join(folder, f"{part}.pkl")
        try:
            state = load_torch_state_dict(path)
        except TorchWeightsError as e:
            raise ModelError(str(e)) from None
        out.update({f"{part}.{k}": np.asarray(v, np.float32) for k, v in state.items()})
    return out


def _take(state: dict[str, np.ndarray], key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in state:
        raise ModelError(f"the state dicts lack {key}")
    value = state.pop(key)
    if value.shape != shape:
        raise ModelError(f"{key} is {value.shape}, the configuration makes it {shape}")
    return value


def _embedder(state: dict[str, np.ndarray], te: dict[str, Any], chars: list[str],
              words: list[str] | None, dim: int) -> dict[str, np.ndarray]:
    p = "token_embedder."
    out = {"EFML/char_embed": _take(state, p + "char_emb_layer.embedding.weight",
                                    (len(chars), te["char_dim"]))}
    if words is not None:
        out["EFML/word_embed"] = _take(state, p + "word_emb_layer.embedding.weight",
                                       (len(words), te["word_dim"]))
    for i, (width, count) in enumerate(te["filters"]):
        w = _take(state, f"{p}convolutions.{i}.weight", (count, te["char_dim"], width))
        out[f"EFML/W_cnn_{i}"] = w.transpose(2, 1, 0)  # torch (out, in, w) -> (w, in, out)
        out[f"EFML/b_cnn_{i}"] = _take(state, f"{p}convolutions.{i}.bias", (count,))
    n = sum(c for _, c in te["filters"])
    for j in range(te["n_highway"]):
        out[f"EFML/W_highway_{j}"] = _take(state, f"{p}highways._layers.{j}.weight",
                                           (2 * n, n)).T
        out[f"EFML/b_highway_{j}"] = _take(state, f"{p}highways._layers.{j}.bias", (2 * n,))
    word_dim = te["word_dim"] if words is not None else 0
    out["EFML/W_proj"] = _take(state, p + "projection.weight", (dim, word_dim + n)).T
    out["EFML/b_proj"] = _take(state, p + "projection.bias", (dim,))
    return out


def _lstm(state: dict[str, np.ndarray], enc: dict[str, Any]) -> dict[str, np.ndarray]:
    """AllenNLP's LSTM cells as bilm-tf's: W_0 = [input; state] weights, gates [i, g, f, o],
    the stored forget bias less the 1.0 bilm-tf adds at run time."""
    c, p = enc["dim"], enc["projection_dim"]
    order = np.concatenate([np.arange(0, c), np.arange(2 * c, 3 * c), np.arange(c, 2 * c),
                            np.arange(3 * c, 4 * c)])  # [i, f, g, o] -> [i, g, f, o]
    out = {}
    for layer in range(enc["n_layers"]):
        for d, direction in enumerate(("forward", "backward")):
            key = f"encoder.{direction}_layer_{layer}."
            w_in = _take(state, key + "input_linearity.weight", (4 * c, p))
            w_state = _take(state, key + "state_linearity.weight", (4 * c, p))
            bias = _take(state, key + "state_linearity.bias", (4 * c,)).copy()
            bias[c:2 * c] -= 1.0
            root = f"RNN_{d}/RNN/MultiRNNCell/Cell{layer}/LSTMCell"
            out[f"{root}/W_0"] = np.concatenate([w_in, w_state], axis=1).T[:, order]
            out[f"{root}/B"] = bias[order]
            out[f"{root}/W_P_0"] = _take(state, key + "state_projection.weight", (p, c)).T
    return out


def convert(folder: str, out: str) -> dict[str, Any]:
    """Write the ELMoForManyLangs model in ``folder`` into the folder ``out`` as
    ``options.json``, ``weights.hdf5`` and ``vocab.txt`` (its words, when it has a word
    embedding). Returns the options written."""
    import h5py

    config = _configuration(folder)
    te, enc = config.get("token_embedder", {}), config.get("encoder", {})
    if str(te.get("name", "")).lower() != "cnn" or str(enc.get("name", "")).lower() != "elmo":
        raise ModelError(f"{folder}: token embedder {te.get('name')!r} / encoder "
                         f"{enc.get('name')!r}; bilm reads ELMoForManyLangs' 'cnn' + 'elmo' "
                         "models (every released one)")
    if not te.get("char_dim"):
        raise ModelError(f"{folder}: a word-only model (char_dim 0); bilm reads its "
                         "character models")
    chars = read_dic(os.path.join(folder, "char.dic"))
    words = read_dic(os.path.join(folder, "word.dic")) if te.get("word_dim") else None
    state = _weights(folder)
    try:
        weights = {**_embedder(state, te, chars, words, enc["projection_dim"]),
                   **_lstm(state, enc)}
    except ModelError as e:  # a tensor missing or misshapen: name the folder
        raise ModelError(f"{folder}: {e}") from None
    if state:
        raise ModelError(f"{folder}: cannot place {', '.join(sorted(state)[:6])} in an ELMo")
    options = {
        "lstm": {"dim": enc["dim"], "projection_dim": enc["projection_dim"],
                 "n_layers": enc["n_layers"], "cell_clip": enc.get("cell_clip") or 0,
                 "proj_clip": enc.get("proj_clip") or 0, "use_skip_connections": True},
        "token_embedder": {"type": "efml_cnn", "char_dim": te["char_dim"],
                           "word_dim": te.get("word_dim") or 0, "filters": te["filters"],
                           "n_highway": te["n_highway"],
                           "activation": te.get("activation", "relu"),
                           "max_characters": te["max_characters_per_token"], "chars": chars},
        "bidirectional": True,
    }
    if words is not None:
        options["token_embedder"]["words"] = words
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "options.json"), "w", encoding="utf-8") as f:
        json.dump(options, f, ensure_ascii=False)
    with h5py.File(os.path.join(out, "weights.hdf5"), "w") as f:
        for key, value in weights.items():
            f.create_dataset(key, data=np.ascontiguousarray(value, np.float32))
    if words is not None:
        with open(os.path.join(out, "vocab.txt"), "w", encoding="utf-8") as f:
            f.write("".join(w + "\n" for w in words if "\n" not in w))
    return options


def _open(path: str) -> ModelFiles:
    from bilm.models.bilm_tf import read_meta
    from bilm.models.cache import converted

    folder = converted("efml", path, lambda out: convert(path, out))
    vocab = os.path.join(folder, "vocab.txt")
    return ModelFiles("efml", path, os.path.join(folder, "options.json"),
                      os.path.join(folder, "weights.hdf5"),
                      vocab_file=vocab if os.path.isfile(vocab) else None,
                      meta=read_meta(path), notes=(f"converted into {folder}",))


FAMILY = register_family(ModelFamily("efml", "ELMoForManyLangs (HIT-SCIR)", _detect, _open))
