"""Plugins on the command line (bilm.cli.plugins): an encoder and a token embedder registered
outside the package reach a separate ``bilm`` process through ``--plugin``, ``BILM_PLUGINS``
or an installed entry point (the contract suite runs them in-process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from bilm.cli.plugins import plugin_names
from tests.conftest import ROOT

ENV = {k: v for k, v in os.environ.items() if k != "BILM_PLUGINS"}


def bilm(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    """``python -m bilm.cli ARGS`` from the repository root (so ``tests`` is importable)."""
    return subprocess.run([sys.executable, "-m", "bilm.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          env={**ENV, **(env or {})})


@pytest.fixture(scope="module")
def conv_options(tmp_path_factory):
    from tests.third_encoder import TINY_CONV_OPTIONS

    path = tmp_path_factory.mktemp("plugin") / "options.json"
    path.write_text(json.dumps(TINY_CONV_OPTIONS))
    return path


def test_plugin_names_are_the_global_flags_then_the_environment(monkeypatch):
    monkeypatch.setenv("BILM_PLUGINS", "c, a,,")
    argv = ["--plugin", "a", "-q", "--plugin=b", "info", "--plugin", "not-global"]
    assert plugin_names(argv) == ["a", "b", "c"]
    monkeypatch.delenv("BILM_PLUGINS")
    assert plugin_names(["info", "--options", "x"]) == []


@pytest.mark.slow
def test_a_plugin_module_makes_its_encoder_and_embedder_known(conv_options):
    """Without the plugin the options are refused in one line; with it (flag or environment)
    ``bilm info`` describes the conv encoder and its char_bag embedder."""
    r = bilm("info", "--options", conv_options)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "option 'encoder.type'" in r.stderr and "got 'conv'" in r.stderr
    for how in (["--plugin", "tests.third_encoder"], []):
        env = {} if how else {"BILM_PLUGINS": "tests.third_encoder"}
        r = bilm(*how, "info", "--options", conv_options, env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[1:] == [
            "input: characters", "conv: 2 layers, dim 8, window 3",
            "char_bag: char_dim 6, max_characters_per_token 12"]


def test_an_entry_point_plugin_is_loaded_and_a_broken_one_named(tmp_path):
    """A distribution's ``bilm.plugins`` entry point is loaded by every command: its encoder's
    preset is one of ``train --preset``'s choices."""
    site = tmp_path / "site"
    (site / "ep_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "ep_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ep-plugin\nVersion: 0.1\n")
    (site / "ep_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[bilm.plugins]\nep = ep_plugin\n")
    (site / "ep_plugin.py").write_text(textwrap.dedent("""
        from bilm.encoders import EncoderSpec, register

        class EpOptions:
            type = "ep"
            stateful = False
            protocol = "sentences"

        register(EncoderSpec(name="ep", options=EpOptions, network=None,
                             presets={"ep-tiny": {"encoder": {"type": "ep"}}}))
    """))
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    r = bilm("train", "--help", env=env)
    assert r.returncode == 0, r.stderr
    assert "ep-tiny" in r.stdout
    (site / "ep_plugin.py").write_text("raise RuntimeError('broken on purpose')\n")
    r = bilm("train", "--help", env=env)
    assert r.returncode == 2
    assert r.stderr == ("bilm: error: plugin 'ep' (ep_plugin, entry point group bilm.plugins) "
                        "could not be loaded (RuntimeError: broken on purpose)\n")


def test_a_missing_plugin_is_one_line():
    r = bilm("--plugin", "no_such_plugin_module", "info", "--options", "x.json")
    assert r.returncode == 2
    assert r.stderr == ("bilm: error: plugin 'no_such_plugin_module' could not be imported "
                        "(ModuleNotFoundError: No module named 'no_such_plugin_module'); is it "
                        "on PYTHONPATH?\n")
