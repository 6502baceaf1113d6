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
