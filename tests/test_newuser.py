"""What a new user meets first: TF Hub code on the SavedModel export, the install path
(``pip install .`` and the legacy ``python setup.py install``), and the command line's own help."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
SENTENCES = ["the cat sat on the mat .", "dogs are in the fog", "a", ""]


def _hub():
    """tensorflow_hub, or a skip where it is not installed. Installed but not importable (0.16.1
    imports pkg_resources, gone from setuptools >= 82) is a failure, not a skip: the dev extra
    pins what makes it work."""
    import importlib.util

    if importlib.util.find_spec("tensorflow_hub") is None:
        pytest.skip("tensorflow_hub is not installed (pip install -e '.[dev]' installs it)")
    import tensorflow_hub

    return tensorflow_hub


def _bilm(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bilm.cli", *map(str, args)],
                          capture_output=True, text=True, env=ENV, cwd=cwd, timeout=120)


# --- 1. hub.KerasLayer(path), as code written for TF Hub's elmo/3 uses it -------------------

@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    from bilm.export import export_savedmodel

    path = tmp_path_factory.mktemp("hub") / "elmo_savedmodel"
    export_savedmodel(*tiny_model, path)
    return str(path)


def test_hub_keras_layer_bare_path_then_dense(exported):
    """``hub.KerasLayer(path)`` without a signature calls the SavedModel's ``__call__``: it
    must give the ``default`` (batch, dim) tensor, so a ``Dense`` can follow (it got the dict of
    six outputs: "expects 1 input(s), but it received 6")."""
    hub = _hub()
    import tensorflow as tf
    import tf_keras

    strings = tf.constant(SENTENCES)
    expected = tf.saved_model.load(exported).signatures["default"](strings=strings)["default"]
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.layers.InputLayer(input_shape=(), dtype=tf.string),
        hub.KerasLayer(exported),
        tf_keras.layers.Dense(3, kernel_initializer="ones", use_bias=False),
    ])
    got = model.predict(strings, verbose=0)
    assert got.shape == (len(SENTENCES), 3)
    np.testing.assert_allclose(got, expected.numpy().sum(axis=1, keepdims=True).repeat(3, 1),
                               rtol=1e-5, atol=1e-5)
    # the hub layer alone: exactly the `default` output of the `default` signature
    layer = model.layers[0]
    assert isinstance(layer, hub.KerasLayer)
    np.testing.assert_allclose(layer(strings).numpy(), expected.numpy(), rtol=0, atol=1e-6)
    # the named signatures are unchanged
    as_dict = hub.KerasLayer(exported, signature="default", signature_outputs_as_dict=True)
    assert {"word_emb", "lstm_outputs1", "lstm_outputs2", "elmo", "default",
            "sequence_len"} == set(as_dict(strings))


def test_hub_keras_layer_trainable_fit_changes_the_mix(exported):
    """``hub.KerasLayer(path, trainable=True)`` exposes the scalar mix as trainable weights and
    a ``fit`` step moves them (and only them: the biLM stays frozen, as the hub module's)."""
    hub = _hub()
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    elmo = hub.KerasLayer(exported, trainable=True)
    model = tf_keras.Sequential([
        tf_keras.layers.InputLayer(input_shape=(), dtype=tf.string),
        elmo,
        tf_keras.layers.Dense(2),
    ])
    assert len(elmo.trainable_weights) == 2  # scalar_mix weights and gamma
    assert len(elmo.non_trainable_weights) > 0  # the biLM
    model.compile(tf_keras.optimizers.SGD(0.5),
                  tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.numpy().copy() for w in elmo.trainable_weights]
    frozen = [w.numpy().copy() for w in elmo.non_trainable_weights]
    model.fit(tf.constant(SENTENCES[:3]), np.array([0, 1, 0]), epochs=1, batch_size=3,
              verbose=0)
    after = [w.numpy() for w in elmo.trainable_weights]
    assert all(np.abs(a - b).max() > 1e-6 for a, b in zip(after, before, strict=True))
    for a, b in zip(elmo.non_trainable_weights, frozen, strict=True):
        np.testing.assert_array_equal(a.numpy(), b)


def test_hub_keras_layer_example_in_docs_runs(exported, tmp_path, monkeypatch):
    """docs/keras.md's ``hub.KerasLayer`` example runs as written beside an export named
    ``elmo_savedmodel`` (it gave the dict of six outputs, which the ``Dense`` rejected)."""
    _hub()
    blocks = _python_blocks(ROOT / "docs" / "keras.md")
    hub_blocks = [b for b in blocks if "hub.KerasLayer(" in b]
    assert len(hub_blocks) == 1, hub_blocks
    os.symlink(exported, tmp_path / "elmo_savedmodel")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(hub_blocks[0], "docs/keras.md", "exec"), namespace)
    assert namespace["logits"].shape == (2, 6)


# --- 2. the dev extra brings tensorflow_hub; docs/keras.md as written ------------------------

def _python_blocks(path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [part.split("```", 1)[0] for part in text.split("```python\n")[1:]]


def test_dev_extra_installs_tensorflow_hub_and_tf_keras():
    """CI installs ``.[dev]``: with tensorflow_hub and tf_keras there, the hub tests run there
    instead of skipping."""
    import re

    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    with open(ROOT / "pyproject.toml", "rb") as f:
        dev = tomllib.load(f)["project"]["optional-dependencies"]["dev"]
    names = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("_", "-") for d in dev}
    assert {"tensorflow-hub", "tf-keras", "setuptools"} <= names, dev


def test_keras_doc_imports_what_it_uses_and_matches_readme():
    """Every Python example of docs/keras.md imports ``tf`` before using it, and its
    ``bilm export-savedmodel`` line orders the arguments as README's does."""
    for block in _python_blocks(ROOT / "docs" / "keras.md"):
        if "tf." in block:
            assert "import tensorflow as tf" in block, block

    def export_lines(path):
        return [line.split() for line in path.read_text(encoding="utf-8").splitlines()
                if line.startswith("bilm export-savedmodel ")]

    def shape(words):  # option names in order, and where the positional argument stands
        out, i = [], 2
        while i < len(words):
            if words[i].startswith("--"):
                out.append(words[i])
                i += 2
            else:
                out.append("EXPORT_DIR")
                i += 1
        return out

    readme, doc = export_lines(ROOT / "README.md"), export_lines(ROOT / "docs" / "keras.md")
    assert readme and doc
    assert {tuple(shape(w)) for w in doc} == {tuple(shape(w)) for w in readme}
    text = (ROOT / "docs" / "keras.md").read_text(encoding="utf-8")
    for needed in ('hub.KerasLayer("elmo_savedmodel")', 'signature="tokens"',
                   "signature_outputs_as_dict=True", "trainable=True", "tf_keras",
                   "bilm.keras.ELMoEmbedding"):
        assert needed in text, needed


# --- 3. the command line on its own: --version, complete --help, vocab's one summary ---------

def _help_texts() -> dict[str, str]:
    import argparse

    from bilm.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"bilm": parser.format_help(),
            **{f"bilm {name}": p.format_help() for name, p in sub.choices.items()}}


def test_version_flag():
    import importlib.metadata

    import bilm

    try:
        version = importlib.metadata.version("bilm-tf2")
    except importlib.metadata.PackageNotFoundError:
        version = bilm.__version__
    r = _bilm("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"bilm {version}"
    assert "--version" in _help_texts()["bilm"]


def test_version_falls_back_to_the_module_version(monkeypatch, capsys):
    """Run from a clone that was never installed: no distribution metadata, bilm.__version__."""
    import importlib.metadata

    import bilm
    from bilm.cli import main

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"bilm {bilm.__version__}"


def test_help_is_complete_without_the_docs_folder():
    """A wheel install has no docs/: no help text may send the user there, and the top-level
    help carries what docs/cli.md's exit-code table says."""
    texts = _help_texts()
    for name, text in texts.items():
        assert "docs/" not in text, (name, text)
    top = " ".join(texts["bilm"].split()).lower()
    for needed in ("exit code", "0 ", "2 ", "130", "143", "141", "1 ", "--debug",
                   "bilm command --help"):
        assert needed in top, (needed, top)


def test_learning_rate_help_names_both_optimizers():
    """The Transformer presets train with Adam, the LSTM ones with Adagrad (bilm/presets.py)."""
    from bilm.presets import PRESETS

    assert {p.get("optimizer", "adagrad") for n, p in PRESETS.items()
            if n.startswith("transformer")} == {"adam"}
    assert {p.get("optimizer", "adagrad") for n, p in PRESETS.items()
            if not n.startswith("transformer")} == {"adagrad"}
    texts = _help_texts()
    for command in ("bilm train", "bilm resume"):
        text = " ".join(texts[command].split())
        assert "Adagrad's learning rate" not in text
        assert "Adagrad for LSTM presets" in text and "Adam for Transformer" in text, text


def test_vocab_summary_once_and_in_good_english(tmp_path, caplog):
    from bilm.data.build_vocab import build_vocab

    shard = tmp_path / "train.txt"
    shard.write_text("a b " + "x" * 60 + "\nb c\n", encoding="utf-8")
    r = _bilm("vocab", shard, tmp_path / "vocab.txt")
    assert r.returncode == 0, r.stderr
    said = [line for line in (r.stdout + r.stderr).splitlines() if "vocab.txt" in line]
    assert len(said) == 1, r.stdout + r.stderr
    caplog.set_level(logging.DEBUG, logger="bilm")
    build_vocab(str(shard), tmp_path / "v1.txt", progress=False)
    assert "1 type is longer than 48 bytes" in caplog.text, caplog.text
    assert "1 types" not in caplog.text
    caplog.clear()
    shard.write_text("a " + "x" * 60 + " " + "y" * 60 + "\n", encoding="utf-8")
    build_vocab(str(shard), tmp_path / "v2.txt", progress=False)
    assert "2 types are longer than 48 bytes" in caplog.text, caplog.text


def test_gitignore_has_the_demo_folder():
    """``bilm demo`` writes bilm-demo/ in the current folder: inside a clone, git ignores it."""
    from bilm.cli import build_parser

    args = build_parser().parse_args(["demo"])
    assert args.output == "bilm-demo"
    lines = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "bilm-demo/" in lines or "/bilm-demo/" in lines


# --- 4. python setup.py install: one line pointing at pip; pip install . keeps working ------

_FAKE_SETUPTOOLS = '''
import sys
__version__ = "99.0.0"
def setup(**kwargs):
    print("FAKE SETUP RAN", sys.argv[1:])
'''


@pytest.mark.parametrize("argv", [["install"], ["install", "--user"], ["build", "install"]])
def test_setup_py_install_stops_with_one_line(tmp_path, argv):
    """``python setup.py install`` would install bilm without its dependencies (and fails
    outright on an old setuptools): it stops at once with one line pointing at ``pip install .``.
    A stand-in ``setuptools`` (new enough) shows that nothing reaches ``setup()``."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "setuptools.py").write_text(_FAKE_SETUPTOOLS)
    for path in ([str(fake)], []):  # the stand-in, and the real (here: any) setuptools
        env = {**ENV, "PYTHONPATH": os.pathsep.join(path)}
        r = subprocess.run([sys.executable, "setup.py", *argv], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode in (1, 2), (r.returncode, r.stdout, r.stderr)
        assert "FAKE SETUP RAN" not in r.stdout
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "pip install ." in lines[0], r.stderr
        assert "Traceback" not in r.stderr
    # other commands (what setuptools.build_meta runs) still reach setup()
    env = {**ENV, "PYTHONPATH": str(fake)}
    r = subprocess.run([sys.executable, "setup.py", "egg_info"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "FAKE SETUP RAN ['egg_info']" in r.stdout, r.stderr


def test_pip_wheel_builds_with_the_dependencies(tmp_path):
    """``pip install .``'s path: a PEP 517 wheel build through setuptools.build_meta (which
    runs setup.py) of a copy of the project; the wheel declares the dependencies and the
    ``bilm`` command."""
    import shutil
    import zipfile

    import setuptools

    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} here; the dev extra brings >= 77")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("bilm", "bin"):
        shutil.copytree(ROOT / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "--no-index", "-q", "-w", str(out), str(src)], env=ENV,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = out.glob("bilm_tf2-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
    assert "bilm/cli/__init__.py" in names and "bilm/export.py" in names
    assert "Requires-Dist: tensorflow>=2.16" in meta and "Requires-Dist: h5py" in meta
    assert b"bilm = bilm.cli:main" in entry
