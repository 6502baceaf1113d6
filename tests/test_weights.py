"""Weight I/O: every layout round-trips, and bad files fail naming the HDF5 key."""

import h5py
import numpy as np
import pytest

from bilm import BidirectionalLanguageModel
from bilm.io.formats import WeightFileError
from bilm.io.weights import load_weights, save_weights
from bilm.model.encoder import BiLMEncoder
from bilm.nn.layout import weight_table
from bilm.options import BiLMOptions
from tests.conftest import TINY_OPTIONS, make_model_files

CHAR = {"filters": [[1, 4], [2, 4]], "n_highway": 2, "embedding": {"dim": 3},
        "n_characters": 262, "max_characters_per_token": 10, "activation": "tanh"}

LAYOUTS = {
    "1 layer, projection": {"lstm": {"dim": 8, "projection_dim": 4, "n_layers": 1},
                            "char_cnn": CHAR},
    "3 layers, skip": {"lstm": {"dim": 8, "projection_dim": 4, "n_layers": 3,
                                "use_skip_connections": True}, "char_cnn": CHAR},
    "no highway, no CNN projection": {
        "lstm": {"dim": 8, "projection_dim": 8, "n_layers": 2},
        "char_cnn": {**CHAR, "n_highway": 0}},  # 8 filters = projection_dim: no W_proj
    "word input": {"lstm": {"dim": 8, "projection_dim": 4, "n_layers": 2}, "_vocab": 11},
}


def expected_keys(options):
    keys = set()
    if "char_cnn" in options:
        cnn = options["char_cnn"]
        keys.add("char_embed")
        keys |= {f"CNN/{p}_cnn_{i}" for i in range(len(cnn["filters"])) for p in "Wb"}
        keys |= {f"CNN_high_{k}/{n}" for k in range(cnn["n_highway"])
                 for n in ("W_carry", "b_carry", "W_transform", "b_transform")}
        if sum(c for _, c in cnn["filters"]) != options["lstm"]["projection_dim"]:
            keys |= {"CNN_proj/W_proj", "CNN_proj/b_proj"}
    else:
        keys.add("embedding")
    lstm = options["lstm"]
    for d in range(2):
        for k in range(lstm["n_layers"]):
            root = f"RNN_{d}/RNN/MultiRNNCell/Cell{k}/LSTMCell"
            keys |= {f"{root}/W_0", f"{root}/B"}
            if lstm["projection_dim"] < lstm["dim"]:
                keys.add(f"{root}/W_P_0")
            if lstm["n_layers"] == 1:  # also bilm-tf's own 1-layer names (hard links)
                keys |= {k.replace("MultiRNNCell/Cell0/", "") for k in keys
                         if k.startswith(root)}
    return keys


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_round_trip_bit_exactly(tmp_path, layout):
    options = LAYOUTS[layout]
    options_file, weight_file = make_model_files(tmp_path, options, seed=3)
    with h5py.File(weight_file, "r") as f:
        stored = {}  # every name, hard links included (visititems shows an object once)
        f.visit_links(lambda n: stored.__setitem__(n, f[n][...])
                      if isinstance(f[n], h5py.Dataset) else None)
    assert set(stored) == expected_keys(options)
    opts = BiLMOptions.from_dict({k: v for k, v in options.items() if k != "_vocab"})
    encoder = BiLMEncoder(opts, n_word_vocab=options.get("_vocab"))
    load_weights(encoder, weight_file)
    again = tmp_path / "again.hdf5"
    save_weights(encoder, again)
    with h5py.File(again, "r") as f:
        for key, value in stored.items():
            assert f[key].dtype == np.float32
            np.testing.assert_array_equal(f[key][...], value)  # bit-exact
    if "char_cnn" in options:  # and the file is usable for inference
        out = BidirectionalLanguageModel(options_file, weight_file, stateful=False)(
            np.ones((1, 3, 10), np.int32))
        assert np.isfinite(out["lm_embeddings"].numpy()).all()


def test_table_names_match_bilm_tf_tf1_variables():
    encoder = BiLMEncoder(BiLMOptions.from_dict(TINY_OPTIONS))
    names = {e.h5_key: e.tf1_key for e in weight_table(encoder)}
    assert names["char_embed"] == "lm/char_embed"
    assert names["CNN_high_0/W_carry"] == "lm/CNN_high_0/W_carry"
    assert (names["RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_P_0"]
            == "lm/RNN_1/rnn/multi_rnn_cell/cell_1/lstm_cell/projection/kernel")
    assert (names["RNN_0/RNN/MultiRNNCell/Cell0/LSTMCell/W_0"]
            == "lm/RNN_0/rnn/multi_rnn_cell/cell_0/lstm_cell/kernel")


def corrupt(tiny_model, tmp_path, edit):
    options_file, weight_file = tiny_model
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(weight_file.read_bytes())
    with h5py.File(bad, "a") as f:
        edit(f)
    return options_file, bad


def test_missing_dataset_named(tiny_model, tmp_path):
    key = "RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/B"
    options_file, bad = corrupt(tiny_model, tmp_path, lambda f: f.__delitem__(key))
    with pytest.raises(WeightFileError, match=f"missing dataset '{key}'"):
        BidirectionalLanguageModel(options_file, bad)


def test_shape_mismatch_names_both_shapes(tiny_model, tmp_path):
    def edit(f):
        del f["CNN_proj/W_proj"]
        f.create_dataset("CNN_proj/W_proj", data=np.zeros((16, 9), np.float32))
    options_file, bad = corrupt(tiny_model, tmp_path, edit)
    with pytest.raises(WeightFileError) as err:
        BidirectionalLanguageModel(options_file, bad)
    assert "'CNN_proj/W_proj' has shape (16, 9)" in str(err.value)
    assert "(16, 8)" in str(err.value)


def test_extra_layer_in_file_is_an_error(tiny_model, tmp_path):
    def edit(f):
        f.create_dataset("CNN_high_1/W_carry", data=np.zeros((16, 16), np.float32))
    options_file, bad = corrupt(tiny_model, tmp_path, edit)
    with pytest.raises(WeightFileError, match="CNN_high_1/W_carry"):
        BidirectionalLanguageModel(options_file, bad)


def test_not_hdf5_and_missing_file(tiny_model, tmp_path):
    options_file, _ = tiny_model
    junk = tmp_path / "junk.hdf5"
    junk.write_text("not hdf5")
    with pytest.raises(WeightFileError, match="not a readable HDF5"):
        BidirectionalLanguageModel(options_file, junk)
    with pytest.raises(WeightFileError, match="not found"):
        BidirectionalLanguageModel(options_file, tmp_path / "none.hdf5")


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("value, count", [(np.nan, 3), (np.inf, 1), (-np.inf, 2)])
def test_non_finite_weights_refused(tiny_model, tmp_path, value, count):
    def edit(f):
        w = f["CNN/W_cnn_0"][...]
        w.flat[:count] = value
        f["CNN/W_cnn_0"][...] = w
    options_file, bad = corrupt(tiny_model, tmp_path, edit)
    with pytest.raises(WeightFileError) as err:
        BidirectionalLanguageModel(options_file, bad)
    assert one_line(err) == (f"{bad}: dataset 'CNN/W_cnn_0' holds {count} non-finite values "
                             "(NaN/inf); the file is damaged or the training diverged")


def test_float64_beyond_float32_range_refused(tiny_model, tmp_path):
    def edit(f):
        w = f["CNN/b_cnn_1"][...].astype(np.float64)
        w[0] = 1e300  # finite in the file, inf once cast to float32
        del f["CNN/b_cnn_1"]
        f.create_dataset("CNN/b_cnn_1", data=w)
    options_file, bad = corrupt(tiny_model, tmp_path, edit)
    with pytest.raises(WeightFileError) as err:
        BidirectionalLanguageModel(options_file, bad)
    assert one_line(err) == f"{bad}: dataset 'CNN/b_cnn_1' holds 1 values beyond float32's range"


def test_external_storage_refused(tiny_model, tmp_path):
    outside = tmp_path / "outside.bin"

    def edit(f):
        value = f["char_embed"][...]
        del f["char_embed"]
        f.create_dataset("char_embed", data=value,
                         external=[(str(outside), 0, h5py.h5f.UNLIMITED)])
    options_file, bad = corrupt(tiny_model, tmp_path, edit)
    assert outside.stat().st_size > 0  # the values really live in the other file
    with pytest.raises(WeightFileError) as err:
        BidirectionalLanguageModel(options_file, bad)
    assert one_line(err) == (f"{bad}: dataset 'char_embed' stores its data in an external file "
                             f"({outside}); refusing to read outside bad.hdf5")


def test_virtual_dataset_refused(tiny_model, tmp_path):
    options_file, weight_file = tiny_model
    key = "RNN_0/RNN/MultiRNNCell/Cell0/LSTMCell/B"

    def edit(f):
        shape = f[key].shape
        del f[key]
        layout = h5py.VirtualLayout(shape=shape, dtype=np.float32)
        layout[...] = h5py.VirtualSource(str(weight_file), key, shape=shape)
        f.create_virtual_dataset(key, layout)
    options_file, bad = corrupt(tiny_model, tmp_path, edit)
    with pytest.raises(WeightFileError) as err:
        BidirectionalLanguageModel(options_file, bad)
    assert one_line(err) == (f"{bad}: dataset '{key}' is a virtual dataset mapping other files "
                             f"({weight_file}); refusing to read outside bad.hdf5")


def test_embedding_file_checked_too(tmp_path):
    from bilm.io.hdf5 import read_embedding_file

    path = tmp_path / "tokens.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("embedding", data=np.full((4, 3), np.nan, np.float32))
    with pytest.raises(WeightFileError) as err:
        read_embedding_file(path)
    assert one_line(err).startswith(f"{path}: dataset 'embedding' holds 12 non-finite values")
    with h5py.File(path, "w") as f:
        f.create_dataset("embedding", data=np.zeros((4, 3), np.float32),
                         external=[(str(tmp_path / "ext.bin"), 0, h5py.h5f.UNLIMITED)])
    with pytest.raises(WeightFileError, match="'embedding' stores its data in an external"):
        read_embedding_file(path)


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_damaged_file_one_line_error(tiny_model, tmp_path, damage):
    options_file, weight_file = tiny_model
    data = bytearray(weight_file.read_bytes())
    bad = tmp_path / "bad.hdf5"
    if damage == "truncated":  # an interrupted download or copy
        bad.write_bytes(data[: len(data) // 2])
    else:  # the middle overwritten: the header opens, object headers do not
        middle = len(data) // 2
        data[middle : middle + 2000] = np.random.default_rng(0).bytes(2000)
        bad.write_bytes(data)
    with pytest.raises(WeightFileError) as err:
        BidirectionalLanguageModel(options_file, bad)
    message = one_line(err)
    assert message.startswith(f"{bad}: not a readable HDF5 file (truncated or damaged?)")
    assert "Unable to" not in message  # not h5py's own wording
    if damage == "truncated":
        assert message.endswith(f": it has {len(data) // 2:,} of its {len(data):,} bytes")
