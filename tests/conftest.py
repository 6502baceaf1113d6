"""Shared test fixtures: paths to ../shared and tiny random-weight models."""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BILM_SHARED", ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures" / "bilm-tf"
MODEL_DIR = FIXTURES / "model"
KJV = SHARED / "corpus" / "kjv"


# CI sets BILM_REQUIRE_SHARED=1: there a missing ../shared fails the tests that need it,
# instead of skipping them (a run without the golden fixtures must not pass).
REQUIRE_SHARED = "BILM_REQUIRE_SHARED"


def _shared_required() -> bool:
    return os.environ.get(REQUIRE_SHARED) == "1"


def _required_message(reason: str) -> str:
    return f"{reason}; {REQUIRE_SHARED}=1 makes this a failure"


def need_shared(path: Path) -> Path:
    """``path`` if it exists; else skip the test, or fail it with the same message when
    BILM_REQUIRE_SHARED=1."""
    if not path.exists():
        reason = f"needs {path} (the ../shared folder beside the checkout); not present"
        if _shared_required():
            pytest.fail(_required_message(reason), pytrace=False)
        pytest.skip(reason)
    return path


@pytest.hookimpl(hookwrapper=True)  # the old-style wrapper: every pytest >= 7.4
def pytest_runtest_makereport(item, call):
    """With BILM_REQUIRE_SHARED=1, a skip raised elsewhere (a test module's own fixture)
    whose reason names a path under ../shared fails too, as :func:`need_shared` does."""
    report = (yield).get_result()
    if (report.skipped and _shared_required() and call.excinfo is not None
            and call.excinfo.errisinstance(pytest.skip.Exception)
            and str(SHARED) in str(call.excinfo.value)):
        report.outcome = "failed"
        report.longrepr = _required_message(str(call.excinfo.value))


@pytest.fixture(scope="session")
def fixture_model() -> Path:
    """bilm-tf's test model directory (options.json, lm_weights.hdf5, vocab, embeddings)."""
    return need_shared(MODEL_DIR)


@pytest.fixture(scope="session")
def kjv() -> Path:
    return need_shared(KJV)


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

# The network shapes the other test files train, run and load, each declared once. Tests'
# numbers (losses, exact resumes, timings, memory) depend on them: none of these is merged
# with another unless their dicts are identical. Training keys stay in the files that use them.

# one LSTM layer: each new model traces its training step, and tracing time grows with layers
TINY_ONE_LAYER_OPTIONS = {
    "lstm": {"dim": 16, "projection_dim": 8, "n_layers": 1, "cell_clip": 3, "proj_clip": 3},
    "char_cnn": {"filters": [[1, 4], [2, 4]], "embedding": {"dim": 4},
                 "max_characters_per_token": 10},
}

# smaller than TINY_ONE_LAYER_OPTIONS (one filter): where the first step's tracing is most of
# the time (tests/test_progress_startup.py)
TINY_ONE_FILTER_OPTIONS = {
    "lstm": {"dim": 16, "projection_dim": 8, "n_layers": 1, "cell_clip": 3, "proj_clip": 3},
    "char_cnn": {"filters": [[1, 4]], "embedding": {"dim": 4}, "max_characters_per_token": 10},
}

# two LSTM layers with skip connections: the runs tests/test_faults.py and
# tests/test_multiworker.py train, kill, resume and compare across processes
TINY_TWO_LAYER_OPTIONS = {
    "lstm": {"dim": 16, "projection_dim": 8, "n_layers": 2, "cell_clip": 3, "proj_clip": 3,
             "use_skip_connections": True},
    "char_cnn": {"filters": [[1, 4], [2, 4]], "embedding": {"dim": 4},
                 "max_characters_per_token": 10},
}

# The LSTM and the Transformer side by side on one char CNN (two filters, one highway layer):
# tests/test_encoders.py's variants, tests/test_cluster_trust.py's models with dropout.
TINY_PAIRED_LSTM_OPTIONS = {
    "lstm": {"dim": 16, "projection_dim": 8, "n_layers": 2, "cell_clip": 3, "proj_clip": 3,
             "use_skip_connections": True},
    "char_cnn": {"filters": [[1, 4], [2, 4]], "embedding": {"dim": 4},
                 "max_characters_per_token": 10, "n_highway": 1},
}
TINY_PAIRED_TRANSFORMER_OPTIONS = {
    "encoder": {"type": "transformer", "dim": 8, "hidden_dim": 12, "n_layers": 2,
                "n_heads": 2},
    "char_cnn": {"filters": [[1, 4], [2, 4]], "embedding": {"dim": 4},
                 "max_characters_per_token": 10, "n_highway": 1,
                 "projection_location": "after_highway", "layer_norm": True,
                 "highway_gate": "carry", "padding_row": "learned"},
}

# a wider Transformer (16 dims, 4 heads) on the paired char CNN: tests/test_transformer.py
# trains, resumes exactly and embeds it
TINY_WIDE_TRANSFORMER_OPTIONS = {
    "encoder": {"type": "transformer", "dim": 16, "hidden_dim": 24, "n_layers": 2,
                "n_heads": 4},
    "char_cnn": {"filters": [[1, 4], [2, 4]], "embedding": {"dim": 4},
                 "max_characters_per_token": 10, "n_highway": 1,
                 "projection_location": "after_highway", "layer_norm": True,
                 "highway_gate": "carry", "padding_row": "learned"},
}

# the model tests/test_training.py trains on the KJV sample end to end, resumes and restores
KJV_TRAINING_OPTIONS = {
    "lstm": {"dim": 64, "projection_dim": 32, "n_layers": 2, "cell_clip": 3, "proj_clip": 3,
             "use_skip_connections": True},
    "char_cnn": {"filters": [[1, 8], [2, 8], [3, 16]], "n_highway": 1, "embedding": {"dim": 8},
                 "n_characters": 261, "max_characters_per_token": 20, "activation": "relu"},
}

# Big enough that the LSTMs' activations (2 directions x steps x rows x 4 * 512 floats per
# layer) dwarf TensorFlow's own few hundred MB; the char CNN stays tiny
# (tests/test_embed_memory.py).
EMBED_MEMORY_OPTIONS = {
    "lstm": {"dim": 512, "projection_dim": 256, "n_layers": 2, "cell_clip": 3,
             "proj_clip": 3, "use_skip_connections": True},
    "char_cnn": {"filters": [[1, 16], [2, 16], [3, 32]], "n_highway": 1,
                 "embedding": {"dim": 4}, "n_characters": 262,
                 "max_characters_per_token": 12, "activation": "relu"},
}


def make_model_files(directory: Path, options: dict, seed: int = 0) -> tuple[Path, Path]:
    """Write options.json and random weights (scaled up so the LSTMs saturate and clip)."""
    import keras
    import numpy as np

    from bilm.io.weights import save_weights
    from bilm.model.encoder import BiLMEncoder
    from bilm.nn.layout import weight_table
    from bilm.options import BiLMOptions

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


def assert_f32_close(actual, expected, ulps: float = 8, err_msg: str = "") -> None:
    """Equal to float32 rounding: every element within ``ulps`` float32 epsilons of the
    array's scale (its largest magnitude, at least 1). For results of the same arithmetic
    done in another order (another batching, XLA or not), whose rounding error grows with the
    values summed, not with each element's own size."""
    import numpy as np

    expected = np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=0,
                               atol=ulps * float(np.finfo(np.float32).eps) * scale,
                               err_msg=err_msg)


# -- the command line in this process (no TensorFlow import of its own, no subprocess) ----

@dataclass
class Cli:
    """One in-process ``bilm`` command: exit code and what it printed."""

    code: int
    out: str
    err: str

    def ok(self) -> Cli:
        assert self.code == 0, f"exit {self.code}: {self.err[-3000:]}"
        return self


def bilm(*args: object) -> Cli:
    """``bilm -q ARGS`` in this process (argparse's exit caught)."""
    from bilm.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["-q", *map(str, args)])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return Cli(code, out.getvalue(), err.getvalue())
