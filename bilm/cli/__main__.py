"""``python -m bilm.cli``: the ``bilm`` command."""

import sys

from bilm.cli import main

sys.exit(main())
