"""dump_bilm_embeddings / dump_token_embeddings: layouts, line mapping, atomic output."""

import logging
import os

import h5py
import numpy as np
import pytest

from bilm import Batcher, BidirectionalLanguageModel, dump_bilm_embeddings
from bilm.inference.dumps import dump_token_embeddings
from tests.conftest import assert_f32_close

LINES = ["the first line .", "", "Ünïcödé tökens wörk", "   ", "y" * 200 + " short",
         " ".join(["long"] * 150), "last"]


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def read_all(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][...] for k in f}


def test_stateful_dump_is_bilm_tf_one_line_at_a_time(tiny_model, dataset, tmp_path):
    options_file, weight_file = tiny_model
    out = tmp_path / "out.hdf5"
    dump_bilm_embeddings(None, dataset, options_file, weight_file, out)
    got = read_all(out)
    assert sorted(got, key=int) == [str(i) for i in range(len(LINES))]
    # the reference: bilm-tf's loop, state carried through blank lines too
    model = BidirectionalLanguageModel(options_file, weight_file)
    batcher = Batcher(None, 12)
    for i, line in enumerate(LINES):
        expected = model(batcher.batch_sentences([line.split()]))["lm_embeddings"].numpy()[0]
        assert got[str(i)].shape == (3, len(line.split()), 16)
        assert got[str(i)].dtype == np.float32
        np.testing.assert_array_equal(got[str(i)], expected)


def test_stateless_batched_dump(tiny_model, dataset, tmp_path):
    options_file, weight_file = tiny_model
    out = tmp_path / "fast.hdf5"
    dump_bilm_embeddings(None, dataset, options_file, weight_file, out, stateful=False,
                         batch_size=2)
    got = read_all(out)
    model = BidirectionalLanguageModel(options_file, weight_file, stateful=False)
    batcher = Batcher(None, 12)
    for i, line in enumerate(LINES):
        tokens = line.split()
        if not tokens:
            assert got[str(i)].shape == (3, 0, 16)
            continue
        expected = model(batcher.batch_sentences([tokens]))["lm_embeddings"].numpy()[0]
        assert_f32_close(got[str(i)], expected)


def test_stateless_dump_token_budget(tiny_model, dataset, tmp_path, monkeypatch):
    options_file, weight_file = tiny_model
    seen = []
    embed = BidirectionalLanguageModel.embed_sentences

    def spy(self, sentences, **kwargs):
        seen.append(kwargs)
        yield from embed(self, sentences, **kwargs)

    monkeypatch.setattr(BidirectionalLanguageModel, "embed_sentences", spy)
    dump_bilm_embeddings(None, dataset, options_file, weight_file, tmp_path / "a.hdf5",
                         stateful=False, batch_size=4, max_tokens=1)  # one line per batch
    dump_bilm_embeddings(None, dataset, options_file, weight_file, tmp_path / "b.hdf5",
                         stateful=False)
    assert seen == [{"batch_size": 4, "max_tokens": 1}, {"batch_size": 64, "max_tokens": None}]
    alone, batched = read_all(tmp_path / "a.hdf5"), read_all(tmp_path / "b.hdf5")
    assert sorted(alone) == sorted(batched)
    for key in alone:
        assert_f32_close(alone[key], batched[key])
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        dump_bilm_embeddings(None, dataset, options_file, weight_file, tmp_path / "c.hdf5",
                             stateful=False, max_tokens=0)


def test_failure_leaves_no_file(tiny_model, dataset, tmp_path, monkeypatch):
    options_file, weight_file = tiny_model
    out = tmp_path / "out.hdf5"

    def boom(self, *args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(BidirectionalLanguageModel, "embed_sentences", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        dump_bilm_embeddings(None, dataset, options_file, weight_file, out, stateful=False)
    assert list(tmp_path.iterdir()) == [dataset]  # no final file, no temporary left over
    out.write_text("previous result")
    with pytest.raises(RuntimeError):
        dump_bilm_embeddings(None, dataset, options_file, weight_file, out, stateful=False)
    assert out.read_text() == "previous result"  # an earlier file is not clobbered


def test_progress_is_reported(tiny_model, dataset, tmp_path, caplog):
    options_file, weight_file = tiny_model
    with caplog.at_level(logging.INFO, logger="bilm"):
        dump_bilm_embeddings(None, dataset, options_file, weight_file, tmp_path / "o.hdf5",
                             stateful=False)
    assert f"{len(LINES)}/{len(LINES)} sentences" in caplog.text


def test_missing_dataset(tiny_model, tmp_path):
    options_file, weight_file = tiny_model
    with pytest.raises(FileNotFoundError, match="dataset file not found"):
        dump_bilm_embeddings(None, tmp_path / "none.txt", options_file, weight_file,
                             tmp_path / "o.hdf5")


def test_token_dump_equals_model_token_embeddings(tiny_model, tmp_path):
    options_file, weight_file = tiny_model
    vocab = tmp_path / "vocab.txt"
    words = ["<S>", "</S>", "<UNK>", "the", "é", "z" * 40]
    vocab.write_text("\n".join(words) + "\n", encoding="utf-8")
    out = tmp_path / "tokens.hdf5"
    dump_token_embeddings(vocab, options_file, weight_file, out)
    with h5py.File(out, "r") as f:
        emb = f["embedding"][...]
    assert emb.shape == (len(words), 8)
    model = BidirectionalLanguageModel(options_file, weight_file, stateful=False)
    batcher = Batcher(None, 12)
    for k, w in enumerate(words):  # bilm-tf: token k alone, position 1 of [[token]]
        ref = model(batcher.batch_sentences([[w]]))["token_embeddings"].numpy()[0, 1]
        np.testing.assert_allclose(emb[k], ref, rtol=0, atol=1e-6)


def current_rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_ten_thousand_lines_flat_memory(tiny_model, tmp_path, monkeypatch):
    options_file, weight_file = tiny_model
    data = tmp_path / "big.txt"
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(3000)]
    with open(data, "w") as f:
        for _ in range(10_000):
            f.write(" ".join(rng.choice(words, size=rng.integers(1, 40))) + "\n")
    # Sample RSS each 1000 sentences handed to the writer: wrap the public embed_sentences
    # (what stateful=False streams through), not the progress reporter's internals.
    samples = {}
    embed = BidirectionalLanguageModel.embed_sentences

    def sampling_embed(self, sentences, **kwargs):
        for done, emb in enumerate(embed(self, sentences, **kwargs), start=1):
            yield emb
            if done % 1000 == 0:  # the writer has stored sentence `done` by now
                samples[done] = current_rss_kib()

    monkeypatch.setattr(BidirectionalLanguageModel, "embed_sentences", sampling_embed)
    out = tmp_path / "big.hdf5"
    dump_bilm_embeddings(None, data, options_file, weight_file, out, stateful=False)
    assert sorted(samples) == list(range(1000, 10_001, 1000))
    # after the first windows (compilations, caches), memory stays flat as lines stream by
    assert samples[10_000] - samples[3000] < 30_000, samples  # KiB
    with h5py.File(out, "r") as f:
        assert len(f) == 10_000
        assert f["9999"].shape[0] == 3
