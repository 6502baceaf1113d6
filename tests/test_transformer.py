"""The Transformer biLM (AllenNLP's Transformer ELMo): AllenNLP's own outputs reproduced
(../shared/fixtures/allennlp-transformer), the network's pieces by hand, archives read safely,
training from scratch, and every surface (export, embedding, Keras, SavedModel)."""

from __future__ import annotations

import json
import math
import shutil
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow as tf

from bilm import Batcher, BidirectionalLanguageModel, weight_layers
from bilm.evaluation import evaluate_run
from bilm.export import dump_weights
from bilm.io.allennlp import ArchiveError, import_allennlp, lenient_json, read_archive
from bilm.nn.layer_norm import layer_norm
from bilm.nn.transformer import TransformerContextualizer, positional_encoding
from bilm.options import BiLMOptions
from bilm.training.runs import resume_training, start_training
from tests.conftest import SHARED, TINY_WIDE_TRANSFORMER_OPTIONS, need_shared

FIXTURE = SHARED / "fixtures" / "allennlp-transformer"


@pytest.fixture(scope="module")
def allennlp_fixture() -> Path:
    return need_shared(FIXTURE)


@pytest.fixture(scope="module")
def imported(allennlp_fixture, tmp_path_factory) -> dict[str, Path]:
    """The fixture archive imported, then exported to HDF5 as a user would."""
    d = tmp_path_factory.mktemp("allennlp")
    import_allennlp(allennlp_fixture / "model.tar.gz", d / "run")
    dump_weights(str(d / "run"), str(d / "export" / "weights.hdf5"))
    return {"run": d / "run", "options": d / "export" / "options.json",
            "weights": d / "export" / "weights.hdf5"}


def fixture_sentences() -> list[list[str]]:
    # the fixture's README: one sentence per line, split on spaces
    return [line.split(" ") for line in
            (FIXTURE / "sentences.txt").read_text().splitlines()]


def test_imported_archive_reproduces_allennlp(imported):
    model = BidirectionalLanguageModel(imported["options"], imported["weights"])
    assert not model.stateful  # the default for a stateless encoder
    ops = model(Batcher(None, 50).batch_sentences(fixture_sentences()))
    lm = ops["lm_embeddings"].numpy()
    mix = weight_layers("allennlp_fixture", ops)["weighted_op"].numpy()
    with h5py.File(FIXTURE / "expected.hdf5", "r") as f:
        for i in range(2):
            tokens = f[f"tokens/{i}"][...]
            n = tokens.shape[0]
            assert int(ops["lengths"][i]) == n
            np.testing.assert_allclose(lm[i, 0, :n], np.concatenate([tokens, tokens], -1),
                                       rtol=0, atol=1e-5)
            layers = f[f"layers/{i}"][...]  # (3, n, 32)
            for k in range(3):
                np.testing.assert_allclose(lm[i, k + 1, :n], layers[k], rtol=0, atol=1e-5,
                                           err_msg=f"sentence {i} layer {k + 1}")
            # the initial scalar mix: the mean of the four layers, gamma 1
            np.testing.assert_allclose(mix[i, :n], f[f"mix/{i}"][...], rtol=0, atol=1e-5)


def test_imported_archive_perplexity_is_allennlps(imported):
    with h5py.File(FIXTURE / "expected.hdf5", "r") as f:
        expected = float(f.attrs["perplexity"])
    ppl = evaluate_run(str(imported["run"]), str(FIXTURE / "sentences.txt"), batch_size=4,
                       progress=False)
    assert ppl == pytest.approx(expected, rel=1e-3)
    vocab = (imported["run"] / "vocab.txt").read_text().split("\n")
    assert vocab[0] == "<UNK>" and vocab[1] == "<S>" and vocab[11] == "@@PADDING@@"


def test_stateful_is_refused_for_a_transformer(imported):
    with pytest.raises(ValueError, match="stateless"):
        BidirectionalLanguageModel(imported["options"], imported["weights"], stateful=True)


def test_options_round_trip_and_layout(imported):
    options = json.loads(imported["options"].read_text())
    assert options["encoder"] == {"type": "transformer", "dim": 16, "hidden_dim": 7,
                                  "n_layers": 3, "n_heads": 8, "dropout": 0.1,
                                  "input_dropout": 0.1}
    assert "lstm" not in options
    cnn = options["char_cnn"]
    assert (cnn["projection_location"], cnn["highway_gate"], cnn["padding_row"]) == (
        "after_cnn", "carry", "learned")
    with h5py.File(imported["weights"], "r") as f:
        assert f["char_embed"].shape == (262, 4)  # the learned padding row is stored
        assert f["CNN_proj/W_proj"].shape == (124, 16)
        assert f["CNN_high_0/W_carry"].shape == (16, 16)  # after the projection
        assert f["Transformer_1/layer_2/feed_forward/W_1"].shape == (16, 7)
        assert f["Transformer_0/norm/gamma"].shape == (16,)
        assert "softmax" not in f


def test_positional_encoding_by_hand():
    pe = positional_encoding(4, 6).numpy()
    for t in range(4):
        for i in range(3):
            f = math.exp(2 * i * -(math.log(10000.0) / 6))
            assert pe[t, 2 * i] == pytest.approx(math.sin(t * f), abs=1e-6)
            assert pe[t, 2 * i + 1] == pytest.approx(math.cos(t * f), abs=1e-6)


def test_allennlp_layer_norm_by_hand():
    x = np.array([[1.0, 2.0, 4.0, 9.0]], np.float32)
    gamma, beta = np.array([1.0, 2.0, 0.5, 1.0], np.float32), np.full(4, 0.1, np.float32)
    mean, std = x.mean(), x.std()  # the biased std, eps added to it
    expected = gamma * (x - mean) / (std + 1e-13) + beta
    np.testing.assert_allclose(layer_norm(tf.constant(x), gamma, beta).numpy(), expected,
                               rtol=1e-6)


def small_transformer(**changes) -> TransformerContextualizer:
    options = BiLMOptions.from_dict({"encoder": {"type": "transformer", "dim": 8,
                                                 "hidden_dim": 12, "n_layers": 2,
                                                 "n_heads": 2, **changes}})
    tf.keras.utils.set_random_seed(0)
    return TransformerContextualizer(options.encoder)


def test_each_direction_sees_only_its_side():
    """Forward position i depends on tokens <= i only; backward on tokens >= i; padding on
    neither."""
    ctx = small_transformer()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 7, 8)).astype(np.float32)
    lengths = tf.constant([6])  # position 6 is padding
    base, _ = ctx.sentence_layers(tf.constant(x), lengths)
    for j in range(7):
        changed = x.copy()
        changed[0, j] += rng.normal(size=8)  # (a constant shift would vanish in layer norm)
        out, _ = ctx.sentence_layers(tf.constant(changed), lengths)
        for k in range(2):
            diff = np.abs(out[k].numpy() - base[k].numpy()).max(axis=-1)[:, 0]  # (d, T)
            for i in range(6):
                moved_fwd, moved_bwd = diff[0, i] > 1e-6, diff[1, i] > 1e-6
                assert moved_fwd == (j <= i < 6), (k, i, j, "forward")
                assert moved_bwd == (i <= j < 6), (k, i, j, "backward")


def test_sentences_alone_and_in_any_batch_are_equal():
    ctx = small_transformer()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 9, 8)).astype(np.float32)
    lengths = np.array([9, 4, 6], np.int32)
    together, _ = ctx.sentence_layers(tf.constant(x), tf.constant(lengths))
    for b in range(3):
        n = lengths[b]
        alone, _ = ctx.sentence_layers(tf.constant(x[b : b + 1, :n]), tf.constant([n]))
        for k in range(2):
            np.testing.assert_allclose(alone[k].numpy()[:, 0], together[k].numpy()[:, b, :n],
                                       rtol=0, atol=1e-6)


def test_lenient_config_json():
    text = '{"a": [1, 2,], "b": {"c": "x,}", "d": 3,},\n}'
    assert lenient_json(text, "c.json") == {"a": [1, 2], "b": {"c": "x,}", "d": 3}}
    with pytest.raises(ArchiveError, match=r"c\.json: config\.json is not valid JSON"):
        lenient_json('{"a": }', "c.json")


def _archive(tmp_path: Path, source: Path, change=None, drop: str | None = None,
             name: str = "edited.tar.gz") -> Path:
    """A copy of the fixture archive with its config changed or a member dropped."""
    work = tmp_path / "unpacked"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    with tarfile.open(source) as tar:
        tar.extractall(work, filter="data")
    if change is not None:
        config = lenient_json((work / "config.json").read_text(), "config.json")
        change(config)
        (work / "config.json").write_text(json.dumps(config))
    if drop:
        (work / drop).unlink()
    out = tmp_path / name
    with tarfile.open(out, "w:gz") as tar:
        for p in sorted(work.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(work)))
    return out


def test_archives_that_are_not_biLMs_are_refused(allennlp_fixture, tmp_path):
    source = allennlp_fixture / "model.tar.gz"

    def tagger(c):
        c["model"]["type"] = "simple_tagger"

    def lstm(c):
        c["model"]["contextualizer"]["type"] = "lstm"

    with pytest.raises(ArchiveError, match=r"is not a language model archive .*.simple_tagger."):
        import_allennlp(_archive(tmp_path, source, tagger), tmp_path / "a")
    with pytest.raises(ArchiveError, match="contextualizer 'lstm' is not supported"):
        import_allennlp(_archive(tmp_path, source, lstm), tmp_path / "b")
    with pytest.raises(ArchiveError, match=r"has no weights\.th"):
        read_archive(_archive(tmp_path, source, drop="weights.th"))
    data = source.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match=r"cut\.tar\.gz"):
        read_archive(cut)
    text = tmp_path / "text.tar.gz"
    text.write_text("not an archive")
    with pytest.raises(ArchiveError, match="not a readable model archive"):
        read_archive(text)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


TEXT = ("the light was good .\nand god saw the light .\nthe earth was without form .\n"
        "and darkness was upon the face of the deep .\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tcorpus")
    (d / "train").mkdir()
    for k in range(2):
        (d / "train" / f"s.{k}.txt").write_text(TEXT * 15)
    words = sorted(set(TEXT.split()))
    (d / "vocab.txt").write_text("\n".join(["<S>", "</S>", "<UNK>", *words]) + "\n")
    return {"train": d / "train" / "s.*", "vocab": d / "vocab.txt"}


TINY_TRANSFORMER = {
    **TINY_WIDE_TRANSFORMER_OPTIONS,
    "batch_size": 4, "n_negative_samples_batch": 8, "optimizer": "adam",
    "learning_rate_schedule": "noam", "learning_rate": 2.0, "warmup_steps": 10,
    "all_clip_norm_val": None,
}


def saved(ckpt: str) -> dict[str, np.ndarray]:
    return {n: tf.train.load_variable(ckpt, n) for n, _ in tf.train.list_variables(ckpt)
            if not n.startswith("_") and "save_counter" not in n}


@pytest.mark.slow
def test_a_transformer_trains_resumes_exactly_and_embeds(corpus, tmp_path):
    def start(save, n):
        return start_training(str(save), TINY_TRANSFORMER, str(corpus["train"]),
                              str(corpus["vocab"]), n_batches=n, seed=2,
                              checkpoint_minutes=None, progress=False)

    full = start(tmp_path / "full", 24)
    start(tmp_path / "split", 12)
    split = resume_training(str(tmp_path / "split"), n_batches=24, progress=False)
    a, b = saved(full), saved(split)
    assert sorted(a) == sorted(b)
    assert any(k.startswith("optimizer/") and ".Sm/" in k for k in a)  # Adam's slots
    for name in a:  # weights, Adam's m and v, the step: bit for bit
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    with open(tmp_path / "full" / "training_log.csv") as f:
        rows = [line.split(",") for line in f.read().split("\n")[1:] if line]
    assert len(rows) == 1
    ppl = evaluate_run(str(tmp_path / "full"), str(corpus["train"]), progress=False)
    assert ppl < 19  # learnt something: a uniform guess over the vocabulary is 19

    # export -> embed equals the checkpoint's own layer outputs
    out = tmp_path / "export" / "weights.hdf5"
    dump_weights(str(tmp_path / "full"), str(out))
    model = BidirectionalLanguageModel(out.parent / "options.json", out)
    sentences = [["the", "light", "was", "good", "."], ["and", "god", "saw"]]
    lm_out = model(Batcher(None, 10).batch_sentences(sentences))["lm_embeddings"].numpy()
    from bilm.training.runs import load_language_model

    lm = load_language_model(str(tmp_path / "full" / "options.json"), full)
    from bilm.data import UnicodeCharsVocabulary
    from bilm.data.sentences import sentence_batch

    batch = sentence_batch(UnicodeCharsVocabulary(str(corpus["vocab"]), 10), sentences)
    emb = lm.encoder.embed_tokens(tf.constant(batch["tokens_characters"]), shifted=False)
    layers, _ = lm.contextualizer.sentence_layers(emb, tf.constant(batch["lengths"]))
    # the two runs convolve different token sets (the CNN's groups and widths differ), so
    # values up to ~100 agree to float32 rounding: rtol 1e-6
    for i, s in enumerate(sentences):
        n = len(s)
        np.testing.assert_allclose(lm_out[i, 0, :n, :16], emb.numpy()[i, 1 : n + 1],
                                   rtol=1e-6, atol=1e-5)
        for k in range(2):
            expected = np.concatenate([layers[k].numpy()[0, i], layers[k].numpy()[1, i]], -1)
            np.testing.assert_allclose(lm_out[i, k + 1, :n], expected[1 : n + 1], rtol=1e-6,
                                       atol=1e-5)


@pytest.mark.slow
def test_every_surface_takes_a_transformer(tiny_transformer, tmp_path):
    """embed_sentences, the dump functions, the Keras layer and the SavedModel agree with the
    model's own call on a (random-weight) Transformer biLM."""
    from bilm import dump_bilm_embeddings, dump_token_embeddings
    from bilm.export import export_savedmodel
    from bilm.keras import ELMoEmbedding

    options_file, weight_file = tiny_transformer
    model = BidirectionalLanguageModel(options_file, weight_file)
    sentences = [["the", "light", "was", "good", "."], ["and", "god"], ["saw"]]
    ids = Batcher(None, 12).batch_sentences(sentences)
    reference = model(ids)["lm_embeddings"].numpy()
    for i, emb in enumerate(model.embed_sentences(sentences, batch_size=2)):
        n = len(sentences[i])
        np.testing.assert_allclose(emb, reference[i, :, :n], rtol=0, atol=1e-5)

    text = tmp_path / "in.txt"
    text.write_text("\n".join(" ".join(s) for s in sentences) + "\n")
    dump_bilm_embeddings(None, text, options_file, weight_file, tmp_path / "out.hdf5",
                         stateful=False, progress=False)
    with h5py.File(tmp_path / "out.hdf5", "r") as f:
        np.testing.assert_allclose(f["0"][...], reference[0, :, :5], rtol=0, atol=1e-5)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("the\nlight\ngod\n")
    dump_token_embeddings(vocab, options_file, weight_file, tmp_path / "tokens.hdf5",
                          progress=False)
    with h5py.File(tmp_path / "tokens.hdf5", "r") as f:
        np.testing.assert_allclose(f["embedding"][0], reference[0, 0, 0, :8], rtol=0, atol=1e-5)

    strings = tf.constant([" ".join(s) for s in sentences])
    layer = ELMoEmbedding(options_file, weight_file, output="transformer_outputs2")
    got = layer(strings).numpy()
    np.testing.assert_allclose(got[0, :5], reference[0, 2, :5], rtol=0, atol=1e-5)
    assert np.all(got[1, 2:] == 0)  # masked past the sentence's end
    export_savedmodel(options_file, weight_file, tmp_path / "sm")
    served = tf.saved_model.load(str(tmp_path / "sm")).signatures["default"](strings)
    assert sorted(served) == ["default", "elmo", "sequence_len", "transformer_outputs1",
                              "transformer_outputs2", "word_emb"]
    np.testing.assert_allclose(served["transformer_outputs2"].numpy(), got, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_the_command_line_with_a_transformer(allennlp_fixture, tmp_path):
    """import-allennlp, evaluate, score, export (--layers), info and embed, as a user runs
    them; then a transformer trained and resumed from the command line."""
    import subprocess
    import sys

    def bilm(*args):
        return subprocess.run([sys.executable, "-m", "bilm.cli", "-q", *map(str, args)],
                              capture_output=True, text=True, timeout=600)

    run, sentences = tmp_path / "run", allennlp_fixture / "sentences.txt"
    r = bilm("import-allennlp", allennlp_fixture / "model.tar.gz", run)
    assert r.returncode == 0 and r.stdout.startswith("checkpoint: "), r.stderr
    r = bilm("import-allennlp", allennlp_fixture / "model.tar.gz", run)
    assert r.returncode == 2 and "already holds a training run" in r.stderr
    r = bilm("import-allennlp", sentences, tmp_path / "other")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "not a readable model archive" in r.stderr
    with h5py.File(FIXTURE / "expected.hdf5", "r") as f:
        expected = float(f.attrs["perplexity"])
    r = bilm("evaluate", "--save-dir", run, "--test-prefix", sentences)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.split("perplexity:")[1]) == pytest.approx(expected, rel=1e-3)
    r = bilm("score", sentences, "--save-dir", run, "--output", tmp_path / "scores.tsv")
    assert r.returncode == 0, r.stderr
    # each sentence whole, full softmax: for a transformer the same as evaluate
    corpus = float(r.stdout.split("corpus perplexity:")[1].split()[0])
    assert corpus == pytest.approx(expected, rel=1e-3)
    r = bilm("export", "--save-dir", run, tmp_path / "model" / "weights.hdf5", "--layers", 2)
    assert r.returncode == 0, r.stderr
    options, weights = tmp_path / "model" / "options.json", tmp_path / "model" / "weights.hdf5"
    r = bilm("info", "--options", options, "--weights", weights)
    assert r.returncode == 0 and "transformer: 2 layers, dim 16, hidden 7, 8 heads" in r.stdout
    assert "the weights match the options" in r.stdout
    r = bilm("embed", sentences, tmp_path / "emb.hdf5", "--options", options, "--weights",
             weights)
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "emb.hdf5", "r") as f, \
            h5py.File(FIXTURE / "expected.hdf5", "r") as e:
        np.testing.assert_allclose(f["0"][1:], e["layers/0"][:2], rtol=0, atol=1e-5)
    r = bilm("embed", sentences, tmp_path / "x.hdf5", "--options", options, "--weights",
             weights, "--stateful")
    assert r.returncode == 2 and "stateless" in r.stderr

    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    (corpus_dir / "a.txt").write_text(TEXT * 20)
    vocab = tmp_path / "vocab.txt"
    assert bilm("vocab", corpus_dir / "*", vocab).returncode == 0
    tiny = tmp_path / "tiny.json"
    tiny.write_text(json.dumps({"encoder": {"dim": 16, "hidden_dim": 32, "n_layers": 1,
                                            "type": "transformer"},
                                "batch_size": 4, "n_negative_samples_batch": 4}))
    r = bilm("train", "--train-prefix", corpus_dir / "*", "--vocab", vocab, "--save-dir",
             tmp_path / "trained", "--preset", "transformer-tiny", "--options", tiny,
             "--n-batches", 6, "--seed", 1)
    assert r.returncode == 0, r.stderr
    r = bilm("resume", "--save-dir", tmp_path / "trained", "--n-batches", 8)
    assert r.returncode == 0 and r.stdout.strip().endswith("model-8"), r.stderr
    trained = json.loads((tmp_path / "trained" / "options.json").read_text())
    assert trained["encoder"]["n_layers"] == 1 and trained["optimizer"] == "adam"
