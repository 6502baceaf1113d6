"""Loading a pretrained biLM encoder for inference from its options and HDF5 weights: the one
way :class:`~bilm.BidirectionalLanguageModel` and :class:`bilm.keras.ELMoEmbedding` build it."""

from __future__ import annotations

import os

from bilm.io.weights import load_weights
from bilm.model.encoder import BiLMEncoder
from bilm.options import BiLMOptions

__all__ = ["INFERENCE_PRECISIONS", "check_precision", "load_encoder"]

# inference precision -> the encoder's (float32 weights and state either way)
INFERENCE_PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def check_precision(precision: str) -> None:
    """ValueError unless ``precision`` is one of :data:`INFERENCE_PRECISIONS`."""
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(INFERENCE_PRECISIONS)}; "
                         f"got {precision!r}")


def load_encoder(options: BiLMOptions, weight_file: str | os.PathLike[str] | None, *,
                 use_character_inputs: bool = True, n_word_vocab: int | None = None,
                 embedding_weight_file: str | os.PathLike[str] | None = None,
                 precision: str = "float32", trainable: bool = False) -> BiLMEncoder:
    """A two-direction :class:`~bilm.model.encoder.BiLMEncoder` with its weights loaded.

    Args:
        options: the model's options.
        weight_file: its bilm-tf HDF5 weights (:func:`bilm.io.weights.load_weights`, with its
            checks); None keeps the initial weights (a Keras model whose weights come from
            its own archive).
        use_character_inputs: char-CNN input; False takes word ids (``n_word_vocab`` rows).
        n_word_vocab: rows of the word embedding (word input only).
        embedding_weight_file: the word embedding of a token-input model, from
            :func:`~bilm.dump_token_embeddings`.
        precision: ``float32`` or ``bfloat16`` (see :data:`INFERENCE_PRECISIONS`).
        trainable: leave the encoder's weights trainable (fine-tuning); frozen by default.
    """
    check_precision(precision)
    encoder = BiLMEncoder(options, use_character_inputs=use_character_inputs,
                          n_word_vocab=n_word_vocab, n_directions=2,
                          precision=INFERENCE_PRECISIONS[precision])
    if weight_file is not None:
        load_weights(encoder, weight_file, embedding_weight_file)
    encoder.trainable = trainable
    return encoder
