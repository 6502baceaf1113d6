#!/usr/bin/env python
"""bilm-tf's bin/dump_weights.py, for TensorFlow 2: see `python bin/dump_weights.py --help`."""

from bilm.scripts import dump_weights_main

if __name__ == "__main__":
    dump_weights_main()
