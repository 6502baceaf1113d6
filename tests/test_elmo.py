"""weight_layers against a NumPy transcription of bilm-tf's formula."""

import numpy as np
import pytest
import tensorflow as tf

from bilm.elmo import clear_weight_layers, weight_layers


def numpy_weight_layers(lm, mask, w, gamma, do_layer_norm):
    mask_f = mask.astype(np.float64)[..., None]
    normed = np.exp(w) / np.exp(w).sum()
    total = 0.0
    for k in range(lm.shape[1]):
        x = lm[:, k].astype(np.float64)
        if do_layer_norm:
            n = mask_f.sum() * x.shape[-1]
            mean = (x * mask_f).sum() / n
            var = (((x * mask_f) - mean) * mask_f) ** 2
            x = (x - mean) / np.sqrt(var.sum() / n + 1e-12)
        total = total + normed[k] * x
    return gamma * total


@pytest.fixture
def ops():
    clear_weight_layers()
    rng = np.random.default_rng(0)
    lm = rng.normal(size=(2, 3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    yield {"lm_embeddings": tf.constant(lm), "mask": tf.constant(mask)}
    clear_weight_layers()


@pytest.mark.parametrize("do_layer_norm", [False, True])
def test_weighted_sum(ops, do_layer_norm):
    out = weight_layers("t", ops, l2_coef=0.5, do_layer_norm=do_layer_norm)
    from bilm.elmo import weight_layer
    layer = weight_layer("t")
    layer.scalar_weights.assign([0.3, -1.0, 2.0])
    layer.gamma.assign([1.7])
    out = weight_layers("t", ops, l2_coef=0.5, do_layer_norm=do_layer_norm)
    expected = numpy_weight_layers(ops["lm_embeddings"].numpy(), ops["mask"].numpy(),
                                   np.array([0.3, -1.0, 2.0]), 1.7, do_layer_norm)
    np.testing.assert_allclose(out["weighted_op"].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert float(out["regularization_op"]) == pytest.approx(0.5 * (0.09 + 1.0 + 4.0))
    assert len(layer.losses) == 1 and float(layer.losses[0]) == pytest.approx(2.545)


def test_initial_weights_average_the_layers(ops):
    out = weight_layers("avg", ops)
    np.testing.assert_allclose(out["weighted_op"].numpy(),
                               ops["lm_embeddings"].numpy().mean(axis=1), atol=1e-6)
    assert out["regularization_op"] == 0.0


def test_top_only_and_reuse(ops):
    top = weight_layers("top", ops, use_top_only=True)
    np.testing.assert_allclose(top["weighted_op"].numpy(), ops["lm_embeddings"].numpy()[:, -1])
    a = weight_layers("shared", ops)
    from bilm.elmo import weight_layer
    weight_layer("shared").gamma.assign([2.0])
    b = weight_layers("shared", ops)
    np.testing.assert_allclose(b["weighted_op"].numpy(), 2 * a["weighted_op"].numpy(),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="other settings"):
        weight_layers("shared", ops, do_layer_norm=True)


def test_gradients_reach_scalar_weights(ops):
    weight_layers("g", ops)
    from bilm.elmo import weight_layer
    layer = weight_layer("g")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(weight_layers("g", ops)["weighted_op"] ** 2)
    grads = tape.gradient(loss, [layer.scalar_weights, layer.gamma])
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)


def test_weight_layer_names_the_layers_made():
    from bilm.elmo import clear_weight_layers, weight_layer

    clear_weight_layers()
    with pytest.raises(KeyError, match="weight_layers made no layer named 'x'; made: none"):
        weight_layer("x")
