"""The console command and the usage scripts, run as a user would (real subprocesses)."""

import math
import os
import subprocess
import sys

import h5py
import pytest

from tests.conftest import ROOT

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def bilm(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bilm.cli", *map(str, args)],
                          capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300)


def test_cli_embed_info_and_errors(tiny_model, tmp_path):
    options_file, weight_file = tiny_model
    data = tmp_path / "in.txt"
    data.write_text("a b c\n\nd e\n")
    out = tmp_path / "out.hdf5"
    r = bilm("embed", data, out, "--options", options_file, "--weights", weight_file)
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert [f[k].shape for k in ("0", "1", "2")] == [(3, 3, 16), (3, 0, 16), (3, 2, 16)]
    r = bilm("embed", data, out, "--options", options_file, "--weights", weight_file)
    assert r.returncode == 2 and "exists; pass --overwrite" in r.stderr
    assert "Traceback" not in r.stderr
    r = bilm("embed", tmp_path / "missing.txt", tmp_path / "x.hdf5", "--options",
             options_file, "--weights", weight_file)
    assert r.returncode == 2 and "input file not found" in r.stderr
    r = bilm("info", "--options", options_file, "--weights", weight_file)
    assert r.returncode == 0 and "parameters:" in r.stdout and "lstm: 2 layers" in r.stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"lstm": {"dim": 4}}')
    r = bilm("info", "--options", bad)
    assert r.returncode == 2
    assert r.stderr.strip() == f"bilm: error: missing option 'lstm.projection_dim' in {bad}"


@pytest.mark.parametrize("script", ["usage_character.py", "usage_token.py", "usage_cached.py"])
def test_usage_scripts_run(fixture_model, script):
    r = subprocess.run([sys.executable, str(ROOT / script), str(fixture_model)],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    if script != "usage_cached.py":
        # character and token input give the same vector
        assert "first vector of 'Pretrained': [ 0.12011" in r.stdout
    else:
        assert "sentence 1: (3, 11, 32)" in r.stdout


def test_cli_training_commands_and_bin_scripts(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = "the light was good .\nand god saw the light .\nthe earth was without form .\n"
    for k in range(2):
        (corpus / f"shard.{k}.txt").write_text(text * 30)
    vocab = tmp_path / "vocab.txt"
    r = bilm("vocab", corpus / "shard.*", vocab)
    assert r.returncode == 0, r.stderr
    words = vocab.read_text().split("\n")
    # by count, ties in code-point order
    assert words[:8] == ["<S>", "</S>", "<UNK>", ".", "the", "light", "was", "and"]
    assert "14 entries" in r.stdout
    tiny = tmp_path / "tiny.json"
    tiny.write_text('{"lstm": {"dim": 16, "projection_dim": 8}, "char_cnn": {"filters": '
                    '[[1, 4], [2, 4]], "embedding": {"dim": 4}}, "batch_size": 4, '
                    '"unroll_steps": 5, "n_negative_samples_batch": 8}')
    save = tmp_path / "save"
    r = bilm("train", "--train-prefix", corpus / "shard.*", "--vocab", vocab, "--save-dir",
             save, "--options", tiny, "--n-batches", 3)
    assert r.returncode == 0, r.stderr
    assert "checkpoint:" in r.stdout and (save / "checkpoint").exists()
    r = bilm("evaluate", "--save-dir", save, "--vocab", vocab, "--test-prefix",
             corpus / "shard.0.txt", "--batch-size", 4)
    assert r.returncode == 0, r.stderr
    ppl = float(r.stdout.split("perplexity:")[1])
    assert 1.0 < ppl < 100.0  # 15-word vocabulary
    scores = tmp_path / "scores.tsv"
    r = bilm("score", corpus / "shard.0.txt", "--save-dir", save, "--vocab", vocab,
             "--output", scores)
    assert r.returncode == 0, r.stderr
    rows = scores.read_text().strip().split("\n")
    assert len(rows) == 1 + 90 and rows[0].startswith("line\tn_tokens")
    assert rows[1].split("\t")[1] == "5"  # "the light was good ."
    corpus_ppl = float(r.stdout.split("corpus perplexity:")[1].split()[0])
    # per sentence from a zero state vs evaluate's carried state: close, not equal
    assert 0.7 < corpus_ppl / ppl < 1.3, (corpus_ppl, ppl)
    out = tmp_path / "export" / "weights.hdf5"
    r = bilm("export", "--save-dir", save, out)
    assert r.returncode == 0, r.stderr
    assert (out.parent / "options.json").exists()
    r = bilm("embed", corpus / "shard.0.txt", tmp_path / "emb.hdf5", "--options",
             out.parent / "options.json", "--weights", out)
    assert r.returncode == 0, r.stderr
    # bilm-tf's scripts, with bilm-tf's flags
    r = subprocess.run([sys.executable, str(ROOT / "bin" / "run_test.py"), "--save_dir",
                        str(save), "--vocab_file", str(vocab), "--test_prefix",
                        str(corpus / "shard.0.txt"), "--batch_size", "4"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.split("perplexity:")[1]) == pytest.approx(ppl, rel=1e-6)
    r = subprocess.run([sys.executable, str(ROOT / "bin" / "dump_weights.py"), "--save_dir",
                        str(save), "--outfile", str(tmp_path / "w2.hdf5")],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    # errors: one line, exit 2
    r = bilm("train", "--train-prefix", tmp_path / "nothing*", "--vocab", vocab,
             "--save-dir", save, "--options", tiny)
    assert r.returncode == 2 and "no training files match" in r.stderr
    assert "Traceback" not in r.stderr


def test_demo_quick_run(tmp_path):
    out = tmp_path / "demo"
    r = bilm("demo", "--quick", "--output", out)
    assert r.returncode == 0, r.stderr[-3000:]
    for step in range(1, 7):
        assert f"[{step}/6]" in r.stdout
    for artifact in ("vocab.txt", "model/weights.hdf5", "model/options.json",
                     "training_curve.png", "checkpoints/checkpoint"):
        assert (out / artifact).exists(), artifact
    assert (out / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ppl = float(r.stdout.split("held-out perplexity ")[1].split()[0])
    assert math.isfinite(ppl) and ppl > 1
    assert "'return' in: press return to continue ." in r.stdout
    r = bilm("demo", "--quick", "--output", out)
    assert r.returncode == 2 and "is not empty" in r.stderr
