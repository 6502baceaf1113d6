"""Every user mistake on the command line: one line on stderr, exit code 2, no traceback, and
nothing already written is lost (real subprocesses, as a user runs ``bilm``).

Most mistakes are caught before TensorFlow is imported, so each case costs a fraction of a
second; the two that need the model (a weight file that does not match its options, and text
that is not UTF-8) run TensorFlow once each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def bilm(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bilm.cli", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=300)


def assert_user_error(r: subprocess.CompletedProcess, *words: str) -> str:
    """Exit code 2 and exactly one stderr line, containing ``words``; returns the line."""
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith("bilm"), line
    for word in words:
        assert word in line, (word, line)
    return line


@pytest.fixture(scope="module")
def files(tiny_model, tmp_path_factory) -> dict[str, Path]:
    """Inputs for every mistake: good ones beside broken ones, and outputs that exist."""
    options_file, weight_file = tiny_model
    d = tmp_path_factory.mktemp("errors")
    p = {"options": options_file, "weights": weight_file, "dir": d}
    p["text"] = d / "in.txt"
    p["text"].write_text("a b c\n\nd e\n")
    p["latin1"] = d / "latin1.txt"
    p["latin1"].write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    p["corpus"] = d / "corpus"
    p["corpus"].mkdir()
    (p["corpus"] / "shard.0.txt").write_text("the cat sat .\nthe dog sat .\n")
    p["vocab"] = d / "vocab.txt"
    p["vocab"].write_text("<S>\n</S>\n<UNK>\nthe\nsat\n.\n")
    options = json.loads(Path(options_file).read_text())
    p["bad_json"] = d / "bad.json"
    p["bad_json"].write_text('{"lstm": {"dim": 16,}')
    p["big"] = d / "big.json"
    p["big"].write_text(json.dumps({**options, "lstm": {**options["lstm"], "dim": "big"}}))
    p["mismatch"] = d / "mismatch.json"  # a 32-unit LSTM against the weights' 16
    p["mismatch"].write_text(json.dumps({**options, "lstm": {**options["lstm"], "dim": 32}}))
    p["words"] = d / "words.json"  # a word-input model
    p["words"].write_text(json.dumps({"lstm": options["lstm"]}))
    # a training directory as bilm train leaves it (only what the CLI checks up front)
    p["run"] = d / "run"
    p["run"].mkdir()
    (p["run"] / "options.json").write_text(json.dumps(options))
    (p["run"] / "checkpoint").write_text('model_checkpoint_path: "model-3"\n')
    (p["run"] / "model-3.index").write_bytes(b"")  # a checkpoint's files, as far as checks see
    p["existing"] = d / "existing.out"  # an earlier result: must survive every mistake
    p["existing"].write_bytes(b"earlier results \x00\x01 keep me\n")
    p["beside"] = d / "export"  # an export folder whose options.json exists
    p["beside"].mkdir()
    (p["beside"] / "options.json").write_text("{}\n")
    return p


def _embed(p: dict[str, Path], **changes: object) -> list[object]:
    args = {"input": p["text"], "output": p["dir"] / "never.hdf5", "--options": p["options"],
            "--weights": p["weights"], **changes}
    flags = [x for k, v in args.items() if k.startswith("--") for x in (k, v)]
    return ["embed", args["input"], args["output"], *flags]


# (argv builder, words the message must contain, file that must stay byte-identical)
CASES: dict[str, tuple[Callable[[dict], list], tuple[str, ...], str | None]] = {
    # missing files
    "embed-missing-input": (lambda p: _embed(p, input=p["dir"] / "nope.txt"),
                            ("input file not found", "nope.txt"), None),
    "embed-missing-options": (lambda p: _embed(p, **{"--options": p["dir"] / "nope.json"}),
                              ("options file not found", "nope.json"), None),
    "embed-missing-weights": (lambda p: _embed(p, **{"--weights": p["dir"] / "nope.hdf5"}),
                              ("weight file not found", "nope.hdf5"), None),
    "embed-missing-vocab": (lambda p: _embed(p, **{"--vocab": p["dir"] / "nope.txt"}),
                            ("vocabulary file not found",), None),
    "train-missing-vocab": (lambda p: ["train", "--train-prefix", p["corpus"] / "*", "--vocab",
                                       p["dir"] / "nope.txt", "--save-dir", p["dir"] / "new"],
                            ("vocabulary file not found", "nope.txt"), None),
    "dump-tokens-missing-vocab": (lambda p: ["dump-tokens", p["dir"] / "nope.txt",
                                             p["dir"] / "t.hdf5", "--options", p["options"],
                                             "--weights", p["weights"]],
                                  ("vocabulary file not found",), None),
    "evaluate-missing-run": (lambda p: ["evaluate", "--save-dir", p["dir"] / "norun", "--vocab",
                                        p["vocab"], "--test-prefix", p["corpus"] / "*"],
                             ("training directory not found", "--save-dir"), None),
    "resume-missing-run": (lambda p: ["resume", "--save-dir", p["dir"] / "norun", "--vocab",
                                      p["vocab"], "--train-prefix", p["corpus"] / "*"],
                           ("training directory not found",), None),
    "export-missing-run": (lambda p: ["export", "--save-dir", p["dir"] / "norun",
                                      p["dir"] / "w.hdf5"],
                           ("training directory not found",), None),
    "score-missing-run": (lambda p: ["score", p["text"], "--save-dir", p["corpus"], "--vocab",
                                     p["vocab"]],
                          ("has no options.json",), None),
    "score-missing-input": (lambda p: ["score", p["dir"] / "nope.txt", "--save-dir", p["run"],
                                       "--vocab", p["vocab"]],
                            ("input file not found",), None),
    "demo-missing-corpus": (lambda p: ["demo", "--corpus", p["dir"] / "nope",
                                       "--output", p["dir"] / "demo"],
                            ("corpus folder not found",), None),
    # globs that match nothing
    "vocab-bad-glob": (lambda p: ["vocab", p["dir"] / "nothing*", p["dir"] / "v.txt"],
                       ("no training files match", "nothing*", "quote"), None),
    "train-bad-glob": (lambda p: ["train", "--train-prefix", p["dir"] / "nothing*", "--vocab",
                                  p["vocab"], "--save-dir", p["dir"] / "new"],
                       ("no training files match", "--train-prefix"), None),
    "evaluate-bad-glob": (lambda p: ["evaluate", "--save-dir", p["run"], "--vocab", p["vocab"],
                                     "--test-prefix", p["dir"] / "nothing*"],
                          ("no held-out files match", "--test-prefix"), None),
    "resume-bad-glob": (lambda p: ["resume", "--save-dir", p["run"], "--vocab", p["vocab"],
                                   "--train-prefix", p["dir"] / "nothing*"],
                        ("no training files match",), None),
    # options files: not JSON, a wrong type, the wrong kind of model
    "embed-bad-json": (lambda p: _embed(p, **{"--options": p["bad_json"]}),
                       ("bad.json", "not valid JSON"), None),
    "train-bad-json": (lambda p: ["train", "--train-prefix", p["corpus"] / "*", "--vocab",
                                  p["vocab"], "--save-dir", p["dir"] / "new", "--options",
                                  p["bad_json"]],
                       ("bad.json", "not valid JSON"), None),
    "info-bad-json": (lambda p: ["info", "--options", p["bad_json"]], ("not valid JSON",), None),
    "embed-wrong-type": (lambda p: _embed(p, **{"--options": p["big"]}),
                         ("'lstm.dim'", "big.json", "must be int", "'big'"), None),
    "train-wrong-type": (lambda p: ["train", "--train-prefix", p["corpus"] / "*", "--vocab",
                                    p["vocab"], "--save-dir", p["dir"] / "new", "--options",
                                    p["big"]],
                         ("'lstm.dim'", "big.json", "must be int"), None),
    "embed-word-model": (lambda p: _embed(p, **{"--options": p["words"]}),
                         ("word-input model", "char_cnn"), None),
    # weight files that are not HDF5
    "embed-weights-not-hdf5": (lambda p: _embed(p, **{"--weights": p["text"]}),
                               ("not an HDF5 weight file",), None),
    "info-weights-not-hdf5": (lambda p: ["info", "--options", p["options"], "--weights",
                                         p["vocab"]],
                              ("not an HDF5 weight file",), None),
    "embed-options-is-a-folder": (lambda p: _embed(p, **{"--options": p["dir"]}),
                                  ("is a directory; give the options.json inside it",), None),
    "embed-options-and-weights-swapped": (
        lambda p: _embed(p, **{"--options": p["weights"], "--weights": p["options"]}),
        ("is an HDF5 file, not an options.json", "did you swap --options and --weights"),
        None),
    "embed-output-under-a-file": (lambda p: _embed(p, output=p["text"] / "out.hdf5"),
                                  ("cannot write", "in.txt is a file, not a folder"), None),
    "train-unquoted-glob": (lambda p: ["train", "--train-prefix", p["corpus"] / "shard.0.txt",
                                       p["text"], p["latin1"], "--vocab", p["vocab"],
                                       "--save-dir", p["dir"] / "new"],
                            ("unrecognized arguments", "quote it"), None),
    # outputs that exist: refused, and left byte for byte as they were
    "embed-output-exists": (lambda p: _embed(p, output=p["existing"]),
                            ("exists", "--overwrite"), "existing"),
    "vocab-output-exists": (lambda p: ["vocab", p["corpus"] / "*", p["existing"]],
                            ("exists", "--overwrite"), "existing"),
    "dump-tokens-output-exists": (lambda p: ["dump-tokens", p["vocab"], p["existing"],
                                             "--options", p["options"], "--weights",
                                             p["weights"]],
                                  ("exists", "--overwrite"), "existing"),
    "score-output-exists": (lambda p: ["score", p["text"], "--save-dir", p["run"], "--vocab",
                                       p["vocab"], "--output", p["existing"]],
                            ("exists", "--overwrite"), "existing"),
    "export-output-exists": (lambda p: ["export", "--save-dir", p["run"], p["existing"]],
                             ("exists", "--overwrite"), "existing"),
    "export-options-beside-exist": (lambda p: ["export", "--save-dir", p["run"],
                                               p["beside"] / "weights.hdf5"],
                                    ("options.json exists", "--overwrite"), None),
    "export-savedmodel-output-exists": (lambda p: ["export-savedmodel", p["existing"],
                                                   "--options", p["options"], "--weights",
                                                   p["weights"]],
                                        ("exists", "--overwrite"), "existing"),
    "export-savedmodel-word-model": (lambda p: ["export-savedmodel", p["dir"] / "sm",
                                                "--options", p["words"], "--weights",
                                                p["weights"]],
                                     ("word-input model", "export-savedmodel"), None),
    "train-run-exists": (lambda p: ["train", "--train-prefix", p["corpus"] / "*", "--vocab",
                                    p["vocab"], "--save-dir", p["run"]],
                         ("already holds a training run", "bilm resume", "--overwrite"), None),
    "embed-output-is-input": (lambda p: [*_embed(p, output=p["text"]), "--overwrite"],
                              ("also an input",), None),
    "embed-output-is-dir": (lambda p: _embed(p, output=p["corpus"]), ("is a directory",), None),
    # flags out of range
    "embed-batch-size-0": (lambda p: _embed(p, **{"--batch-size": 0}),
                           ("--batch-size", "must be >= 1", "bilm embed --help"), None),
    "train-negative-n-batches": (lambda p: ["train", "--train-prefix", p["corpus"] / "*",
                                            "--vocab", p["vocab"], "--save-dir", p["dir"],
                                            "--n-batches", -5],
                                 ("--n-batches", "must be >= 1", "-5"), None),
    "train-dropout-1.5": (lambda p: ["train", "--train-prefix", p["corpus"] / "*", "--vocab",
                                     p["vocab"], "--save-dir", p["dir"], "--dropout", 1.5],
                          ("--dropout", "[0, 1)"), None),
    "train-learning-rate-0": (lambda p: ["train", "--train-prefix", p["corpus"] / "*",
                                         "--vocab", p["vocab"], "--save-dir", p["dir"],
                                         "--learning-rate", "0"],
                              ("--learning-rate", "positive"), None),
    "train-bad-precision": (lambda p: ["train", "--train-prefix", p["corpus"] / "*",
                                       "--vocab", p["vocab"], "--save-dir", p["dir"],
                                       "--precision", "float8"],
                            ("--precision", "invalid choice"), None),
    "vocab-min-count-negative": (lambda p: ["vocab", p["corpus"] / "*", p["dir"] / "v.txt",
                                            "--min-count", -1],
                                 ("--min-count", "must be >= 0"), None),
    "vocab-max-size-not-int": (lambda p: ["vocab", p["corpus"] / "*", p["dir"] / "v.txt",
                                          "--max-size", "lots"],
                               ("--max-size", "expected an integer"), None),
    "evaluate-batch-size-0": (lambda p: ["evaluate", "--save-dir", p["run"], "--vocab",
                                         p["vocab"], "--test-prefix", p["corpus"] / "*",
                                         "--batch-size", 0],
                              ("--batch-size", "must be >= 1"), None),
    "embed-bad-layers": (lambda p: _embed(p, **{"--layers": "bottom"}),
                         ("--layers", "invalid choice", "'bottom'"), None),
    "embed-missing-required": (lambda p: ["embed", p["text"], p["dir"] / "x.hdf5"],
                               ("name a model", "--model", "--options", "--weights"), None),
    "unknown-command": (lambda p: ["embedd", p["text"]], ("invalid choice", "'embedd'"), None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_user_mistake_is_one_line_exit_2(files, case):
    build, words, protected = CASES[case]
    before = files[protected].read_bytes() if protected else None
    assert_user_error(bilm(*build(files)), *words)
    if protected:
        assert files[protected].read_bytes() == before
    assert not list(files["dir"].glob(".*.part")), "a temporary file was left behind"
    assert not (files["dir"] / "never.hdf5").exists()


def test_debug_shows_the_traceback(files):
    r = bilm("--debug", *_embed(files, input=files["dir"] / "nope.txt"))
    assert r.returncode == 1 and "Traceback" in r.stderr and "UserError" in r.stderr


@pytest.mark.slow
def test_weights_that_do_not_match_the_options_keep_the_old_output(files):
    """Found only once the model is built (TensorFlow): still one line, and --overwrite does
    not touch the earlier output until a complete new one exists."""
    before = files["existing"].read_bytes()
    r = bilm(*_embed(files, output=files["existing"], **{"--options": files["mismatch"]}),
             "--overwrite")
    assert_user_error(r, "weights.hdf5", "has shape", "the options imply")
    assert files["existing"].read_bytes() == before
    assert not list(files["dir"].glob(".*.part"))


def test_info_checks_the_weights_against_the_options(files):
    r = bilm("info", "--options", files["mismatch"], "--weights", files["weights"])
    line = assert_user_error(r, "has shape", "the options imply")
    assert line.startswith("bilm: error: ")
    half = files["dir"] / "half.hdf5"
    data = files["weights"].read_bytes()
    half.write_bytes(data[: len(data) // 2])
    r = bilm("info", "--options", files["options"], "--weights", half)
    assert_user_error(r, "half.hdf5", "not a readable HDF5 file (truncated or damaged?)")


@pytest.mark.slow
def test_text_that_is_not_utf8(files):
    r = bilm(*_embed(files, input=files["latin1"]))
    assert_user_error(r, "latin1.txt", "not UTF-8")
    assert not (files["dir"] / "never.hdf5").exists()
    assert not list(files["dir"].glob(".*.part"))
