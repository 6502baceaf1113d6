"""The console command and the usage scripts, run as a user would (real subprocesses)."""

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


@pytest.mark.slow
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
    assert "the weights match the options" in r.stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"lstm": {"dim": 4}}')
    r = bilm("info", "--options", bad)
    assert r.returncode == 2
    assert r.stderr.strip() == f"bilm: error: missing option 'lstm.projection_dim' in {bad}"


@pytest.mark.slow
def test_cli_export_savedmodel(tiny_model, tmp_path):
    import numpy as np
    import tensorflow as tf

    from bilm.keras import ELMoEmbedding

    options_file, weight_file = tiny_model
    out = tmp_path / "elmo_sm"
    args = ("export-savedmodel", out, "--options", options_file, "--weights", weight_file)
    r = bilm(*args)
    assert r.returncode == 0, r.stderr
    assert "signatures 'default' and 'tokens'" in r.stdout
    sentences = tf.constant(["the light was good .", "and god saw"])
    got = tf.saved_model.load(str(out)).signatures["default"](sentences)["default"].numpy()
    expected = ELMoEmbedding(options_file, weight_file, output="default")(sentences).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    mask = os.umask(0)
    os.umask(mask)
    for path in [out, *out.rglob("*")]:  # readable by others as the umask allows
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        assert path.stat().st_mode & 0o777 == expected, (path, oct(path.stat().st_mode))
    r = bilm(*args)
    assert r.returncode == 2 and "exists; pass --overwrite" in r.stderr
    assert bilm(*args, "--overwrite").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elmo_sm"]  # no temporary left


@pytest.mark.slow
@pytest.mark.parametrize("script", ["usage_character.py", "usage_token.py", "usage_cached.py"])
def test_usage_scripts_run(fixture_model, script):
    r = subprocess.run([sys.executable, str(ROOT / script), str(fixture_model)],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert not [line for line in r.stderr.splitlines()  # TensorFlow's start-up lines hidden
                if line.startswith(("I0000", "E0000", "W0000", "WARNING: All log"))], r.stderr
    if script != "usage_cached.py":
        # character and token input give the same vector
        assert "first vector of 'Pretrained': [ 0.12011" in r.stdout
    else:
        assert "sentence 1: (3, 11, 32)" in r.stdout


def test_cli_and_bin_scripts_are_parallel_shells():
    """bilm's command and bilm-tf's scripts both call the library; neither calls the other."""
    import ast

    for path, other in (("cli/*.py", "bilm.scripts"), ("scripts.py", "bilm.cli")):
        nodes = [n for f in (ROOT / "bilm").glob(path) for n in ast.walk(ast.parse(f.read_text()))]
        imported = {n.module for n in nodes if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in nodes if isinstance(n, ast.Import) for a in n.names}
        assert other not in imported, path
        assert "bilm.training.runs" in imported, path


@pytest.mark.slow
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
    # token embeddings of the vocabulary, from the exported model
    r = bilm("dump-tokens", vocab, tmp_path / "tokens.hdf5", "--options",
             out.parent / "options.json", "--weights", out)
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "tokens.hdf5", "r") as f:
        assert f["embedding"].shape == (len(words) - 1, 8)  # words has a final ""
    # resume: 3 batches done; 100 tokens / (4 x 5) per batch -> up to batch 5
    r = bilm("resume", "--save-dir", save, "--vocab", vocab, "--train-prefix",
             corpus / "shard.*", "--n-train-tokens", 100, "--n-epochs", 1)
    assert r.returncode == 0, r.stderr
    assert 'model_checkpoint_path: "model-5"' in (save / "checkpoint").read_text()
    r = subprocess.run([sys.executable, str(ROOT / "bin" / "restart.py"), "--save_dir",
                        str(save), "--vocab_file", str(vocab), "--train_prefix",
                        str(corpus / "shard.*"), "--n_train_tokens", "140", "--n_epochs", "1"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'model_checkpoint_path: "model-7"' in (save / "checkpoint").read_text()
    short = tmp_path / "short.json"
    short.write_text(tiny.read_text()[:-1] + ', "n_train_tokens": 40, "n_epochs": 1}')
    r = subprocess.run([sys.executable, str(ROOT / "bin" / "train_elmo.py"), "--save_dir",
                        str(tmp_path / "bin_run"), "--vocab_file", str(vocab),
                        "--train_prefix", str(corpus / "shard.*"), "--options", str(short)],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'model_checkpoint_path: "model-2"' in (tmp_path / "bin_run" / "checkpoint").read_text()
    # errors: one line, exit 2
    r = bilm("train", "--train-prefix", tmp_path / "nothing*", "--vocab", vocab,
             "--save-dir", save, "--options", tiny)
    assert r.returncode == 2 and "no training files match" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_demo_quick_run(tmp_path):
    out = tmp_path / "demo"
    r = bilm("demo", "--quick", "--output", out)
    assert r.returncode == 0, r.stderr[-3000:]
    for step in range(1, 7):
        assert f"[{step}/6]" in r.stdout
    for artifact in ("vocab.txt", "model/weights.hdf5", "model/options.json",
                     "training_curve.csv", "checkpoints/checkpoint"):
        assert (out / artifact).exists(), artifact
    curve = (out / "training_curve.csv").read_text().strip().split("\n")
    assert curve[0] == "batch,train_perplexity" and len(curve) > 20
    first, last = (float(row.split(",")[1]) for row in (curve[1], curve[-1]))
    assert last < first / 2  # the curve goes down
    try:
        import matplotlib  # noqa: F401  (the optional 'plot' extra)

        png = (out / "training_curve.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000  # axes, labels, text
    except ImportError:
        assert not (out / "training_curve.png").exists()
    ppl = float(r.stdout.split("held-out perplexity ")[1].split()[0])
    baseline = float(r.stdout.split("unigram baseline ")[1].split(")")[0])
    assert ppl < baseline, (ppl, baseline)  # the biLM beats counting words
    assert "'return' in: press return to continue ." in r.stdout
    r = bilm("demo", "--quick", "--output", out)
    assert r.returncode == 2 and "is not empty" in r.stderr


@pytest.mark.slow
def test_demo_figures_in_band(tmp_path):
    """The README's first command's job, measured by the script the README's figures come from
    (``bilm demo`` in a fresh folder, ~6 min on 2 cores): the held-out perplexity lies in the
    band the README states (bilm.demo.HELDOUT_PERPLEXITY_BAND) and the plot is written."""
    import json

    pytest.importorskip("matplotlib")  # the plot extra, which the README's command installs
    from bilm.demo import HELDOUT_PERPLEXITY_BAND

    figures = tmp_path / "figures.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "readme_figures.py"),
                        "--output", tmp_path, "--json", figures],
                       capture_output=True, text=True, env=ENV, timeout=3600)
    demo = json.loads(figures.read_text())["demo"]
    lo, hi = HELDOUT_PERPLEXITY_BAND
    assert demo["returncode"] == 0, r.stdout[-3000:]
    assert lo <= demo["heldout_perplexity"] <= hi, r.stdout[-1500:]
    assert demo["heldout_perplexity"] < demo["unigram_perplexity"]
    png = (tmp_path / "bilm-demo" / "training_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert r.returncode == 0 and r.stdout.rstrip().endswith("OK"), r.stdout[-1500:]


def _read_h5(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][...] for k in f}


@pytest.mark.slow
def test_embed_layers_pool_and_allennlp_layout(tiny_model, tmp_path):
    """--layers / --pool / --format: values against the default (all layers, per token)."""
    import json

    import numpy as np

    from bilm.inference.dumps import dump_bilm_embeddings, reduce_embeddings

    options_file, weight_file = tiny_model
    lines = ["a b c", "", "d e", "a b c", "  f  "]
    data = tmp_path / "in.txt"
    data.write_text("\n".join(lines) + "\n")
    base = tmp_path / "all.hdf5"
    dump_bilm_embeddings(None, data, options_file, weight_file, base, stateful=False,
                         progress=False)
    full = _read_h5(base)  # the default layout, unchanged: (n_layers + 1, n_tokens, 16)
    assert [full[str(i)].shape for i in range(5)] == [(3, 3, 16), (3, 0, 16), (3, 2, 16),
                                                      (3, 3, 16), (3, 1, 16)]
    # each reduction, written out by hand on the default arrays
    emb = full["0"]
    np.testing.assert_array_equal(reduce_embeddings(emb, "top"), emb[2])
    np.testing.assert_allclose(reduce_embeddings(emb, "average"),
                               (emb[0] + emb[1] + emb[2]) / 3, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(reduce_embeddings(emb, "all", "mean"),
                               (emb[:, 0] + emb[:, 1] + emb[:, 2]) / 3, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(reduce_embeddings(emb, "all", "max"),
                                  np.maximum(np.maximum(emb[:, 0], emb[:, 1]), emb[:, 2]))
    assert reduce_embeddings(emb, "average", "max").shape == (16,)
    for layers, shape in (("all", (3, 16)), ("top", (16,)), ("average", (16,))):
        for pool in ("mean", "max"):  # a blank line pools to zeros
            np.testing.assert_array_equal(reduce_embeddings(full["1"], layers, pool),
                                          np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match="layers must be one of 'all', 'top', 'average'"):
        dump_bilm_embeddings(None, data, options_file, weight_file, tmp_path / "x.hdf5",
                             layers="bottom")
    assert not (tmp_path / "x.hdf5").exists()

    # the Python API: average + max, AllenNLP's layout with every layer
    out = tmp_path / "avg_max.hdf5"
    dump_bilm_embeddings(None, data, options_file, weight_file, out, stateful=False,
                         progress=False, layers="average", pool="max")
    got = _read_h5(out)
    assert sorted(got) == ["0", "1", "2", "3", "4"]
    for k, e in full.items():
        expected = e.mean(axis=0).max(axis=0) if e.shape[1] else np.zeros(16, np.float32)
        np.testing.assert_allclose(got[k], expected, rtol=1e-6, atol=1e-6)
        assert got[k].dtype == np.float32
    out = tmp_path / "allennlp_all.hdf5"
    dump_bilm_embeddings(None, data, options_file, weight_file, out, stateful=False,
                         progress=False, layout="allennlp")
    got = _read_h5(out)
    index = {"a b c": "3", "": "1", "d e": "2", "f": "4"}  # stripped lines; last one wins
    assert json.loads(got.pop("sentence_to_index")[0]) == index
    assert sorted(got) == sorted(full)
    for k in full:
        np.testing.assert_array_equal(got[k], full[k])

    # the command line: --layers top --pool mean --format allennlp
    out = tmp_path / "top_mean.hdf5"
    r = bilm("-q", "embed", data, out, "--options", options_file, "--weights", weight_file,
             "--layers", "top", "--pool", "mean", "--format", "allennlp", "--batch-size", 2)
    assert r.returncode == 0, r.stderr
    assert "1 blank line(s)" in r.stderr  # the zero vector is announced
    with h5py.File(out, "r") as f:
        assert f["sentence_to_index"].shape == (1,)  # AllenNLP's layout: f[...][0] is JSON
        assert json.loads(f["sentence_to_index"][0]) == index
        got = {k: f[k][...] for k in f if k != "sentence_to_index"}
    assert sorted(got) == sorted(full)
    for k, e in full.items():
        expected = e[2].mean(axis=0) if e.shape[1] else np.zeros(16, np.float32)
        assert got[k].shape == (16,)
        np.testing.assert_allclose(got[k], expected, rtol=1e-5, atol=1e-6)


# -- the documentation's commands work as written -----------------------------------------

DOCS = [ROOT / "README.md", ROOT / "docs" / "cli.md"]


def _subcommands():
    import argparse

    from bilm.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for p in (parser, *sub.choices.values()):
        p.allow_abbrev = False  # the docs must spell flags out: `--layer` is not `--layers`
    return parser, sub.choices


def _flags(parser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--")}


def _bash_lines(text: str):
    """(code, comment) of each line of the ```bash blocks, continuation lines joined."""
    import re

    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            code, _, comment = line.partition("#")
            yield code.strip(), comment


def _other_flags() -> set[str]:
    """Flags of the other documented programs: bilm-tf's scripts, the benchmarks, tools."""
    import re

    sources = [ROOT / "bilm" / "scripts.py", *sorted((ROOT / "benchmarks").glob("*.py"))]
    found = {m for path in sources for m in re.findall(r'"(--[a-z][\w-]*)"', path.read_text())}
    # docker run; allennlp elmo; SLURM's srun
    return found | {"--gpus", "--all", "--top", "--average", "--nodes", "--ntasks-per-node",
                    "--gpus-per-node"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_documented_commands_parse(doc):
    """Every ``bilm ...`` line of the doc's bash blocks parses with the real parser (flags and
    values as written, optional [--flags] included), every --flag the doc mentions exists,
    every script and relative link it names is in the repository."""
    import re
    import shlex

    parser, commands = _subcommands()
    text = doc.read_text(encoding="utf-8")
    checked = 0
    last = None
    for code, comment in _bash_lines(text):
        for command in re.split(r"&&|;|\|\|", code):
            argv = shlex.split(command.replace("[", " ").replace("]", " "))
            if argv[:1] == ["bilm"]:
                try:
                    args = parser.parse_args(argv[1:])
                    if args.command == "launch":  # and the command the workers run
                        inner = args.worker_command[args.worker_command[:1] == ["--"]:]
                        args = parser.parse_args(inner)
                except SystemExit:
                    pytest.fail(f"{doc.name}: does not parse: {command.strip()}")
                last = commands[args.command]
                checked += 1
            elif argv[:1] == ["python"] and argv[1:2] != ["-m"]:
                script = ROOT / argv[1]
                assert script.exists(), f"{doc.name}: {argv[1]} does not exist"
                for flag in (a for a in argv[2:] if a.startswith("--")):
                    assert f'"{flag}"' in script.read_text(), f"{doc.name}: {argv[1]} {flag}"
        for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", comment):  # "# --stateful ..."
            if last is not None:
                assert flag in _flags(last) | _flags(parser), f"{doc.name}: {flag} in {comment}"
    assert checked >= (4 if doc.name == "README.md" else 10), "no bilm commands found"
    # inline `bilm CMD ... --flag`: the command and its flags exist
    for span in re.findall(r"`(bilm [^`]+)`", text):
        words = span.split()
        name = words[1].rstrip(":")  # also `bilm embed: error: ...` messages
        if name.startswith("-") or name.isupper():  # `bilm -q ...`, `bilm COMMAND`
            continue
        assert name in commands, f"{doc.name}: unknown command in `{span}`"
        for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", span):
            assert flag in _flags(commands[name]) | _flags(parser), f"`{span}`"
    # any --flag anywhere in the prose belongs to some documented program
    known = set().union(_flags(parser), *map(_flags, commands.values()), _other_flags())
    prose = re.sub(r"```python\n.*?```", "", text, flags=re.S)
    for flag in set(re.findall(r"(?<![\w-])--[a-z][\w-]*", prose)):
        assert flag in known, f"{doc.name} mentions {flag}, which no command has"
    # files and relative links it names exist
    for name in re.findall(r"\b((?:usage_\w+|bin/\w+|benchmarks/\w+)\.py)\b", text):
        assert (ROOT / name).exists(), f"{doc.name} names {name}"
    for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in link:
            assert (doc.parent / link).exists(), f"{doc.name} links to {link}"


def test_cli_reference_covers_every_flag():
    """docs/cli.md has a section per subcommand listing each of its flags."""
    import re

    _, commands = _subcommands()
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## `bilm ([\w-]+)`\n(.*?)(?=^## |\Z)", text, re.S | re.M))
    assert sorted(sections) == sorted(commands)
    for name, parser in commands.items():
        for flag in _flags(parser) - {"--help"}:
            assert f"`{flag}" in sections[name], f"docs/cli.md: bilm {name} {flag} missing"
        for action in parser._actions:
            if not action.option_strings and action.dest != "help":
                shown = action.metavar or action.dest.upper()
                assert shown in sections[name], (name, shown)


@pytest.mark.slow
def test_kjv_sections_example_smoke(kjv, tmp_path):
    """examples/kjv_sections.py end to end on 300 verses of each split: trains, exports,
    classifies; a 100-batch biLM's features already beat the majority class clearly
    (measured: (a) 0.367, (a2) 0.357, (c) 0.383-0.517, (d) 0.500-0.523, majority 0.270; at
    this size the bag-of-words regression varies from run to run, so it is no bound)."""
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "kjv_sections.py"), "--corpus",
                        str(kjv), "--workdir", str(tmp_path / "work"), "--n-batches", "100",
                        "--epochs", "1", "--max-sentences", "300"],
                       capture_output=True, text=True, env=ENV, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "work" / "model" / "weights.hdf5").exists()
    accuracy = {}
    for row in ("(a) ELMo", "(a2) ELMo", "(b) Keras", "(c) bag of words", "(d) bag of words"):
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(row))
        accuracy[row] = float(line.split("accuracy")[1].split()[0])
    majority = float(r.stdout.split("majority class: accuracy ")[1].split(";")[0])
    assert accuracy["(a) ELMo"] > majority + 0.05, accuracy
    assert accuracy["(a2) ELMo"] > majority + 0.05, accuracy
    assert accuracy["(c) bag of words"] > majority + 0.05, accuracy
    assert accuracy["(d) bag of words"] > majority + 0.1, accuracy
