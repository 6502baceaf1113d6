import json

import pytest

from bilm.options import BiLMOptions, OptionsError, load_options, save_options

RELEASED = {  # elmo_2x4096_512_2048cnn_2xhighway_options.json as AllenNLP ships it
    "lstm": {"use_skip_connections": True, "projection_dim": 512, "cell_clip": 3,
             "proj_clip": 3, "dim": 4096, "n_layers": 2},
    "char_cnn": {"activation": "relu",
                 "filters": [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512],
                             [7, 1024]],
                 "n_highway": 2, "embedding": {"dim": 16}, "n_characters": 262,
                 "max_characters_per_token": 50},
}


def write(tmp_path, d, name="options.json"):
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return path


def test_released_options_parse_and_round_trip(tmp_path):
    opts = load_options(write(tmp_path, RELEASED))
    assert opts.lstm.dim == 4096 and opts.lstm.projection_dim == 512
    assert opts.lstm.cell_clip == 3.0 and opts.lstm.use_skip_connections is True
    assert opts.char_cnn.n_filters == 2048 and opts.char_cnn.n_stored_characters == 261
    assert opts.use_character_inputs
    assert opts.to_dict() == RELEASED  # nothing added, nothing lost


def test_unknown_keys_are_kept(tmp_path):
    d = json.loads(json.dumps(RELEASED))
    d["my_note"] = {"a": 1}
    d["lstm"]["future_key"] = [1, 2]
    d["char_cnn"]["embedding"]["init"] = "x"
    d["n_train_tokens"] = 1234
    opts = load_options(write(tmp_path, d))
    out = tmp_path / "out.json"
    save_options(opts, out)
    assert json.loads(out.read_text()) == d
    assert opts.n_train_tokens == 1234


def test_training_options_261_characters(tmp_path):
    d = json.loads(json.dumps(RELEASED))
    d["char_cnn"]["n_characters"] = 261
    d.update(bidirectional=True, dropout=0.1, n_tokens_vocab=793471, batch_size=128)
    opts = load_options(write(tmp_path, d))
    assert opts.char_cnn.n_characters == 261
    assert opts.char_cnn.n_stored_characters == 261  # same stored table as 262
    assert opts.n_tokens_vocab == 793471


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["lstm"].pop("dim"), "missing option 'lstm.dim'"),
    (lambda d: d["lstm"].update(dim="4096"), "'lstm.dim'"),
    (lambda d: d["char_cnn"].update(filters=[[1, "x"]]), "'char_cnn.filters'"),
    (lambda d: d["char_cnn"].update(activation="gelu"), "'char_cnn.activation'"),
    (lambda d: d["char_cnn"].update(n_characters=300), "'char_cnn.n_characters'"),
    (lambda d: d["char_cnn"].pop("embedding"), "'char_cnn.embedding.dim'"),
    (lambda d: d.pop("lstm"), "missing option 'lstm'"),
    (lambda d: d.update(dropout="high"), "'dropout'"),
    (lambda d: d["lstm"].update(projection_dim=8192), "must not exceed"),
    (lambda d: d.update(precision="bfloat16"), "option 'precision'"),
    (lambda d: d.update(precision=16), "option 'precision'"),
    (lambda d: d.update(jit_compile="yes"), "option 'jit_compile'"),
])
def test_bad_options_name_key_and_file(tmp_path, mutate, message):
    d = json.loads(json.dumps(RELEASED))
    mutate(d)
    path = write(tmp_path, d)
    with pytest.raises(OptionsError) as err:
        load_options(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_bad_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(OptionsError, match="not valid JSON"):
        load_options(bad)
    with pytest.raises(OptionsError, match="not found"):
        load_options(tmp_path / "nope.json")


def test_word_input_options_and_replace():
    opts = BiLMOptions.from_dict({"lstm": {"dim": 8, "projection_dim": 4},
                                  "n_tokens_vocab": 10})
    assert not opts.use_character_inputs and opts.lstm.n_layers == 1
    assert opts.lstm.use_projection
    new = opts.replace(batch_size=7)
    assert new.batch_size == 7 and new.to_dict()["batch_size"] == 7
    assert "batch_size" not in opts.to_dict()


def test_precision_and_jit_compile_round_trip(tmp_path):
    opts = load_options(write(tmp_path, RELEASED))
    assert opts.precision == "float32" and opts.jit_compile is None  # defaults: not written
    assert "precision" not in opts.to_dict() and "jit_compile" not in opts.to_dict()
    d = {**RELEASED, "precision": "mixed_bfloat16", "jit_compile": False}
    opts = load_options(write(tmp_path, d))
    assert opts.precision == "mixed_bfloat16" and opts.jit_compile is False
    out = tmp_path / "out.json"
    save_options(opts, out)
    assert json.loads(out.read_text()) == d
    new = opts.replace(precision="mixed_float16", jit_compile=True)
    assert new.to_dict()["precision"] == "mixed_float16" and new.to_dict()["jit_compile"]
    with pytest.raises(OptionsError, match="'precision'"):
        opts.replace(precision="float16")
