"""A third encoder, defined and registered entirely here, outside the package: the proof that
an encoder is one file plus one registration (issue 19).

``conv``: per direction, ``n_layers`` residual convolutions over a window of ``window``
tokens, stateless, trained one sentence per row (the ``"sentences"`` protocol)::

    h_0 = dropout(x, input_dropout) * mask               # shared by both directions
    h_k = (h_{k-1} + dropout(tanh(W_k [h_{k-1}[t - j]]_{j < window} + b_k))) * mask

The forward direction at position t reads positions t - window + 1 .. t, the backward one
t .. t + window - 1 (positions outside the sentence read zeros): a layer k sees k * (window - 1)
tokens to its side. Padding is zeroed before every layer, so a sentence's values do not
depend on its batch.

Its models use the third token embedder (``char_bag``, tests/third_embedder.py): a model
built entirely from parts registered outside the package. Importing this module registers it
(once); the contract suite (tests/test_encoder_contract.py)
runs it as it runs the LSTM and the Transformer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import keras
import tensorflow as tf

from bilm.encoders import Contextualizer, EncoderSpec, get_spec, names, register
from bilm.nn.dropout import Rows, stateless_dropout
from bilm.nn.layout import WeightEntry
from bilm.options import OptionsError
from tests.third_embedder import TINY_CHAR_BAG

__all__ = ["NAME", "TINY_CONV_OPTIONS", "ConvContextualizer", "ConvOptions"]

NAME = "conv"

# rules of each key: (type, lowest value, default; ... for a required key)
_RULES: dict[str, tuple[type, float, Any]] = {
    "dim": (int, 2, ...),
    "n_layers": (int, 1, 2),
    "window": (int, 1, 3),
    "dropout": (float, 0.0, 0.0),
}


@dataclass(frozen=True)
class ConvOptions:
    """The ``encoder`` section of ``"type": "conv"``."""

    type: ClassVar[str] = NAME
    stateful: ClassVar[bool] = False  # each sentence on its own
    protocol: ClassVar[str] = "sentences"  # trained one sentence per row

    dim: int  # the model width: token vectors and each layer's output per direction
    n_layers: int = 2
    window: int = 3  # tokens each layer reads, its own position included
    dropout: float = 0.0  # on each layer's output (before the residual sum)
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for key, (kind, low, _) in _RULES.items():
            value = getattr(self, key)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                object.__setattr__(self, key, value)
            if not isinstance(value, kind) or isinstance(value, bool) or value < low:
                where = f" in {self.source}" if self.source else ""
                raise OptionsError(f"option 'encoder.{key}'{where} must be {kind.__name__} >= "
                                   f"{low}, got {value!r}")
        if self.dropout >= 1:
            raise OptionsError(f"option 'encoder.dropout' must be in [0, 1), got {self.dropout}")

    @property
    def width(self) -> int:
        return self.dim

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str | None = None) -> ConvOptions:
        """The ``encoder`` section (its ``"type"`` ignored: the registry chose this class)."""
        if "dim" not in d:
            raise OptionsError(f"missing option 'encoder.dim'{f' in {source}' if source else ''}")
        known = {k: d.get(k, default) for k, (_, _, default) in _RULES.items()}
        extra = {k: v for k, v in d.items() if k not in _RULES and k != "type"}
        return cls(**known, extra=extra, source=source)

    def to_dict(self) -> dict[str, Any]:
        """The section's keys (options.json adds ``"type"``)."""
        return {**{k: getattr(self, k) for k in _RULES}, **self.extra}


class ConvContextualizer(Contextualizer):
    """Windowed convolutions per direction (``options.encoder`` of type ``conv``)."""

    def __init__(self, options: ConvOptions, n_directions: int = 2, input_dropout: float = 0.0,
                 compute_dtype: str = "float32", **kwargs) -> None:
        kwargs.setdefault("name", NAME)
        super().__init__(options, options.n_layers, options.dim, n_directions, **kwargs)
        self.window, self.input_dropout = options.window, input_dropout
        self.matmul_dtype = tf.as_dtype(compute_dtype)
        d, w, dim = n_directions, options.window, options.dim
        limit = math.sqrt(6.0 / (w * dim + dim))  # Glorot uniform over the window's inputs
        self.kernels = [self.add_weight(shape=(d, w, dim, dim), name=f"kernel_{k}",
                                        initializer=keras.initializers.RandomUniform(-limit,
                                                                                     limit))
                        for k in range(options.n_layers)]
        self.biases = [self.add_weight(shape=(d, dim), name=f"bias_{k}", initializer="zeros")
                       for k in range(options.n_layers)]
        self.built = True

    def _dropout(self, x: tf.Tensor, rate: float, training: bool, seed: tf.Tensor | None,
                 k: int, rows: Rows | None, axis: int) -> tf.Tensor:
        if not training or rate <= 0.0:
            return x
        if seed is None:
            return tf.nn.dropout(x, rate=rate)
        return stateless_dropout(x, rate, tf.random.experimental.stateless_fold_in(seed, k),
                                 rows, axis)

    def _convolve(self, h: tf.Tensor, k: int) -> tf.Tensor:
        """h (d, batch, T, dim) -> (d, batch, T, dim): each direction's window, one matmul."""
        w, n_steps = self.window, tf.shape(h)[2]
        padded = tf.pad(h, [[0, 0], [0, 0], [w - 1, w - 1], [0, 0]])
        directions = []
        for d in range(self.n_directions):
            sign = -1 if d == 0 else 1  # forward reads t - j, backward t + j
            parts = [padded[d, :, w - 1 + sign * j : w - 1 + sign * j + n_steps]
                     for j in range(w)]
            directions.append(tf.concat(parts, axis=-1))  # shape (batch, T, w * dim)
        x = tf.stack(directions)
        shape = tf.shape(x)
        flat = tf.reshape(tf.cast(x, self.matmul_dtype), [shape[0], -1, w * self.width])
        kernel = tf.reshape(tf.cast(self.kernels[k], self.matmul_dtype),
                            [self.n_directions, w * self.width, self.width])
        y = tf.cast(tf.matmul(flat, kernel), tf.float32)
        y = y + tf.convert_to_tensor(self.biases[k])[:, tf.newaxis]
        return tf.reshape(y, tf.concat([shape[:-1], [self.width]], axis=0))

    def sentence_layers(self, x, lengths, state=None, training=False, seed=None,
                        skip_finished_rows=False, rows=None):
        mask = tf.sequence_mask(lengths, tf.shape(x)[1], tf.float32)[..., tf.newaxis]
        x = self._dropout(tf.cast(x, tf.float32), self.input_dropout, training, seed, 0, rows,
                          axis=0)
        h = tf.stack([x * mask] * self.n_directions)  # shape (d, batch, T, dim)
        layers = []
        for k in range(self.n_layers):
            y = self._dropout(tf.tanh(self._convolve(h, k)), self.options.dropout, training,
                              seed, k + 1, rows, axis=1)
            h = (h + y) * mask
            layers.append(h)
        return layers, None

    def weight_entries(self) -> list[WeightEntry]:
        table = []
        for k in range(self.n_layers):
            for part, variable in (("W", self.kernels[k]), ("b", self.biases[k])):
                for d in range(self.n_directions):
                    key = f"Conv_{d}/layer_{k}/{part}"
                    table.append(WeightEntry(variable, key, f"lm/{key}", d,
                                             name=f"conv/layer_{k}/{part}"))
        return table

    def layer_output_names(self) -> list[str]:
        return [f"conv_outputs{k}" for k in range(1, self.n_layers + 1)]


def _network(options: ConvOptions, *, n_directions: int, input_dropout: float,
             compute_dtype: str) -> ConvContextualizer:
    return ConvContextualizer(options, n_directions=n_directions, input_dropout=input_dropout,
                              compute_dtype=compute_dtype)


def _describe(options: ConvOptions) -> str:
    return f"{NAME}: {options.n_layers} layers, dim {options.dim}, window {options.window}"


def _truncate(options: ConvOptions, n_layers: int) -> ConvOptions:
    """The first ``n_layers`` layers (``bilm export --layers``): the registry's default,
    spelt out to show the hook (the Transformer's also drops its top-layer norm)."""
    return dataclasses.replace(options, n_layers=n_layers)


# a tiny model whose token embedder is registered outside the package too
# (tests/third_embedder.py): inference and the contract suite
TINY_CONV_OPTIONS = {"encoder": {"type": NAME, "dim": 8, "n_layers": 2, "window": 3},
                     "token_embedder": TINY_CHAR_BAG}

PRESETS = {
    # minutes on a laptop CPU, like bilm's "tiny": Adagrad, sampled softmax
    f"{NAME}-tiny": {
        "encoder": {"type": NAME, "dim": 64, "n_layers": 2, "window": 3, "dropout": 0.1},
        "token_embedder": {**TINY_CHAR_BAG, "char_dim": 16, "max_characters_per_token": 50},
        "bidirectional": True, "dropout": 0.1, "batch_size": 32,
        "n_negative_samples_batch": 1024, "learning_rate": 0.2, "n_epochs": 10,
    },
}

SPEC = EncoderSpec(name=NAME, options=ConvOptions, network=_network, presets=PRESETS,
                   describe=_describe, truncate=_truncate)

if NAME not in names():  # imported twice (as tests.third_encoder and third_encoder): once
    register(SPEC)
else:
    SPEC = get_spec(NAME)
