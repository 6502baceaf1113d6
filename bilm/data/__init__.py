"""Vocabularies and batchers (NumPy only; no TensorFlow import)."""

from bilm.data.batcher import Batcher, TokenBatcher
from bilm.data.dataset import BidirectionalLMDataset, DataError, LMDataset
from bilm.data.sentences import SentenceDataset
from bilm.data.vocabulary import UnicodeCharsVocabulary, Vocabulary, VocabularyError

__all__ = [
    "Batcher",
    "BidirectionalLMDataset",
    "DataError",
    "LMDataset",
    "SentenceDataset",
    "TokenBatcher",
    "UnicodeCharsVocabulary",
    "Vocabulary",
    "VocabularyError",
]
