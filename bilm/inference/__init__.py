"""Inference: contextual embeddings from a trained biLM (``BidirectionalLanguageModel``),
batch planning, the token cache and the embedding dumps."""
