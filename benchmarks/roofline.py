"""The roofline the benchmarks measure against: this machine's matmul ceiling, measured in the
same run, and the useful FLOPs of a token at each shape.

Useful FLOPs count only the multiply-adds a biLM cannot avoid (2 per multiply-add):

- LSTM, per token, per direction and layer: ``[x, h] W`` (2 · 2P · 4H) and the projection
  ``(o ⊙ tanh c) W_P`` (2 · H · P): 18 · H · P; a biLM's two directions and two layers: 72 · H · P.
  Gate arithmetic, padding rows and padding steps are not counted.
- token embedder, per DISTINCT token of the work (a cache makes repeats free): each filter of
  width w slides over the token's own characters (its UTF-8 bytes + begin/end-of-word marks):
  2 · w · 16 · filters · (length - w + 1) positions (at least 1); each highway 2 · D · 2D; the
  projection 2 · D · P (D = total filters).
- training adds the backward pass (2x the forward's matmuls) and the sampled softmax: per token
  and direction 2 · P · (negatives + 1) forward, 3x with the backward.

So ``fraction of ceiling = tokens/s x useful FLOPs per token / ceiling``: the share of the
machine's best dense matmul rate spent on work that had to be done.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

FILTERS = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]
CHAR_DIM = 16


def matmul_ceiling(dtype: str = "float32", n: int = 4096, repeats: int = 7) -> float:
    """GFLOP/s of TensorFlow's ``n``³ matmul on this machine, in ``dtype`` (``float32`` or
    ``bfloat16``), on the default device: the best of ``repeats`` after a warm-up. The best,
    not the median: a ceiling is what the machine can do, and on a shared machine a
    neighbour's burst only ever lowers a run (callers measure it again at the end and keep
    the higher)."""
    import tensorflow as tf

    a = tf.random.normal([n, n], dtype=tf.float32)
    b = tf.random.normal([n, n], dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[:1, :1],
                                                            tf.float32)))
    matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def lstm_flops_per_token(dim: int, projection_dim: int, n_layers: int = 2,
                         n_directions: int = 2) -> int:
    """Useful FLOPs of the LSTM stacks for one token (forward pass)."""
    return n_directions * n_layers * (2 * 2 * projection_dim * 4 * dim
                                      + 2 * dim * projection_dim)


def token_embedder_flops(token: str, n_highway: int, projection_dim: int,
                         filters: Sequence[Sequence[int]] = FILTERS) -> int:
    """Useful FLOPs of the char CNN, highways and projection for one token (forward)."""
    length = len(token.encode("utf-8", "ignore")) + 2
    total = sum(n for _, n in filters)
    conv = sum(2 * w * CHAR_DIM * n * max(length - w + 1, 1) for w, n in filters)
    return conv + n_highway * 2 * total * 2 * total + 2 * total * projection_dim


def useful_flops(sentences: Iterable[Sequence[str]], dim: int, projection_dim: int,
                 n_highway: int, n_layers: int = 2) -> int:
    """Useful FLOPs to embed ``sentences`` (forward): the LSTMs for every token and the
    boundary tokens ``<S>``/``</S>``, the token embedder once per distinct token."""
    distinct: set[str] = {"<S>", "</S>"}
    steps = 0
    for s in sentences:
        distinct.update(s)
        steps += len(s) + 2
    return (steps * lstm_flops_per_token(dim, projection_dim, n_layers)
            + sum(token_embedder_flops(t, n_highway, projection_dim) for t in distinct))
