"""A weight format is one registration: NumPy's .npz, defined here and nowhere in bilm/,
loads and saves through every path the built-in HDF5 format does, with the same checks.

This is docs/architecture.md's worked example ("add a weight format"), kept runnable.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence

import numpy as np
import pytest

from bilm.io.formats import WeightFileError, WeightFormat, format_for, register_format
from bilm.nn.layout import WeightEntry
from tests.conftest import TINY_OPTIONS, make_model_files


# -- the whole format: a reader, a writer, a registration ----------------------------------
class NpzReader:
    def __init__(self, path: str) -> None:
        if not zipfile.is_zipfile(path):
            raise WeightFileError(f"{path}: not a .npz file")
        self.path, self.file = path, np.load(path, allow_pickle=False)

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def names(self) -> set[str]:
        return {name.replace(":", "/") for name in self.file.files}  # npz keys cannot hold "/"

    def read(self, name: str) -> np.ndarray:
        from bilm.io.formats import check_values

        return check_values(self.file[name.replace("/", ":")], name, self.path)


def write_npz(path: str, table: Sequence[WeightEntry]) -> None:
    with open(path, "wb") as f:  # np.savez would append ".npz" to a temporary name
        np.savez(f, **{e.h5_key.replace("/", ":"): e.get().astype(np.float32) for e in table})


NPZ = register_format(WeightFormat("npz", (".npz",), NpzReader, write_npz,
                                   sniff=lambda path: path.endswith(".npz")
                                   and zipfile.is_zipfile(path)))
# -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    return make_model_files(tmp_path_factory.mktemp("npz"), TINY_OPTIONS)


def _embed(options, weights):
    from bilm import Batcher, BidirectionalLanguageModel
    from bilm.options import load_options

    model = BidirectionalLanguageModel(str(options), str(weights), stateful=False)
    max_chars = load_options(options).char_cnn.max_characters_per_token
    ids = Batcher(None, max_chars).batch_sentences([["the", "cat", "sat"], ["a", "dog"]])
    return model(ids)["lm_embeddings"].numpy()


def test_npz_round_trip_gives_the_hdf5_models_embeddings(tiny_files, tmp_path):
    from bilm.io.weights import load_weights, save_weights
    from bilm.model.encoder import BiLMEncoder
    from bilm.options import load_options

    options_file, hdf5_file = tiny_files
    options = load_options(options_file)
    encoder = BiLMEncoder(options)
    load_weights(encoder, hdf5_file)
    npz_file = tmp_path / "weights.npz"
    save_weights(encoder, npz_file)  # the suffix picks the format
    assert format_for(npz_file) is NPZ and zipfile.is_zipfile(npz_file)
    with np.load(npz_file) as f:
        stored = {k.replace(":", "/"): f[k] for k in f.files}
    table = encoder.weight_entries()
    assert set(stored) == {e.h5_key for e in table}
    for entry in table:
        np.testing.assert_array_equal(stored[entry.h5_key], entry.get())
    # the user-facing surface reads it, to the same embeddings bit for bit
    np.testing.assert_array_equal(_embed(options_file, npz_file), _embed(options_file, hdf5_file))


def test_npz_gets_the_same_checks_as_hdf5(tiny_files, tmp_path):
    from bilm.io.weights import load_weights
    from bilm.model.encoder import BiLMEncoder
    from bilm.options import load_options

    options_file, _ = tiny_files
    encoder = BiLMEncoder(load_options(options_file))
    table = encoder.weight_entries()
    arrays = {e.h5_key.replace("/", ":"): e.get() for e in table}
    first = table[0].h5_key

    missing = tmp_path / "missing.npz"
    with open(missing, "wb") as f:
        np.savez(f, **{k: v for k, v in arrays.items() if k != first.replace("/", ":")})
    with pytest.raises(WeightFileError, match=f"missing dataset '{first}'"):
        load_weights(encoder, missing)

    bad = tmp_path / "nan.npz"
    arrays_nan = dict(arrays)
    arrays_nan[first.replace("/", ":")] = np.full(table[0].shape, np.nan, np.float32)
    with open(bad, "wb") as f:
        np.savez(f, **arrays_nan)
    with pytest.raises(WeightFileError, match=f"'{first}' holds .* non-finite values"):
        load_weights(encoder, bad)

    extra = tmp_path / "extra.npz"
    with open(extra, "wb") as f:
        np.savez(f, **arrays, **{"CNN:W_cnn_99": np.zeros(3, np.float32)})
    with pytest.raises(WeightFileError, match=r"\['CNN/W_cnn_99'\] are not used"):
        load_weights(encoder, extra)


def test_a_format_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register_format(WeightFormat("npz", (".npz",), NpzReader, lambda p, t: None))
    assert register_format(NPZ) is NPZ  # the same registration again is harmless
