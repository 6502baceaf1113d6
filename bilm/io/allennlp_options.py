"""bilm options for an AllenNLP bidirectional language model's ``config.json``: its
Transformer contextualizer and character CNN token embedder, with Transformer ELMo's recipe."""

from __future__ import annotations

from typing import Any

from bilm.io.allennlp import ArchiveError
from bilm.options import BiLMOptions, OptionsError

__all__ = ["options_from_config"]

# the contextualizers and token embedders we import
_TRANSFORMER = "bidirectional_language_model_transformer"
_MODELS = ("language_model", "bidirectional-language-model")


def _model_parts(config: dict[str, Any], source: str) -> tuple[dict, str, dict]:
    """(model config, token embedder name, token embedder config)."""
    model = config.get("model")
    if not isinstance(model, dict) or model.get("type") not in _MODELS:
        kind = model.get("type") if isinstance(model, dict) else None
        raise ArchiveError(f"{source} is not a language model archive (model type {kind!r}; "
                           f"expected one of {', '.join(_MODELS)})")
    if model.get("type") == "language_model" and not model.get("bidirectional", False):
        raise ArchiveError(f"{source} holds a forward-only language model; bilm imports "
                           "bidirectional ones")
    embedders = (model.get("text_field_embedder") or {}).get("token_embedders") or {}
    used = {k: v for k, v in embedders.items() if (v or {}).get("type") != "empty"}
    if len(used) != 1:
        raise ArchiveError(f"{source}: expected one token embedder, found {sorted(used)}")
    name, embedder = next(iter(used.items()))
    return model, name, embedder


def options_from_config(config: dict[str, Any], n_softmax_rows: int,
                        source: str = "config.json") -> BiLMOptions:
    """bilm options for an AllenNLP bidirectional LM config (Transformer contextualizer,
    character CNN token embedder). Training keys are Transformer ELMo's recipe (Adam with
    the noam schedule); the archive's own trainer settings are not carried over."""
    model, _, embedder = _model_parts(config, source)
    ctx = model.get("contextualizer") or {}
    if ctx.get("type") != _TRANSFORMER:
        raise ArchiveError(f"{source}: contextualizer {ctx.get('type')!r} is not supported "
                           f"(bilm imports {_TRANSFORMER!r})")
    if embedder.get("type") != "character_encoding" or \
            (embedder.get("encoder") or {}).get("type") != "cnn-highway":
        raise ArchiveError(f"{source}: token embedder {embedder.get('type')!r} is not "
                           "supported (bilm imports character_encoding with a cnn-highway "
                           "encoder)")
    encoder = embedder["encoder"]
    n_chars = embedder.get("embedding", {}).get("num_embeddings", 262)
    if n_chars != 262:
        raise ArchiveError(f"{source}: {n_chars} character embeddings, expected ELMo's 262")
    reader = config.get("dataset_reader", {})
    reader = reader.get("base_reader", reader)  # a sharded reader wraps the real one
    loader = config.get("data_loader", config.get("iterator", {}))
    batch_size = loader.get("batch_size", (loader.get("batch_sampler") or {}).get(
        "batch_size", 64))
    d = {
        "encoder": {"type": "transformer", "dim": ctx["input_dim"],
                    "hidden_dim": ctx["hidden_dim"], "n_layers": ctx["num_layers"],
                    "n_heads": 8, "dropout": ctx.get("dropout", 0.1),
                    "input_dropout": ctx.get("input_dropout") or 0.0},
        "char_cnn": {"filters": encoder["filters"], "n_highway": encoder["num_highway"],
                     "embedding": {"dim": encoder["embedding_dim"]},
                     "activation": encoder.get("activation", "relu"), "n_characters": 262,
                     "max_characters_per_token": 50,  # AllenNLP's ELMo character mapper
                     "projection_dim": encoder["projection_dim"],
                     "projection_location": encoder.get("projection_location",
                                                        "after_highway"),
                     "layer_norm": encoder.get("do_layer_norm", False),
                     "highway_gate": "carry", "padding_row": "learned"},
        "bidirectional": True, "dropout": model.get("dropout") or 0.0,
        "n_tokens_vocab": n_softmax_rows,
        "sample_softmax": model.get("num_samples") is not None,
        "n_negative_samples_batch": min(model.get("num_samples") or 8192,
                                        n_softmax_rows - 1),
        "batch_size": int(batch_size), "max_sentence_length": reader.get(
            "max_sequence_length") or 400,
        "optimizer": "adam", "learning_rate_schedule": "noam", "learning_rate": 1.0,
        "warmup_steps": 6000, "all_clip_norm_val": None, "n_epochs": 10,
    }
    try:
        return BiLMOptions.from_dict(d, source=f"{source} (converted)")
    except OptionsError as e:
        raise ArchiveError(str(e)) from None
