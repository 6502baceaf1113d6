"""``weight_layers``: bilm-tf's task-specific ELMo mix, on a reusable Keras layer."""

from __future__ import annotations

import tensorflow as tf

from bilm.nn.scalar_mix import ScalarMix

__all__ = ["ScalarMix", "clear_weight_layers", "weight_layer", "weight_layers"]

# Layers made by weight_layers, by name: a second call with the same name reuses the weights,
# as bilm-tf's variable scopes did.
_LAYERS: dict[str, ScalarMix] = {}


def clear_weight_layers() -> None:
    """Forget the layers made by :func:`weight_layers` (the next call creates new weights)."""
    _LAYERS.clear()


def weight_layer(name: str) -> ScalarMix:
    """The layer :func:`weight_layers` made for ``name``: its variables (``scalar_weights``,
    ``gamma``) to read, assign or train (bilm-tf's ``{name}_ELMo_W`` / ``{name}_ELMo_gamma``).
    KeyError when no call made it."""
    if name not in _LAYERS:
        raise KeyError(f"weight_layers made no layer named {name!r}; made: "
                       f"{', '.join(map(repr, sorted(_LAYERS))) or 'none'}")
    return _LAYERS[name]


def weight_layers(name: str, bilm_ops: dict[str, tf.Tensor], l2_coef: float | None = None,
                  use_top_only: bool = False,
                  do_layer_norm: bool = False) -> dict[str, tf.Tensor | float]:
    """Weight the biLM layers into one ELMo representation (bilm-tf's function).

    Args:
        name: weights ``{name}_ELMo_W`` / ``{name}_ELMo_gamma``; the same name reuses them.
        bilm_ops: the dict returned by :class:`~bilm.BidirectionalLanguageModel`.
        l2_coef: L2 penalty on the raw layer weights (None: no penalty).
        use_top_only: use the top layer only.
        do_layer_norm: layer-normalise each layer (over unmasked positions) before mixing.
    Returns:
        ``weighted_op`` (batch, T, 2 * projection_dim) and ``regularization_op`` (scalar).
    """
    lm_embeddings, mask = bilm_ops["lm_embeddings"], bilm_ops["mask"]
    n_layers = int(lm_embeddings.shape[1])
    layer = _LAYERS.get(name)
    if layer is None:
        layer = _LAYERS[name] = ScalarMix(n_layers, l2_coef=l2_coef, use_top_only=use_top_only,
                                          do_layer_norm=do_layer_norm, name=name)
    elif (layer.n_layers, layer.use_top_only, layer.do_layer_norm, layer.l2_coef) != (
            n_layers, use_top_only, do_layer_norm, l2_coef):
        raise ValueError(f"weight_layers({name!r}) was first created with other settings; "
                         "use another name")
    return {"weighted_op": layer(lm_embeddings, mask), "regularization_op": layer.regularization()}
