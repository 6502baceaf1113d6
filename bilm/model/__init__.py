"""The network: token embedders (``token_embedder``), the biLM encoder (token embedder +
contextualizer, ``encoder``) and the language model head with its losses (``lm``).

bilm-tf's ``bilm.model`` names (``BidirectionalLanguageModel``, ``dump_token_embeddings``,
``dump_bilm_embeddings``) stay importable from here; they live in :mod:`bilm.inference`.
"""

from __future__ import annotations

from bilm._lazy import lazy_exports

_EXPORTS = {name: "bilm.inference.model" for name in (
    "BidirectionalLanguageModel", "dump_bilm_embeddings", "dump_token_embeddings",
    "reduce_embeddings")}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
