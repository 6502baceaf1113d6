"""Shim for bilm-tf users' habits (``python setup.py install``, ``python setup.py --name``).

pyproject.toml holds all the metadata; ``pip install .`` is the supported way to install.
"""

import sys

try:
    import setuptools
except ImportError:  # Python 3.12+ virtual environments come without setuptools
    sys.exit("setup.py needs setuptools>=77; use `pip install .` instead "
             "(or `pip install 'setuptools>=77'` first)")

if int(setuptools.__version__.split(".")[0]) < 77:  # pyproject.toml's SPDX license string
    sys.exit(f"setuptools {setuptools.__version__} is too old for pyproject.toml (needs >= 77); "
             "use `pip install .` instead (or `pip install -U 'setuptools>=77'` first)")

setuptools.setup()
