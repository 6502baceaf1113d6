"""``bilm embed --format allennlp`` with AllenNLP 0.9's ``--use-sentence-keys`` and
``--forget-sentences`` (allennlp/commands/elmo.py): the keys and values written, and the
lines refused before any embedding, with no output left behind."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

# stripped, inner whitespace kept: "a  b" and "a b" are two keys, as in AllenNLP; a colon is
# an ordinary character
LINES = ["the cat sat .", "  a  b  ", "x:y z", "\u00e9 \u00fc", "a b", "b a\r", "Mr. X ..."]


def _cli(*args: object) -> tuple[int, str]:
    """``bilm -q ARGS`` in this process: (exit code, stderr)."""
    from bilm.cli import main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(["-q", *map(str, args)])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, err.getvalue()


def _embed(model, text: Path, out: Path, *flags: str) -> tuple[int, str]:
    options_file, weight_file = model
    return _cli("embed", text, out, "--options", options_file, "--weights", weight_file, *flags)


def _read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][...] for k in f}


def _write(path: Path, lines: list[str]) -> Path:
    path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
    return path


def test_sentence_keys_hold_the_line_number_keys_values(tiny_model, tmp_path):
    text = _write(tmp_path / "in.txt", LINES)
    by_line, by_sentence = tmp_path / "by_line.hdf5", tmp_path / "by_sentence.hdf5"
    assert _embed(tiny_model, text, by_line, "--format", "allennlp")[0] == 0
    code, err = _embed(tiny_model, text, by_sentence, "--format", "allennlp",
                       "--use-sentence-keys")
    assert code == 0, err
    lines, sentences = _read(by_line), _read(by_sentence)
    index = json.loads(lines.pop("sentence_to_index")[0])
    stripped = [line.strip() for line in LINES]
    assert index == {s: str(i) for i, s in enumerate(stripped)}
    assert sorted(sentences) == sorted(stripped)  # the keys are the sentences, nothing else
    assert "sentence_to_index" not in sentences
    for i, sentence in enumerate(stripped):
        assert sentences[sentence].dtype == np.float32
        np.testing.assert_array_equal(sentences[sentence], lines[str(i)])  # bit for bit
    with h5py.File(by_sentence, "r") as f:  # every key is a dataset at the top: no groups
        assert all(isinstance(f[k], h5py.Dataset) for k in f)

    # --forget-sentences: the same datasets under the line numbers, no sentence_to_index
    forgot = tmp_path / "forgot.hdf5"
    assert _embed(tiny_model, text, forgot, "--format", "allennlp", "--forget-sentences",
                  "--layers", "top")[0] == 0
    got = _read(forgot)
    assert sorted(got) == sorted(str(i) for i in range(len(LINES)))
    for key, value in got.items():
        np.testing.assert_array_equal(value, lines[key][-1])
    # both flags: --forget-sentences changes nothing with sentence keys (AllenNLP's meaning)
    both = tmp_path / "both.hdf5"
    assert _embed(tiny_model, text, both, "--format", "allennlp", "--use-sentence-keys",
                  "--forget-sentences")[0] == 0
    got = _read(both)
    assert sorted(got) == sorted(sentences)
    for key, value in got.items():
        np.testing.assert_array_equal(value, sentences[key])


def test_a_duplicate_sentence_stops_before_the_model_loads(tiny_model, tmp_path,
                                                          monkeypatch):
    from bilm.inference import dumps

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(dumps, "BidirectionalLanguageModel", no_model)
    text = _write(tmp_path / "in.txt", ["a b", "c d", "e", " a b\t"])  # line 4 = line 1
    out = tmp_path / "out.hdf5"
    code, err = _embed(tiny_model, text, out, "--format", "allennlp", "--use-sentence-keys")
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err == (f"bilm: error: {text}:4: duplicate sentence 'a b' (first on line 1); a "
                   "sentence key names one dataset. To encode duplicate sentences, do not pass "
                   "--use-sentence-keys\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]  # no output, no .part
    # an existing output is left as it was by a refused --overwrite
    out.write_bytes(b"old")
    assert _embed(tiny_model, text, out, "--format", "allennlp", "--use-sentence-keys",
                  "--overwrite")[0] == 2
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.hdf5"]


@pytest.mark.parametrize("line, problem", [
    ("a / b", "the sentence 'a / b' holds a '/', which HDF5 reads as a group"),
    ("/a", "the sentence '/a' holds a '/', which HDF5 reads as a group"),
    ("x\x00y", "the sentence 'x\\x00y' holds a NUL character, which ends an HDF5 name"),
    (".", "the sentence '.' names the HDF5 file's root group"),
    ("   ", "a blank line has no sentence"),
], ids=["slash", "leading-slash", "nul", "dot", "blank"])
def test_a_line_hdf5_cannot_name_is_one_line_and_no_file(tiny_model, tmp_path, line, problem):
    text = _write(tmp_path / "in.txt", ["fine : colon", "..", line, "never reached"])
    code, err = _embed(tiny_model, text, tmp_path / "out.hdf5", "--format", "allennlp",
                       "--use-sentence-keys")
    assert code == 2
    assert err == (f"bilm: error: {text}:3: {problem}, so it cannot be a sentence key; "
                   "without --use-sentence-keys the keys are line numbers, which take any "
                   "line\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


@pytest.mark.parametrize("flag", ["--use-sentence-keys", "--forget-sentences"])
def test_the_allennlp_flags_are_refused_with_format_bilm(tiny_model, tmp_path, flag):
    text = _write(tmp_path / "in.txt", ["a b"])
    for fmt in ([], ["--format", "bilm"]):
        code, err = _embed(tiny_model, text, tmp_path / "out.hdf5", *fmt, flag)
        assert code == 2
        assert err == (f"bilm: error: {flag} applies to --format allennlp only (AllenNLP's "
                       "elmo layout); add --format allennlp or leave it out\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_the_library_checks_keys_as_it_writes(tiny_model, tmp_path, monkeypatch):
    """A duplicate that the first pass did not see (the file changed meanwhile) still stops
    the write with SentenceKeyError, and the unfinished file is removed; the flags need
    layout='allennlp'."""
    from bilm.inference import dumps

    options_file, weight_file = tiny_model
    text = _write(tmp_path / "in.txt", ["a b", "c", "a b"])
    with pytest.raises(ValueError, match="layout='allennlp' only"):
        dumps.dump_bilm_embeddings(None, text, options_file, weight_file, tmp_path / "x.hdf5",
                                   stateful=False, forget_sentences=True)
    monkeypatch.setattr(dumps, "_check_sentence_keys", lambda path: None)
    with pytest.raises(dumps.SentenceKeyError, match=r"in\.txt:3: the file changed"):
        dumps.dump_bilm_embeddings(None, text, options_file, weight_file, tmp_path / "x.hdf5",
                                   stateful=False, progress=False, layout="allennlp",
                                   use_sentence_keys=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]
