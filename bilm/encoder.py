"""The biLM encoder, defined once for training, evaluation and inference.

    token ids ──► token embedder (char CNN → highway → projection, or a word embedding)
              ──► LSTM stack per direction (projected, clipped, optional skip connections)

Modes are arguments (``training``, ``lengths``, initial states), never a second network.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from bilm.layers.char_cnn import CharCNN
from bilm.layers.highway import Highway
from bilm.layers.lstm import ProjectedLSTM
from bilm.options import BiLMOptions

__all__ = ["BiLMEncoder", "LSTMState"]

LSTMState = tuple[tf.Tensor, tf.Tensor]  # (c, h), each (n_directions, batch, size)


class BiLMEncoder(keras.layers.Layer):
    """Token embedder plus the LSTM stacks of a biLM.

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
        # a per-layer Keras policy (never the global one) for the CNN and highway layers
        policy = None if precision == "float32" else precision
        compute_dtype = {"float32": "float32", "mixed_bfloat16": "bfloat16",
                         "mixed_float16": "float16"}[precision]
        self.matmul_dtype = tf.as_dtype(compute_dtype)
        if use_character_inputs is None:
            use_character_inputs = options.use_character_inputs
        if n_directions is None:
            n_directions = 2 if options.bidirectional else 1
        self.options = options
        self.use_character_inputs = use_character_inputs
        self.n_directions = n_directions
        lstm = options.lstm
        p = lstm.projection_dim
        self.projection_dim = p
        self.char_cnn = self.highway = self.w_proj = self.b_proj = self.embedding = None
        if use_character_inputs:
            if options.char_cnn is None:
                raise ValueError("character inputs need a 'char_cnn' section in the options")
            cnn = options.char_cnn
            self.char_cnn = CharCNN(cnn, name="char_cnn", dtype=policy)
            n_filters = cnn.n_filters
            if cnn.n_highway > 0:
                self.highway = Highway(n_filters, cnn.n_highway, name="highway", dtype=policy)
            if n_filters != p:  # bilm-tf projects only when the sizes differ
                self.w_proj = self.add_weight(
                    shape=(n_filters, p), name="W_proj",
                    initializer=keras.initializers.RandomNormal(
                        stddev=math.sqrt(1.0 / n_filters)),
                )
                self.b_proj = self.add_weight(shape=(p,), name="b_proj", initializer="zeros")
        else:
            if n_word_vocab is None:
                n_word_vocab = options.n_tokens_vocab
            if n_word_vocab is None:
                raise ValueError("a word-input model needs n_word_vocab (or n_tokens_vocab)")
            self.embedding = self.add_weight(
                shape=(n_word_vocab, p), name="embedding",
                initializer=keras.initializers.RandomUniform(-1.0, 1.0),
            )
        self.lstms = [
            ProjectedLSTM(
                input_dim=p, dim=lstm.dim, projection_dim=p, n_directions=n_directions,
                cell_clip=lstm.cell_clip, proj_clip=lstm.proj_clip,
                use_projection=lstm.use_projection,
                residual=lstm.use_skip_connections and k > 0, compute_dtype=compute_dtype,
                name=f"lstm_{k}",
            )
            for k in range(lstm.n_layers)
        ]
        self.built = True

    # -- token embeddings -------------------------------------------------------------------

    def embed_tokens(self, ids: tf.Tensor, shifted: bool = True) -> tf.Tensor:
        """Context-independent token embeddings.

        Args:
            ids: char ids (..., max_chars) or word ids (...). ``shifted``: inference ids where 0
                is padding (its embedding row is zeros / a zero char row); else training ids.
        Returns:
            (..., projection_dim) float32.
        """
        if not self.use_character_inputs:
            table = tf.convert_to_tensor(self.embedding)
            if shifted:
                table = tf.concat([tf.zeros_like(table[:1]), table], axis=0)
            return tf.gather(table, ids)
        lead = tf.shape(ids)[:-1]
        flat = tf.reshape(ids, [-1, tf.shape(ids)[-1]])  # shape (n_tokens, max_chars)
        x = self.char_cnn(flat, shifted=shifted)  # shape (n_tokens, n_filters)
        if self.highway is not None:
            x = self.highway(x)
        if self.w_proj is not None:
            x = tf.matmul(tf.cast(x, self.matmul_dtype), tf.cast(self.w_proj, self.matmul_dtype))
            x = tf.cast(x, tf.float32) + self.b_proj
        x = tf.cast(x, tf.float32)  # mixed precision: the CNN's 16-bit output
        return tf.reshape(x, tf.concat([lead, [self.projection_dim]], axis=0))

    def embed_unique_tokens(self, ids: tf.Tensor, shifted: bool = True) -> tf.Tensor:
        """As :meth:`embed_tokens`, computing each distinct token once (exact, and faster:
        a batch of text repeats most of its tokens)."""
        if not self.use_character_inputs:
            return self.embed_tokens(ids, shifted)
        n_chars = tf.shape(ids)[-1]
        flat = tf.reshape(ids, [-1, n_chars])
        unique, index = tf.raw_ops.UniqueV2(x=flat, axis=[0])
        emb = self.embed_tokens(unique, shifted)  # shape (n_unique, projection_dim)
        out = tf.gather(emb, index)
        return tf.reshape(out, tf.concat([tf.shape(ids)[:-1], [self.projection_dim]], axis=0))

    # -- LSTM stacks --------------------------------------------------------------------------

    def zero_states(self, batch_size: int | tf.Tensor) -> list[LSTMState]:
        """Zero (c, h) for each layer."""
        return [layer.zero_state(batch_size) for layer in self.lstms]

    def run_lstms(self, x: tf.Tensor, lengths: tf.Tensor | None = None,
                  initial_states: list[LSTMState] | None = None, input_dropout: float = 0.0,
                  training: bool = False, dropout_seed: tf.Tensor | None = None,
                  ) -> tuple[list[tf.Tensor], list[LSTMState]]:
        """Run the LSTM stacks.

        Args:
            x: (n_directions, T, batch, projection_dim) token embeddings, time-major, each
                direction already in its reading order.
            lengths: (batch,) valid steps, or None when every step is valid.
            initial_states: per layer (c, h); zeros if None.
            input_dropout, training, dropout_seed: dropout on each layer's input (training);
                with a (2,) seed it is stateless, each layer folding in its index.
        Returns:
            per layer outputs (n_directions, T, batch, projection_dim), and final states.
        """
        outputs, states = [], []
        for k, layer in enumerate(self.lstms):
            state = None if initial_states is None else initial_states[k]
            seed = (None if dropout_seed is None
                    else tf.random.experimental.stateless_fold_in(dropout_seed, k))
            x, final = layer(x, lengths=lengths, initial_state=state,
                             input_dropout=input_dropout, training=training, dropout_seed=seed)
            outputs.append(x)
            states.append(final)
        return outputs, states
