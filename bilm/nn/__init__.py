"""Network building blocks (one concept per file)."""

from bilm.nn.char_cnn import CharCNN
from bilm.nn.highway import Highway
from bilm.nn.lstm import ProjectedLSTM
from bilm.nn.scalar_mix import ScalarMix

__all__ = ["CharCNN", "Highway", "ProjectedLSTM", "ScalarMix"]
