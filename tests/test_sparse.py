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
    from bilm.lm import LanguageModel
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
