"""bilm train --init-from: a run started from a trained model (bilm-tf's HDF5 weights, an
AllenNLP archive, one of our runs) on another vocabulary, frozen parts, held-out
evaluation with the best checkpoint kept, early stopping, resume, and one-line errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tests.conftest import FIXTURES, SHARED, TINY_OPTIONS, assert_f32_close, bilm, need_shared

TRAIN = FIXTURES / "train"
ARCHIVE = SHARED / "fixtures" / "allennlp-transformer" / "model.tar.gz"
# few negatives (the vocabularies are tiny), no XLA (its compile time dominates tiny runs)
TRAINING = {"batch_size": 4, "unroll_steps": 5, "n_negative_samples_batch": 8,
            "jit_compile": False}
SPECIALS = ["<S>", "</S>", "<UNK>"]


def _write(path, data) -> str:
    path.write_text(json.dumps(data) if isinstance(data, dict) else "\n".join(data) + "\n")
    return str(path)


def _user_vocab(tmp_path, words) -> str:
    """A vocabulary that differs from the model's: some of its words, in another order, and
    words it never had."""
    return _write(tmp_path / "user_vocab.txt", [*SPECIALS, *words])


def _trainer(model, vocab_file, override=None):
    """A new run's trainer (weights only), initialised from ``model`` as bilm train does."""
    import tensorflow as tf

    from bilm.training.adapt import Adaptation, adapted_options
    from bilm.training.inputs import load_vocab
    from bilm.training.trainer import Trainer

    options = adapted_options(model, {**TRAINING, **(override or {})}, {})
    vocab = load_vocab(vocab_file, options.max_characters_per_token)
    trainer = Trainer(options.replace(n_tokens_vocab=vocab.size),
                      tf.distribute.OneDeviceStrategy("/cpu:0"), for_training=False)
    return trainer, vocab, Adaptation


def _h5(path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda k, v: out.__setitem__(k, v[...]) if isinstance(v, h5py.Dataset)
                     else None)
    return out


def test_from_bilm_tf_weights_every_row_starts_as_the_word_embedding(tmp_path, fixture_model):
    """bilm-tf's HDF5 (no softmax): the encoder is the file's, bit for bit; every softmax row
    is the direction of the word's token embedding as dump_token_embeddings computes it, at
    length 1, with a zero bias; zeros by default."""
    from bilm import dump_token_embeddings
    from bilm.io.weights import save_weights
    from bilm.training.adapt import read_init_model

    vocab_file = _user_vocab(tmp_path, ["the", "language", "zebra", "of", "quokka"])
    model = read_init_model(str(fixture_model))
    assert model.kind == "weights" and model.tokens is None
    trainer, vocab, adaptation = _trainer(model, vocab_file)
    adaptation(model, new_rows="token-embedding").initialize(trainer, vocab)
    save_weights(trainer.lm.encoder, tmp_path / "start.hdf5")
    expected, start = _h5(fixture_model / "lm_weights.hdf5"), _h5(tmp_path / "start.hdf5")
    assert set(start) <= set(expected)
    for key, value in start.items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)
    dump_token_embeddings(vocab_file, fixture_model / "options.json",
                          fixture_model / "lm_weights.hdf5", tmp_path / "tokens.hdf5",
                          progress=False)
    with h5py.File(tmp_path / "tokens.hdf5", "r") as f:
        reference = f["embedding"][...]
    # each row: the embedding's direction at length 1 (a fresh row's; no softmax to match)
    assert np.abs(reference).sum() > 0
    assert_f32_close(trainer.variables["softmax/W"].numpy(),
                     reference / np.linalg.norm(reference, axis=1, keepdims=True))
    np.testing.assert_array_equal(trainer.variables["softmax/b"].numpy(), 0)
    adaptation(model).initialize(trainer, vocab)  # the default
    np.testing.assert_array_equal(trainer.variables["softmax/W"].numpy(), 0)


def test_adapting_bilm_tf_weights_freezes_and_keeps_the_best(tmp_path, fixture_model):
    """The command: --freeze token-embedder leaves the char CNN bit-identical while the
    LSTMs train; held-out perplexity at each checkpoint, the best kept in best/ (a run that
    bilm evaluate reads back to the recorded figure, and weights that bilm embed takes)."""
    held = _write(tmp_path / "held.txt", (TRAIN / "data.txt").read_text().split("\n")[:4])
    run = tmp_path / "run"
    bilm("train", "--init-from", fixture_model, "--options", _write(tmp_path / "o.json",
         TRAINING), "--train-prefix", TRAIN / "data.txt", "--vocab", TRAIN / "vocab.txt",
         "--save-dir", run, "--n-batches", 4, "--checkpoint-every", 2, "--heldout", held,
         "--freeze", "token-embedder", "--seed", 3).ok()
    record = json.loads((run / "heldout.json").read_text())
    steps = [s for s, _ in record["evaluations"]]
    assert steps == [2, 4]
    best = json.loads((run / "best" / "best.json").read_text())
    figures = [p for _, p in record["evaluations"]]
    assert best["perplexity"] == min(figures)
    assert best["step"] == steps[int(np.argmin(figures))]
    r = bilm("evaluate", "--save-dir", run / "best", "--test-prefix", held,
             "--batch-size", 4).ok()
    assert float(r.out.split("perplexity:")[1]) == pytest.approx(best["perplexity"], abs=2e-3)
    trained, original = _h5(run / "best" / "weights.hdf5"), _h5(fixture_model / "lm_weights.hdf5")
    lstm = [k for k in trained if k.startswith("RNN_")]
    assert lstm and len(lstm) < len(trained)
    for key in trained:
        if key not in lstm:  # the token embedder: frozen
            np.testing.assert_array_equal(trained[key], original[key], err_msg=key)
    assert any(not np.array_equal(trained[k], original[k]) for k in lstm)
    state = json.loads((run / "run.json").read_text())["adapt"]
    assert state["freeze"] == ["token-embedder"] and state["init_from"].endswith("lm_weights.hdf5")
    sentences = _write(tmp_path / "s.txt", ["the neural words"])
    bilm("embed", "--options", run / "best" / "options.json", "--weights",
         run / "best" / "weights.hdf5", sentences, tmp_path / "e.hdf5").ok()


def test_an_allennlp_archive_carries_its_softmax_rows(tmp_path):
    """An AllenNLP archive (the Transformer): rows of its words are the archive's own
    softmax rows and biases (read from weights.th here, by word), new rows have the median
    length of its rows and the median of its biases."""
    from bilm.io.allennlp import read_archive
    from bilm.training.adapt import read_init_model

    archive = need_shared(ARCHIVE)
    words = ["the", "zebra", "is", "first", "sentence", ".", "quokka", "neural", "models"]
    vocab_file = _user_vocab(tmp_path, words)
    model = read_init_model(str(archive))
    assert model.kind == "allennlp archive"
    trainer, vocab, adaptation = _trainer(model, vocab_file, {"batch_size": 2})
    adaptation(model, new_rows="token-embedding").initialize(trainer, vocab)
    raw = read_archive(archive)
    theirs = ["<UNK>" if t == "@@UNKNOWN@@" else t for t in raw.tokens]
    w = np.asarray(raw.weights["_softmax_loss.softmax_w.weight"])
    b = np.asarray(raw.weights["_softmax_loss.softmax_b.weight"]).reshape(-1)
    ours_w = trainer.variables["softmax/W"].numpy()
    ours_b = trainer.variables["softmax/b"].numpy()
    carried = 0
    for i in range(vocab.size):
        word = vocab.id_to_word(i)
        if word in theirs:
            carried += 1
            np.testing.assert_array_equal(ours_w[i], w[theirs.index(word)], err_msg=word)
            assert ours_b[i] == b[theirs.index(word)]
        else:  # the median length of the archive's rows, the median of its biases
            assert ours_b[i] == np.float32(np.median(b)), word
            assert np.linalg.norm(ours_w[i]) == pytest.approx(
                np.median(np.linalg.norm(w, axis=1)), rel=1e-5), word
    assert carried == 8  # <S> </S> <UNK> the is first sentence .


@pytest.mark.slow  # a Transformer run's first step traces for ~10 s
def test_a_transformer_run_trains_from_the_archive(tmp_path):
    archive = need_shared(ARCHIVE)
    words = ["the", "zebra", "is", "first", "sentence", ".", "quokka", "neural", "models"]
    vocab_file = _user_vocab(tmp_path, words)
    bilm("train", "--init-from", archive, "--options",
         _write(tmp_path / "o.json", {**TRAINING, "batch_size": 2}), "--train-prefix",
         TRAIN / "data.txt", "--vocab", vocab_file, "--save-dir", tmp_path / "run",
         "--n-batches", 2, "--seed", 1).ok()
    assert (tmp_path / "run" / "model-2.index").exists()


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """One of our runs (tiny LSTM, 2 layers), trained 3 batches on the fixture text."""
    tmp = tmp_path_factory.mktemp("source")
    options = _write(tmp / "options.json", {**TINY_OPTIONS, **TRAINING})
    bilm("train", "--options", options, "--train-prefix", TRAIN / "data.txt", "--vocab",
         TRAIN / "vocab.txt", "--save-dir", tmp / "run", "--n-batches", 3, "--seed", 0).ok()
    return tmp / "run"


def _tensors(checkpoint) -> dict[str, np.ndarray]:
    """Every saved tensor of a checkpoint (weights, optimizer slots, step, carried states) by
    its object path ('variables/encoder/lstm_0/W_0', ...)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(checkpoint))
    return {name.split("/.ATTRIBUTES")[0].replace(".S", "/"): reader.get_tensor(name)
            for name in reader.get_variable_to_shape_map()
            if name not in ("_CHECKPOINTABLE_OBJECT_GRAPH",)
            and not name.startswith("save_counter")}


def _variables(checkpoint) -> dict[str, np.ndarray]:
    return {k: v for k, v in _tensors(checkpoint).items() if k.startswith("variables/")}


@pytest.mark.slow  # three trainings from a trained run
def test_one_of_our_runs_adapts_frozen_layer_and_resumes_exactly(tmp_path, source_run):
    """From our run on another vocabulary: carried rows equal the run's (by word), layer 1
    frozen stays bit-identical, and adapting 2 batches then resuming to 4 equals adapting 4."""
    words = ["zebra", "of", "neural", "the", "quokka", "words", "language", ".", "in"]
    vocab_file = _user_vocab(tmp_path, words)
    common = ["--init-from", source_run, "--train-prefix", TRAIN / "data.txt", "--vocab",
              vocab_file, "--freeze", "layer-1", "--seed", 5, "--checkpoint-every", 2]
    bilm("train", *common, "--save-dir", tmp_path / "a", "--n-batches", 4).ok()
    bilm("train", *common, "--save-dir", tmp_path / "b", "--n-batches", 2).ok()
    bilm("resume", "--save-dir", tmp_path / "b", "--n-batches", 4).ok()
    a, b = _tensors(tmp_path / "a" / "model-4"), _tensors(tmp_path / "b" / "model-4")
    assert a.keys() == b.keys() and any(k.startswith("optimizer/") for k in a)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    a = _variables(tmp_path / "a" / "model-4")
    source = _variables(source_run / "model-3")
    layer_1 = [n for n in a if "/lstm_0/" in n]
    assert layer_1
    for name in layer_1:
        np.testing.assert_array_equal(a[name], source[name], err_msg=name)
    assert any(not np.array_equal(a[n], source[n]) for n in a if "/lstm_1/" in n)
    # the rows at the start: the run's rows of the same words (step 0 of a fresh run)
    from bilm.training.adapt import read_init_model

    model = read_init_model(str(source_run))
    trainer, vocab, adaptation = _trainer(model, vocab_file)
    adaptation(model).initialize(trainer, vocab)
    theirs = (TRAIN / "vocab.txt").read_text().split()
    w = trainer.variables["softmax/W"].numpy()
    for i, word in enumerate([*SPECIALS, *words]):
        if word in theirs:
            np.testing.assert_array_equal(w[i], source["variables/softmax/W"][theirs.index(word)])


@pytest.mark.slow  # a 12-batch run with held-out checkpoints, then a resume
def test_patience_stops_and_a_resume_has_nothing_left(tmp_path, source_run, monkeypatch):
    """Held-out figures 5, 4, 4.5, 4.6 with patience 2 stop training at the 4th evaluation
    (batch 8 of 12); best/ holds batch 4's checkpoint; a resume trains nothing; a damaged
    heldout.json stops a resume in one line."""
    from bilm.training.early_stopping import EarlyStopping

    figures = iter([5.0, 4.0, 4.5, 4.6, 3.0, 2.0])
    monkeypatch.setattr(EarlyStopping, "perplexity", lambda self: next(figures))
    held = _write(tmp_path / "held.txt", ["the neural words ."])
    run = tmp_path / "run"
    bilm("train", "--init-from", source_run, "--train-prefix", TRAIN / "data.txt", "--vocab",
         TRAIN / "vocab.txt", "--save-dir", run, "--n-batches", 12, "--checkpoint-every", 2,
         "--heldout", held, "--patience", 2, "--seed", 1).ok()
    record = json.loads((run / "heldout.json").read_text())["evaluations"]
    assert record == [[2, 5.0], [4, 4.0], [6, 4.5], [8, 4.6]]
    assert json.loads((run / "best" / "best.json").read_text())["step"] == 4
    assert (run / "best" / "model-4.index").exists() and not (run / "model-10.index").exists()
    assert _tensors(run / "best" / "model-4")["global_step"] == 4
    # best/weights.hdf5 is that checkpoint's encoder, as bilm export writes it
    bilm("export", "--save-dir", run / "best", tmp_path / "exported.hdf5").ok()
    exported, kept = _h5(tmp_path / "exported.hdf5"), _h5(run / "best" / "weights.hdf5")
    assert exported.keys() == kept.keys()
    for name in kept:
        np.testing.assert_array_equal(kept[name], exported[name], err_msg=name)
    bilm("resume", "--save-dir", run).ok()
    assert not (run / "model-10.index").exists()
    # a damaged record of the evaluations: one line, and the run stays as it was
    (run / "heldout.json").write_text("{not json")
    before = (run / "run.json").read_text()
    r = bilm("resume", "--save-dir", run)
    assert r.code == 2 and "heldout.json is damaged" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert (run / "run.json").read_text() == before


@pytest.mark.parametrize("args, message", [
    (["--patience", "2"], "--heldout"),
    (["--heldout", "/nonexistent/held*"], "matches no file"),
    (["--preset", "tiny"], "--preset"),
    (["--freeze", "encoder"], "--freeze"),
])
def test_bad_adaptation_flags_are_one_line(tmp_path, fixture_model, args, message):
    r = bilm("train", "--init-from", fixture_model, "--train-prefix", TRAIN / "data.txt",
             "--vocab", TRAIN / "vocab.txt", "--save-dir", tmp_path / "run", *args)
    assert r.code == 2 and message in r.err and len(r.err.strip().splitlines()) == 1, r.err


def test_more_negatives_than_words_is_one_line(tmp_path, fixture_model):
    """MODEL's (or the preset's) negatives above the user's vocabulary: one line before any
    training (it was a traceback from the traced step)."""
    for model in (["--init-from", fixture_model], ["--preset", "tiny"]):
        r = bilm("train", *model, "--train-prefix", TRAIN / "data.txt", "--vocab",
                 TRAIN / "vocab.txt", "--save-dir", tmp_path / "run", "--n-batches", 1)
        assert r.code == 2 and "n_negative_samples_batch" in r.err, r.err
        assert len(r.err.strip().splitlines()) == 1, r.err
        assert not (tmp_path / "run" / "checkpoint").exists()


def test_a_model_whose_shape_the_options_change_is_one_line(tmp_path, fixture_model,
                                                            source_run):
    """--options that change MODEL's shape, an .hdf5 without its options, a folder that is
    no model: one line, exit 2, nothing trained."""
    wider = _write(tmp_path / "o.json", {**TRAINING, "lstm": {"dim": 32}})
    cases = [(source_run, ["--options", wider], "shape"),
             (fixture_model / "lm_weights.hdf5", [], "--options"),
             (fixture_model / "lm_weights.hdf5",
              ["--options", _write(tmp_path / "t.json", {**TINY_OPTIONS, **TRAINING})], "")]
    for model, extra, message in cases:
        r = bilm("train", "--init-from", model, *extra, "--train-prefix", TRAIN / "data.txt",
                 "--vocab", TRAIN / "vocab.txt", "--save-dir", tmp_path / "run")
        assert r.code == 2 and message in r.err, r.err
        assert len(r.err.strip().splitlines()) == 1, r.err
        assert not (tmp_path / "run" / "checkpoint").exists()
