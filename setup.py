"""Shim for bilm-tf users' habits and for ``setuptools.build_meta`` (``pip install .``).

pyproject.toml holds all the metadata; ``pip install .`` is the supported way to install.
``python setup.py install`` stops with one line saying so: it would install bilm without its
dependencies (TensorFlow, h5py, ...), and the first ``bilm`` command would end in a
ModuleNotFoundError. pip's PEP 517 build (``setuptools.build_meta``) never runs ``install``.
"""

import sys

if "install" in sys.argv[1:]:  # a command, not an option such as --install-lib=DIR
    sys.exit("`python setup.py install` would install bilm without its dependencies; run "
             "`pip install .` in this folder instead (`pip install -e .` for an editable one)")

try:
    import setuptools
except ImportError:  # Python 3.12+ virtual environments come without setuptools
    sys.exit("setup.py needs setuptools>=77; use `pip install .` instead "
             "(or `pip install 'setuptools>=77'` first)")

if int(setuptools.__version__.split(".")[0]) < 77:  # pyproject.toml's SPDX license string
    sys.exit(f"setuptools {setuptools.__version__} is too old for pyproject.toml (needs >= 77); "
             "use `pip install .` instead (or `pip install -U 'setuptools>=77'` first)")

setuptools.setup()
