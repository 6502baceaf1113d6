"""An AllenNLP archive's weights in our layout: every weight the network declares
(``weight_entries()``) gets its AllenNLP tensor, converted (transposed, split, reshaped).

The Transformer's weights are found by the names its contextualizer declares for them
(``transformer/layer_{k}/{part}``, ``transformer/norm/{gamma|beta}``, and the direction), so
that this module repeats none of its naming; the character CNN's (bilm-tf's HDF5 keys) and the
softmax's have their AllenNLP names here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bilm.io.allennlp import AllenNLPArchive, ArchiveError
from bilm.io.allennlp_options import _model_parts
from bilm.nn.layout import WeightEntry, weight_table

__all__ = ["archive_values", "softmax_rows"]

# what turns an AllenNLP tensor into ours
Convert = Callable[[np.ndarray], np.ndarray]


def _transpose(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.T)


# AllenNLP's name (after ``...layers.{k}.``) of each part of a Transformer block, by the part's
# name in the contextualizer's entries (``transformer/layer_{k}/{part}``), and its conversion
_BLOCK_PARTS: dict[str, tuple[str, Convert]] = {
    "attention/W_query": ("self_attn.linears.0.weight", _transpose),
    "attention/b_query": ("self_attn.linears.0.bias", np.asarray),
    "attention/W_key": ("self_attn.linears.1.weight", _transpose),
    "attention/b_key": ("self_attn.linears.1.bias", np.asarray),
    "attention/W_value": ("self_attn.linears.2.weight", _transpose),
    "attention/b_value": ("self_attn.linears.2.bias", np.asarray),
    "attention/W_output": ("self_attn.linears.3.weight", _transpose),
    "attention/b_output": ("self_attn.linears.3.bias", np.asarray),
    "attention_norm/gamma": ("sublayer.0.norm.gamma", np.asarray),
    "attention_norm/beta": ("sublayer.0.norm.beta", np.asarray),
    "feed_forward/W_1": ("feed_forward.w_1.weight", _transpose),
    "feed_forward/b_1": ("feed_forward.w_1.bias", np.asarray),
    "feed_forward/W_2": ("feed_forward.w_2.weight", _transpose),
    "feed_forward/b_2": ("feed_forward.w_2.bias", np.asarray),
    "feed_forward_norm/gamma": ("sublayer.1.norm.gamma", np.asarray),
    "feed_forward_norm/beta": ("sublayer.1.norm.beta", np.asarray),
}
# AllenNLP's Transformer of each direction (an entry's ``direction``)
_DIRECTIONS = ("_forward_transformer", "_backward_transformer")


def _transformer_source(entry: WeightEntry) -> tuple[str, Convert] | None:
    """AllenNLP's name and conversion for a weight the Transformer contextualizer declares,
    from the entry's name and direction; None for any other entry."""
    if entry.name is None or entry.direction is None or entry.direction >= len(_DIRECTIONS):
        return None
    owner, _, rest = entry.name.partition("/")
    scope, _, part = rest.partition("/")
    if owner != "transformer":
        return None
    base = f"_contextualizer.{_DIRECTIONS[entry.direction]}."
    if scope == "norm" and part in ("gamma", "beta"):  # the final norm
        return f"{base}norm.{part}", np.asarray
    if scope.startswith("layer_") and part in _BLOCK_PARTS:
        theirs, convert = _BLOCK_PARTS[part]
        return f"{base}layers.{scope.removeprefix('layer_')}.{theirs}", convert
    return None


def _embedder_sources(embedder, prefix: str) -> dict[str, tuple[str, Convert]]:
    """Our HDF5 key -> (AllenNLP name, conversion) for the character CNN token embedder
    (AllenNLP's ``character_encoding`` with a ``cnn-highway`` encoder, under ``prefix``)."""
    enc = prefix + "_encoder._module."
    table: dict[str, tuple[str, Convert]] = {}  # our key -> theirs

    def take(ours: str, theirs: str, convert: Convert = np.asarray) -> None:
        table[ours] = (theirs, convert)

    take("char_embed", prefix + "_embedding._module.weight")
    for i in range(len(embedder.char_cnn.kernels)):
        take(f"CNN/W_cnn_{i}", f"{enc}char_conv_{i}.weight",
             lambda a: np.ascontiguousarray(a.transpose(2, 1, 0)[np.newaxis]))
        take(f"CNN/b_cnn_{i}", f"{enc}char_conv_{i}.bias")
    if embedder.highway is not None:
        dim = embedder.highway.dim
        for k in range(embedder.highway.n_layers):
            layer = f"{enc}_highways._layers.{k}"
            # AllenNLP's fused Linear(d, 2d): the first half is the transform, the second the
            # gate (on the carry path: highway_gate 'carry')
            take(f"CNN_high_{k}/W_transform", f"{layer}.weight",
                 lambda a, dim=dim: _transpose(a[:dim]))
            take(f"CNN_high_{k}/b_transform", f"{layer}.bias", lambda a, dim=dim: a[:dim])
            take(f"CNN_high_{k}/W_carry", f"{layer}.weight",
                 lambda a, dim=dim: _transpose(a[dim:]))
            take(f"CNN_high_{k}/b_carry", f"{layer}.bias", lambda a, dim=dim: a[dim:])
    take("CNN_proj/W_proj", enc + "_projection.weight", _transpose)
    take("CNN_proj/b_proj", enc + "_projection.bias")
    take("CNN_norm/gamma", enc + "_layer_norm.gamma")
    take("CNN_norm/beta", enc + "_layer_norm.beta")
    return table


def _softmax_sources(lm, w: dict[str, np.ndarray]) -> dict[str, tuple[str, Convert]]:
    """The softmax: sampled (dense (V, dim) or sparse embeddings (V, dim), (V, 1)) or full
    (SoftmaxLoss: (dim, V))."""
    if "_softmax_loss.softmax_w.weight" in w:
        return {"softmax/W": ("_softmax_loss.softmax_w.weight", np.asarray),
                "softmax/b": ("_softmax_loss.softmax_b.weight", lambda a: a.reshape(-1))}
    rows = lm.softmax_w.shape[0]
    return {"softmax/W": ("_softmax_loss.softmax_w",
                          lambda a: a if a.shape[0] == rows else _transpose(a)),
            "softmax/b": ("_softmax_loss.softmax_b", np.asarray)}


def archive_values(archive: AllenNLPArchive, lm) -> dict[int, np.ndarray]:
    """id(variable) -> value for every trained variable of ``lm`` (a
    :class:`~bilm.model.lm.LanguageModel` built from
    :func:`~bilm.io.allennlp_options.options_from_config`): each weight the network declares
    gets its AllenNLP tensor; the direction-stacked transformer variables are filled direction
    by direction. Raises :class:`ArchiveError` for a missing, unexpected or misshapen
    weight."""
    w = dict(archive.weights)
    _, name, _ = _model_parts(archive.config, archive.path)
    table = _embedder_sources(lm.encoder.token_embedder,
                              f"_text_field_embedder.token_embedder_{name}.")
    table.update(_softmax_sources(lm, w))
    entries = [*weight_table(lm.encoder),
               WeightEntry(lm.softmax_w, "softmax/W", "lm/softmax/W"),
               WeightEntry(lm.softmax_b, "softmax/b", "lm/softmax/b")]
    values: dict[int, np.ndarray] = {}
    used = set()
    for entry in entries:
        source = table.get(entry.h5_key) or _transformer_source(entry)
        if source is None:
            raise ArchiveError(f"{archive.path}: no AllenNLP weight is known for {entry.h5_key}")
        theirs, convert = source
        _fill(values, entry, _converted(archive, w, entry, theirs, convert))
        used.add(theirs)
    _check_all_used(archive, w, used)
    return values


def _converted(archive: AllenNLPArchive, w: dict[str, np.ndarray], entry: WeightEntry,
               theirs: str, convert: Convert) -> np.ndarray:
    """AllenNLP's ``theirs`` as ``entry``'s value (float32, its shape checked)."""
    if theirs not in w:
        raise ArchiveError(f"{archive.path}: weights.th has no '{theirs}' (the config "
                           "and the weights do not match)")
    value = convert(w[theirs]).astype(np.float32)
    if tuple(value.shape) != entry.shape:
        raise ArchiveError(f"{archive.path}: '{theirs}' has shape {w[theirs].shape}, the "
                           f"config implies {entry.shape} for {entry.h5_key}")
    return value


def _fill(values: dict[int, np.ndarray], entry: WeightEntry, value: np.ndarray) -> None:
    """Set ``entry``'s part of its variable's value (a direction of a stacked variable)."""
    if entry.direction is None:
        values[id(entry.variable)] = value
    else:
        full = values.setdefault(id(entry.variable), entry.variable.numpy().copy())
        full[entry.direction] = value


def _check_all_used(archive: AllenNLPArchive, w: dict[str, np.ndarray], used: set[str],
                    ) -> None:
    """Refuse weights the config does not account for (buffers aside)."""
    buffers = ("_last_average_loss", "_contextualizer._position.positional_encoding")
    unused = sorted(k for k in w if k not in used and k not in buffers)
    if unused:
        raise ArchiveError(f"{archive.path}: weights.th holds weights the config does not "
                           f"account for: {unused[:5]}{' ...' if len(unused) > 5 else ''}")


def softmax_rows(archive: AllenNLPArchive) -> int:
    w = archive.weights
    if "_softmax_loss.softmax_b.weight" in w:
        return int(w["_softmax_loss.softmax_b.weight"].shape[0])
    if "_softmax_loss.softmax_b" in w:
        return int(w["_softmax_loss.softmax_b"].shape[0])
    raise ArchiveError(f"{archive.path}: weights.th has no softmax (_softmax_loss); import "
                       "needs the language model archive, not an embedder")
