"""Sparse vs dense softmax (and word embedding) updates on one or two replicas.

    python tests/sparse_check.py N_REPLICAS     (prints: max abs difference X ...)

Run in its own process by tests/test_sparse.py: two logical CPU devices must be configured
before TensorFlow starts.
"""

import sys

import numpy as np
import tensorflow as tf

N_REPLICAS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
if N_REPLICAS > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * N_REPLICAS)

from bilm.options import BiLMOptions  # noqa: E402
from bilm.training.distribute import make_strategy  # noqa: E402
from bilm.training.trainer import Trainer  # noqa: E402

VOCAB = 300  # rows of the softmax; a batch touches a few dozen


def batches(options, n, seed=0):
    rng = np.random.default_rng(seed)
    rows = options.batch_size * N_REPLICAS
    for _ in range(n):
        b = {}
        for s in ("", "_reverse"):
            b["token_ids" + s] = rng.integers(0, VOCAB, (rows, 5)).astype(np.int32)
            b["next_token_id" + s] = rng.integers(0, VOCAB, (rows, 5)).astype(np.int32)
            if options.use_character_inputs:
                b["tokens_characters" + s] = rng.integers(0, 261, (rows, 5, 10)).astype(
                    np.int32)
        yield b


# One strategy for every run: two in one process would allocate the same collective keys.
STRATEGY = make_strategy(N_REPLICAS)


def run(options, sparse):
    trainer = Trainer(options, STRATEGY, seed=4, sparse_updates=sparse)
    states = trainer.distributed_states()
    for batch in batches(options, 4):
        _, _, states, _ = trainer.train_step(trainer.distribute_batch(batch), states)
    return {n: v.numpy() for n, v in trainer.variables.items()}


worst = 0.0
for name, extra in (("characters", {"char_cnn": {"filters": [[1, 4], [2, 4]],
                                                 "embedding": {"dim": 4},
                                                 "max_characters_per_token": 10}}),
                    ("words", {})):
    options = BiLMOptions.from_dict({
        "lstm": {"dim": 16, "projection_dim": 8, "n_layers": 1}, **extra,
        "n_tokens_vocab": VOCAB, "n_negative_samples_batch": 20, "batch_size": 3,
        "unroll_steps": 5, "dropout": 0.0, "jit_compile": False})
    dense, sparse = run(options, False), run(options, True)
    diff = max(float(np.abs(dense[n] - sparse[n]).max()) for n in dense)
    worst = max(worst, diff)
    print(f"{name}: max abs difference {diff:.3g}")
print(f"max abs difference {worst:.3g}")
