"""Training end to end on the KJV corpus with a tiny biLM, resume, replicas, TF1 import."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bilm import Batcher, BidirectionalLanguageModel, BiLMOptions
from bilm.data import BidirectionalLMDataset, LMDataset, UnicodeCharsVocabulary
from bilm.demo import unigram_perplexity
from bilm.evaluation import test as evaluate
from bilm.export import dump_weights
from bilm.model.lm import tf1_table
from bilm.training.inputs import load_vocab
from bilm.training.loop import train
from bilm.training.trainer import Trainer
from tests.conftest import KJV_TRAINING_OPTIONS, ROOT

TINY = {
    **KJV_TRAINING_OPTIONS,
    "bidirectional": True, "dropout": 0.1, "batch_size": 16, "unroll_steps": 10,
    "n_negative_samples_batch": 256, "all_clip_norm_val": 10.0, "learning_rate": 0.2,
    "n_epochs": 1,
}


def tiny_options(vocab, **changes):
    return {**TINY, "n_tokens_vocab": vocab.size, **changes}


@pytest.mark.slow
def test_end_to_end_train_test_export_load(kjv, tmp_path):
    vocab = load_vocab(kjv / "vocab.txt", 20)
    options = tiny_options(vocab, batch_size=32, unroll_steps=20)
    save, log = tmp_path / "save", tmp_path / "log"
    data = BidirectionalLMDataset(str(kjv / "train" / "*"), vocab, seed=0)
    heldout = str(kjv / "heldout" / "*")

    # loss on a fixed held-out batch, before and after training
    probe = next(BidirectionalLMDataset(heldout, vocab, test=True).iter_batches(32, 20))
    probe = {k: tf.constant(v) for k, v in probe.items()}
    fresh = Trainer(BiLMOptions.from_dict(options),
                     tf.distribute.get_strategy(), seed=0)
    before = float(fresh.lm(probe, training=False)[0])

    ckpt = train(options, data, 1, str(save), str(log), n_batches=300, log_every=100, seed=0)
    assert os.path.exists(ckpt + ".index")
    assert json.loads((save / "options.json").read_text())["n_tokens_vocab"] == vocab.size
    assert list(log.iterdir())  # TensorBoard events

    trained = Trainer(BiLMOptions.from_dict(options),
                       tf.distribute.get_strategy())
    trained.restore(ckpt, weights_only=True)
    after = float(trained.lm(probe, training=False)[0])
    assert after < before - 1.0, (before, after)

    ppl = evaluate(str(save / "options.json"), ckpt,
               BidirectionalLMDataset(heldout, vocab, test=True), batch_size=64)
    baseline = unigram_perplexity(str(kjv / "train" / "*"), heldout, vocab)
    assert math.isfinite(ppl) and ppl < baseline, (ppl, baseline)

    out = tmp_path / "export" / "weights.hdf5"
    dump_weights(str(save), str(out))
    inference_options = json.loads((out.parent / "options.json").read_text())
    assert inference_options["char_cnn"]["n_characters"] == 262
    model = BidirectionalLanguageModel(out.parent / "options.json", out, stateful=False)

    # the training network's own forward pass on the same sentence, both directions
    sentence = ["In", "the", "beginning", "God", "created", "the", "heaven", "and", "the",
                "earth", "."]
    lm_out = model(Batcher(None, 20).batch_sentences([sentence]))["lm_embeddings"].numpy()[0]
    chars = UnicodeCharsVocabulary(None, 20, tokens=["<S>"]).encode_chars(sentence, split=False)
    ids = tf.constant(np.stack([chars, chars[::-1]])[:, :, np.newaxis])  # (d, T, 1, chars)
    x = trained.lm.encoder.embed_tokens(ids, shifted=False)  # (d, T, 1, dim)
    outputs, _ = trained.lm.contextualizer.run(x)
    for k, layer in enumerate(outputs, start=1):
        fwd, bwd = layer[0, :, 0].numpy(), layer[1, ::-1, 0].numpy()
        expected = np.concatenate([fwd, bwd], -1)[1:-1]
        np.testing.assert_allclose(lm_out[k], expected, rtol=0, atol=1e-5)


@pytest.mark.slow  # the fast tier pins exact resume in tests/test_runs.py (no XLA)
def test_resume_is_exact(kjv, tmp_path):
    vocab = load_vocab(kjv / "vocab.txt", 20)
    options = tiny_options(vocab)

    def run(save, n_batches, restart=None):
        data = BidirectionalLMDataset(str(kjv / "train" / "*"), vocab, seed=3)
        return train(options, data, 1, str(save), str(tmp_path / "log"), restart,
                     n_batches=n_batches, seed=5, progress=False)

    one = run(tmp_path / "one", 6)
    half = run(tmp_path / "two", 3)
    two = run(tmp_path / "two", 6, restart=half)
    for (name, _), (name2, _) in zip(tf.train.list_variables(one), tf.train.list_variables(two),
                                     strict=True):
        assert name == name2
        if name.startswith(("_", "save_counter")):
            continue
        np.testing.assert_array_equal(tf.train.load_variable(one, name),
                                      tf.train.load_variable(two, name), err_msg=name)
    assert tf.train.load_variable(two, "global_step/.ATTRIBUTES/VARIABLE_VALUE") == 6


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["lstm", "transformer"])
def test_two_replicas_equal_one(kjv, tmp_path, encoder):
    # Logical devices must be configured before TensorFlow starts: a fresh process.
    script = ROOT / "tests" / "replica_check.py"
    r = subprocess.run([sys.executable, str(script), str(kjv), str(tmp_path), encoder],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "max abs difference" in r.stdout
    diff = float(r.stdout.split("max abs difference")[1].split()[0])
    # The Transformer trains with Adam, whose update divides by sqrt(v): a weight whose
    # gradient is near zero in exact arithmetic (W_key's) turns the replicas' different
    # summation rounding into updates of a size that does not shrink with it: 4.9e-6 with
    # TensorFlow 2.21 on 2026-12-02, at the code that gave 8.8e-7 in an earlier environment;
    # the LSTM's Adagrad stays at ~6e-8. Both are float rounding beside values up to ~2.
    assert diff <= (1e-5 if encoder == "transformer" else 1e-6), r.stdout
    if encoder == "transformer":  # Adam's normalized rounding noise on a zero gradient
        assert float(r.stdout.split("key biases")[1].split()[0]) < 5.6e-3, r.stdout  # < lr


@pytest.mark.slow
def test_bilm_tf_tf1_checkpoint_restores(tmp_path):
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("<S>\n</S>\n<UNK>\nthe\nlight\nwas\ngood\n.\n")
    vocab = load_vocab(vocab_file, 20)
    options = tiny_options(vocab, n_negative_samples_batch=4, batch_size=2, unroll_steps=3)
    opts = BiLMOptions.from_dict(options)
    trainer = Trainer(opts, tf.distribute.get_strategy())
    rng = np.random.default_rng(0)
    names, tensors = [], []
    for entry in tf1_table(trainer.lm):
        value = rng.normal(size=entry.shape).astype(np.float32)
        names += [entry.tf1_key, entry.tf1_key + "/Adagrad"]
        tensors += [value, np.abs(value) + 1.0]
    names.append("global_step")
    tensors.append(np.int64(1234))
    save_dir = tmp_path / "bilm_tf_run"
    save_dir.mkdir()
    prefix = str(save_dir / "model.ckpt-1234")
    # TF's own checkpoint writer, bilm-tf's variable names (a name-based, TF1-style file)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=tensors)
    (save_dir / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-1234"\n')
    (save_dir / "options.json").write_text(json.dumps(options))

    trainer.restore(prefix)
    assert int(trainer.step.numpy()) == 1234
    written = dict(zip(names, tensors, strict=True))
    for entry in tf1_table(trainer.lm):
        np.testing.assert_array_equal(entry.get(), written[entry.tf1_key])
    kernel = trainer.variables["encoder/lstm_1/W_0"]
    acc = trainer.optimizer.accumulators["encoder/lstm_1/W_0"]
    np.testing.assert_array_equal(
        acc.numpy()[1],
        written["lm/RNN_1/rnn/multi_rnn_cell/cell_1/lstm_cell/kernel/Adagrad"])
    assert kernel.shape[0] == 2

    # a bilm-tf checkpoint directory works for export, evaluation and restart
    out = tmp_path / "export" / "weights.hdf5"
    dump_weights(str(save_dir), str(out))
    model = BidirectionalLanguageModel(out.parent / "options.json", out, stateful=False)
    assert np.isfinite(model(Batcher(None, 20).batch_sentences([["the", "light"]]))[
        "lm_embeddings"].numpy()).all()
    data_file = tmp_path / "data.txt"
    data_file.write_text("the light was good .\n" * 20)
    ppl = evaluate(str(save_dir / "options.json"), prefix,
               BidirectionalLMDataset(str(data_file), vocab, test=True), batch_size=2)
    assert math.isfinite(ppl)
    ckpt = train(options, BidirectionalLMDataset(str(data_file), vocab, seed=0), 1,
                 str(tmp_path / "continued"), str(tmp_path / "log"), prefix,
                 n_batches=1236, progress=False)
    assert ckpt.endswith("-1236")


def test_forward_only_lm(tmp_path):
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("<S>\n</S>\n<UNK>\na\nb\n")
    vocab = load_vocab(vocab_file, 20)
    data_file = tmp_path / "data.txt"
    data_file.write_text("a b a b a\nb a\n" * 10)
    options = tiny_options(vocab, bidirectional=False, n_negative_samples_batch=3,
                           batch_size=2, unroll_steps=4)
    ckpt = train(options, LMDataset(str(data_file), vocab, seed=0), 1, str(tmp_path / "s"),
                 str(tmp_path / "l"), n_batches=3, progress=False)
    assert tf.train.load_variable(ckpt, "global_step/.ATTRIBUTES/VARIABLE_VALUE") == 3
    with pytest.raises(ValueError, match="BidirectionalLMDataset"):
        train({**options, "bidirectional": True}, LMDataset(str(data_file), vocab), 1,
              str(tmp_path / "s2"), str(tmp_path / "l"), n_batches=1)


def test_reverse_stream_chars_match_its_ids(kjv):
    # bilm-tf: the backward stream reads each sentence reversed, </S> first; its character
    # inputs are those of its own token ids (encode_chars(reverse=True) only swaps <S>/</S>).
    vocab = load_vocab(kjv / "vocab.txt", 50)
    batch = next(BidirectionalLMDataset(str(kjv / "heldout" / "*"), vocab, test=True)
                 .iter_batches(8, 20))
    for suffix in ("", "_reverse"):
        ids = batch["token_ids" + suffix]
        known = ids != vocab.unk
        np.testing.assert_array_equal(vocab.word_char_ids[ids][known],
                                      batch["tokens_characters" + suffix][known], err_msg=suffix)


def test_highway_weights_initialised_independently():
    from bilm.nn.highway import Highway

    highway = Highway(16, 1)
    assert not np.array_equal(highway.w_carry[0].numpy(), highway.w_transform[0].numpy())
