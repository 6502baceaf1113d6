"""The network: token embedders (``token_embedder``), the biLM encoder (token embedder +
contextualizer, ``encoder``) and the language model head with its losses (``lm``).

bilm-tf's ``bilm.model`` names (``BidirectionalLanguageModel``, ``dump_token_embeddings``,
``dump_bilm_embeddings``) stay importable from here; they live in :mod:`bilm.inference`.
"""

from __future__ import annotations

from bilm._lazy import lazy_exports

_EXPORTS = {
    "BidirectionalLanguageModel": "bilm.inference.language_model",
    "dump_bilm_embeddings": "bilm.inference.dumps",
    "dump_token_embeddings": "bilm.inference.dumps",
    "reduce_embeddings": "bilm.inference.dumps",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
