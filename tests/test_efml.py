"""ELMoForManyLangs models (bilm.models.efml, bilm.embedders.efml) against ELMoForManyLangs'
own Embedder.sents2elmo: tests/data/efml was made by benchmarks/efml_side.py in EFML's own
environment, on two random-weight models in its format (see tests/data/efml/README.md)."""

import json
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from bilm import BidirectionalLanguageModel
from tests.conftest import bilm

DATA = Path(__file__).parent / "data" / "efml"
SENTENCES = json.loads((DATA / "sentences.json").read_text(encoding="utf-8"))
CONFIGS = ("word_char", "char_only")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("BILM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def expected(config: str):
    return np.load(DATA / f"expected_{config}.npz")


@pytest.mark.parametrize("config", CONFIGS)
def test_ids_equal_efml_create_one_batch(config):
    """Its char.dic ids, the <bow>/<eow> swap, <oov>, <bos>/<eos> as one character, tokens
    cut to max_characters - 2 (before the word lookup too)."""
    lm = BidirectionalLanguageModel.from_model(DATA / config, stateful=False)
    want = expected(config)
    for i, sentence in enumerate(SENTENCES):
        ids = lm.batcher.batch_sentences([sentence])[0] - 1
        chars = ids[:, 1:] if config == "word_char" else ids
        np.testing.assert_array_equal(chars, want[f"char_ids_sent_{i}"], err_msg=str(i))
        if config == "word_char":
            np.testing.assert_array_equal(ids[:, 0], want[f"word_ids_sent_{i}"])


@pytest.mark.parametrize("config", CONFIGS)
def test_every_output_layer_equals_sents2elmo(config):
    """sents2elmo(output_layer=0, 1, 2, -1 average, -2 all) of a fresh Embedder (one batch,
    zero state): our stateless embedding, and our stateful model's first batch."""
    want = expected(config)
    lm = BidirectionalLanguageModel.from_model(DATA / config, stateful=False)
    got = list(lm.embed_sentences(SENTENCES, batch_size=3))
    stateful = BidirectionalLanguageModel.from_model(DATA / config, max_batch_size=8)
    batch = stateful(stateful.batcher.batch_sentences(SENTENCES))["lm_embeddings"].numpy()
    for i, sentence in enumerate(SENTENCES):
        n = len(sentence)
        for ours in (got[i], batch[i, :, :n]):
            for layer in (0, 1, 2):
                np.testing.assert_allclose(ours[layer], want[f"layer_{layer}_sent_{i}"],
                                           rtol=0, atol=1e-5, err_msg=f"{i}, {layer}")
            np.testing.assert_allclose(ours.mean(0), want[f"layer_-1_sent_{i}"], rtol=0,
                                       atol=1e-5)
            np.testing.assert_allclose(ours, want[f"layer_-2_sent_{i}"], rtol=0, atol=1e-5)
    assert max(np.abs(want[f"layer_2_sent_{i}"]).max() for i in range(len(SENTENCES))) > 1


def test_stateful_second_call_equals_efml_carried_state():
    """EFML carries each batch row's LSTM state to the next call (rows in its
    length-descending order); our stateful model does the same given the rows in that order."""
    want = expected("word_char")
    order = sorted(range(len(SENTENCES)), key=lambda i: -len(SENTENCES[i]))
    rows = [SENTENCES[i] for i in order]
    lm = BidirectionalLanguageModel.from_model(DATA / "word_char", max_batch_size=8)
    lm(lm.batcher.batch_sentences(rows))
    second = lm(lm.batcher.batch_sentences(rows))["lm_embeddings"].numpy()
    for row, i in enumerate(order):
        n = len(SENTENCES[i])
        np.testing.assert_allclose(second[row, :, :n], want[f"second_call_layer_-2_sent_{i}"],
                                   rtol=0, atol=1e-5)
        assert np.abs(second[row, 1:, :n] - want[f"layer_-2_sent_{i}"][1:]).max() > 1e-2


# the sentences a text file can carry (one holds a token with U+3000, a space to str.split)
IN_TEXT = [i for i, s in enumerate(SENTENCES) if " ".join(s).split() == s]


def _text(tmp_path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("".join(" ".join(SENTENCES[i]) + "\n" for i in IN_TEXT), encoding="utf-8")
    return path


@pytest.mark.parametrize("config", CONFIGS)
def test_embed_command_layers_and_pools(tmp_path, config):
    want = expected(config)
    text = _text(tmp_path)
    for layers, pool, key in (("all", "none", "-2"), ("average", "none", "-1"),
                              ("top", "mean", "2")):
        out = tmp_path / f"{layers}-{pool}.hdf5"
        bilm("embed", text, out, "--model", DATA / config, "--layers", layers, "--pool", pool,
             "--format", "allennlp").ok()
        with h5py.File(out) as f:
            assert "sentence_to_index" in f
            assert len(IN_TEXT) == len(SENTENCES) - 1
            for line, i in enumerate(IN_TEXT):
                ref = want[f"layer_{key}_sent_{i}"]
                ref = ref.mean(0) if pool == "mean" else ref
                np.testing.assert_allclose(f[str(line)][()], ref, rtol=0, atol=1e-5)


def test_import_efml_info_dump_tokens_and_zip(tmp_path):
    out = tmp_path / "imported"
    bilm("import-efml", DATA / "word_char", out).ok()
    options = json.loads((out / "options.json").read_text(encoding="utf-8"))
    assert options["token_embedder"]["type"] == "efml_cnn"
    assert options["lstm"]["use_skip_connections"] is True
    info = bilm("info", "--model", out).ok().out
    assert "efml_cnn (ELMoForManyLangs)" in info and "the weights match the options" in info
    info = bilm("info", "--model", DATA / "word_char").ok().out
    assert "family: ELMoForManyLangs" in info and "vocabulary: 51 tokens" in info
    # the context-independent layer of a vocabulary: layer 0's first half
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("The\ncat\nZürich\n", encoding="utf-8")
    bilm("dump-tokens", vocab, tmp_path / "t.hdf5", "--model", DATA / "word_char").ok()
    want = expected("word_char")
    with h5py.File(tmp_path / "t.hdf5") as f:
        tokens = f["embedding"][()]
    index = {t: (i, j) for i, s in enumerate(SENTENCES) for j, t in enumerate(s)}
    for row, token in enumerate(("The", "cat", "Zürich")):
        if token in index:
            i, j = index[token]
            np.testing.assert_allclose(tokens[row], want[f"layer_0_sent_{i}"][j, :8], atol=1e-5)
    # an NLPL archive of an EFML folder, as the repository ships them
    archive = tmp_path / "144.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in (DATA / "char_only").iterdir():
            z.write(path, f"char_only/{path.name}")
        z.writestr("char_only/meta.json", json.dumps({"id": 144, "corpus": "test"}))
    lm = BidirectionalLanguageModel.from_model(archive, stateful=False)
    got = list(lm.embed_sentences(SENTENCES[:2]))
    np.testing.assert_allclose(got[1], expected("char_only")["layer_-2_sent_1"], atol=1e-5)
    info = bilm("info", "--model", archive).ok().out
    assert "ELMoForManyLangs (HIT-SCIR) in NLPL repository archive" in info
    assert "meta.json id: 144" in info


@pytest.mark.parametrize("damage, words", [
    (lambda d: (d / "encoder.pkl").write_bytes((d / "encoder.pkl").read_bytes()[:300]),
     "encoder.pkl"),
    (lambda d: (d / "char.dic").write_text("a\tb\tc\n", encoding="utf-8"), "char.dic"),
    (lambda d: (d / "config.json").write_text('{"config_path": "nowhere.json"}'),
     "nowhere.json"),
    (lambda d: (d / "token_embedder.pkl").write_bytes(
        b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03."),
     "token_embedder.pkl"),
])
def test_damaged_folders_are_one_line(tmp_path, damage, words):
    folder = tmp_path / "model"
    shutil.copytree(DATA / "word_char", folder)
    damage(folder)
    out = bilm("info", "--model", folder)
    assert out.code == 2 and words in out.err and len(out.err.strip().splitlines()) == 1, out.err


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
def test_keras_layer_and_savedmodel(tmp_path, config):
    """ELMoEmbedding(model=EFML folder) makes EFML's ids in the graph (the <U+3000> token,
    <oov> characters, cut tokens) and equals sents2elmo; so does the exported SavedModel."""
    import tensorflow as tf

    from bilm.keras import ELMoEmbedding

    want = expected(config)
    width = max(map(len, SENTENCES))
    tokens = tf.constant([s + [""] * (width - len(s)) for s in SENTENCES])
    lengths = tf.constant([len(s) for s in SENTENCES])
    layer = ELMoEmbedding(model=DATA / config, output="lstm_outputs2")
    out = layer.layer_outputs([tokens, lengths])
    for i, s in enumerate(SENTENCES):
        n = len(s)
        np.testing.assert_allclose(out["word_emb"].numpy()[i, :n],
                                   want[f"layer_0_sent_{i}"][:, :8], rtol=0, atol=1e-5)
        np.testing.assert_allclose(out["lstm_outputs2"].numpy()[i, :n],
                                   want[f"layer_2_sent_{i}"], rtol=0, atol=1e-5)
    if config == "char_only":
        return
    saved = tmp_path / "saved"
    bilm("export-savedmodel", saved, "--model", DATA / config).ok()
    module = tf.saved_model.load(str(saved))
    served = module.signatures["tokens"](tokens=tokens, sequence_len=lengths)
    for i, s in enumerate(SENTENCES):
        np.testing.assert_allclose(served["lstm_outputs1"].numpy()[i, : len(s)],
                                   want[f"layer_1_sent_{i}"], rtol=0, atol=1e-5)


def test_training_an_efml_model_is_refused_in_one_line(tmp_path):
    text = _text(tmp_path)
    out = bilm("train", "--init-from", DATA / "word_char", "--train-prefix", text, "--vocab",
               DATA / "word_char" / "word.dic", "--save-dir", tmp_path / "run")
    assert out.code == 2 and "does not train" in out.err and len(out.err.splitlines()) == 1
