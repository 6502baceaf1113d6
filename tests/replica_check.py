"""Run by test_training: one step on 2 logical CPU replicas vs one replica, same global batch.

    python tests/replica_check.py KJV_DIR TMP_DIR
"""

import sys

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from bilm.data import BidirectionalLMDataset  # noqa: E402
from bilm.training import load_vocab, train  # noqa: E402
from tests.test_training import tiny_options  # noqa: E402

kjv, tmp = sys.argv[1], sys.argv[2]
vocab = load_vocab(f"{kjv}/vocab.txt", 20)
results = []
for n_replicas, batch_size in ((2, 8), (1, 16)):
    options = tiny_options(vocab, batch_size=batch_size, dropout=0.0)
    data = BidirectionalLMDataset(f"{kjv}/train/*", vocab, seed=1)
    ckpt = train(options, data, n_replicas, f"{tmp}/r{n_replicas}", f"{tmp}/log",
                 n_batches=2, seed=2, progress=False)
    results.append({n: tf.train.load_variable(ckpt, n)
                    for n, _ in tf.train.list_variables(ckpt) if n.startswith("variables/")})
diff = max(float(np.abs(results[0][n] - results[1][n]).max()) for n in results[0])
moved = max(float(np.abs(results[1][n]).max()) for n in results[1])
print(f"max abs difference {diff:.3g} over {len(results[0])} variables (max value {moved:.3g})")
