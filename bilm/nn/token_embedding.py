"""The interface every token embedder's network implements (see :mod:`bilm.embedders`)."""

from __future__ import annotations

import keras
import tensorflow as tf

from bilm.data.vocabulary import PAD_CHAR
from bilm.nn.layout import WeightEntry

__all__ = ["TokenEmbedderLayer", "char_mask"]


def char_mask(char_ids: tf.Tensor, shifted: bool) -> tf.Tensor:
    """True where ``char_ids`` (..., max_chars) hold a character (the begin/end-of-word marks
    included), False on padding.

    ``shifted``: inference ids (bilm-tf's Batcher: each id + 1, 0 for a padding token, so the
    padding character is ``PAD_CHAR + 1``); else training ids (0..260, padding ``PAD_CHAR``).
    """
    if shifted:
        return tf.logical_and(char_ids != PAD_CHAR + 1, char_ids != 0)
    return char_ids != PAD_CHAR


class TokenEmbedderLayer(keras.layers.Layer):
    """Token ids in, context-independent token vectors of width ``dim`` out.

    Attributes:
        dim: the output width (the encoder's input width).
        use_character_inputs: reads character ids (..., max_characters_per_token) rather than
            word ids (...).
        embedding: a word embedding table the softmax may share, or None.

    A subclass builds its weights in ``__init__``, implements :meth:`call` and
    :meth:`weight_entries` (every weight once, with its HDF5 key: export, import, checkpoints
    and the trained-variable table walk it), and gets :meth:`embed_unique` for free.
    """

    embedding = None

    def __init__(self, dim: int, use_character_inputs: bool, **kwargs) -> None:
        kwargs.setdefault("name", "token_embedder")
        super().__init__(**kwargs)
        self.dim, self.use_character_inputs = dim, use_character_inputs

    def call(self, ids: tf.Tensor, shifted: bool = True) -> tf.Tensor:
        """(..., dim) float32 token vectors of char ids (..., max_chars) or word ids (...).

        ``shifted``: inference ids, where 0 is padding (its vector is zeros for word input);
        else training ids (see :func:`char_mask`).
        """
        raise NotImplementedError

    def weight_entries(self) -> list[WeightEntry]:
        """Every weight with its HDF5 key and TF1 checkpoint name."""
        raise NotImplementedError

    def embed_unique(self, ids: tf.Tensor, shifted: bool = True) -> tf.Tensor:
        """As :meth:`call`, computing each distinct token once (exact, and faster: a batch of
        text repeats most of its tokens)."""
        if not self.use_character_inputs:
            return self(ids, shifted=shifted)
        n_chars = tf.shape(ids)[-1]
        flat = tf.reshape(ids, [-1, n_chars])
        unique, index = tf.raw_ops.UniqueV2(x=flat, axis=[0])
        emb = self(unique, shifted=shifted)  # shape (n_unique, dim)
        out = tf.gather(emb, index)
        return tf.reshape(out, tf.concat([tf.shape(ids)[:-1], [self.dim]], axis=0))
