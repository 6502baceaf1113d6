"""The encoder interface, for every encoder and a variant of each: the variable table used for
gradients, checkpoints and export is the model's trainable variables, every one of them gets a
gradient, and 'bilm export --layers N' keeps the first N layers exactly."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import tensorflow as tf

from bilm.data.sentences import sentence_batch
from bilm.data.vocabulary import UnicodeCharsVocabulary, Vocabulary
from bilm.model.lm import LanguageModel, training_variables
from bilm.nn.layout import weight_table
from bilm.options import BiLMOptions
from tests.conftest import TINY_PAIRED_LSTM_OPTIONS, TINY_PAIRED_TRANSFORMER_OPTIONS

LSTM = TINY_PAIRED_LSTM_OPTIONS["lstm"]
TRANSFORMER = TINY_PAIRED_TRANSFORMER_OPTIONS["encoder"]

VARIANTS = {
    "lstm": TINY_PAIRED_LSTM_OPTIONS,
    "lstm-1-layer-no-projection-words": {
        "lstm": {"dim": 8, "projection_dim": 8, "n_layers": 1}},
    "lstm-forward-only-shared-softmax": {"lstm": LSTM, "bidirectional": False,
                                         "share_embedding_softmax": True},
    "transformer": TINY_PAIRED_TRANSFORMER_OPTIONS,
    "transformer-after-cnn-words": {"encoder": {**TRANSFORMER, "n_layers": 3}},
}
WORDS = ["<S>", "</S>", "<UNK>", "the", "light", "was", "good", ".", "and", "god"]


def build(name: str, **changes) -> LanguageModel:
    options = BiLMOptions.from_dict({**VARIANTS[name], "n_tokens_vocab": len(WORDS),
                                     "n_negative_samples_batch": 4, "batch_size": 2,
                                     "unroll_steps": 3, **changes})
    tf.keras.utils.set_random_seed(0)
    return LanguageModel(options, jit_compile=False)


def batch_for(lm: LanguageModel) -> dict[str, tf.Tensor]:
    rng = np.random.default_rng(0)
    if lm.protocol == "sentences":
        chars = lm.options.use_character_inputs
        vocab = (UnicodeCharsVocabulary(None, 10, tokens=WORDS) if chars
                 else Vocabulary(tokens=WORDS))
        b = sentence_batch(vocab, [["the", "light", "was", "good"], ["god", "was"]])
        return {k: tf.constant(v) for k, v in b.items() if v is not None}
    suffixes = ["", "_reverse"][: lm.n_directions]
    batch = {}
    for s in suffixes:
        batch["token_ids" + s] = rng.integers(0, len(WORDS), (2, 3)).astype(np.int32)
        batch["next_token_id" + s] = rng.integers(0, len(WORDS), (2, 3)).astype(np.int32)
        if lm.options.use_character_inputs:
            batch["tokens_characters" + s] = rng.integers(0, 261, (2, 3, 10)).astype(np.int32)
    return {k: tf.constant(v) for k, v in batch.items()}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_variable_table_is_the_models_trainable_variables(name):
    lm = build(name)
    table = training_variables(lm)  # what training updates and checkpoints save
    trainable = {id(v) for v in lm.trainable_variables}
    assert {id(v) for v in table.values()} == trainable
    assert len(table) == len(trainable)  # one name per variable
    # what export writes: the encoder's variables (the softmax stays in checkpoints)
    exported = {id(e.variable) for e in weight_table(lm.encoder)}
    assert exported == {id(v) for v in lm.encoder.trainable_variables}
    softmax = {id(lm.softmax_b)} | ({id(lm.softmax_w)} if lm.softmax_w is not None else set())
    assert exported | softmax == trainable
    # and every one of them is trained: a gradient, not a silent zero
    names = list(table)
    _, _, grads = lm.train_gradients(batch_for(lm), None, tf.constant([1, 2], tf.int64),
                                     [table[n] for n in names], scale=1.0)
    for n, g in zip(names, grads, strict=True):
        assert float(tf.reduce_sum(tf.abs(g))) > 0, f"{name}: {n} gets no gradient"


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_export_first_layers_keeps_their_values(name, tmp_path):
    """``bilm export --layers 1``: the token layer and layer 1 as the full model has them."""
    import json

    from bilm import Batcher, BidirectionalLanguageModel
    from bilm.export import dump_weights
    from bilm.training.trainer import Trainer

    options = {**VARIANTS[name], "n_tokens_vocab": len(WORDS), "n_negative_samples_batch": 4}
    save = tmp_path / "run"
    trainer = Trainer(BiLMOptions.from_dict(options), tf.distribute.get_strategy())
    rng = np.random.default_rng(3)
    for v in trainer.variables.values():  # far from the initial values, to see every layer
        v.assign(rng.normal(0, 0.5, v.shape).astype(np.float32))
    save.mkdir()
    (save / "options.json").write_text(json.dumps(options))
    tf.train.CheckpointManager(trainer.checkpoint, str(save), 1, checkpoint_name="model").save(1)
    dump_weights(str(save), str(tmp_path / "full" / "weights.hdf5"))
    dump_weights(str(save), str(tmp_path / "one" / "weights.hdf5"), n_layers=1)
    reduced = json.loads((tmp_path / "one" / "options.json").read_text())
    sentences = [["the", "light", "was", "good"], ["and", "god"]]
    ids = Batcher(None, 10).batch_sentences(sentences)
    out = {}
    for kind in ("full", "one"):
        model = BidirectionalLanguageModel(tmp_path / kind / "options.json",
                                           tmp_path / kind / "weights.hdf5", stateful=False)
        out[kind] = model(ids)["lm_embeddings"].numpy()
    assert out["one"].shape[1] == 2 and out["full"].shape[1] == 3
    np.testing.assert_allclose(out["one"], out["full"][:, :2], rtol=0, atol=1e-6)
    with h5py.File(tmp_path / "one" / "weights.hdf5", "r") as f:
        if name == "lstm":
            assert reduced["lstm"]["n_layers"] == 1
            # both readers' names: AllenNLP's MultiRNNCell/Cell0, bilm-tf's plain LSTMCell
            assert np.array_equal(f["RNN_0/RNN/MultiRNNCell/Cell0/LSTMCell/W_0"][...],
                                  f["RNN_0/RNN/LSTMCell/W_0"][...])
            assert "RNN_0/RNN/MultiRNNCell/Cell1/LSTMCell/W_0" not in f
        else:
            assert reduced["encoder"]["n_layers"] == 1
            assert reduced["encoder"]["final_norm"] is False  # layer 1 was not normalized
            assert "Transformer_0/layer_1/attention/W_query" not in f
            assert "Transformer_0/norm/gamma" not in f


def test_transformer_step_with_xla_and_in_bfloat16():
    """The transformer's training step through XLA equals the plain graph; in mixed_bfloat16
    its loss and gradients stay close to float32's (16-bit matmuls, float32 everything
    else)."""
    seed = tf.constant([1, 2], tf.int64)
    # no dropout: XLA's stateless random numbers are not the plain graph's
    quiet = {"dropout": 0.0, "encoder": {**TRANSFORMER, "dropout": 0.0, "input_dropout": 0.0}}
    results = {}
    for name, changes in (("plain", {}), ("xla", {"jit_compile": True}),
                          ("bf16", {"precision": "mixed_bfloat16"})):
        lm = build("transformer", **quiet, **changes)
        if name == "xla":
            lm.jit_compile = True
        variables = lm.trainable_variables
        loss, _, grads = lm.train_gradients(batch_for(lm), None, seed, variables, scale=1.0)
        results[name] = (float(loss), [g.numpy() for g in grads])
    loss, grads = results["plain"]
    assert results["xla"][0] == pytest.approx(loss, rel=1e-5)
    for g, gx in zip(grads, results["xla"][1], strict=True):
        np.testing.assert_allclose(gx, g, rtol=1e-4, atol=1e-5)
    assert results["bf16"][0] == pytest.approx(loss, rel=2e-2)
    assert results["bf16"][0] != loss  # the matmuls did run in bfloat16
    num = sum(float(np.sum((gb - g) ** 2)) for g, gb in zip(grads, results["bf16"][1], strict=True))
    den = sum(float(np.sum(g**2)) for g in grads)
    assert math.sqrt(num / den) < 0.05


# -- the registry ------------------------------------------------------------------------------

def test_registering_a_taken_name_fails():
    from bilm.encoders import EncoderSpec, get_spec, register
    from bilm.encoders.lstm import LSTMOptions

    lstm = get_spec("lstm")
    with pytest.raises(ValueError, match="encoder type 'lstm' is already registered"):
        register(EncoderSpec("lstm", LSTMOptions, lstm.network))
    assert get_spec("lstm") is lstm  # the first registration stands


def test_an_unknown_encoder_type_lists_the_registered_ones():
    from bilm.encoders import names
    from bilm.options import OptionsError

    with pytest.raises(OptionsError) as err:
        BiLMOptions.from_dict({"encoder": {"type": "gru", "dim": 8}}, source="o.json")
    listed = ", ".join(map(repr, names()))
    assert str(err.value) == f"option 'encoder.type' in o.json must be one of {listed}, got 'gru'"
    assert {"lstm", "transformer"} <= set(names())


def test_options_encoders_and_presets_import_no_tensorflow():
    """Options are parsed before TensorFlow starts (bilm --help, every argument check): the
    registry, the built-in encoders' options and the presets stay TensorFlow-free."""
    import subprocess
    import sys

    code = ("import sys, bilm.options, bilm.encoders, bilm.presets\n"
            "from bilm.options import BiLMOptions\n"
            f"o = BiLMOptions.from_dict({{'encoder': {TRANSFORMER!r}}})\n"
            "bilm.encoders.describe_encoder(o), bilm.encoders.truncated_encoder(o, 1)\n"
            "assert sorted(bilm.presets.PRESETS) and bilm.encoders.names()\n"
            "print('tensorflow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False", out.stderr
