"""Vocabularies and batchers (NumPy only; no TensorFlow import)."""

from bilm.data.batcher import Batcher, TokenBatcher
from bilm.data.dataset import BidirectionalLMDataset, LMDataset
from bilm.data.vocabulary import UnicodeCharsVocabulary, Vocabulary, VocabularyError

__all__ = [
    "Batcher",
    "BidirectionalLMDataset",
    "LMDataset",
    "TokenBatcher",
    "UnicodeCharsVocabulary",
    "Vocabulary",
    "VocabularyError",
]
