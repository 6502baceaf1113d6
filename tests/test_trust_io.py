"""Outputs and inputs a user can trust: an output that another process wrote meanwhile is
never replaced; a signal removes the unfinished output and says so; lines end at "\\n" only,
in every reader; one huge line costs bounded memory in training; a Transformer's evaluation
is bounded by tokens. Command-line cases run the real ``bilm`` in subprocesses."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bilm.io import files as _io
from bilm.io.files import OutputError, atomic_dir, atomic_path
from tests.conftest import TINY_ONE_LAYER_OPTIONS

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def command(*args: object) -> list[str]:
    return [sys.executable, "-m", "bilm.cli", *map(str, args)]


def bilm(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def one_line(stderr: str) -> str:
    """The single line a user mistake or an interruption prints (no traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("bilm"), lines[0]
    return lines[0]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- 7: an output that appeared meanwhile is never replaced -------------------------------------

def test_a_file_that_appears_while_writing_is_never_replaced(tmp_path):
    out = tmp_path / "out.txt"
    with pytest.raises(OutputError) as e, atomic_path(out) as tmp:
        Path(tmp).write_text("mine")
        out.write_text("theirs")  # another process published the same output meanwhile
    assert out.read_text() == "theirs"
    assert isinstance(e.value, _io.OutputExistsError)
    assert str(e.value) == (f"{out} appeared while this command was writing it (another "
                            "process?); nothing was replaced; pass --overwrite to replace it")
    assert names(tmp_path) == ["out.txt"]  # the temporary file is gone
    # a file there from the start: refused too, with the plain message
    with pytest.raises(_io.OutputExistsError, match=re.escape(
            f"{out} exists; nothing was replaced; pass --overwrite to replace it")), \
            atomic_path(out) as tmp:
        Path(tmp).write_text("mine")
    assert out.read_text() == "theirs" and names(tmp_path) == ["out.txt"]
    with atomic_path(out, overwrite=True) as tmp:  # asked to replace: replaced
        Path(tmp).write_text("mine")
    assert out.read_text() == "mine" and names(tmp_path) == ["out.txt"]


def test_without_renameat2_the_file_is_published_by_a_hard_link(tmp_path, monkeypatch):
    monkeypatch.setattr(_io, "_renameat2", lambda: None)  # an old C library or kernel
    out = tmp_path / "out.txt"
    with atomic_path(out) as tmp:
        Path(tmp).write_text("first")
    assert out.read_text() == "first" and names(tmp_path) == ["out.txt"]
    assert os.stat(out).st_nlink == 1
    with pytest.raises(_io.OutputExistsError), atomic_path(tmp_path / "late.txt") as tmp:
        Path(tmp).write_text("mine")
        (tmp_path / "late.txt").write_text("theirs")
    assert (tmp_path / "late.txt").read_text() == "theirs"
    assert names(tmp_path) == ["late.txt", "out.txt"]


@pytest.mark.parametrize("renameat2", [True, False])
def test_a_folder_that_appears_while_writing_is_never_replaced(tmp_path, monkeypatch,
                                                               renameat2):
    if not renameat2:
        monkeypatch.setattr(_io, "_renameat2", lambda: None)
    out = tmp_path / "model"
    real_exists = os.path.exists
    # the window between a check and the rename: the check does not see the new folder
    monkeypatch.setattr(os.path, "exists",
                        lambda p: False if os.fspath(p) == str(out) else real_exists(p))
    with pytest.raises(OutputError) as e, atomic_dir(out) as tmp:
        (Path(tmp) / "saved_model.pb").write_text("mine")
        out.mkdir()  # empty: rename(2) alone would replace it
    assert isinstance(e.value, _io.OutputExistsError)
    assert "appeared while this command was writing it" in str(e.value)
    assert out.is_dir() and names(out) == []
    assert names(tmp_path) == ["model"]
    monkeypatch.undo()
    with atomic_dir(out, overwrite=True) as tmp:
        (Path(tmp) / "saved_model.pb").write_text("mine")
    assert names(out) == ["saved_model.pb"] and names(tmp_path) == ["model"]


@pytest.mark.slow
def test_two_embeds_into_one_new_output(tiny_model, tmp_path):
    """Two ``bilm embed`` at once: one writes, the other says why it did not (one line, exit
    2); none says "wrote" for a file it did not produce."""
    import h5py

    options_file, weight_file = tiny_model
    text = tmp_path / "in.txt"
    text.write_text("the cat sat .\nthe dog ran far away .\n" * 100)
    out = tmp_path / "out.hdf5"
    procs = [subprocess.Popen(command("embed", text, out, "--options", options_file,
                                      "--weights", weight_file, "--batch-size", 4),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=ENV) for _ in range(2)]
    results = [(p.returncode, err) for p in procs
               for _, err in [p.communicate(timeout=300)]]
    assert sorted(code for code, _ in results) == [0, 2], results
    (_, won), (_, lost) = sorted(results)
    assert "wrote" in won
    errors = [line for line in lost.splitlines() if "error" in line]
    assert "wrote" not in lost and len(errors) == 1 and "Traceback" not in lost, lost
    assert str(out) in errors[0] and "pass --overwrite" in errors[0]
    with h5py.File(out, "r") as f:
        assert sorted(f, key=int) == [str(i) for i in range(200)]
        assert f["1"].shape[1] == 6
    assert names(tmp_path) == ["in.txt", "out.hdf5"]


# -- 14: a signal removes the unfinished output and says so -------------------------------------

@pytest.mark.slow  # a subprocess embed of 20,000 lines, signalled
def test_sigterm_during_embed_removes_the_unfinished_output(tiny_model, tmp_path):
    options_file, weight_file = tiny_model
    text = tmp_path / "in.txt"
    text.write_text("in the beginning god created the heaven and the earth .\n" * 20000)
    out = tmp_path / "out.hdf5"
    proc = subprocess.Popen(command("-q", "embed", text, out, "--options", options_file,
                                    "--weights", weight_file, "--stateful"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 240
        while not any(n.endswith(".part") for n in os.listdir(tmp_path)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no temporary file appeared"
            time.sleep(0.05)
        time.sleep(0.5)  # well inside the loop of lines
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, (proc.returncode, err)
    line = one_line(err)
    assert "stopped by SIGTERM" in line and f"{out} was not written" in line, line
    assert "removed the unfinished" in line and ".part" in line
    assert names(tmp_path) == ["in.txt"]


@pytest.mark.parametrize("name", ["SIGINT", "SIGHUP", "SIGTERM"])
def test_every_stop_signal_removes_the_temporary_file(tmp_path, name):
    """The same for every output written through atomic_path (no TensorFlow here)."""
    out = tmp_path / "out.txt"
    # a shell's background job starts with SIGINT (and nohup with SIGHUP) ignored, which
    # atomic_path rightly leaves alone: the child starts from the default dispositions
    code = ("import os, signal, sys\nfrom bilm.io.files import atomic_path\n"
            "from bilm._shell import run_main\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "signal.signal(signal.SIGHUP, signal.SIG_DFL)\n"
            "def write():\n"
            f"    with atomic_path({str(out)!r}) as tmp, open(tmp, 'w') as f:\n"
            "        f.write('half')\n"
            f"        os.kill(os.getpid(), signal.{name})\n"
            "        f.write('never')\n"
            "sys.exit(run_main('bilm', write))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    signum = getattr(signal, name)
    assert r.returncode == 128 + signum, (r.returncode, r.stderr)
    line = one_line(r.stderr)
    assert line.startswith(f"bilm: stopped by {name}: removed the unfinished "), line
    assert line.endswith(f".part; {out} was not written"), line
    assert names(tmp_path) == []


# -- 11: lines end at "\n" only -----------------------------------------------------------------

# a carriage return, a vertical tab, NEL, the Unicode line and paragraph separators, a form
# feed and the information separators inside lines: str.splitlines() and universal newlines
# would break these lines; training reads each as one line
LINES = ["in the beginning\rgod created", "the heaven\x0band the earth",
         "and the earth\x85was without form", "and void\u2028and darkness", "",
         "was upon\x0cthe face\x1cof the deep", "and the spirit\u2029of god\x1dmoved\x1eupon",
         "the face of the waters\r"]
WORDS = sorted({w for line in LINES for w in line.split()})


@pytest.fixture(scope="module")
def odd_lines(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lines") / "in.txt"
    path.write_bytes(("\n".join(LINES) + "\n").encode("utf-8"))
    return path


def test_library_readers_end_lines_at_newline_only(odd_lines, tmp_path):
    from bilm.data import LMDataset, Vocabulary
    from bilm.data.build_vocab import build_vocab
    from bilm.training.inputs import count_corpus

    tokens = [line.split() for line in LINES]
    assert count_corpus(str(odd_lines)) == (sum(map(len, tokens)), sum(map(bool, tokens)))
    vocab_file = tmp_path / "vocab.txt"
    stats = build_vocab(str(odd_lines), vocab_file, progress=False)
    assert stats.n_tokens == sum(map(len, tokens))
    vocab = Vocabulary(vocab_file, validate_file=True)
    assert list(LMDataset(str(odd_lines), vocab, test=True).iter_tokens()) == tokens
    from bilm.data.lines import count_lines
    from bilm.inference.dumps import _read_sentences, _sentence_to_index

    assert count_lines(str(odd_lines)) == len(LINES)
    assert list(_read_sentences(str(odd_lines))) == tokens
    assert _sentence_to_index(str(odd_lines)) == {
        line.strip(): str(i) for i, line in enumerate(LINES)}


def test_allennlp_vocabulary_ends_tokens_at_newline_only(tmp_path, monkeypatch):
    """AllenNLP writes tokens.txt one token a line and reads it back split at "\\n" only:
    a token holding U+2028 or NEL is one token, or every later id shifts."""
    import bilm.io.torch_pickle
    from bilm.io.allennlp import read_archive

    tokens = ["@@UNKNOWN@@", "the", "a\u2028b", "c\x85d", "e\rf", "g"]
    (tmp_path / "vocabulary").mkdir()
    (tmp_path / "vocabulary" / "tokens.txt").write_bytes(("\n".join(tokens) + "\n").encode())
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "weights.th").write_bytes(b"")
    monkeypatch.setattr(bilm.io.torch_pickle, "load_torch_state_dict", lambda *a, **k: {})
    assert read_archive(tmp_path).tokens == tokens


@pytest.fixture(scope="module")
def odd_run(odd_lines, tmp_path_factory) -> dict[str, Path]:
    """A one-batch training run on text with those lines."""
    from bilm.training.runs import start_training

    d = tmp_path_factory.mktemp("odd_run")
    (d / "train.txt").write_bytes(odd_lines.read_bytes() * 10)
    (d / "vocab.txt").write_text("\n".join(["<S>", "</S>", "<UNK>", *WORDS]) + "\n")
    options = {**TINY_ONE_LAYER_OPTIONS, "batch_size": 2, "unroll_steps": 5,
               "n_negative_samples_batch": 8, "jit_compile": False}
    start_training(str(d / "run"), options, str(d / "train.txt"), str(d / "vocab.txt"),
                   n_batches=1, seed=1, checkpoint_minutes=None, progress=False)
    return {"run": d / "run", "vocab": d / "vocab.txt"}


@pytest.mark.slow  # a subprocess embed
def test_embed_gives_one_dataset_per_line(tiny_model, odd_lines, tmp_path):
    import h5py

    options_file, weight_file = tiny_model
    out = tmp_path / "out.hdf5"
    r = bilm("-q", "embed", odd_lines, out, "--options", options_file, "--weights",
             weight_file, "--format", "allennlp")
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        keys = sorted((k for k in f if k != "sentence_to_index"), key=int)
        assert keys == [str(i) for i in range(len(LINES))]
        assert [f[k].shape[1] for k in keys] == [len(line.split()) for line in LINES]
        index = json.loads(f["sentence_to_index"][0])
    assert index == {line.strip(): str(i) for i, line in enumerate(LINES)}


@pytest.mark.slow  # a subprocess score of a trained run
def test_score_gives_one_score_per_line(odd_run, odd_lines, tmp_path):
    out = tmp_path / "scores.tsv"
    r = bilm("-q", "score", odd_lines, "--save-dir", odd_run["run"], "--output", out)
    assert r.returncode == 0, r.stderr
    rows = [row.split("\t") for row in out.read_text(encoding="utf-8").splitlines()[1:]]
    assert [row[0] for row in rows] == [str(i) for i in range(len(LINES))]
    assert [int(row[1]) for row in rows] == [len(line.split()) for line in LINES]
    assert f"over {len(LINES)} sentences" in r.stdout


# -- 12: one huge line costs bounded memory in training -----------------------------------------

def test_read_lines_cuts_long_lines_at_whitespace_only():
    import io

    from bilm.data.lines import read_lines

    def pieces(data: bytes, max_bytes: int, errors: str = "strict") -> list:
        return list(read_lines(io.BytesIO(data), errors, max_bytes))

    # short lines come whole; a line ends at "\n" only
    assert pieces(b"a b\rc\n\nd\xc2\x85e", 64) == [(1, "a b\rc\n", True), (2, "\n", True),
                                                  (3, "d\x85e", True)]
    tokens = ["alpha", "b\u00e9ta", "\u4e2d\u6587", "gamma", "x" * 40, "de\u3000lta",
              "\u00e9" * 7, "end"]
    line = " ".join(tokens) + " \u3000 " + "tail"
    got = pieces(line.encode() + b"\nnext line\n", 16)
    assert all(not whole for n, _, whole in got if n == 1) and got[-1] == (2, "next line\n",
                                                                            True)
    # no token spans two pieces; the one longer than 16 characters is cut to 16
    words = [w for n, text, _ in got if n == 1 for w in text.split()]
    assert words == [w[:16] for w in line.split()]
    assert all(len(text.encode()) <= 2 * 16 * 4 for _, text, _ in got)
    # invalid UTF-8 in a long line: one error for the line, at its byte offset in the line
    bad = pieces(b"ok " * 10 + b"\xff tail\nfine\n", 8)
    errors = [(n, t.start) for n, t, _ in bad if isinstance(t, UnicodeDecodeError)]
    assert errors == [(1, 30)] and bad[-1] == (2, "fine\n", True)
    replaced = pieces(b"ok " * 10 + b"\xff tail\n", 8, errors="replace")
    assert " ".join(t for _, t, _ in replaced).split() == ["ok"] * 10 + ["\ufffd", "tail"]


def test_a_huge_line_is_read_in_bounded_memory(tmp_path, caplog):
    import tracemalloc

    from bilm.data import LMDataset, Vocabulary

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(500)]
    huge = [words[k] for k in rng.integers(0, len(words), 2_000_000)]  # 9 MB, one line
    shard = tmp_path / "shard.txt"
    shard.write_text("a short line\n" + " ".join(huge) + "\nthe end\n")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["<S>", "</S>", "<UNK>", *words]) + "\n")
    data = LMDataset(str(shard), Vocabulary(vocab), test=True)
    sentences = data.iter_tokens()
    tracemalloc.start()
    try:
        assert next(sentences) == ["a", "short", "line"]
        first = next(sentences)  # the huge line's first piece, or all of it
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 30e6, f"{peak / 1e6:.0f} MB to read the first piece of a 9 MB line"
    rest = list(sentences)
    assert rest[-1] == ["the", "end"]
    pieces = [first, *rest[:-1]]
    assert [w for p in pieces for w in p] == huge  # every token, in order
    assert max(map(len, pieces)) <= 10_000
    assert data.n_split_lines == 1
    assert "shard.txt:2: a line longer than a sentence may be" in caplog.text


def test_character_ids_are_encoded_a_window_at_a_time_with_the_same_values(tmp_path):
    """Rows hold long sentences' character ids only a window's stretch at a time; the values
    are those of the whole sentence's array (both directions, unknown words included)."""
    from bilm.data import LMDataset, UnicodeCharsVocabulary
    from bilm.data.dataset import _Sentence

    shard = tmp_path / "shard.txt"
    shard.write_text("the cat sat\n")
    vocab = UnicodeCharsVocabulary(None, 10, tokens=["<S>", "</S>", "<UNK>", "the", "cat"])
    tokens = ["the", "zebra", "cat", "\u00e9t\u00e9", "a" * 30, "the"]
    for reverse in (False, True):
        data = LMDataset(str(shard), vocab, reverse=reverse, test=True)
        ids, chars = data._encode(tokens)
        sentence = _Sentence(data, tokens)
        np.testing.assert_array_equal(sentence.ids(), ids)
        np.testing.assert_array_equal(sentence.chars(0, len(tokens) + 2), chars)
        np.testing.assert_array_equal(sentence.chars(2, 5), chars[2:5])


def test_the_shuffle_buffer_is_bounded_in_characters_too(tmp_path, monkeypatch):
    import random

    from bilm.data import LMDataset, Vocabulary
    from bilm.data import dataset as dataset_module

    lines = [f"line {i} " + "x " * (i % 7) for i in range(300)]
    shard = tmp_path / "shard.txt"
    shard.write_text("".join(line + "\n" for line in lines))
    vocab = Vocabulary(tokens=["<S>", "</S>", "<UNK>"])

    def shuffled(seed: int) -> list[str]:
        data = LMDataset(str(shard), vocab, shuffle_on_load=True, seed=seed, shuffle_buffer=50)
        return [" ".join(t) for t in itertools.islice(data.iter_tokens(), 300)]

    # ordinary lines never fill it: the same order as the line-count buffer alone
    rng = random.Random(5)  # the dataset's: one shard, whose order draws nothing
    buffer, expected = [], []
    for line in lines:
        if len(buffer) < 50:
            buffer.append(line)
            continue
        k = rng.randrange(len(buffer))
        expected.append(buffer[k])
        buffer[k] = line
    rng.shuffle(buffer)
    expected += buffer
    assert shuffled(5) == [" ".join(line.split()) for line in expected]
    # long pieces: the buffer gives lines out early, every line still comes once
    monkeypatch.setattr(dataset_module, "SHUFFLE_BUFFER_CHARS", 200)
    got = shuffled(5)
    assert sorted(got) == sorted(" ".join(line.split()) for line in lines)
    assert got != [" ".join(line.split()) for line in expected]


def peak_rss(*args: object, timeout: float = 900, limit_mb: int = 4096,
             ) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``bilm args`` in a fresh helper process; (its result, its peak RSS in MB). Its
    address space is capped at ``limit_mb`` (a run that needs more fails rather than taking
    the machine's memory)."""
    helper = ("import resource, subprocess, sys\n"
              f"limit = {limit_mb} << 20\n"
              "r = subprocess.run(sys.argv[1:], preexec_fn=lambda: resource.setrlimit("
              "resource.RLIMIT_AS, (limit, limit)))\n"
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode,"
              " file=sys.stderr)\nsys.exit(r.returncode)\n")
    r = subprocess.run([sys.executable, "-c", helper, *command(*args)], capture_output=True,
                       text=True, env=ENV, timeout=timeout)
    last = r.stderr.strip().splitlines()[-1].split()
    r.stderr = r.stderr.strip().rpartition("\n")[0]
    return r, int(last[0]) / 1024


@pytest.mark.slow
def test_a_shard_without_newlines_trains_in_bounded_memory(tmp_path):
    """A 30 MB shard that is one line: two batches, bounded memory, the split counted (10 MB
    took 11 GB and minutes before the first batch; 100 MB, 9.2 GB then a traceback)."""
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(1000)])
    line = " ".join(words[rng.integers(0, len(words), 6_000_000)])  # 30 MB
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "shard.0.txt").write_text(f"a short line .\n{line}\nthe end .\n")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["<S>", "</S>", "<UNK>", "a", "short", "line", ".", "the",
                                "end", *words, *(f"x{i}" for i in range(2000))]) + "\n")
    r, peak = peak_rss("train", "--train-prefix", tmp_path / "corpus" / "shard.*", "--vocab",
                       vocab, "--save-dir", tmp_path / "run", "--n-batches", 2, "--seed", 1,
                       "--no-jit")
    assert r.returncode == 0, r.stderr
    assert "shard.0.txt:2: a line longer than a sentence may be" in r.stderr
    assert "1 line(s) of the training files were longer than a sentence" in r.stderr
    assert peak < 1500, f"peak RSS {peak:.0f} MB"


# -- 13: a Transformer's evaluation is bounded by tokens ----------------------------------------

@pytest.mark.slow
def test_transformer_evaluation_and_scoring_are_bounded_by_tokens(tmp_path, monkeypatch):
    import bilm.evaluation
    from bilm import BiLMOptions
    from bilm.data import UnicodeCharsVocabulary
    from bilm.data.sentences import SentenceDataset
    from bilm.evaluation import _sentence_perplexity, score_sentences
    from bilm.model.lm import LanguageModel

    n_vocab = 6000
    budget = (1 << 24) // n_vocab  # at most 16M logits a direction (64 MB) in a batch
    words = [f"w{i}" for i in range(n_vocab - 3)]
    vocab = UnicodeCharsVocabulary(None, 12, tokens=["<S>", "</S>", "<UNK>", *words])
    options = BiLMOptions.from_dict({
        "encoder": {"type": "transformer", "dim": 8, "hidden_dim": 12, "n_layers": 1,
                    "n_heads": 2, "dropout": 0.0, "input_dropout": 0.0},
        "char_cnn": {"filters": [[1, 4], [2, 4]], "embedding": {"dim": 4},
                     "n_characters": 261, "max_characters_per_token": 12,
                     "projection_location": "after_highway", "layer_norm": True},
        "n_tokens_vocab": n_vocab, "dropout": 0.0})
    lm = LanguageModel(options)
    rng = np.random.default_rng(0)
    sentences = [list(rng.choice(words, size=int(n))) for n in rng.integers(40, 80, 120)]
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("".join(" ".join(s) + "\n" for s in sentences))
    data = SentenceDataset(str(heldout), vocab, test=True)
    shapes: list[tuple[int, int]] = []
    batches = data.iter_batches

    def spy(*args, **kwargs):
        for batch in batches(*args, **kwargs):
            shapes.append(batch["token_ids"].shape)
            yield batch

    monkeypatch.setattr(data, "iter_batches", spy)
    perplexity = _sentence_perplexity(lm, data, 256, progress=False)
    assert max(rows * steps for rows, steps in shapes) <= budget, shapes
    assert sum(rows for rows, _ in shapes) == 120
    small = _sentence_perplexity(lm, data, 16, progress=False)  # independent of the batching
    np.testing.assert_allclose(perplexity, small, rtol=1e-5)

    scored: list[tuple[int, int]] = []
    sentence_batch = bilm.evaluation.sentence_batch

    def spy_scores(vocab, batch):
        scored.append((len(batch), max(map(len, batch)) + 2))
        return sentence_batch(vocab, batch)

    monkeypatch.setattr(bilm.evaluation, "sentence_batch", spy_scores)
    scores = list(score_sentences(lm, vocab, sentences))  # --batch-size 64
    assert max(rows * steps for rows, steps in scored) <= budget, scored
    alone = list(score_sentences(lm, vocab, sentences[:8], batch_size=1))
    np.testing.assert_allclose([s.logprob_forward for s in scores[:8]],
                               [s.logprob_forward for s in alone], rtol=1e-5)


@pytest.mark.slow
def test_transformer_evaluate_peak_memory_is_bounded(kjv, tmp_path):
    """bilm evaluate of a tiny Transformer on long held-out sentences: bounded memory (256
    sentences at once took 4.7 GB on KJV's held-out), the same perplexity as in small
    batches."""
    from bilm.presets import preset
    from bilm.training.runs import start_training

    options = preset("transformer-tiny")
    run = tmp_path / "run"
    start_training(str(run), options, str(kjv / "train" / "*"), str(kjv / "vocab.txt"),
                   n_batches=1, seed=1, checkpoint_minutes=None, progress=False)
    lines = (kjv / "heldout" / "kjv.heldout.txt").read_text().split("\n")
    heldout = tmp_path / "heldout.txt"  # 300 sentences of about 90 words
    heldout.write_text("".join(" ".join(lines[i : i + 3]) + "\n" for i in range(0, 900, 3)))
    r, peak = peak_rss("-q", "evaluate", "--save-dir", run, "--test-prefix", heldout)
    assert r.returncode == 0, r.stderr
    perplexity = float(r.stdout.split("perplexity:")[1])
    assert peak < 1500, f"peak RSS {peak:.0f} MB"
    r = bilm("-q", "evaluate", "--save-dir", run, "--test-prefix", heldout, "--batch-size", 8)
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(perplexity, float(r.stdout.split("perplexity:")[1]), rtol=1e-5)
