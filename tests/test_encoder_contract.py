"""The encoder contract: every registered encoder (the LSTM, the Transformer and a third one
defined and registered in tests/third_encoder.py, outside the package) trains, resumes bit
for bit, evaluates, scores, exports (``--layers`` too), embeds (stateless, every ``--layers``
/ ``--pool`` / ``--format``), and works in ``ELMoEmbedding``, ``bilm export-savedmodel`` and
``bilm info``, through the same commands and the same value checks.

Values, never only shapes: resumed and uninterrupted checkpoints equal bit for bit; exported
weights equal the checkpoint's and reload to its embeddings; each reduction equals its
formula over the full output; the Keras layer and the SavedModel equal the model; score's
numbers equal a log-softmax computed here.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tests.conftest import assert_f32_close
from tests.encoder_contract import (
    ENCODERS,
    PRESETS,
    SENTENCES,
    TrainedRun,
    bilm,
    checkpoint_values,
    contextualizer,
    make_corpus,
    read_scores,
    reference_embeddings,
    reference_logprobs,
    tiny_run_options,
)

N_BATCHES = 20


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("contract_corpus"))


@pytest.fixture(scope="module", params=ENCODERS)
def run(request, corpus, tmp_path_factory) -> TrainedRun:
    """The encoder trained from the command line: N batches at once, and N/2 then resumed to
    N; the full run exported with every layer and with the first only."""
    name = request.param
    d = tmp_path_factory.mktemp(f"contract_{name}")
    options = d / "tiny.json"
    options.write_text(json.dumps(tiny_run_options(name)))

    def train(save, n):
        r = bilm("train", "--train-prefix", corpus["train"], "--vocab", corpus["vocab"],
                 "--save-dir", save, "--preset", PRESETS[name], "--options", options,
                 "--n-batches", n, "--seed", 7).ok()
        assert r.out.strip() == f"checkpoint: {save}/model-{n}"

    train(d / "full", N_BATCHES)
    train(d / "split", N_BATCHES // 2)
    r = bilm("resume", "--save-dir", d / "split", "--n-batches", N_BATCHES).ok()
    assert r.out.strip() == f"checkpoint: {d}/split/model-{N_BATCHES}"
    export, export_one = d / "export" / "weights.hdf5", d / "export_one" / "weights.hdf5"
    bilm("export", "--save-dir", d / "full", export).ok()
    bilm("export", "--save-dir", d / "full", export_one, "--layers", 1).ok()
    return TrainedRun(name, corpus, d / "full", d / "split", export, export_one)


def test_the_registry_lists_every_encoder():
    from bilm.encoders import get_spec, names
    from bilm.presets import PRESETS as ALL_PRESETS
    from tests.conftest import ROOT

    for name in ENCODERS:
        assert name in names()
        spec = get_spec(name)
        assert spec.name == name and spec.options.type == name
        assert PRESETS[name] in spec.presets and PRESETS[name] in ALL_PRESETS
    # the third encoder and its token embedder are known to the package only through their
    # registrations
    from bilm.embedders import get_spec as get_embedder
    from tests import third_embedder

    assert get_embedder(third_embedder.NAME).options is third_embedder.CharBagOptions
    for path in (ROOT / "bilm").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for third in (ENCODERS[-1], third_embedder.NAME):
            assert f'"{third}"' not in text and f"'{third}'" not in text, path
        assert "third_encoder" not in text and "third_embedder" not in text, path


# dropout on every part an encoder drops (the transformer's is on by default)
DROPOUT = {"lstm": {}, "transformer": {}, ENCODERS[-1]: {"dropout": 0.2}}


@pytest.mark.parametrize("name", ENCODERS)
def test_each_direction_reads_only_its_side(name):
    """Forward position i depends on tokens <= i only, backward on tokens >= i (a language
    model that saw its target would learn nothing), padding on neither; each position on its
    own token."""
    import tensorflow as tf

    ctx = contextualizer(name)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 7, ctx.width)).astype(np.float32)
    lengths = tf.constant([6])  # position 6 is padding
    base, _ = ctx.sentence_layers(tf.constant(x), lengths)
    assert len(base) == ctx.n_layers
    for j in range(7):
        changed = x.copy()
        changed[0, j] += rng.normal(size=ctx.width)
        out, _ = ctx.sentence_layers(tf.constant(changed), lengths)
        for k in range(ctx.n_layers):
            assert out[k].shape == (2, 1, 7, ctx.width)
            diff = np.abs(out[k].numpy() - base[k].numpy()).max(axis=-1)[:, 0]  # (d, T)
            for i in range(6):
                moved_fwd, moved_bwd = diff[0, i] > 1e-6, diff[1, i] > 1e-6
                assert not moved_fwd or j <= i, (k, i, j, "forward")
                assert not moved_bwd or i <= j < 6, (k, i, j, "backward")
                if i == j:
                    assert moved_fwd and moved_bwd, (k, i, "its own token")


@pytest.mark.parametrize("name", ENCODERS)
def test_dropout_follows_the_global_row(name):
    """Replicas (``rows``) drop as one replica holding the whole batch: the two halves of a
    batch, each placed at its rows, give the whole batch's outputs."""
    import tensorflow as tf

    ctx = contextualizer(name, input_dropout=0.1, **DROPOUT[name])
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(4, 6, ctx.width)).astype(np.float32))
    lengths, seed = tf.constant([6, 4, 5, 6]), tf.constant([3, 4], tf.int64)
    whole, _ = ctx.sentence_layers(x, lengths, training=True, seed=seed)
    plain, _ = ctx.sentence_layers(x, lengths)
    assert np.abs(whole[-1].numpy() - plain[-1].numpy()).max() > 1e-3  # dropout is on
    halves = [ctx.sentence_layers(x[a : a + 2], lengths[a : a + 2], training=True, seed=seed,
                                  rows=(a, 4))[0] for a in (0, 2)]
    for k in range(ctx.n_layers):
        joined = np.concatenate([halves[0][k].numpy(), halves[1][k].numpy()], axis=1)
        assert_f32_close(joined, whole[k].numpy(), err_msg=f"layer {k}")


def test_trains_and_resumes_bit_for_bit(run):
    full = checkpoint_values(f"{run.full}/model-{N_BATCHES}")
    split = checkpoint_values(f"{run.split}/model-{N_BATCHES}")
    assert sorted(full) == sorted(split)
    for name in full:  # weights, optimizer slots, the step (and an LSTM's carried states)
        np.testing.assert_array_equal(full[name], split[name], err_msg=name)
    assert full["global_step/.ATTRIBUTES/VARIABLE_VALUE"] == N_BATCHES
    # it trained: the second half moved every weight of the encoder, and its batches' loss
    # (the training log's perplexity of each run's batches) went down
    half = checkpoint_values(f"{run.split}/model-{N_BATCHES // 2}")
    encoder = [n for n in full if n.startswith("variables/encoder.")]
    assert encoder
    for name in encoder:
        assert not np.array_equal(full[name], half[name]), name
    log = (run.split / "training_log.csv").read_text().split("\n")
    assert log[0].startswith("batch,train_perplexity,")
    rows = [line.split(",") for line in log[1:] if line]
    assert [int(r[0]) for r in rows] == [N_BATCHES // 2, N_BATCHES]
    assert float(rows[1][1]) < float(rows[0][1]), rows


def test_evaluate_and_score_agree_with_a_log_softmax_computed_here(run, tmp_path):
    from bilm.options import load_options

    r = bilm("evaluate", "--save-dir", run.full, "--test-prefix", run.corpus["heldout"],
             "--batch-size", 2).ok()
    ppl = float(r.out.split("perplexity:")[1])
    scores = tmp_path / "scores.tsv"
    r = bilm("score", run.corpus["heldout"], "--save-dir", run.full, "--output", scores).ok()
    corpus_ppl = float(r.out.split("corpus perplexity:")[1].split()[0])
    header, rows = read_scores(scores)
    assert header == ["line", "n_tokens", "logprob_forward", "logprob_backward",
                      "perplexity_forward", "perplexity_backward", "perplexity"]
    np.testing.assert_array_equal(rows[:, 0], np.arange(len(SENTENCES)))
    np.testing.assert_array_equal(rows[:, 1], [len(s) for s in SENTENCES])
    # each direction's log-probability: the checkpoint's top layer through a float64
    # log-softmax, here (printed to 4 decimals)
    loaded = run.loaded()
    expected = reference_logprobs(loaded.lm, loaded.vocab, SENTENCES)
    np.testing.assert_allclose(rows[:, 2:4], expected, rtol=0, atol=2e-4)
    # the perplexities are exp of the mean negative log-probability per prediction
    n = rows[:, 1] + 1
    np.testing.assert_allclose(rows[:, 4], np.exp(-rows[:, 2] / n), rtol=2e-4)
    np.testing.assert_allclose(rows[:, 5], np.exp(-rows[:, 3] / n), rtol=2e-4)
    np.testing.assert_allclose(rows[:, 6], np.exp(-rows[:, 2:4].mean(1) / n), rtol=2e-4)
    assert corpus_ppl == pytest.approx(np.exp(-rows[:, 2:4].mean(1).sum() / n.sum()), rel=2e-4)
    assert 1.0 < ppl < 1e3
    if load_options(run.full / "options.json").encoder.protocol == "sentences":
        # whole sentences, full softmax: evaluation is score's corpus perplexity over the
        # lines that hold a sentence (evaluation reads no blank line)
        text = rows[:, 1] > 0
        assert ppl == pytest.approx(np.exp(-rows[text, 2:4].mean(1).sum() / n[text].sum()),
                                    rel=1e-3)
    else:  # streams with the state carried vs each sentence from zeros: close, not equal
        assert 0.5 < corpus_ppl / ppl < 2.0, (corpus_ppl, ppl)


def test_export_writes_the_checkpoints_weights_and_reloads_to_its_values(run):
    import tensorflow as tf

    from bilm import Batcher
    from bilm.nn.layout import weight_table

    lm = run.loaded().lm
    table = weight_table(lm.encoder)
    with h5py.File(run.export, "r") as f:
        stored = set()
        f.visititems(lambda k, v: stored.add(k) if isinstance(v, h5py.Dataset) else None)
        assert {e.h5_key for e in table} <= stored
        for entry in table:  # bit for bit (char_embed: the file has no padding row)
            value = f[entry.h5_key][...]
            np.testing.assert_array_equal(value, entry.get()[: len(value)],
                                          err_msg=entry.h5_key)
    # the exported model's embeddings are the checkpoint network's own (<= 1e-6): its token
    # vectors and each direction's layers, <S> and </S> cut off here
    expected = run.reference()
    ids = Batcher(None, run.max_chars()).batch_sentences(SENTENCES)
    lengths = np.array([len(s) + 2 for s in SENTENCES], np.int32)
    emb = lm.encoder.embed_unique_tokens(tf.constant(ids), shifted=True)
    layers, _ = lm.contextualizer.sentence_layers(emb, tf.constant(lengths))
    emb, layers = emb.numpy(), [layer.numpy() for layer in layers]
    for i, s in enumerate(SENTENCES):
        cut = slice(1, len(s) + 1)
        own = [np.concatenate([emb[i, cut]] * 2, -1),
               *(np.concatenate([out[0, i, cut], out[1, i, cut]], -1) for out in layers)]
        assert_f32_close(expected[i], np.stack(own), ulps=4)


def test_export_layers_keeps_the_first_layers_values(run):
    from bilm.options import load_options

    options_one = load_options(run.export_one.parent / "options.json")
    assert options_one.n_layers == 1 and options_one.encoder.type == run.name
    full = run.reference()
    one = reference_embeddings(run.export_one.parent / "options.json", run.export_one,
                               SENTENCES)
    for a, b in zip(full, one, strict=True):
        assert b.shape[0] == 2
        np.testing.assert_allclose(b, a[:2], rtol=0, atol=1e-6)


def _read(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][...] for k in f}


LAYERS, POOLS, FORMATS = ("all", "top", "average"), ("none", "mean", "max"), ("bilm", "allennlp")
# every value of each flag, in three runs (the first batched, the others a sentence a batch:
# XLA compiles only batches of several sentences, once per model, which costs seconds)
EMBED_CASES = [("all", "none", "bilm"), ("top", "mean", "allennlp"), ("average", "max", "bilm")]
# every pair of values of two flags (the slow tier)
EMBED_PAIRS = [(layers, pool, FORMATS[(i + j) % 2]) for i, layers in enumerate(LAYERS)
               for j, pool in enumerate(POOLS)]


def _embed_cases(run: TrainedRun, directory, cases) -> None:
    """``bilm embed`` with each (--layers, --pool, --format): every sentence's output is the
    formula's over the model's own, each sentence embedded alone (stateless: the batching
    changes nothing)."""
    text = directory / "in.txt"
    text.write_text("".join(" ".join(s) + "\n" for s in SENTENCES))
    for case, (layers, pool, layout) in enumerate(cases):
        out = directory / f"{layers}_{pool}_{layout}.hdf5"
        bilm("embed", text, out, "--options", run.options_file, "--weights", run.export,
             "--layers", layers, "--pool", pool, "--format", layout,
             "--batch-size", 1 if case else 4).ok()
        got = _read(out)
        if layout == "allennlp":
            index = json.loads(got.pop("sentence_to_index")[0])
            assert index == {" ".join(s): str(i) for i, s in enumerate(SENTENCES)}
        assert sorted(got) == sorted(str(i) for i in range(len(SENTENCES)))
        for i, e in enumerate(run.reference()):  # (n_layers + 1, n, 2 * dim)
            picked = {"all": e, "top": e[-1], "average": e.mean(axis=0)}[layers]
            token_axis = 1 if layers == "all" else 0
            if pool == "none":
                want = picked
            elif e.shape[1] == 0:  # a blank line pools to zeros
                want = np.zeros(np.delete(picked.shape, token_axis), np.float32)
            else:
                want = getattr(picked, pool)(axis=token_axis)
            assert got[str(i)].dtype == np.float32
            assert got[str(i)].shape == want.shape, (layers, pool, i)
            assert_f32_close(got[str(i)], want, ulps=4, err_msg=f"{layers} {pool} {i}")


def test_embed_is_stateless_for_every_layers_pool_and_format(run, tmp_path):
    _embed_cases(run, tmp_path, EMBED_CASES)


@pytest.mark.slow
def test_embed_every_pair_of_layers_pool_and_format(run, tmp_path):
    _embed_cases(run, tmp_path, [c for c in EMBED_PAIRS if c not in EMBED_CASES])


def test_elmo_embedding_and_the_savedmodel_equal_the_model(run, tmp_path):
    import tensorflow as tf

    from bilm.keras import ELMoEmbedding

    strings = tf.constant([" ".join(s) for s in SENTENCES])
    expected = run.reference()
    layer = ELMoEmbedding(run.options_file, run.export)
    out = {k: v.numpy() for k, v in layer.layer_outputs(strings).items()}
    names = layer.layer_names
    assert len(names) == expected[0].shape[0] - 1
    dim = expected[0].shape[-1] // 2
    for i, e in enumerate(expected):
        n = e.shape[1]
        assert_f32_close(out["word_emb"][i, :n], e[0, :, :dim], ulps=4)
        for k, name in enumerate(names, start=1):
            assert_f32_close(out[name][i, :n], e[k], ulps=4, err_msg=name)
            assert np.all(out[name][i, n:] == 0)  # zero past the sentence's end
        # the initial scalar mix: the mean of the layers, gamma 1; default: its token mean
        assert_f32_close(out["elmo"][i, :n], e.mean(axis=0), ulps=4)
        mean = e.mean(axis=0).mean(axis=0) if n else np.zeros(e.shape[-1], np.float32)
        assert_f32_close(out["default"][i], mean, ulps=4)
    np.testing.assert_array_equal(out["sequence_len"], [len(s) for s in SENTENCES])

    sm = tmp_path / "savedmodel"
    bilm("export-savedmodel", sm, "--options", run.options_file, "--weights", run.export).ok()
    served = tf.saved_model.load(str(sm)).signatures["default"](strings=strings)
    assert sorted(served) == sorted(["default", "elmo", "sequence_len", "word_emb", *names])
    # the SavedModel's graph and the eager layer round in their own order: float32 rounding
    # of the values' scale (an absolute 1e-6 is below one ulp of values near 30, and a loaded
    # CI run missed it by 1 ulp)
    assert_f32_close(served["default"].numpy(), out["default"], ulps=4)
    for name in ("elmo", "word_emb", *names):
        assert_f32_close(served[name].numpy(), out[name], ulps=4, err_msg=name)


def test_info_describes_the_model_and_checks_the_weights(run):
    from bilm.encoders import get_spec
    from bilm.nn.layout import weight_table
    from bilm.options import load_options

    options = load_options(run.options_file)
    # the options round-trip: the file's encoder section is the options' own
    written = json.loads(run.options_file.read_text())
    section = dict(written.get("encoder", written.get("lstm")))
    assert section.pop("type", run.name) == run.name
    assert get_spec(run.name).options.from_dict(section).to_dict() == section
    r = bilm("info", "--options", run.options_file, "--weights", run.export).ok()
    spec = get_spec(run.name)
    if spec.describe is not None:
        assert spec.describe(options.encoder) in r.out
    from bilm.embedders import get_spec as get_embedder

    embedder = get_embedder(options.embedder_type)  # char_cnn, or the third one's char_bag
    assert embedder.describe_options(options.embedder_options) in r.out.splitlines()
    assert "the weights match the options" in r.out
    # every stored parameter counted once (an alias names the same values again)
    sizes = {}

    def size(key, value) -> None:  # (a visitor returning a value would stop the visit)
        if isinstance(value, h5py.Dataset):
            sizes[key] = value.size

    with h5py.File(run.export, "r") as f:
        f.visititems(size)
    from bilm import BidirectionalLanguageModel

    model = BidirectionalLanguageModel(run.options_file, run.export, stateful=False)
    keys = [e.h5_key for e in weight_table(model.encoder)]
    assert int(r.out.split("parameters:")[1].split()[0].replace(",", "")) == sum(
        sizes[k] for k in keys)
