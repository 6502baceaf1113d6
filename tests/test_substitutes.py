"""``bilm substitutes`` and :mod:`bilm.substitutes`: the words are the top-k of the documented
combination (``log p_fwd(w | left) + log p_bwd(w | right)``, or one direction), computed here
independently (float64 log-softmax over the checkpoint's top layer and softmax), for both
encoders; and the errors: a position out of range, a model without a softmax."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import FIXTURES, SHARED, need_shared
from tests.encoder_contract import PRESETS, bilm, make_corpus, tiny_run_options

ENCODERS = ("lstm", "transformer")
N_BATCHES = 20
SPECIALS = ("<S>", "</S>", "<UNK>")  # and an imported AllenNLP vocabulary's padding row
# (sentence, 0-based position): the first word, a middle one, the last, an unknown word
GOD = "god saw the light ."
QUERIES = [(text.split(), p) for text, p in [
    (GOD, 3), ("the earth was without form .", 0), ("darkness was upon the deep", 4),
    ("and firmament saw light", 2), ("light", 0)]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("substitutes_corpus"))


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory) -> dict:
    """Per encoder: its run trained from the command line (N_BATCHES, jit off), loaded once
    (lazily: a test of one encoder trains only that one)."""
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            from bilm.training import load_run

            d = tmp_path_factory.mktemp(f"substitutes_{name}")
            (d / "tiny.json").write_text(json.dumps(tiny_run_options(name)))
            bilm("train", "--train-prefix", corpus["train"], "--vocab", corpus["vocab"],
                 "--save-dir", d / "run", "--preset", PRESETS[name], "--options",
                 d / "tiny.json", "--n-batches", N_BATCHES, "--seed", 3).ok()
            cache[name] = (d / "run", load_run(str(d / "run")))
        return cache[name]

    return get


def reference_scores(lm, vocab, sentence: list[str], position: int) -> np.ndarray:
    """(3, n_vocab) float64: forward, backward and their sum at word ``position``, from the
    sentence alone (zero state), the top layer and the softmax (as reference_logprobs)."""
    import tensorflow as tf

    from bilm.data.sentences import sentence_batch

    batch = sentence_batch(vocab, [sentence])
    key = "tokens_characters" if lm.options.use_character_inputs else "token_ids"
    emb = lm.encoder.embed_tokens(tf.constant(batch[key]), shifted=False)
    layers, _ = lm.contextualizer.sentence_layers(emb, tf.constant(batch["lengths"]))
    top = layers[-1].numpy()[:, 0].astype(np.float64)  # (2, T, dim)
    logits = top @ np.asarray(lm.softmax_weights, np.float64).T + np.asarray(lm.softmax_b,
                                                                               np.float64)
    logits -= logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    # token t is word t - 1: the forward LM predicts word p at step p, the backward at p + 2
    fwd, bwd = logp[0, position], logp[1, position + 2]
    return np.stack([fwd, bwd, fwd + bwd])


def assert_top_k(found, scores: np.ndarray, vocab, k: int, exclude=SPECIALS) -> None:
    """``found`` [(word, logprob)] is the top ``k`` of ``scores`` (best first, ``exclude``
    left out): each logprob is the reference's for its word, and they are the k largest;
    the words themselves wherever no two candidates are within float32 rounding."""
    scores = scores.copy()
    for word in exclude:
        scores[vocab.word_to_id(word)] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    assert len(found) == k
    words = [w for w, _ in found]
    got = np.array([lp for _, lp in found])
    np.testing.assert_allclose(got, [scores[vocab.word_to_id(w)] for w in words], atol=1e-4)
    np.testing.assert_allclose(got, scores[order], atol=1e-4)
    assert len(set(words)) == k and not set(words) & set(exclude)
    ranked = np.sort(scores)[::-1][: k + 1]
    if np.all(np.diff(ranked[np.isfinite(ranked)]) < -1e-3):  # no near-tie: exact words
        assert words == [vocab.id_to_word(int(i)) for i in order]


# the Transformer's case in the slow tier (its training is most of its 8 s)
@pytest.mark.parametrize("name", [ENCODERS[0], pytest.param(ENCODERS[1], marks=pytest.mark.slow)])
def test_substitutes_are_the_top_k_of_the_combination(name, runs):
    """forward, backward and both: the returned words are the argmax (top-k, in order) of
    the documented combination; the specials are left out unless asked for; a batch of
    queries of different lengths gives each query's own answer."""
    from bilm.substitutes import substitutes, substitutes_many

    _, loaded = runs(name)
    lm, vocab = loaded.lm, loaded.vocab
    for sentence, position in QUERIES:
        reference = reference_scores(lm, vocab, sentence, position)
        for k, direction in enumerate(("forward", "backward", "both")):
            found = substitutes(lm, vocab, sentence, position, top_k=5, direction=direction)
            assert_top_k(found, reference[k], vocab, 5)
    sentence, position = QUERIES[0]
    reference = reference_scores(lm, vocab, sentence, position)[2]
    every = substitutes(lm, vocab, sentence, position, top_k=vocab.size, include_special=True)
    assert_top_k(every, reference, vocab, vocab.size, exclude=())
    batched = list(substitutes_many(lm, vocab, QUERIES, top_k=4, batch_size=3))
    for (sentence, position), found in zip(QUERIES, batched, strict=True):
        alone = substitutes(lm, vocab, sentence, position, top_k=4)
        assert [w for w, _ in found] == [w for w, _ in alone]
        np.testing.assert_allclose([p for _, p in found], [p for _, p in alone], atol=1e-5)


def test_library_errors(runs):
    from bilm.substitutes import SubstitutesError, substitutes

    _, loaded = runs("lstm")
    for position in (5, -1):
        with pytest.raises(SubstitutesError, match="out of range"):
            substitutes(loaded.lm, loaded.vocab, GOD.split(), position)
    with pytest.raises(SubstitutesError, match="direction"):
        substitutes(loaded.lm, loaded.vocab, ["light"], 0, direction="sideways")


def _rows(text: str) -> list[list[str]]:
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "query\tposition\ttarget\trank\tsubstitute\tlogprob"
    return [line.split("\t") for line in lines[1:]]


def test_the_command(runs, tmp_path):
    """--sentence/--position to stdout and a TSV of queries to --output: the library's
    words and log-probabilities, one row per rank."""
    from bilm.substitutes import substitutes

    run, loaded = runs("lstm")
    r = bilm("substitutes", "--save-dir", run, "--sentence", GOD, "--position", 3, "--top-k",
             3, "--direction", "forward").ok()
    expected = substitutes(loaded.lm, loaded.vocab, GOD.split(), 3, 3, "forward")
    assert [row[:4] for row in _rows(r.out)] == [["0", "3", "light", str(k)] for k in (1, 2, 3)]
    assert [row[4] for row in _rows(r.out)] == [w for w, _ in expected]
    np.testing.assert_allclose([float(row[5]) for row in _rows(r.out)],
                               [p for _, p in expected], atol=1e-4)

    queries = tmp_path / "queries.tsv"
    queries.write_text("".join(f"{p}\t{' '.join(s)}\n" for s, p in QUERIES[:2]) + "\n"
                       + f"{QUERIES[2][1]}\t{' '.join(QUERIES[2][0])}\n")
    out = tmp_path / "subs.tsv"
    r = bilm("substitutes", queries, "--save-dir", run, "--output", out, "--top-k", 2).ok()
    assert "3 queries" in r.out
    rows = _rows(out.read_text())
    assert [(row[0], row[2]) for row in rows] == [("0", "light"), ("0", "light"),
                                                  ("1", "the"), ("1", "the"),
                                                  ("3", "deep"), ("3", "deep")]
    for row, (sentence, position) in zip(rows[::2], QUERIES[:3], strict=True):
        best = substitutes(loaded.lm, loaded.vocab, sentence, position, top_k=1)[0]
        assert row[4] == best.word
    assert bilm("substitutes", queries, "--save-dir", run, "--output", out).code == 2


def _one_line_error(r, *words: str) -> None:
    assert r.code == 2, r.err
    assert r.err.count("\n") == 1 and r.err.startswith("bilm"), r.err
    for word in words:
        assert word in r.err, r.err


def test_errors_are_one_line(runs, tmp_path):
    """Out-of-range positions (flag and file), malformed queries, and weights-only models
    (an exported folder, its weights file): one line, exit 2."""
    run, _ = runs("lstm")
    r = bilm("substitutes", "--save-dir", run, "--sentence", "god saw", "--position", 2)
    _one_line_error(r, "position 2 is out of range", "2 tokens")
    r = bilm("substitutes", "--save-dir", run, "--sentence", "god saw", "--position", -1)
    _one_line_error(r, "--position")
    bad = tmp_path / "bad.tsv"
    bad.write_text("0\tgod saw\n7\tgod saw the light\n")
    _one_line_error(bilm("substitutes", bad, "--save-dir", run), "line 2", "out of range")
    bad.write_text("god saw the light\n")
    _one_line_error(bilm("substitutes", bad, "--save-dir", run), "line 1",
                    "POSITION<TAB>SENTENCE")
    _one_line_error(bilm("substitutes", "--save-dir", run, "--sentence", "god"), "--position")
    _one_line_error(bilm("substitutes", "--save-dir", run), "either")

    bilm("export", "--save-dir", run, tmp_path / "exported" / "weights.hdf5").ok()
    for target in (tmp_path / "exported", tmp_path / "exported" / "weights.hdf5"):
        r = bilm("substitutes", "--save-dir", target, "--sentence", "god saw", "--position", 0)
        _one_line_error(r, "weights-only", "no softmax", f"bilm train --init-from {target}")


def test_a_bilm_tf_tf1_checkpoint(runs, corpus, tmp_path):
    """A bilm-tf training directory (options.json + a TF1 checkpoint under bilm-tf's names,
    no run.json or vocab.txt) holding the LSTM run's weights: with --vocab, the run's own
    substitutes."""
    import shutil

    import tensorflow as tf

    from bilm.model.lm import tf1_table
    from bilm.substitutes import substitutes

    run, loaded = runs("lstm")
    folder = tmp_path / "bilm_tf_run"
    folder.mkdir()
    table = tf1_table(loaded.lm)
    names = [entry.tf1_key for entry in table] + ["global_step"]
    values = [np.asarray(entry.get()) for entry in table] + [np.int64(N_BATCHES)]
    tf.raw_ops.SaveV2(prefix=str(folder / f"model.ckpt-{N_BATCHES}"), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=values)
    (folder / "checkpoint").write_text(f'model_checkpoint_path: "model.ckpt-{N_BATCHES}"\n')
    shutil.copy(run / "options.json", folder / "options.json")
    r = bilm("substitutes", "--save-dir", folder, "--vocab", corpus["vocab"], "--sentence",
             GOD, "--position", 1, "--top-k", 4).ok()
    expected = substitutes(loaded.lm, loaded.vocab, GOD.split(), 1, top_k=4)
    assert [row[4] for row in _rows(r.out)] == [w for w, _ in expected]
    np.testing.assert_allclose([float(row[5]) for row in _rows(r.out)],
                               [p for _, p in expected], atol=1e-4)


def test_a_bilm_tf_style_folder_without_checkpoint(tmp_path):
    """bilm-tf's released model folder (options.json + lm_weights.hdf5): no softmax."""
    model = need_shared(FIXTURES / "model")
    folder = tmp_path / "released"
    folder.mkdir()
    for name in ("options.json", "lm_weights.hdf5"):
        (folder / name).write_bytes((model / name).read_bytes())
    r = bilm("substitutes", "--save-dir", folder, "--sentence", "a b", "--position", 0)
    _one_line_error(r, "weights-only", "no softmax", "--init-from")


def test_an_imported_allennlp_archive(tmp_path):
    """An AllenNLP archive imported as a run has a softmax: its substitutes are the top-k of
    the combination; the archive itself is told to be imported first."""
    from bilm.substitutes import substitutes
    from bilm.training import load_run

    archive = need_shared(SHARED / "fixtures" / "allennlp-transformer" / "model.tar.gz")
    r = bilm("substitutes", "--save-dir", archive, "--sentence", "a b", "--position", 0)
    _one_line_error(r, "import-allennlp")
    bilm("import-allennlp", archive, tmp_path / "run").ok()
    loaded = load_run(str(tmp_path / "run"))
    sentence = (archive.parent / "sentences.txt").read_text().split("\n")[0].split()
    position = len(sentence) // 2
    reference = reference_scores(loaded.lm, loaded.vocab, sentence, position)[2]
    specials = [w for w in (*SPECIALS, "@@PADDING@@") if w in loaded.vocab]
    assert len(specials) == 4
    k = min(3, loaded.vocab.size - len(specials))
    found = substitutes(loaded.lm, loaded.vocab, sentence, position, top_k=k)
    assert_top_k(found, reference, loaded.vocab, k, exclude=specials)
    r = bilm("substitutes", "--save-dir", tmp_path / "run", "--sentence", " ".join(sentence),
             "--position", position, "--top-k", k).ok()
    assert [row[4] for row in _rows(r.out)] == [w for w, _ in found]
