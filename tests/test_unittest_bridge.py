"""``python -m unittest discover tests/`` (bilm-tf's test command) runs this suite through pytest.

The suite is written for pytest (plain functions and fixtures), which unittest does not see: that
command used to report "Ran 0 tests ... OK". unittest calls a test module's ``load_tests`` hook
(a package's hook is not consulted when the start folder is the top-level folder, as in
``discover tests/`` and ``discover -s tests``, so the hook lives in this module). It returns one
test, which runs ``python -m pytest`` in a subprocess from the repository root, its report going
straight to the terminal, and fails when pytest fails, collects nothing or is not installed, so
unittest's exit status is pytest's verdict. pytest ignores the hook (and the test class exists
only inside it), so ``python -m pytest`` runs every test once and never recurses.

``BILM_PYTEST_ARGS``: the arguments of that pytest run, split like a shell command line, paths
relative to the repository root (default: ``tests``, with pyproject.toml's pytest options), e.g.
``BILM_PYTEST_ARGS="-k test_options" python -m unittest discover tests/``.

This module imports nothing but the standard library, so that a missing pytest is reported by
the hook rather than as an import error.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARGS_VARIABLE = "BILM_PYTEST_ARGS"


def pytest_command() -> list[str]:
    """``python -m pytest`` with ``BILM_PYTEST_ARGS`` (default: the tests folder)."""
    args = shlex.split(os.environ.get(ARGS_VARIABLE, "")) or ["tests"]  # run from ROOT
    return [sys.executable, "-m", "pytest", *args]


def load_tests(loader, tests, pattern):  # unittest's hook; pytest does not call it
    import unittest

    class PytestSuite(unittest.TestCase):
        """The whole pytest suite, as one unittest test."""

        def test_pytest_suite(self) -> None:
            command = pytest_command()
            shown = shlex.join(["python", *command[1:]])
            if importlib.util.find_spec("pytest") is None:
                self.fail("bilm's tests are written for pytest, which is not installed: "
                          "pip install -e '.[dev]', then run python -m pytest")
            sys.stdout.flush()
            sys.stderr.flush()
            status = subprocess.run(command, cwd=ROOT).returncode
            if status == 5:  # pytest's "no tests collected"
                self.fail(f"pytest collected no tests: {shown} (check {ARGS_VARIABLE})")
            if status != 0:
                self.fail(f"pytest failed with exit status {status} (its report is above): "
                          f"{shown}")

    PytestSuite.__qualname__ = PytestSuite.__name__  # unittest names it module.PytestSuite
    return unittest.TestSuite([PytestSuite("test_pytest_suite")])


# -- the hook itself (each case a few seconds: unittest imports only this module, and pytest
# -- runs one quick test) ----------------------------------------------------------------------

def _unittest_discover(pytest_args: str, *, python_code: str | None = None):
    env = {**os.environ, ARGS_VARIABLE: pytest_args}
    argv = ["discover", "-s", "tests", "-p", Path(__file__).name]
    if python_code is None:
        command = [sys.executable, "-m", "unittest", *argv]
    else:
        command = [sys.executable, "-c", python_code, *argv]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_unittest_discover_runs_pytest():
    r = _unittest_discover("tests/test_options.py::test_word_input_options_and_replace "
                           "-p no:cacheprovider")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout  # pytest's report
    assert "Ran 1 test" in r.stderr and r.stderr.rstrip().endswith("OK")


def test_unittest_discover_fails_when_pytest_fails(tmp_path):
    failing = tmp_path / "test_fails.py"
    failing.write_text("def test_fails():\n    assert 1 + 1 == 3\n")
    r = _unittest_discover(f"{failing} -p no:cacheprovider")
    assert r.returncode == 1
    assert "1 failed" in r.stdout
    assert "pytest failed with exit status 1 (its report is above)" in r.stderr
    assert "FAILED (failures=1)" in r.stderr
    r = _unittest_discover("tests/test_options.py -k no_such_test -p no:cacheprovider")
    assert r.returncode == 1
    assert "pytest collected no tests" in r.stderr and ARGS_VARIABLE in r.stderr


def test_unittest_discover_without_pytest_says_so():
    hide_pytest = ("import sys, unittest; sys.modules['pytest'] = None; "
                   "unittest.main(module=None, argv=['python -m unittest', *sys.argv[1:]])")
    r = _unittest_discover("", python_code=hide_pytest)
    assert r.returncode == 1
    assert "written for pytest, which is not installed" in r.stderr
    assert "FAILED (failures=1)" in r.stderr
