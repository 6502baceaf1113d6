"""The biLM encoder, defined once for training, evaluation and inference.

    token ids ──► token embedder (bilm.embedders: bilm-tf's char CNN → highway → projection, a
                  word embedding, or a registered one)
              ──► contextualizer (bilm.encoders: LSTM stacks, or Transformer stacks)

Modes are arguments (``training``, ``lengths``, states), never a second network.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from bilm.embedders import TokenEmbedderLayer, build_token_embedder
from bilm.encoders import Contextualizer, State, build_contextualizer
from bilm.nn.layout import WeightEntry
from bilm.options import BiLMOptions

__all__ = ["COMPUTE_DTYPES", "BiLMEncoder", "State"]

# the options' precision -> the dtype of matmuls and convolutions
COMPUTE_DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16",
                  "mixed_float16": "float16"}


class BiLMEncoder(keras.layers.Layer):
    """Token embedder plus contextualizer of a biLM.

    Args:
        options: the model's options.
        use_character_inputs: char-CNN input (default: whether ``options`` has ``char_cnn``).
        n_word_vocab: rows of the word embedding (word input only).
        n_directions: 2 for a biLM, 1 for a forward-only LM (default: from ``bidirectional``).
        precision: ``float32``, or ``mixed_bfloat16`` / ``mixed_float16``: float32 weights,
            matmuls and convolutions in 16 bits (training; the options' key is not read here,
            so inference stays float32).
    """

    def __init__(self, options: BiLMOptions, use_character_inputs: bool | None = None,
                 n_word_vocab: int | None = None, n_directions: int | None = None,
                 precision: str = "float32", **kwargs) -> None:
        kwargs.setdefault("name", "bilm")
        super().__init__(**kwargs)
        self.precision = precision
        compute_dtype = COMPUTE_DTYPES[precision]
        self.matmul_dtype = tf.as_dtype(compute_dtype)
        if n_directions is None:
            n_directions = 2 if options.bidirectional else 1
        self.options = options
        self.n_directions = n_directions
        self.token_embedder: TokenEmbedderLayer = build_token_embedder(
            options, use_character_inputs=use_character_inputs, n_word_vocab=n_word_vocab,
            compute_dtype=compute_dtype)
        self.contextualizer: Contextualizer = build_contextualizer(
            options, n_directions=n_directions, compute_dtype=compute_dtype)
        self.use_character_inputs = self.token_embedder.use_character_inputs
        self.dim = self.token_embedder.dim
        self.built = True

    @property
    def embedding(self):
        """The word embedding table of a word-input model (None for character input)."""
        return self.token_embedder.embedding

    @property
    def stateful(self) -> bool:
        return self.contextualizer.stateful

    @property
    def n_layers(self) -> int:
        return self.contextualizer.n_layers

    def embed_tokens(self, ids: tf.Tensor, shifted: bool = True) -> tf.Tensor:
        """Context-independent token embeddings, (..., dim) float32: see
        :meth:`bilm.nn.token_embedding.TokenEmbedderLayer.call`."""
        return self.token_embedder(ids, shifted=shifted)

    def embed_unique_tokens(self, ids: tf.Tensor, shifted: bool = True) -> tf.Tensor:
        """As :meth:`embed_tokens`, computing each distinct token once."""
        return self.token_embedder.embed_unique(ids, shifted=shifted)

    def initial_state(self, batch_size: int | tf.Tensor) -> State:
        """The contextualizer's zero state (None for a stateless one)."""
        return self.contextualizer.initial_state(batch_size)

    def weight_entries(self) -> list[WeightEntry]:
        """Every weight with its HDF5 key and TF1 name: the token embedder's, then the
        contextualizer's (the export layout)."""
        return [*self.token_embedder.weight_entries(), *self.contextualizer.weight_entries()]
