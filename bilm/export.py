"""Export a trained biLM: bilm-tf's HDF5 weights and an inference ``options.json`` from a
run's checkpoint (:func:`dump_weights`; no trainer, no strategy), or a TensorFlow SavedModel
with the TF Hub ELMo interface (:func:`export_savedmodel`).

The exported SavedModel needs TensorFlow only (no ``bilm``)::

    elmo = tf.saved_model.load("elmo_savedmodel")
    out = elmo.signatures["default"](strings=tf.constant(["the cat sat"]))
    out["elmo"]      # (batch, max_len, 2 * projection_dim)

Signatures (as TF Hub's ``google/elmo``): ``default`` takes ``strings`` (batch,) — sentences
split on whitespace; ``tokens`` takes ``tokens`` (batch, max_len) strings and ``sequence_len``
(batch,) int32. Both return ``word_emb`` (batch, max_len, proj), one output per contextual
layer — ``lstm_outputs1``, ``lstm_outputs2``, … for an LSTM model (TF Hub's names),
``transformer_outputs1``, … for a Transformer — (batch, max_len, 2 * proj), ``elmo`` (batch,
max_len, 2 * proj; the
trainable scalar mix, zero at padding), ``default`` (batch, 2 * proj; the mean of ``elmo``
over the real tokens) and ``sequence_len`` (batch,).

Calling the loaded object itself — ``elmo(strings)``, which is what ``hub.KerasLayer(path)``
does when no ``signature`` is given — returns the ``default`` output alone, as the TF1 hub
module's default output: code written for ``hub.KerasLayer(".../elmo/3")`` followed by a
``Dense`` runs unchanged, and ``trainable=True`` trains the scalar mix.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import tensorflow as tf

from bilm.encoders import truncated_encoder
from bilm.io.files import atomic_dir
from bilm.io.weights import save_weights
from bilm.keras import ELMoEmbedding
from bilm.model.encoder import BiLMEncoder
from bilm.nn.layout import weight_table
from bilm.options import load_options, save_options
from bilm.training.run_folder import TrainingRun
from bilm.training.runs import _load_first_intact, _run_checkpoints

__all__ = ["dump_weights", "export_savedmodel"]

logger = logging.getLogger(__name__)


def dump_weights(tf_save_dir: str, outfile: str, ckpt_file: str | None = None,
                 n_layers: int | None = None, overwrite: bool = True) -> None:
    """Latest checkpoint of ``tf_save_dir`` -> HDF5 weights in bilm-tf's layout (no softmax),
    with an ``options.json`` fit for inference (``n_characters`` 262) written beside
    ``outfile``.

    ``n_layers`` keeps the token layer and the first ``n_layers`` contextual layers (the
    "reduced ELMo"): their weights and values are the full model's (a Transformer's then lacks
    the top layer's normalization, which only the full model's top layer had).
    ``overwrite=False`` replaces neither file if it exists, not even one that another
    process wrote meanwhile (:class:`~bilm.io.files.OutputExistsError`).
    """
    options = load_options(os.path.join(tf_save_dir, "options.json"))
    candidates = ([ckpt_file] if ckpt_file is not None
                  else _run_checkpoints(TrainingRun(tf_save_dir)))
    lm, ckpt_file = _load_first_intact(options, candidates, tf_save_dir)
    encoder = lm.encoder
    inference = options
    if options.char_cnn is not None:
        inference = inference.replace(char_cnn=dataclasses.replace(options.char_cnn,
                                                                   n_characters=262))
    if n_layers is not None and n_layers != options.n_layers:
        if not 1 <= n_layers <= options.n_layers:
            raise ValueError(f"n_layers must be in [1, {options.n_layers}], got {n_layers}")
        inference = inference.replace(encoder=truncated_encoder(options, n_layers))
        full = {e.h5_key: e for e in weight_table(encoder)}
        reduced = BiLMEncoder(inference, n_word_vocab=options.n_tokens_vocab)
        for entry in weight_table(reduced):
            entry.set(full[entry.h5_key].get())
        encoder = reduced
    save_weights(encoder, outfile, overwrite=overwrite)
    save_options(inference, os.path.join(os.path.dirname(os.path.abspath(outfile)),
                                         "options.json"), overwrite=overwrite)


class _ELMoModule(tf.__internal__.tracking.AutoTrackable):
    """The exported object: signatures plus the attributes of a reusable SavedModel
    (``variables``, ``trainable_variables`` — the scalar mix, as the hub module's —,
    ``regularization_losses`` and ``__call__`` — strings in, the ``default`` (batch, dim)
    tensor out —), which ``hub.KerasLayer`` looks for."""

    def __init__(self, layer: ELMoEmbedding) -> None:
        self.layer = layer
        mix = [layer.scalar_mix.scalar_weights.value, layer.scalar_mix.gamma.value]
        self.variables = [v.value for v in layer.bilm.weights] + mix
        self.trainable_variables = mix
        self.regularization_losses = []

    def _outputs(self, inputs) -> dict[str, tf.Tensor]:
        out = self.layer.layer_outputs(inputs)
        out.pop("mask")
        return out

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="strings")])
    def default(self, strings: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._outputs(strings)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="tokens"),
                                  tf.TensorSpec([None], tf.int32, name="sequence_len")])
    def tokens(self, tokens: tf.Tensor, sequence_len: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._outputs([tokens, sequence_len])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="strings")])
    def __call__(self, strings: tf.Tensor) -> tf.Tensor:
        """Sentences (batch,) in, the ``default`` output (batch, 2 * proj) out: what
        ``hub.KerasLayer(path)`` calls without a ``signature``, as it gets the TF1 ELMo
        module's ``default`` output by default (so a ``Dense`` can follow it)."""
        return self._outputs(strings)["default"]


def export_savedmodel(options_file: str | os.PathLike[str] | None,
                      weight_file: str | os.PathLike[str] | None,
                      export_dir: str | os.PathLike[str], do_layer_norm: bool = False,
                      overwrite: bool = False, *,
                      model: str | os.PathLike[str] | None = None) -> None:
    """Write a SavedModel with the ``default`` and ``tokens`` signatures (see the module doc).

    The model is ``options_file`` + ``weight_file``, or ``model`` (a path of any family, or a
    catalogue name), whose output mix, when it ships one (a TF Hub module's), the ``elmo``
    output starts from.

    The folder appears complete or not at all: it is written beside ``export_dir`` and renamed
    into place (a leftover of a killed export is removed by the next one). Its files get the
    permissions the umask allows. An existing ``export_dir`` is an error unless ``overwrite``.
    """
    export_dir = os.path.abspath(os.fspath(export_dir))
    if os.path.exists(export_dir) and not overwrite:
        raise FileExistsError(f"{export_dir} exists; pass overwrite=True to replace it")
    layer = ELMoEmbedding(options_file, weight_file, do_layer_norm=do_layer_norm, model=model)
    module = _ELMoModule(layer)
    with atomic_dir(export_dir, overwrite=overwrite) as tmp:
        tf.saved_model.save(module, tmp, signatures={"default": module.default,
                                                      "tokens": module.tokens})
    logger.info("wrote SavedModel %s", export_dir)
