"""bilm: ELMo-style bidirectional language models on TensorFlow 2.

The common names are re-exported here; TensorFlow is imported only when a name that needs it
is first used, so ``import bilm`` (and ``bilm --help``) stay fast.
"""

from __future__ import annotations

from bilm._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Batcher": "bilm.data",
    "TokenBatcher": "bilm.data",
    "Vocabulary": "bilm.data",
    "UnicodeCharsVocabulary": "bilm.data",
    "BiLMOptions": "bilm.options",
    "load_options": "bilm.options",
    "BidirectionalLanguageModel": "bilm.inference.language_model",
    "dump_token_embeddings": "bilm.inference.dumps",
    "dump_bilm_embeddings": "bilm.inference.dumps",
    "weight_layers": "bilm.elmo",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
