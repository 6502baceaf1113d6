"""ELMo as a Keras 3 layer: raw text in, contextual embeddings out, inside the TF graph.

    model = keras.Sequential([
        keras.Input(shape=(), dtype="string"),
        bilm.keras.ELMoEmbedding("options.json", "weights.hdf5", output="default"),
        keras.layers.Dense(6, activation="softmax"),
    ])

Character ids are computed with ``tf.strings`` inside the graph, so a saved model takes
strings as its input and needs neither Python tokenization nor ``bilm`` to serve.

Keras 3's ``fit``/``predict``/``evaluate`` reject NumPy's fixed-width string arrays
(``np.array(["the cat", ...])``, dtype ``<U..``: "Invalid dtype: str288") before any layer
sees them; pass :func:`text_tensor` of them (a ``tf.string`` tensor) or a ``tf.data.Dataset``
instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bilm.data.vocabulary import (
    BOS,
    BOS_CHAR,
    BOW_CHAR,
    EOS,
    EOS_CHAR,
    EOW_CHAR,
    PAD_CHAR,
    _special_chars,
)
from bilm.embedders.registry import get_spec as get_embedder_spec
from bilm.inference.language_model import contextual_layers
from bilm.inference.loader import load_encoder
from bilm.nn.scalar_mix import ScalarMix
from bilm.options import BiLMOptions, OptionsError, load_options

__all__ = ["OUTPUTS", "ELMoEmbedding", "char_ids_from_tokens", "split_sentences", "text_tensor"]

# every model's outputs; then one per contextual layer, named by the encoder:
# lstm_outputs{k} (TF Hub ELMo's names) or transformer_outputs{k}
OUTPUTS = ("elmo", "default", "word_emb")


def text_tensor(sentences) -> tf.Tensor:
    """Sentences (a list, a NumPy array of a string dtype, a pandas Series) as a
    ``tf.string`` tensor: string data Keras' ``fit``/``predict``/``evaluate`` accept.

    Keras 3's array data adapter rejects NumPy's fixed-width ``<U..``/``S..`` dtypes
    ("ValueError: Invalid dtype: str288"), and object arrays unless 1-D and all ``str``,
    before any layer is called, so ``ELMoEmbedding`` cannot convert them itself. A tensor
    passes (slicing, shuffling and ``validation_split`` work on it as on an array)::

        model.fit(text_tensor(np.array(["the cat sat", "a dog"])), labels)
    """
    if isinstance(sentences, tf.Tensor):
        return sentences
    return tf.convert_to_tensor(np.asarray(sentences), tf.string)


def split_sentences(sentences: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Whitespace-split a (batch,) string tensor -> tokens (batch, T) padded with "" and
    lengths (batch,) int32, T the longest sentence's token count."""
    ragged = tf.strings.split(sentences)
    tokens = ragged.to_tensor(default_value="")
    return tokens, tf.cast(ragged.row_lengths(), tf.int32)


def char_ids_from_tokens(tokens: tf.Tensor, lengths: tf.Tensor,
                         max_chars: int) -> tf.Tensor:
    """The :class:`~bilm.Batcher`'s ids, computed in the graph.

    Args:
        tokens: (batch, T) token strings; positions at or past ``lengths`` are ignored.
        lengths: (batch,) tokens per sentence.
        max_chars: ``max_characters_per_token``.
    Returns:
        (batch, T + 2, max_chars) int32: ``<S>``, the tokens, ``</S>``, zero padding; each id
        shifted by one (0 is padding) — exactly ``Batcher(None, max_chars).batch_sentences``.
    """
    tokens = tf.convert_to_tensor(tokens, tf.string)
    lengths = tf.cast(lengths, tf.int32)
    n = max_chars - 2
    # UTF-8 bytes cut to max_chars - 2, zero-filled past the token's end.
    raw = tf.cast(tf.io.decode_raw(tokens, tf.uint8, fixed_length=n), tf.int32)
    n_bytes = tf.minimum(tf.strings.length(tokens), n)[..., tf.newaxis]  # shape (batch, T, 1)
    pos = tf.range(max_chars)  # shape (max_chars,)
    body = tf.pad(raw, [[0, 0], [0, 0], [1, 1]])  # byte k at position k + 1
    ids = tf.where(pos == 0, BOW_CHAR,
                   tf.where(pos <= n_bytes, body,
                            tf.where(pos == n_bytes + 1, EOW_CHAR, PAD_CHAR)))
    # Tokens spelled "<S>" / "</S>" get the boundary characters, as in the Batcher.
    ids = tf.where((tokens == BOS)[..., tf.newaxis], _special_chars(BOS_CHAR, max_chars), ids)
    ids = tf.where((tokens == EOS)[..., tf.newaxis], _special_chars(EOS_CHAR, max_chars), ids)
    batch, t = tf.shape(tokens)[0], tf.shape(tokens)[1]
    bos = tf.broadcast_to(_special_chars(BOS_CHAR, max_chars), [batch, 1, max_chars])
    eos = tf.constant(_special_chars(EOS_CHAR, max_chars))
    ids = tf.concat([bos, ids, tf.zeros([batch, 1, max_chars], tf.int32)], axis=1) + 1
    steps = tf.range(t + 2)[tf.newaxis, :]  # shape (1, T + 2)
    lengths = lengths[:, tf.newaxis]
    ids = tf.where((steps == lengths + 1)[..., tf.newaxis], eos + 1, ids)
    return tf.where((steps <= lengths + 1)[..., tf.newaxis], ids, 0)


@keras.saving.register_keras_serializable(package="bilm")
class _TokenMask(keras.layers.Layer):
    """(batch, T) bool mask of real tokens, as a layer so the functional API can trace it.

    An empty sentence keeps its first (all-zero) position unmasked, so that masked pooling
    gives zeros for it, as the ``default`` output does, instead of 0/0.

    A functional model keeps it as a layer of its own (the mask a layer after a per-token
    output receives is its output), so it is registered for ``keras.models.load_model``; it
    has no weights and no arguments beyond the base layer's, so the base ``get_config`` and
    ``from_config`` serve."""

    def call(self, inputs) -> tf.Tensor:
        tokens, lengths = _tokens(inputs)
        return tf.sequence_mask(tf.maximum(lengths, 1), tf.shape(tokens)[1])

    def compute_output_spec(self, inputs) -> keras.KerasTensor:
        batch = keras.tree.flatten(inputs)[0].shape[0]
        return keras.KerasTensor((batch, None), dtype="bool")


def _tokens(inputs) -> tuple[tf.Tensor, tf.Tensor]:
    """Either input form -> tokens (batch, T) strings, lengths (batch,) int32."""
    if isinstance(inputs, Mapping):
        tokens, lengths = inputs["tokens"], inputs["sequence_len"]
    elif isinstance(inputs, (list, tuple)):
        tokens, lengths = inputs
    else:
        sentences = tf.convert_to_tensor(inputs)
        if sentences.shape.rank == 2 and sentences.shape[-1] == 1:
            sentences = sentences[:, 0]  # keras.Input(shape=(1,), dtype="string")
        return split_sentences(sentences)
    return tf.convert_to_tensor(tokens, tf.string), tf.cast(lengths, tf.int32)


@keras.saving.register_keras_serializable(package="bilm")
class ELMoEmbedding(keras.layers.Layer):
    """ELMo embeddings of text, as a Keras layer (stateless: no batch history).

    Args:
        options_file: the model's options.json (or ``options``: its dict, as in
            :meth:`get_config`).
        weight_file: its HDF5 weights; None leaves the initial weights (for loading a saved
            model, whose weights come from the ``.keras`` archive).
        output: ``"elmo"`` — the learned scalar mix of the layers, (batch, T, 2 * proj), zero
            at padding; ``"default"`` — its mean over the real tokens, (batch, 2 * proj);
            ``"word_emb"`` — the context-independent token layer, (batch, T, proj);
            ``"lstm_outputs{k}"`` / ``"transformer_outputs{k}"`` — contextual layer k
            (1-based), (batch, T, 2 * proj).
        trainable_bilm: fine-tune the biLM weights too (default: frozen; the mix is trainable).
        do_layer_norm: layer-normalise each layer before the mix.
        dropout: drop rate on the output, in training.
        model: instead of ``options_file`` and ``weight_file``: a model of any family bilm
            reads, or a catalogue name (:func:`bilm.models.open_model`).

    Input: a (batch,) string tensor of sentences, split on whitespace; or ``[tokens,
    sequence_len]`` / ``{"tokens", "sequence_len"}`` with tokens (batch, T) strings.
    T is the longest sentence of the batch. For ``model.fit``/``predict`` on a NumPy array of
    strings, pass :func:`text_tensor` of it (Keras rejects NumPy's ``<U..`` arrays).
    """

    def __init__(self, options_file: str | os.PathLike[str] | None = None,
                 weight_file: str | os.PathLike[str] | None = None, output: str = "elmo",
                 trainable_bilm: bool = False, do_layer_norm: bool = False,
                 dropout: float = 0.0, options: Mapping[str, Any] | None = None,
                 model: str | os.PathLike[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if model is not None:
            from bilm.models import model_files

            if options is not None:
                raise ValueError("model= names the options itself; leave out options")
            options_file, weight_file, files = model_files(options_file, weight_file, model)
        if (options_file is None) == (options is None):
            raise ValueError("give exactly one of options_file or options (or model)")
        self.bilm_options: BiLMOptions = (
            load_options(options_file) if options is None else BiLMOptions.from_dict(options))
        if not self.bilm_options.use_character_inputs:
            raise OptionsError("ELMoEmbedding needs a character-input model (the options "
                               "have no 'char_cnn' section)")
        spec = get_embedder_spec(self.bilm_options.embedder_type)
        self._ids_maker = (None if spec.token_ids is None
                           else spec.token_ids(self.bilm_options.embedder_options))
        if self._ids_maker is not None and not hasattr(self._ids_maker, "graph_ids"):
            raise OptionsError(f"ELMoEmbedding: the {spec.name} token embedder makes its ids "
                               "outside TensorFlow's graph only")
        self.weight_file = None if weight_file is None else os.fspath(weight_file)
        self.bilm = load_encoder(self.bilm_options, self.weight_file, trainable=trainable_bilm)
        self.layer_names = self.bilm.contextualizer.layer_output_names()
        valid = OUTPUTS + tuple(self.layer_names)
        if output not in valid:
            raise ValueError(f"output={output!r}; choose from {', '.join(valid)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.output_name, self.trainable_bilm = output, trainable_bilm
        self.do_layer_norm, self.dropout_rate = do_layer_norm, dropout
        self.scalar_mix = ScalarMix(self.bilm.n_layers + 1, do_layer_norm=do_layer_norm,
                                    name="scalar_mix")
        if model is not None and files.mix is not None:  # the mix the model shipped (TF Hub's)
            self.scalar_mix.scalar_weights.assign(files.mix["weights"])
            self.scalar_mix.gamma.assign([files.mix["gamma"]])
        self.dropout_layer = keras.layers.Dropout(dropout)
        # named after this layer: two ELMoEmbedding layers in one functional model each add
        # one, and a model's layer names must be unique
        self._token_mask = _TokenMask(name=f"{self.name}_token_mask")
        self.built = True

    @property
    def output_dim(self) -> int:
        p = self.bilm.dim
        return p if self.output_name == "word_emb" else 2 * p

    def layer_outputs(self, inputs) -> dict[str, tf.Tensor]:
        """Every output at once (the SavedModel's signatures): ``word_emb``,
        one per contextual layer (``lstm_outputs{k}``, ...), ``elmo``, ``default``,
        ``sequence_len`` and ``mask``."""
        tokens, lengths = _tokens(inputs)
        if self._ids_maker is not None:  # an embedder with ids of its own
            ids = self._ids_maker.graph_ids(tokens, lengths)
        else:
            ids = char_ids_from_tokens(tokens, lengths,
                                       self.bilm_options.max_characters_per_token)
        emb = self.bilm.embed_unique_tokens(ids, shifted=True)
        out, _ = contextual_layers(self.bilm, emb, lengths + 2)
        lm, mask = out["lm_embeddings"], out["mask"]
        mask_f = tf.cast(mask, lm.dtype)[..., tf.newaxis]  # shape (batch, T, 1)
        elmo = self.scalar_mix(lm, mask) * mask_f
        n = tf.maximum(tf.reduce_sum(mask_f, axis=1), 1.0)
        result = {
            "word_emb": lm[:, 0, :, : self.bilm.dim] * mask_f,
            "elmo": elmo,
            "default": tf.reduce_sum(elmo, axis=1) / n,
            "sequence_len": lengths,
            "mask": mask,
        }
        for k, name in enumerate(self.layer_names, start=1):
            result[name] = lm[:, k] * mask_f
        return result

    def call(self, inputs, training: bool | None = None) -> tf.Tensor:
        out = self.layer_outputs(inputs)[self.output_name]
        return self.dropout_layer(out, training=training)

    def compute_mask(self, inputs, mask=None) -> tf.Tensor | None:
        """(batch, T) real-token mask of the per-token outputs, for Keras' masking (e.g.
        ``GlobalAveragePooling1D`` then averages real tokens only); None for ``default``."""
        if self.output_name == "default":
            return None
        return self._token_mask(inputs)

    def compute_output_shape(self, input_shape) -> tuple:
        if isinstance(input_shape, Mapping):
            batch = input_shape["tokens"][0]
        elif isinstance(input_shape, (list, tuple)) and input_shape and isinstance(
                input_shape[0], (list, tuple)):
            batch = input_shape[0][0]
        else:
            batch = input_shape[0]
        if self.output_name == "default":
            return (batch, self.output_dim)
        return (batch, None, self.output_dim)

    def compute_output_spec(self, inputs, training=None) -> keras.KerasTensor:
        shape = tuple(getattr(x, "shape", None) for x in (
            inputs.values() if isinstance(inputs, Mapping) else
            inputs if isinstance(inputs, (list, tuple)) else [inputs]))
        out = self.compute_output_shape(shape if len(shape) > 1 else shape[0])
        return keras.KerasTensor(out, dtype="float32")

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(options=self.bilm_options.to_dict(), weight_file=self.weight_file,
                      output=self.output_name, trainable_bilm=self.trainable_bilm,
                      do_layer_norm=self.do_layer_norm, dropout=self.dropout_rate)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ELMoEmbedding:
        # The saved archive holds every weight: do not read the original HDF5 again (it may
        # not exist where the model is loaded).
        config = dict(config)
        config["weight_file"] = None
        return cls(**config)
