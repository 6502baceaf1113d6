"""Shared test fixtures: paths to ../shared and tiny random-weight models."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BILM_SHARED", ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures" / "bilm-tf"
MODEL_DIR = FIXTURES / "model"
KJV = SHARED / "corpus" / "kjv"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the ../shared folder beside the checkout); not present")
    return path


@pytest.fixture(scope="session")
def fixture_model() -> Path:
    """bilm-tf's test model directory (options.json, lm_weights.hdf5, vocab, embeddings)."""
    return _need(MODEL_DIR)


@pytest.fixture(scope="session")
def kjv() -> Path:
    return _need(KJV)


TINY_OPTIONS = {
    "lstm": {"dim": 16, "projection_dim": 8, "n_layers": 2, "cell_clip": 3, "proj_clip": 3,
             "use_skip_connections": True},
    "char_cnn": {"filters": [[1, 4], [2, 4], [3, 8]], "n_highway": 1,
                 "embedding": {"dim": 4}, "n_characters": 262,
                 "max_characters_per_token": 12, "activation": "relu"},
}


TINY_TRANSFORMER_OPTIONS = {
    "encoder": {"type": "transformer", "dim": 8, "hidden_dim": 12, "n_layers": 2,
                "n_heads": 2},
    "char_cnn": {"filters": [[1, 4], [2, 4], [3, 8]], "n_highway": 1,
                 "embedding": {"dim": 4}, "n_characters": 262,
                 "max_characters_per_token": 12, "activation": "relu",
                 "projection_location": "after_highway", "layer_norm": True,
                 "highway_gate": "carry", "padding_row": "learned"},
}


def make_model_files(directory: Path, options: dict, seed: int = 0) -> tuple[Path, Path]:
    """Write options.json and random weights (scaled up so the LSTMs saturate and clip)."""
    import keras
    import numpy as np

    from bilm.encoder import BiLMEncoder
    from bilm.options import BiLMOptions
    from bilm.weights import save_weights, weight_table

    keras.utils.set_random_seed(seed)
    encoder = BiLMEncoder(BiLMOptions.from_dict(options), n_word_vocab=options.get("_vocab"))
    rng = np.random.default_rng(seed)
    for entry in weight_table(encoder):
        value = entry.get()
        entry.set(rng.normal(0.0, 0.5, size=value.shape).astype(np.float32))
    directory.mkdir(parents=True, exist_ok=True)
    options_file, weight_file = directory / "options.json", directory / "weights.hdf5"
    options_file.write_text(json.dumps({k: v for k, v in options.items() if k != "_vocab"}))
    save_weights(encoder, weight_file)
    return options_file, weight_file


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> tuple[Path, Path]:
    """(options_file, weight_file) of a tiny char-CNN biLM with random weights."""
    return make_model_files(tmp_path_factory.mktemp("tiny"), TINY_OPTIONS)


@pytest.fixture(scope="session")
def tiny_transformer(tmp_path_factory) -> tuple[Path, Path]:
    """(options_file, weight_file) of a tiny Transformer biLM with random weights."""
    return make_model_files(tmp_path_factory.mktemp("tiny_transformer"),
                            TINY_TRANSFORMER_OPTIONS)
