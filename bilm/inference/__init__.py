"""Inference from a trained biLM.

    loader          the encoder from options + HDF5 weights (``load_encoder``)
    language_model  ``BidirectionalLanguageModel`` and ``contextual_layers``
    batching        planning ``embed_sentences``' batches (token budget, XLA shapes)
    cache           the token cache of ``embed_sentences``
    dumps           ``dump_token_embeddings``, ``dump_bilm_embeddings``, ``reduce_embeddings``

The names below are served lazily: importing this package does not import TensorFlow.
"""

from __future__ import annotations

from bilm._lazy import lazy_exports

_EXPORTS = {
    "BidirectionalLanguageModel": "bilm.inference.language_model",
    "contextual_layers": "bilm.inference.language_model",
    "dump_bilm_embeddings": "bilm.inference.dumps",
    "dump_token_embeddings": "bilm.inference.dumps",
    "load_encoder": "bilm.inference.loader",
    "reduce_embeddings": "bilm.inference.dumps",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
