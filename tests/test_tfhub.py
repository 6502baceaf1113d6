"""TF Hub v1 ELMo modules (bilm.models.tfhub) against the outputs of the module's own graph:
tests/data/tfhub was made by benchmarks/tfhub_side.py from bilm-tf's graph code, exported as
DeepPavlov's elmo2tfhub exports it (see tests/data/tfhub/README.md)."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow as tf

from bilm.keras import ELMoEmbedding
from tests.conftest import bilm

DATA = Path(__file__).parent / "data" / "tfhub"
MODULE = DATA / "module"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("BILM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _tokens():
    sentences = json.loads((DATA / "sentences.json").read_text())
    expected = np.load(DATA / "expected.npz")
    lengths = expected["sequence_len"]
    width = int(lengths.max())
    tokens = np.array([s + [""] * (width - len(s)) for s in sentences], dtype=object)
    return tf.constant(tokens.astype(str)), tf.constant(lengths.astype(np.int32)), expected


def _mixed(lm_embeddings, mix):
    w = np.exp(mix["weights"]) / np.exp(mix["weights"]).sum()
    return mix["gamma"] * np.einsum("k,bktd->btd", w, lm_embeddings)


def test_module_outputs_equal_its_own_graph():
    """Every output of the module's ``tokens`` signature (first call: zero state) from the
    imported weights and mix, to 1e-5 on the real tokens."""
    from bilm.inference.language_model import BidirectionalLanguageModel
    from bilm.models import open_model

    _, lengths, expected = _tokens()
    mix = open_model(MODULE).mix
    lm = BidirectionalLanguageModel.from_model(MODULE, stateful=False)
    layers = lm(expected["bilm_tf/char_ids"])["lm_embeddings"].numpy()
    outputs = {"word_emb": layers[:, 0, :, :8], "lstm_outputs1": layers[:, 1],
               "lstm_outputs2": layers[:, 2], "elmo": _mixed(layers, mix)}
    for name, got in outputs.items():
        want = expected[f"tokens/{name}"]
        assert np.abs(want).max() > 0.5  # not a trivial reference
        for i, n in enumerate(lengths.numpy()):  # real tokens (the module leaves padding as is)
            np.testing.assert_allclose(got[i, :n], want[i, :n], rtol=0, atol=1e-5,
                                       err_msg=f"{name}, sentence {i}")
    # the module's 'default' is the mean of the mix without gamma (DeepPavlov's
    # weight_layers), ours the mean of 'elmo': the same up to gamma
    means = np.stack([outputs["elmo"][i, :n].mean(0) for i, n in enumerate(lengths.numpy())])
    np.testing.assert_allclose(means / mix["gamma"], expected["tokens/default"], atol=1e-5)


@pytest.mark.parametrize("output", ["elmo", "word_emb", "lstm_outputs1", "lstm_outputs2"])
def test_keras_layer_with_the_modules_mix(output):
    """ELMoEmbedding(model=module) starts from the module's mix. Its LSTM runs the same
    arithmetic in another order, which this random model amplifies (1.1e-4 from
    BidirectionalLanguageModel on sentence 1, measured 2026-12-02): 3e-4 here."""
    tokens, lengths, expected = _tokens()
    got = ELMoEmbedding(model=MODULE, output=output)([tokens, lengths]).numpy()
    want = expected[f"tokens/{output}"]
    for i, n in enumerate(lengths.numpy()):
        np.testing.assert_allclose(got[i, :n], want[i, :n], rtol=0, atol=3e-4,
                                   err_msg=f"{output}, sentence {i}")


def test_the_mix_is_the_modules_and_the_layers_equal_bilm_tf_stateless():
    from bilm.inference.language_model import BidirectionalLanguageModel
    from bilm.models import open_model

    files = open_model(MODULE)
    assert files.family == "tfhub"
    np.testing.assert_allclose(files.mix["weights"], [0.3, -0.2, 0.5], rtol=1e-6)
    assert files.mix["gamma"] == pytest.approx(1.7)
    expected = np.load(DATA / "expected.npz")
    lm = BidirectionalLanguageModel.from_model(MODULE, stateful=False)
    out = lm(expected["bilm_tf/char_ids"])
    got = out["lm_embeddings"].numpy()
    for i, n in enumerate(expected["sequence_len"]):
        np.testing.assert_allclose(got[i, :, :n], expected["bilm_tf/lm_embeddings"][i, :, :n],
                                   rtol=0, atol=1e-5)


def _rewrite(module: Path, out: Path, rename, extra: dict | None = None) -> Path:
    """A copy of ``module`` whose checkpoint names are ``rename(name)`` (None drops one)."""
    shutil.copytree(module, out)
    shutil.rmtree(out / "variables")
    reader = tf.train.load_checkpoint(str(module / "variables" / "variables"))
    values = {rename(n): reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}
    values.update(extra or {})
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.Variable(v, name=n) for n, v in values.items()
                     if n is not None]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(out / "variables" / "variables"), write_meta_graph=False)
    return out


def _google_names(name: str) -> str:
    """Another scope prefix, the older LSTM naming, Google's aggregation names."""
    name = name.replace("rnn/lstm_cell/projection/kernel", "LSTMCell/W_P_0")
    name = name.replace("rnn/lstm_cell/kernel", "LSTMCell/W_0")
    name = name.replace("rnn/lstm_cell/bias", "LSTMCell/B")
    name = name.replace("aggregation/elmo_output_ELMo_W", "aggregation/weights")
    name = name.replace("aggregation/elmo_output_ELMo_gamma", "aggregation/scaling")
    return "module/" + name


def test_any_scope_and_either_lstm_naming_give_the_same_weights(tmp_path):
    from bilm.models import open_model

    renamed = _rewrite(MODULE, tmp_path / "google", _google_names)
    a, b = open_model(MODULE), open_model(renamed)
    assert a.mix == b.mix
    with h5py.File(a.weight_file) as fa, h5py.File(b.weight_file) as fb:
        keys = []
        fa.visititems(lambda k, v: keys.append(k) if isinstance(v, h5py.Dataset) else None)
        assert "RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_P_0" in keys and len(keys) == 25
        for k in keys:
            np.testing.assert_array_equal(fa[k][()], fb[k][()], err_msg=k)
        assert fa["char_embed"].shape == (261, 4)  # the module's padding row 0 left out
    assert json.loads(Path(a.options_file).read_text()) == json.loads(
        Path(b.options_file).read_text())


def test_import_tfhub_command_and_refusals(tmp_path):
    out = tmp_path / "imported"
    done = bilm("import-tfhub", MODULE, out).ok()
    assert "weights.hdf5" in done.out
    options = json.loads((out / "options.json").read_text())
    assert options["lstm"] == {"dim": 16, "projection_dim": 8, "n_layers": 2, "cell_clip": 3,
                               "proj_clip": 3, "use_skip_connections": True}
    assert options["char_cnn"]["filters"] == [[1, 4], [2, 8], [3, 8]]
    assert json.loads((out / "mix.json").read_text())["gamma"] == pytest.approx(1.7)
    info = bilm("info", "--model", out).ok().out
    assert "the weights match the options" in info
    again = bilm("import-tfhub", MODULE, out)
    assert again.code == 2 and "--overwrite" in again.err
    strange = _rewrite(MODULE, tmp_path / "strange", lambda n: n,
                       extra={"bilm/mystery/kernel": np.zeros(3, np.float32)})
    refused = bilm("info", "--model", strange)
    assert refused.code == 2 and "cannot map 1 variable(s)" in refused.err
    assert "bilm/mystery/kernel" in refused.err and len(refused.err.strip().splitlines()) == 1
    broken = tmp_path / "broken"
    shutil.copytree(MODULE, broken)
    for data in (broken / "variables").glob("variables.data-*"):
        data.write_bytes(data.read_bytes()[:100])
    damaged = bilm("info", "--model", broken)
    assert damaged.code == 2 and len(damaged.err.strip().splitlines()) == 1, damaged.err
    assert "truncated or damaged" in damaged.err  # refused before any value is read


@pytest.mark.slow
def test_embed_and_savedmodel_of_a_module(tmp_path):
    """bilm embed --model MODULE gives the module's layers; export-savedmodel --model MODULE
    serves its 'elmo' with the module's mix."""
    _, lengths, expected = _tokens()
    sentences = json.loads((DATA / "sentences.json").read_text())
    text = tmp_path / "in.txt"
    text.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
    bilm("embed", text, tmp_path / "e.hdf5", "--model", MODULE).ok()
    with h5py.File(tmp_path / "e.hdf5") as f:
        for i, n in enumerate(lengths.numpy()):
            np.testing.assert_allclose(f[str(i)][1], expected["tokens/lstm_outputs1"][i, :n],
                                       rtol=0, atol=1e-5)
    bilm("export-savedmodel", tmp_path / "saved", "--model", MODULE).ok()
    served = tf.saved_model.load(str(tmp_path / "saved")).signatures["default"](
        tf.constant([" ".join(s) for s in sentences]))
    for i, n in enumerate(lengths.numpy()):
        np.testing.assert_allclose(served["elmo"].numpy()[i, :n],
                                   expected["default_sig/elmo"][i, :n], rtol=0, atol=3e-4)
