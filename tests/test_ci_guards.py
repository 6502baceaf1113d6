"""CI guards: with BILM_REQUIRE_SHARED=1 a run without ../shared fails instead of skipping its
golden tests (a clean CI run must not pass by skipping them)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

# A throwaway test run in a subprocess with tests/conftest.py loaded as a plugin (``-p``): its
# fixtures and hooks, no TensorFlow (checked), rootdir the temporary folder.
_THROWAWAY = '''
import sys

import pytest


def test_golden(fixture_model):
    pass


@pytest.fixture(scope="module")
def own_fixture():
    # as tests/test_transformer.py's and tests/test_torch_weights.py's own fixtures skip
    pytest.skip({reason!r})


def test_own_fixture(own_fixture):
    pass


def test_other_skip():
    pytest.skip("needs root")


def test_light():
    assert "tensorflow" not in sys.modules
'''


def _run(tmp_path, require: bool) -> subprocess.CompletedProcess:
    shared = tmp_path / "empty_shared"
    shared.mkdir(exist_ok=True)
    reason = f"needs {shared / 'fixtures' / 'allennlp-transformer'} (the ../shared folder)"
    (tmp_path / "test_throwaway.py").write_text(_THROWAWAY.format(reason=reason))
    env = {k: v for k, v in os.environ.items() if k != "BILM_REQUIRE_SHARED"}
    env["BILM_SHARED"] = str(shared)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    if require:
        env["BILM_REQUIRE_SHARED"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-q", "-rEs", "--rootdir", str(tmp_path), "test_throwaway.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_missing_shared_fails_when_required(tmp_path):
    r = _run(tmp_path, require=True)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    # a failure in a fixture is reported as an error of the test's setup
    assert "1 passed, 1 skipped, 2 errors" in out, out
    shared = tmp_path / "empty_shared" / "fixtures"
    for test, missing in (("test_golden", shared / "bilm-tf" / "model"),
                          ("test_own_fixture", shared / "allennlp-transformer")):
        assert f"ERROR test_throwaway.py::{test}" in out, out
        # the error names the missing path, and why it is not a skip
        error = out.split(f"ERROR at setup of {test} ")[1].split("\n")[1]
        assert error.startswith(f"needs {missing} (the ../shared folder"), out
        assert error.endswith("; BILM_REQUIRE_SHARED=1 makes this a failure"), out
    assert "SKIPPED" in out and "needs root" in out, out  # other skips stay skips


def test_missing_shared_skips_by_default(tmp_path):
    r = _run(tmp_path, require=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "1 passed, 3 skipped" in out, out
    assert f"needs {tmp_path / 'empty_shared' / 'fixtures' / 'bilm-tf' / 'model'}" in out, out
