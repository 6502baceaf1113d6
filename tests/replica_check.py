"""Run by the tests: two steps on 2 logical CPU replicas vs one replica, same global batch.

    python tests/replica_check.py KJV_DIR TMP_DIR [lstm|transformer] [preset]

``preset``: the presets' options (``tiny``, ``transformer-tiny``) with their dropout, 4 rows
per replica, three steps: every dropout mask must follow the global row, not the replica.
"""

import sys

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from bilm.training.inputs import _dataset, load_vocab  # noqa: E402
from bilm.training.loop import train  # noqa: E402
from tests.test_training import tiny_options  # noqa: E402

kjv, tmp = sys.argv[1], sys.argv[2]
encoder = sys.argv[3] if len(sys.argv) > 3 else "lstm"
with_preset = len(sys.argv) > 4 and sys.argv[4] == "preset"
vocab = load_vocab(f"{kjv}/vocab.txt", 50 if with_preset else 20)
results = []
for n_replicas, batch_size in ((2, 4), (1, 8)) if with_preset else ((2, 8), (1, 16)):
    options = tiny_options(vocab, batch_size=batch_size, dropout=0.0)
    if with_preset:  # the presets' dropout everywhere
        from bilm.presets import preset

        options = {**preset("tiny" if encoder == "lstm" else "transformer-tiny"),
                   "n_tokens_vocab": vocab.size, "batch_size": batch_size}
    elif encoder == "transformer":  # no dropout anywhere: each replica would draw its own mask
        options.pop("lstm")
        options.update(encoder={"type": "transformer", "dim": 32, "hidden_dim": 48,
                                "n_layers": 2, "n_heads": 4, "dropout": 0.0,
                                "input_dropout": 0.0},
                       optimizer="adam", learning_rate_schedule="noam", learning_rate=1.0,
                       warmup_steps=10)
    from bilm.options import BiLMOptions

    opts = BiLMOptions.from_dict(options)
    data = _dataset(opts, f"{kjv}/train/*", vocab, seed=1)
    ckpt = train(opts, data, n_replicas, f"{tmp}/{encoder}{n_replicas}", f"{tmp}/log",
                 n_batches=3 if with_preset else 2, seed=2, progress=False,
                 checkpoint_minutes=None)
    results.append({n: tf.train.load_variable(ckpt, n)
                    for n, _ in tf.train.list_variables(ckpt) if n.startswith("variables/")})
# A key bias's gradient is identically zero in exact arithmetic (a softmax is invariant to a
# shift of one query's scores), so Adam turns its rounding noise into updates of up to ~0.1 of
# the learning rate, whatever the replicas: compared apart from the rest.
diffs = {n: float(np.abs(results[0][n] - results[1][n]).max()) for n in results[0]}
noise = {n: d for n, d in diffs.items() if ".Sb_key" in n}
worst = max((n for n in diffs if n not in noise), key=diffs.get)
diff = diffs[worst]
moved = max(float(np.abs(results[1][n]).max()) for n in results[1])
print(f"max abs difference {diff:.3g} over {len(diffs) - len(noise)} variables (max value "
      f"{moved:.3g}; largest in {worst})")
if noise:
    print(f"key biases {max(noise.values()):.3g}")
