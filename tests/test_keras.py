"""The Keras layer and the SavedModel export against BidirectionalLanguageModel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from bilm import Batcher, BidirectionalLanguageModel
from bilm.elmo import clear_weight_layers, weight_layer, weight_layers
from bilm.keras import ELMoEmbedding, char_ids_from_tokens, split_sentences
from bilm.options import load_options
from tests.conftest import assert_f32_close

SENTENCES = [
    "The cat sat on the mat .",
    "",
    "naïve café — ünïcode tokens",
    "a " + "x" * 200 + " token far longer than max_characters_per_token",
    "<S> literal boundary tokens </S>",
    "Pilate saith unto him , What is truth ?",
]


def _reference(options_file, weight_file, sentences, mix_w, gamma, do_layer_norm=False):
    """BidirectionalLanguageModel (stateless) + weight_layers, as a user of bilm-tf would."""
    max_chars = load_options(options_file).char_cnn.max_characters_per_token
    ids = Batcher(None, max_chars).batch_sentences([s.split() for s in sentences])
    ops = BidirectionalLanguageModel(options_file, weight_file, stateful=False)(ids)
    clear_weight_layers()
    out = weight_layers("ref", ops, do_layer_norm=do_layer_norm)["weighted_op"]
    weight_layer("ref").scalar_weights.assign(mix_w)
    weight_layer("ref").gamma.assign([gamma])
    out = weight_layers("ref", ops, do_layer_norm=do_layer_norm)["weighted_op"]
    clear_weight_layers()
    return ops, out.numpy(), ops["mask"].numpy()


@pytest.mark.parametrize("max_chars", [12, 50])
def test_char_ids_equal_batcher(max_chars):
    tokens, lengths = split_sentences(tf.constant(SENTENCES))
    ids = char_ids_from_tokens(tokens, lengths, max_chars).numpy()
    expected = Batcher(None, max_chars).batch_sentences([s.split() for s in SENTENCES])
    np.testing.assert_array_equal(ids, expected)


@pytest.mark.parametrize("do_layer_norm", [False, True])
def test_outputs_equal_bilm_plus_weight_layers(tiny_model, do_layer_norm):
    options_file, weight_file = tiny_model
    mix_w, gamma = np.array([0.4, -0.8, 1.1], np.float32), 1.7
    ops, expected, mask = _reference(options_file, weight_file, SENTENCES, mix_w, gamma,
                                     do_layer_norm)
    layer = ELMoEmbedding(options_file, weight_file, do_layer_norm=do_layer_norm)
    layer.scalar_mix.scalar_weights.assign(mix_w)
    layer.scalar_mix.gamma.assign([gamma])
    out = {k: v.numpy() for k, v in layer.layer_outputs(tf.constant(SENTENCES)).items()}
    m = mask[..., None]
    assert out["elmo"].shape == expected.shape
    np.testing.assert_allclose(out["elmo"], expected * m, atol=1e-5)
    assert np.abs(expected * m).max() > 0.1  # a real comparison, not zeros against zeros
    lm = ops["lm_embeddings"].numpy()
    p = lm.shape[-1] // 2
    np.testing.assert_allclose(out["word_emb"], lm[:, 0, :, :p] * m, atol=1e-5)
    for k in (1, 2):
        np.testing.assert_allclose(out[f"lstm_outputs{k}"], lm[:, k] * m, atol=1e-5)
    # default: the mean over real tokens (the empty sentence gives zeros)
    n = mask.sum(axis=1)
    mean = (expected * m).sum(axis=1) / np.maximum(n, 1)[:, None]
    np.testing.assert_allclose(out["default"], mean, atol=1e-5)
    np.testing.assert_array_equal(out["sequence_len"], [len(s.split()) for s in SENTENCES])
    np.testing.assert_array_equal(out["default"][1], 0.0)
    # the (tokens, sequence_len) input gives the same numbers
    tokens, lengths = split_sentences(tf.constant(SENTENCES))
    by_tokens = layer.layer_outputs({"tokens": tokens, "sequence_len": lengths})
    np.testing.assert_allclose(by_tokens["elmo"].numpy(), out["elmo"], atol=1e-6)


def test_fixture_model_matches(fixture_model):
    """The released-format test model (max 50 characters, 2 layers), default mix."""
    options_file, weight_file = fixture_model / "options.json", fixture_model / "lm_weights.hdf5"
    _, expected, mask = _reference(options_file, weight_file, SENTENCES,
                                   np.zeros(3, np.float32), 1.0)
    layer = ELMoEmbedding(options_file, weight_file)
    out = layer(tf.constant(SENTENCES)).numpy()
    np.testing.assert_allclose(out, expected * mask[..., None], atol=1e-5)


def test_stateless(tiny_model):
    layer = ELMoEmbedding(*tiny_model, output="lstm_outputs2")
    alone = layer(tf.constant([SENTENCES[0]])).numpy()[0]
    layer(tf.constant(SENTENCES[2:]))  # other batches in between change nothing
    in_batch = layer(tf.constant(SENTENCES)).numpy()[0]
    assert_f32_close(in_batch[: alone.shape[0]], alone)


def test_keras_masking(tiny_model):
    """Per-token outputs carry the token mask: Keras' pooling then averages real tokens only,
    which is exactly the ``default`` output."""
    inputs = keras.Input(shape=(), dtype="string")
    pooled = keras.layers.GlobalAveragePooling1D()(ELMoEmbedding(*tiny_model)(inputs))
    model = keras.Model(inputs, pooled)
    x = tf.constant(SENTENCES)
    expected = ELMoEmbedding(*tiny_model, output="default")(x).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-6)
    # without the mask the padding zeros would be averaged in
    unmasked = ELMoEmbedding(*tiny_model)(x).numpy().mean(axis=1)
    assert np.abs(unmasked - expected).max() > 1e-3


def test_bad_arguments(tiny_model):
    with pytest.raises(ValueError, match="output="):
        ELMoEmbedding(*tiny_model, output="lstm_outputs3")
    with pytest.raises(ValueError, match="dropout"):
        ELMoEmbedding(*tiny_model, dropout=1.0)


def _classifier(tiny_model, output="default", trainable_bilm=False):
    inputs = keras.Input(shape=(), dtype="string")
    x = ELMoEmbedding(*tiny_model, output=output, trainable_bilm=trainable_bilm,
                      dropout=0.1)(inputs)
    if output != "default":
        x = keras.layers.GlobalAveragePooling1D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    return model


def _data():
    labels = np.arange(len(SENTENCES)) % 3
    return tf.data.Dataset.from_tensor_slices((SENTENCES, labels)).batch(3)


@pytest.mark.parametrize("trainable_bilm", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_gradients_reach_mix_and_optionally_bilm(tiny_model, trainable_bilm):
    keras.utils.set_random_seed(0)
    model = _classifier(tiny_model, output="elmo", trainable_bilm=trainable_bilm)
    layer = model.layers[1]
    mix_before = layer.scalar_mix.scalar_weights.numpy().copy()
    bilm_before = [v.numpy().copy() for v in layer.bilm.weights]
    assert len(layer.trainable_weights) == (len(layer.bilm.weights) + 2 if trainable_bilm
                                            else 2)
    history = model.fit(_data(), epochs=4, verbose=0, shuffle=False)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert np.abs(layer.scalar_mix.scalar_weights.numpy() - mix_before).max() > 1e-3
    moved = max(np.abs(v.numpy() - b).max() for v, b in zip(layer.bilm.weights, bilm_before,
                                                                     strict=True))
    if trainable_bilm:
        assert moved > 1e-3
    else:
        assert moved == 0.0


@pytest.mark.slow  # builds, fits and saves a subclassed Keras model
def test_subclassed_model(tiny_model):
    class Classifier(keras.Model):
        def __init__(self):
            super().__init__()
            self.elmo = ELMoEmbedding(*tiny_model, output="default")
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(self.elmo(x))

    model = Classifier()
    model.compile(keras.optimizers.Adam(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(_data(), epochs=3, verbose=0, shuffle=False)
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.slow
def test_keras_save_load_round_trip(tiny_model, tmp_path):
    options_file, weight_file = tiny_model
    local = tmp_path / "model"
    local.mkdir()
    shutil.copy(options_file, local / "options.json")
    shutil.copy(weight_file, local / "weights.hdf5")
    keras.utils.set_random_seed(1)
    model = _classifier((local / "options.json", local / "weights.hdf5"), trainable_bilm=True)
    model.fit(_data(), epochs=2, verbose=0, shuffle=False)  # the biLM now differs from its file
    x = tf.constant(SENTENCES)
    before = model.predict(x, verbose=0)
    model.save(tmp_path / "clf.keras")
    shutil.rmtree(local)  # the archive is self-contained
    loaded = keras.models.load_model(tmp_path / "clf.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), before)


def _save_load_model(options_file, weight_file, output, head, form):
    """A small model around ELMoEmbedding: ``head`` "pool" (GlobalAveragePooling1D, none for
    ``default``) or "bilstm"/"tagger" (Bidirectional LSTM, one vector / one per token), then
    Dense; ``form`` "text" (a string per sentence), "dict" or "list" (tokens, sequence_len)."""
    keras.utils.set_random_seed(2)
    if form == "text":
        inputs = keras.Input(shape=(), dtype="string")
        elmo_in = inputs
    else:
        tokens = keras.Input(shape=(None,), dtype="string", name="tokens")
        lengths = keras.Input(shape=(), dtype="int32", name="sequence_len")
        inputs = {"tokens": tokens, "sequence_len": lengths} if form == "dict" else [
            tokens, lengths]
        elmo_in = inputs
    elmo = ELMoEmbedding(options_file, weight_file, output=output)
    # a mix unlike the initial one: the loaded values must come from the archive
    elmo.scalar_mix.scalar_weights.assign(
        np.linspace(-1.0, 1.0, elmo.scalar_mix.scalar_weights.shape[0]).astype(np.float32))
    elmo.scalar_mix.gamma.assign([1.3])
    x = elmo(elmo_in)
    if head in ("bilstm", "tagger"):
        x = keras.layers.Bidirectional(
            keras.layers.LSTM(4, return_sequences=head == "tagger"))(x)
    elif output != "default":
        x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


_SAVE_LOAD_CASES = [
    # every output of the LSTM model, pooled (``default`` is already one vector)
    *[pytest.param("lstm", out, "pool", "text", id=f"{out}-pool")
      for out in ("elmo", "default", "word_emb", "lstm_outputs1", "lstm_outputs2")],
    # the Transformer's contextual layers are named transformer_outputs{k}
    pytest.param("transformer", "transformer_outputs2", "pool", "text",
                 id="transformer_outputs2-pool"),
    pytest.param("lstm", "elmo", "bilstm", "text", id="elmo-bilstm"),
    pytest.param("lstm", "elmo", "tagger", "text", id="elmo-tagger"),
    pytest.param("lstm", "lstm_outputs1", "pool", "dict", id="lstm_outputs1-pool-tokens_dict"),
    pytest.param("lstm", "word_emb", "tagger", "list", id="word_emb-tagger-tokens_list"),
]


@pytest.mark.parametrize(("encoder", "output", "head", "form"), _SAVE_LOAD_CASES)
def test_keras_save_load_every_output(request, tmp_path, encoder, output, head, form):
    """Each output, the masking layers after the per-token ones (pooling, a Bidirectional LSTM,
    a tagger) and both input forms: the ``.keras`` archive loads and predicts the same."""
    options_file, weight_file = request.getfixturevalue(
        "tiny_model" if encoder == "lstm" else "tiny_transformer")
    model = _save_load_model(options_file, weight_file, output, head, form)
    sentences = SENTENCES[:3]
    if form == "text":
        x = tf.constant(sentences)
    else:
        tokens, lengths = split_sentences(tf.constant(sentences))
        x = {"tokens": tokens, "sequence_len": lengths} if form == "dict" else [tokens,
                                                                                 lengths]
    # eager calls: the same functional graph as predict, without tracing it (seconds each)
    before = model(x, training=False).numpy()
    assert np.abs(before).max() > 1e-2  # values to compare, not zeros
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(x, training=False).numpy(), before, rtol=0, atol=1e-6)


def test_keras_two_elmo_layers_save_load(tiny_model, tmp_path):
    """Two per-token ELMoEmbedding layers in one model: each mask layer has a name of its own
    (both were "token_mask": "The name ... is used 2 times in the model")."""
    inputs = keras.Input(shape=(), dtype="string")
    pooled = [keras.layers.GlobalAveragePooling1D()(ELMoEmbedding(*tiny_model, output=out)(
        inputs)) for out in ("lstm_outputs1", "word_emb")]
    model = keras.Model(inputs, keras.layers.Concatenate()(pooled))
    x = tf.constant(SENTENCES[:3])
    before = model(x).numpy()
    model.save(tmp_path / "two.keras")
    loaded = keras.models.load_model(tmp_path / "two.keras")
    np.testing.assert_allclose(loaded(x).numpy(), before, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_savedmodel_in_fresh_process(tiny_model, tmp_path):
    from bilm.export import export_savedmodel

    export_dir = tmp_path / "elmo_sm"
    export_savedmodel(*tiny_model, export_dir)
    with pytest.raises(FileExistsError):
        export_savedmodel(*tiny_model, export_dir)
    layer = ELMoEmbedding(*tiny_model)
    expected = {k: v.numpy() for k, v in layer.layer_outputs(tf.constant(SENTENCES)).items()}
    tokens = [s.split() for s in SENTENCES]
    width = max(len(t) for t in tokens)
    padded = [t + [""] * (width - len(t)) for t in tokens]
    script = f"""
import json, sys
import numpy as np
import tensorflow as tf
m = tf.saved_model.load({str(export_dir)!r})
a = m.signatures["default"](strings=tf.constant({json.dumps(SENTENCES)}))
b = m.signatures["tokens"](tokens=tf.constant({json.dumps(padded)}),
                           sequence_len=tf.constant({json.dumps([len(t) for t in tokens])}))
np.savez({str(tmp_path / "out.npz")!r}, **{{"a_" + k: v.numpy() for k, v in a.items()}},
         **{{"b_" + k: v.numpy() for k, v in b.items()}})
print(json.dumps({{"bilm_imported": any(n.split(".")[0] == "bilm" for n in sys.modules),
                   "trainable": len(m.trainable_variables)}}))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"bilm_imported": False, "trainable": 2}
    got = np.load(tmp_path / "out.npz")
    keys = {"word_emb", "lstm_outputs1", "lstm_outputs2", "elmo", "default", "sequence_len"}
    for sig in ("a", "b"):
        assert {k[2:] for k in got.files if k.startswith(sig + "_")} == keys
        batch, t = len(SENTENCES), width
        assert got[f"{sig}_word_emb"].shape == (batch, t, 8)
        assert got[f"{sig}_elmo"].shape == (batch, t, 16)
        assert got[f"{sig}_default"].shape == (batch, 16)
        for k in keys:
            np.testing.assert_allclose(got[f"{sig}_{k}"], expected[k], atol=1e-6)


def test_hub_keras_layer(tiny_model, tmp_path):
    """Code written for the TF Hub module: hub.KerasLayer on the export (needs the optional
    tensorflow_hub and tf_keras packages; skipped without them)."""
    hub = pytest.importorskip("tensorflow_hub", reason="tensorflow_hub is not installed")
    from bilm.export import export_savedmodel

    export_savedmodel(*tiny_model, tmp_path / "sm")
    layer = hub.KerasLayer(str(tmp_path / "sm"), signature="default", output_key="default")
    got = layer(tf.constant(SENTENCES)).numpy()
    expected = ELMoEmbedding(*tiny_model, output="default")(tf.constant(SENTENCES)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    trainable = hub.KerasLayer(str(tmp_path / "sm"), trainable=True)
    assert len(trainable.trainable_weights) == 2  # the scalar mix, as the hub module's


@pytest.mark.slow
def test_fit_and_predict_on_numpy_string_arrays(tiny_model):
    """Keras 3's fit/predict/evaluate reject NumPy's fixed-width strings ('<U', 'S': "Invalid
    dtype: str288") before any layer sees them; ``text_tensor`` makes any string array a
    tensor they accept, with the same predictions as a 1-D object array of str (which Keras
    converts itself)."""
    from bilm.keras import text_tensor

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(), dtype="string")
    x = ELMoEmbedding(*tiny_model, output="default")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    model.compile(keras.optimizers.Adam(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    unicode = np.array(SENTENCES)
    assert unicode.dtype.kind == "U"
    labels = np.arange(len(SENTENCES)) % 3
    history = model.fit(text_tensor(unicode), labels, epochs=3, batch_size=3, verbose=0,
                        validation_split=0.5)
    assert history.history["loss"][-1] < history.history["loss"][0]
    expected = model.predict(unicode.astype(object), verbose=0)
    assert np.abs(expected).max() > 0.1
    for given in (unicode, unicode.astype(object), np.char.encode(unicode, "utf-8"),
                  SENTENCES):
        got = model.predict(text_tensor(given), verbose=0, batch_size=4)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.evaluate(text_tensor(unicode), labels, verbose=0),
                               model.evaluate(unicode.astype(object), labels, verbose=0),
                               rtol=1e-6)
