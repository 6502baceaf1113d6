"""The token embedder: context-independent token vectors of the model width.

    character ids ──► char CNN ──► highway ──► projection (──► layer norm)
    word ids      ──► embedding table

bilm-tf's layout by default; AllenNLP's ``CnnHighwayEncoder`` (Transformer ELMo) through the
``char_cnn`` options ``projection_location``, ``layer_norm``, ``highway_gate`` and
``padding_row``. Every encoder (:mod:`bilm.encoders`) reads these vectors.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from bilm.nn.char_cnn import CharCNN
from bilm.nn.highway import Highway
from bilm.nn.layer_norm import LayerNorm
from bilm.nn.layout import WeightEntry
from bilm.nn.token_embedding import TokenEmbedderLayer
from bilm.options import BiLMOptions

__all__ = ["TokenEmbedder"]


class TokenEmbedder(TokenEmbedderLayer):
    """bilm-tf's token vectors of width ``dim``: from character ids (a char-CNN model) or
    word ids (the registered ``char_cnn`` and ``word`` embedders, :mod:`bilm.embedders`).

    Args:
        options: the model's options (``char_cnn`` for character input).
        dim: the output width (default: ``char_cnn.projection_dim``, else the encoder's).
        use_character_inputs: default: whether the options have ``char_cnn``.
        n_word_vocab: rows of the word embedding (word input).
        compute_dtype: ``float32``, or ``bfloat16``/``float16`` for the matmuls and
            convolutions (mixed precision; weights stay float32, the output is float32).
    """

    def __init__(self, options: BiLMOptions, dim: int | None = None,
                 use_character_inputs: bool | None = None, n_word_vocab: int | None = None,
                 compute_dtype: str = "float32", **kwargs) -> None:
        if use_character_inputs is None:
            use_character_inputs = options.use_character_inputs
        cnn = options.char_cnn
        if dim is None:
            dim = cnn.projection_dim if cnn is not None and cnn.projection_dim else options.dim
        super().__init__(dim, use_character_inputs, **kwargs)
        self.matmul_dtype = tf.as_dtype(compute_dtype)
        # a per-layer Keras policy (never the global one) for the CNN and highway layers
        policy = None if compute_dtype == "float32" else f"mixed_{compute_dtype}"
        self.char_cnn = self.highway = self.w_proj = self.b_proj = None
        self.norm = self.embedding = None
        self.project_first = False
        if use_character_inputs:
            if cnn is None:
                raise ValueError("character inputs need a 'char_cnn' section in the options")
            self.char_cnn = CharCNN(cnn, name="char_cnn", dtype=policy)
            n_filters = cnn.n_filters
            # bilm-tf projects (after the highways) only when the sizes differ; AllenNLP's
            # encoder always projects, after the CNN or after the highways
            project = n_filters != dim if cnn.projection_location is None else True
            self.project_first = cnn.projection_location == "after_cnn"
            if cnn.n_highway > 0:
                width = dim if self.project_first else n_filters
                self.highway = Highway(width, cnn.n_highway, gate=cnn.highway_gate,
                                       name="highway", dtype=policy)
            if project:
                self.w_proj = self.add_weight(
                    shape=(n_filters, dim), name="W_proj",
                    initializer=keras.initializers.RandomNormal(
                        stddev=math.sqrt(1.0 / n_filters)))
                self.b_proj = self.add_weight(shape=(dim,), name="b_proj", initializer="zeros")
            if cnn.layer_norm:
                self.norm = LayerNorm(dim, name="norm")
        else:
            if n_word_vocab is None:
                n_word_vocab = options.n_tokens_vocab
            if n_word_vocab is None:
                raise ValueError("a word-input model needs n_word_vocab (or n_tokens_vocab)")
            self.embedding = self.add_weight(
                shape=(n_word_vocab, dim), name="embedding",
                initializer=keras.initializers.RandomUniform(-1.0, 1.0))
        self.built = True

    def _project(self, x: tf.Tensor) -> tf.Tensor:
        if self.w_proj is None:
            return x
        x = tf.matmul(tf.cast(x, self.matmul_dtype), tf.cast(self.w_proj, self.matmul_dtype))
        return tf.cast(x, tf.float32) + self.b_proj

    def call(self, ids: tf.Tensor, shifted: bool = True) -> tf.Tensor:
        """Context-independent token embeddings.

        Args:
            ids: char ids (..., max_chars) or word ids (...). ``shifted``: inference ids where 0
                is padding (its embedding row is zeros / the padding char row); else training
                ids.
        Returns:
            (..., dim) float32.
        """
        if not self.use_character_inputs:
            table = tf.convert_to_tensor(self.embedding)
            if shifted:
                table = tf.concat([tf.zeros_like(table[:1]), table], axis=0)
            return tf.gather(table, ids)
        lead = tf.shape(ids)[:-1]
        flat = tf.reshape(ids, [-1, tf.shape(ids)[-1]])  # shape (n_tokens, max_chars)
        x = self.char_cnn(flat, shifted=shifted)  # shape (n_tokens, n_filters)
        if self.project_first:
            x = self._project(x)
        if self.highway is not None:
            x = self.highway(x)
        if not self.project_first:
            x = self._project(x)
        x = tf.cast(x, tf.float32)  # mixed precision: the CNN's 16-bit output
        if self.norm is not None:
            x = self.norm(x)
        return tf.reshape(x, tf.concat([lead, [self.dim]], axis=0))

    def weight_entries(self) -> list[WeightEntry]:
        """Every weight with its bilm-tf HDF5 key and TF1 checkpoint name."""
        table: list[WeightEntry] = []

        def add(variable, h5_key: str) -> None:
            table.append(WeightEntry(variable, h5_key, f"lm/{h5_key}"))

        if self.char_cnn is None:
            add(self.embedding, "embedding")
            return table
        cnn = self.char_cnn
        add(cnn.char_embed, "char_embed")
        for i, (kernel, bias) in enumerate(zip(cnn.kernels, cnn.biases, strict=True)):
            add(kernel, f"CNN/W_cnn_{i}")
            add(bias, f"CNN/b_cnn_{i}")
        if self.highway is not None:
            hw = self.highway
            for k in range(hw.n_layers):
                add(hw.w_carry[k], f"CNN_high_{k}/W_carry")
                add(hw.b_carry[k], f"CNN_high_{k}/b_carry")
                add(hw.w_transform[k], f"CNN_high_{k}/W_transform")
                add(hw.b_transform[k], f"CNN_high_{k}/b_transform")
        if self.w_proj is not None:
            add(self.w_proj, "CNN_proj/W_proj")
            add(self.b_proj, "CNN_proj/b_proj")
        if self.norm is not None:
            add(self.norm.gamma, "CNN_norm/gamma")
            add(self.norm.beta, "CNN_norm/beta")
        return table
