#!/usr/bin/env python
"""bilm-tf's bin/run_test.py, for TensorFlow 2: see `python bin/run_test.py --help`."""

from bilm.scripts import run_test

if __name__ == "__main__":
    run_test()
