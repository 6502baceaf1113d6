#!/usr/bin/env python
"""bilm-tf's bin/train_elmo.py, for TensorFlow 2: see `python bin/train_elmo.py --help`."""

from bilm.scripts import train_elmo

if __name__ == "__main__":
    train_elmo()
