"""Sparse softmax (and word embedding) gradients: only the touched rows are all-reduced and
updated, with the dense update's values (an untouched row's Adagrad update is zero either
way), on one and two replicas."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT


@pytest.mark.slow
@pytest.mark.parametrize("n_replicas", [1, 2])
def test_sparse_updates_equal_dense(n_replicas):
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "sparse_check.py"),
                        str(n_replicas)], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "characters:" in r.stdout and "words:" in r.stdout
    diff = float(r.stdout.split("\nmax abs difference")[1].split()[0])
    assert diff <= 1e-6, r.stdout


def test_sparse_gradients_stay_sparse():
    from bilm.model.lm import LanguageModel
    from bilm.options import BiLMOptions

    options = BiLMOptions.from_dict({"lstm": {"dim": 8, "projection_dim": 4},
                                     "n_tokens_vocab": 1000, "n_negative_samples_batch": 10,
                                     "jit_compile": False})
    lm = LanguageModel(options, sparse_gradients=True)
    rng = np.random.default_rng(0)
    batch = {k: tf.constant(rng.integers(0, 1000, (2, 3)).astype(np.int32))
             for k in ("token_ids", "next_token_id", "token_ids_reverse",
                       "next_token_id_reverse")}
    variables = [lm.softmax_w, lm.softmax_b, lm.encoder.embedding,
                 lm.contextualizer.lstms[0].kernel]
    _, _, grads = lm.train_gradients(batch, None, tf.constant([1, 2], tf.int64), variables)
    softmax, bias, embedding, kernel = grads
    for g in (softmax, bias, embedding):
        assert isinstance(g, tf.IndexedSlices)
    # the rows of the targets and the negatives of both directions, not the 1000
    assert len(set(softmax.indices.numpy())) <= 2 * (6 + 10)
    assert set(bias.indices.numpy()) == set(softmax.indices.numpy())
    assert len(set(embedding.indices.numpy())) <= 12
    assert not isinstance(kernel, tf.IndexedSlices)


def test_adagrad_is_tf1s_update():
    """Three steps, a dense and two sparse gradients (2-D and 1-D tables): TF1's
    ``accum += g^2; var -= lr * g / sqrt(accum)`` in float32 (accumulators from 1.0); rows a
    sparse gradient leaves out keep their values and accumulators exactly."""
    from bilm.training.optimizers import Adagrad

    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(30, 8)).astype(np.float32)
    dense = [rng.normal(size=(30, 8)).astype(np.float32) for _ in range(3)]
    rows = np.array([3, 7, 29])
    sparse = [rng.normal(size=(3, 8)).astype(np.float32) for _ in range(3)]
    bias0 = rng.normal(size=30).astype(np.float32)  # a 1-D table (softmax/b): its own path
    bias_grads = [rng.normal(size=3).astype(np.float32) for _ in range(3)]
    a, b, c = tf.Variable(w0), tf.Variable(w0), tf.Variable(bias0)
    opt = Adagrad({"a": a, "b": b, "c": c}, learning_rate=0.2)
    for g, s, e in zip(dense, sparse, bias_grads, strict=True):
        opt.apply(tf.distribute.get_strategy(),
                  [tf.constant(g), tf.IndexedSlices(tf.constant(s), tf.constant(rows),
                                                    tf.constant([30, 8])),
                   tf.IndexedSlices(tf.constant(e), tf.constant(rows), tf.constant([30]))],
                  [a, b, c], ["a", "b", "c"], tf.constant(0, tf.int64))
    acc_a, want_a = np.ones_like(w0), w0.copy()
    acc_b, want_b = np.ones_like(w0), w0.copy()
    acc_c, want_c = np.ones_like(bias0), bias0.copy()
    for g, s, e in zip(dense, sparse, bias_grads, strict=True):
        acc_a += g * g
        want_a -= np.float32(0.2) * g / np.sqrt(acc_a)
        acc_b[rows] += s * s
        want_b[rows] -= np.float32(0.2) * s / np.sqrt(acc_b[rows])
        acc_c[rows] += e * e
        want_c[rows] -= np.float32(0.2) * e / np.sqrt(acc_c[rows])
    np.testing.assert_allclose(opt.accumulators["a"].numpy(), acc_a, rtol=1e-6)
    np.testing.assert_allclose(a.numpy(), want_a, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(opt.accumulators["b"].numpy(), acc_b, rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), want_b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(opt.accumulators["c"].numpy(), acc_c, rtol=1e-6)
    np.testing.assert_allclose(c.numpy(), want_c, rtol=1e-6, atol=1e-6)
    untouched = np.setdiff1d(np.arange(30), rows)
    np.testing.assert_array_equal(c.numpy()[untouched], bias0[untouched])
    np.testing.assert_array_equal(b.numpy()[untouched], w0[untouched])
    np.testing.assert_array_equal(opt.accumulators["b"].numpy()[untouched], 1.0)
