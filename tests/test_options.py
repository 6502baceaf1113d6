import dataclasses
import json
import logging
import os

import pytest

import bilm.options as options_module
import bilm.schema as schema_module
from bilm.options import BiLMOptions, LSTMOptions, OptionsError, load_options, save_options

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


# -- every option's type and range, checked in one place --------------------------------------

NAN, INF = float("nan"), float("inf")


def _set(section, **values):
    def mutate(d):
        target = d
        for part in filter(None, section.split(".")):
            target = target[part]
        target.update(values)
    return mutate


BAD_VALUES = [  # (dotted key, change, what the message says about it)
    ("lstm.dim", _set("lstm", dim=0), "must be >= 1, got 0"),
    ("lstm.projection_dim", _set("lstm", projection_dim=-512), "must be >= 1, got -512"),
    ("lstm.n_layers", _set("lstm", n_layers=0), "must be >= 1, got 0"),
    ("lstm.n_layers", _set("lstm", n_layers=1.5), "must be int, got 1.5 (float)"),
    ("lstm.cell_clip", _set("lstm", cell_clip=0), "must be > 0 or null, got 0.0"),
    ("lstm.cell_clip", _set("lstm", cell_clip=-3), "must be > 0 or null, got -3.0"),
    ("lstm.cell_clip", _set("lstm", cell_clip=NAN), "must be a finite number or null, got nan"),
    ("lstm.proj_clip", _set("lstm", proj_clip=INF), "must be a finite number or null, got inf"),
    ("lstm.proj_clip", _set("lstm", proj_clip="3"), "must be float or null, got '3' (str)"),
    ("lstm.use_skip_connections", _set("lstm", use_skip_connections="yes"),
     "must be bool, got 'yes' (str)"),
    ("char_cnn.filters", _set("char_cnn", filters=[]), "must be a non-empty list of"),
    ("char_cnn.filters", _set("char_cnn", filters=[[1, 32], [0, 32]]), "got [[1, 32], [0, 32]]"),
    ("char_cnn.filters", _set("char_cnn", filters=[[1, 32, 4]]), "[width, count] pairs"),
    ("char_cnn.filters", _set("char_cnn", filters=[[True, 32]]), "integers >= 1"),
    ("char_cnn.filters", _set("char_cnn", filters="1x32"), "got '1x32'"),
    ("char_cnn.n_highway", _set("char_cnn", n_highway=-1), "must be >= 0, got -1"),
    ("char_cnn.embedding.dim", _set("char_cnn.embedding", dim=0), "must be >= 1, got 0"),
    ("char_cnn.embedding.dim", _set("char_cnn.embedding", dim=-16), "must be >= 1, got -16"),
    ("char_cnn.max_characters_per_token", _set("char_cnn", max_characters_per_token=1000000),
     "must be in [7, 1000] (at least 3 and the widest filter, 7), got 1000000"),
    ("char_cnn.max_characters_per_token", _set("char_cnn", max_characters_per_token=6),
     "must be in [7, 1000]"),
    ("char_cnn.max_characters_per_token",
     _set("char_cnn", filters=[[1, 32]], max_characters_per_token=2),
     "must be in [3, 1000] (at least 3 and the widest filter, 1), got 2"),
    ("char_cnn.n_characters", _set("char_cnn", n_characters=263),
     "must be 261 (training) or 262 (inference), got 263"),
    ("char_cnn.activation", _set("char_cnn", activation="gelu"),
     "must be 'relu' or 'tanh', got 'gelu'"),
    ("batch_size", _set("", batch_size=0), "must be >= 1, got 0"),
    ("batch_size", _set("", batch_size="128"), "must be int, got '128' (str)"),
    ("unroll_steps", _set("", unroll_steps=0), "must be >= 1, got 0"),
    ("dropout", _set("", dropout=2.0), "must be in [0, 1), got 2.0"),
    ("dropout", _set("", dropout=1), "must be in [0, 1), got 1.0"),
    ("dropout", _set("", dropout=-0.1), "must be in [0, 1), got -0.1"),
    ("dropout", _set("", dropout=NAN), "must be a finite number, got nan"),
    ("n_negative_samples_batch", _set("", n_negative_samples_batch=-5), "must be >= 1, got -5"),
    ("n_negative_samples_batch", _set("", n_negative_samples_batch=0), "must be >= 1, got 0"),
    ("n_negative_samples_batch", _set("", n_negative_samples_batch=100, n_tokens_vocab=50),
     "must be <= n_tokens_vocab (50) with a sampled softmax, got 100"),
    ("all_clip_norm_val", _set("", all_clip_norm_val=0), "must be > 0 or null, got 0.0"),
    ("all_clip_norm_val", _set("", all_clip_norm_val=INF),
     "must be a finite number or null, got inf"),
    ("learning_rate", _set("", learning_rate=NAN), "must be a finite number, got nan"),
    ("learning_rate", _set("", learning_rate=-INF), "must be a finite number, got -inf"),
    ("learning_rate", _set("", learning_rate=0), "must be > 0, got 0.0"),
    ("learning_rate", _set("", learning_rate=-0.2), "must be > 0, got -0.2"),
    ("n_train_tokens", _set("", n_train_tokens=0), "must be >= 1 or null, got 0"),
    ("n_epochs", _set("", n_epochs=-1), "must be >= 1, got -1"),
    ("n_epochs", _set("", n_epochs=0), "must be >= 1, got 0"),
    ("n_tokens_vocab", _set("", n_tokens_vocab=0), "must be >= 1 or null, got 0"),
    ("bidirectional", _set("", bidirectional="true"), "must be bool, got 'true' (str)"),
    ("sample_softmax", _set("", sample_softmax=2), "must be bool, got 2 (int)"),
    ("precision", _set("", precision="bfloat16"),
     "must be one of float32, mixed_bfloat16, mixed_float16, got 'bfloat16'"),
    ("jit_compile", _set("", jit_compile="yes"), "must be bool or null, got 'yes' (str)"),
    ("share_embedding_softmax", _set("", share_embedding_softmax=True),
     "must be false for a character-input model"),
]


@pytest.mark.parametrize("key, mutate, says", BAD_VALUES,
                         ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(BAD_VALUES)])
def test_every_bad_value_names_key_file_and_rule(tmp_path, key, mutate, says):
    d = json.loads(json.dumps(RELEASED))
    mutate(d)
    path = write(tmp_path, d, "run_options.json")  # json.dumps writes NaN / Infinity as such
    with pytest.raises(OptionsError) as err:
        load_options(path)
    message = str(err.value)
    assert message.startswith(f"option '{key}' in {path} must be "), message
    assert says in message
    assert "\n" not in message


@pytest.mark.parametrize("text, message", [
    ('"learning_rate": NaN', "option 'learning_rate' in {} must be a finite number, got nan"),
    ('"dropout": Infinity', "option 'dropout' in {} must be a finite number, got inf"),
    ('"all_clip_norm_val": -Infinity',
     "option 'all_clip_norm_val' in {} must be a finite number or null, got -inf"),
    ('"batch_size": NaN', "option 'batch_size' in {} must be int, got nan (float)"),
])
def test_nan_and_infinity_in_json_text(tmp_path, text, message):
    path = tmp_path / "options.json"
    path.write_text('{"lstm": {"dim": 8, "projection_dim": 4}, ' + text + "}")
    with pytest.raises(OptionsError) as err:
        load_options(path)
    assert str(err.value) == message.format(path)


def test_share_embedding_softmax_needs_word_input(tmp_path):
    path = write(tmp_path, {**RELEASED, "share_embedding_softmax": True})
    with pytest.raises(OptionsError) as err:
        load_options(path)
    assert str(err.value) == (
        f"option 'share_embedding_softmax' in {path} must be false for a character-input "
        "model (one with a 'char_cnn' section): only a word-input model can share its "
        "embedding with the softmax")
    words = BiLMOptions.from_dict({"lstm": {"dim": 8, "projection_dim": 4},
                                   "n_tokens_vocab": 10, "share_embedding_softmax": True})
    assert words.share_embedding_softmax is True


def test_limits_that_are_allowed(tmp_path):
    d = json.loads(json.dumps(RELEASED))
    d["lstm"].update(cell_clip=None, proj_clip=0.5)
    d["char_cnn"].update(n_highway=0, max_characters_per_token=1000)
    d.update(dropout=0, n_tokens_vocab=1, n_negative_samples_batch=1, n_train_tokens=None,
             learning_rate=1e-9, jit_compile=None)
    opts = load_options(write(tmp_path, d))
    assert opts.lstm.cell_clip is None and opts.lstm.proj_clip == 0.5
    assert opts.char_cnn.max_characters_per_token == 1000 and opts.dropout == 0.0
    # the default 8192 negatives are not held against a small vocabulary (scoring models)
    small = BiLMOptions.from_dict({"lstm": {"dim": 8, "projection_dim": 4},
                                   "n_tokens_vocab": 6})
    assert small.n_negative_samples_batch == 8192
    # nor are negatives that a full softmax never draws
    full = BiLMOptions.from_dict({"lstm": {"dim": 8, "projection_dim": 4}, "n_tokens_vocab": 6,
                                  "n_negative_samples_batch": 64, "sample_softmax": False})
    assert full.n_negative_samples_batch == 64


def test_replace_and_construction_are_checked_too(tmp_path):
    d = {**RELEASED, "n_tokens_vocab": 100, "n_negative_samples_batch": 16}
    opts = load_options(write(tmp_path, d))
    with pytest.raises(OptionsError) as err:
        opts.replace(batch_size=0)
    # the value came from the caller, not the file: the file is not blamed
    assert str(err.value) == "option 'batch_size' must be >= 1, got 0"
    with pytest.raises(OptionsError) as err:
        opts.replace(learning_rate=float("nan"))
    assert str(err.value) == "option 'learning_rate' must be a finite number, got nan"
    with pytest.raises(OptionsError) as err:
        opts.replace(n_tokens_vocab=10)
    assert str(err.value) == ("option 'n_negative_samples_batch' must be <= n_tokens_vocab (10) "
                              "with a sampled softmax, got 16")
    with pytest.raises(OptionsError) as err:
        opts.replace(share_embedding_softmax=True)
    assert str(err.value).startswith("option 'share_embedding_softmax' must be false")
    new = opts.replace(n_epochs=3, dropout=0)
    assert new.n_epochs == 3 and new.dropout == 0.0 and isinstance(new.dropout, float)
    assert opts.source == str(tmp_path / "options.json") and new.source is None
    with pytest.raises(OptionsError) as err:
        LSTMOptions(dim=0, projection_dim=0)
    assert str(err.value) == "option 'lstm.dim' must be >= 1, got 0"
    with pytest.raises(OptionsError) as err:
        dataclasses.replace(opts.char_cnn, n_characters=300)
    assert "'char_cnn.n_characters'" in str(err.value) and "got 300" in str(err.value)


# -- unknown keys: kept, but a warning names them --------------------------------------------

def _warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == "bilm.options" and r.levelno == logging.WARNING]


def test_misspelt_keys_warn_once_with_a_hint(tmp_path, caplog):
    d = json.loads(json.dumps(RELEASED))
    d["lstm"]["use_skip_conections"] = True
    d["char_cnn"]["n_highways"] = 1
    d["char_cnn"]["embedding"]["dims"] = 16
    d["dropuot"] = 0.5
    d["my_note"] = "trained on Wikipedia"  # nothing close: no hint
    d["_comment"] = "keys starting with _ are comments: no warning"
    path = write(tmp_path, d)
    with caplog.at_level(logging.WARNING, logger="bilm.options"):
        opts = load_options(path)
        load_options(path)  # options are loaded many times: warned about once
    kept = " is not used (it is kept when the options are written back)"
    assert _warnings(caplog) == [
        f"unknown option 'dropuot' in {path}{kept}; did you mean 'dropout'?",
        f"unknown option 'my_note' in {path}{kept}",
        f"unknown option 'lstm.use_skip_conections' in {path}{kept}; "
        "did you mean 'use_skip_connections'?",
        f"unknown option 'char_cnn.n_highways' in {path}{kept}; did you mean 'n_highway'?",
        f"unknown option 'char_cnn.embedding.dims' in {path}{kept}; did you mean 'dim'?",
    ]
    assert opts.lstm.use_skip_connections is True  # the misspelt key changed nothing
    assert opts.to_dict() == d  # and everything is written back


def test_dict_options_warn_without_a_file_once(caplog):
    d = {"lstm": {"dim": 8, "projection_dim": 4, "n_layer": 2}}
    with caplog.at_level(logging.WARNING, logger="bilm.options"):
        BiLMOptions.from_dict(d)
        BiLMOptions.from_dict(d)
    assert _warnings(caplog) == [
        "unknown option 'lstm.n_layer' is not used (it is kept when the options are written "
        "back); did you mean 'n_layers'?"]


def test_declared_untyped_keys_do_not_warn(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(schema_module, "UNTYPED_KEYS", frozenset({"vocab_file", "lstm.init"}))
    d = json.loads(json.dumps(RELEASED))
    d["vocab_file"] = "vocab.txt"
    d["lstm"]["init"] = "orthogonal"
    with caplog.at_level(logging.WARNING, logger="bilm.options"):
        opts = load_options(write(tmp_path, d))
    assert _warnings(caplog) == []
    assert opts.extra == {"vocab_file": "vocab.txt"} and opts.lstm.extra == {"init": "orthogonal"}


# bilm-tf's bin/train_elmo.py writes exactly these (n_tokens_vocab from the vocabulary)
BILM_TF_TRAINING = {
    "bidirectional": True,
    "char_cnn": {"activation": "relu", "embedding": {"dim": 16},
                 "filters": [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512],
                             [7, 1024]],
                 "max_characters_per_token": 50, "n_characters": 261, "n_highway": 2},
    "dropout": 0.1,
    "lstm": {"cell_clip": 3, "dim": 4096, "n_layers": 2, "proj_clip": 3, "projection_dim": 512,
             "use_skip_connections": True},
    "all_clip_norm_val": 10.0, "n_epochs": 10, "n_train_tokens": 768648884, "batch_size": 128,
    "n_tokens_vocab": 793471, "unroll_steps": 20, "n_negative_samples_batch": 8192,
}


def test_released_and_training_files_load_without_warnings(tmp_path, caplog):
    every_key = {**BILM_TF_TRAINING, "learning_rate": 0.2, "share_embedding_softmax": False,
                 "sample_softmax": True, "precision": "mixed_bfloat16", "jit_compile": False,
                 "optimizer": "adam", "learning_rate_schedule": "noam", "warmup_steps": 100,
                 "max_sentence_length": 50}
    assert set(every_key) >= {k for k, _, _ in options_module._TRAIN_KEYS}
    with caplog.at_level(logging.DEBUG, logger="bilm.options"):
        for i, d in enumerate([RELEASED, BILM_TF_TRAINING, every_key]):
            opts = load_options(write(tmp_path, d, f"options{i}.json"))
            assert opts.to_dict() == d
    assert caplog.records == []


# -- load_options: a wrong path says what it is and what to give instead ----------------------

def test_options_path_is_a_directory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(OptionsError) as err:
        load_options(run)
    assert str(err.value) == f"{run} is a directory; give the options.json inside it"
    write(run, RELEASED)
    with pytest.raises(OptionsError) as err:
        load_options(run)
    assert str(err.value) == (f"{run} is a directory; give the options.json inside it: "
                              f"{run / 'options.json'}")


def test_options_path_is_a_weight_file(tmp_path):
    weights = tmp_path / "weights.hdf5"
    weights.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(OptionsError) as err:
        load_options(weights)
    assert str(err.value) == (f"{weights} is an HDF5 file, not an options.json (did you swap "
                              "--options and --weights?)")


def test_options_file_is_not_utf8(tmp_path):
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"lstm": {"dim": 8, "projection_dim": 4}, "_note": "café"}'
                       .encode("latin-1"))
    with pytest.raises(OptionsError) as err:
        load_options(latin1)
    assert str(err.value) == (f"{latin1} is not a UTF-8 JSON file (byte 0xe9 cannot be "
                              "decoded); an options.json is UTF-8 text")
    bom = tmp_path / "bom.json"  # Windows editors' byte order mark is fine
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(RELEASED).encode())
    assert load_options(bom).lstm.dim == 4096


def test_options_file_permission_denied(tmp_path, monkeypatch):
    path = write(tmp_path, RELEASED)

    def denied(file, *args, **kwargs):  # chmod 000 does not stop root, so fake it
        raise PermissionError(13, "Permission denied", os.fspath(file))

    monkeypatch.setattr(options_module, "open", denied, raising=False)
    with pytest.raises(OptionsError) as err:
        load_options(path)
    assert str(err.value) == f"permission denied reading the options file {path}"
