"""Network building blocks (one concept per file)."""

from bilm.layers.char_cnn import CharCNN
from bilm.layers.highway import Highway
from bilm.layers.lstm import ProjectedLSTM
from bilm.layers.scalar_mix import ScalarMix

__all__ = ["CharCNN", "Highway", "ProjectedLSTM", "ScalarMix"]
