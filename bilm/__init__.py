"""bilm: ELMo-style bidirectional language models on TensorFlow 2.

The common names are re-exported here; TensorFlow is imported only when a name that needs it
is first used, so ``import bilm`` (and ``bilm --help``) stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Batcher": "bilm.data",
    "TokenBatcher": "bilm.data",
    "Vocabulary": "bilm.data",
    "UnicodeCharsVocabulary": "bilm.data",
    "BiLMOptions": "bilm.options",
    "load_options": "bilm.options",
    "BidirectionalLanguageModel": "bilm.model",
    "dump_token_embeddings": "bilm.model",
    "dump_bilm_embeddings": "bilm.model",
    "weight_layers": "bilm.elmo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bilm' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
