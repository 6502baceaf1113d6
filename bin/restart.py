#!/usr/bin/env python
"""bilm-tf's bin/restart.py, for TensorFlow 2: see `python bin/restart.py --help`."""

from bilm.scripts import restart

if __name__ == "__main__":
    restart()
