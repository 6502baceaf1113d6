"""The fast paths compute what the plain ones do: the LSTM that skips finished rows, and the
bfloat16 inference mode (close to float32, by a bound, and really in bf16)."""

import numpy as np
import pytest
import tensorflow as tf

from bilm import Batcher, BidirectionalLanguageModel
from bilm.inference.dumps import dump_bilm_embeddings
from bilm.nn.lstm import ProjectedLSTM
from tests.conftest import assert_f32_close


def _lstm_case(seed: int, residual: bool):
    """A small clipped, projected biLSTM layer with a random bias, its input (2, 7, 5, 6),
    lengths (unsorted, with ties, a zero-length (padding) row and a full-length one) and a
    random initial state."""
    tf.random.set_seed(seed)
    layer = ProjectedLSTM(input_dim=6, dim=10, projection_dim=6, n_directions=2,
                          cell_clip=0.5, proj_clip=0.4, residual=residual)
    layer.bias.assign(tf.random.normal(layer.bias.shape))
    x = tf.random.normal([2, 7, 5, 6])
    lengths = tf.constant([3, 7, 0, 3, 5])
    state = tuple(tf.random.normal([2, 5, n]) for n in (10, 6))
    return layer, x, lengths, state


@pytest.mark.parametrize("residual", [False, True])
def test_skipping_finished_rows_changes_nothing(residual):
    layer, x, lengths, state = _lstm_case(1, residual)
    masked, (c0, h0) = layer(x, lengths=lengths, initial_state=state)
    skipped, (c1, h1) = layer(x, lengths=lengths, initial_state=state, skip_finished_rows=True)
    np.testing.assert_allclose(skipped.numpy(), masked.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(c1.numpy(), c0.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(h1.numpy(), h0.numpy(), rtol=0, atol=1e-6)
    # the padding row kept its carried state exactly; outputs past a length are zeros
    np.testing.assert_array_equal(c1.numpy()[:, 2], state[0].numpy()[:, 2])
    assert np.abs(skipped.numpy()[:, 3:, 0]).max() == 0.0
    assert np.abs(skipped.numpy()[:, 1:, 1]).max() > 0.0  # and real work inside them
    # inside a tf.function (unknown batch and length) as the model runs it
    fn = tf.function(lambda x, n: layer(x, lengths=n, initial_state=state,
                                        skip_finished_rows=True)[0],
                     input_signature=[tf.TensorSpec([2, None, None, 6]),
                                      tf.TensorSpec([None], tf.int32)])
    np.testing.assert_allclose(fn(x, lengths).numpy(), masked.numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_gradients_through_pre_transposed_weights_change_nothing(jit, monkeypatch):
    """Training's LSTM steps take the input gradient from weights transposed once
    (``bilm.nn.matmul``): the gradients equal TensorFlow's own, to float32 rounding
    (the products run in other kernels)."""
    import bilm.nn.lstm
    from bilm.nn.matmul import matmul

    calls = []  # the pre-transposed product is what training's LSTM traces, and only it

    def counted(x, w, w_t=None):
        calls.append(w_t is not None)
        return matmul(x, w, w_t)

    monkeypatch.setattr(bilm.nn.lstm, "matmul", counted)
    layer, x, lengths, state = _lstm_case(2, residual=True)
    dy = tf.random.normal([2, 7, 5, 6])

    @tf.function(jit_compile=jit)
    def grads(x, state, training):
        with tf.GradientTape() as tape:
            tape.watch([x, state])
            out, (c, h) = layer(x, lengths=lengths, initial_state=state, training=training)
            loss = tf.reduce_sum(out * dy) + tf.reduce_sum(c) + 2.0 * tf.reduce_sum(h)
        return tape.gradient(loss, [x, state, layer.kernel, layer.projection, layer.bias])

    plain = grads(x, state, False)
    assert calls == []
    transposed = grads(x, state, True)
    assert calls and all(calls)
    for a, b in zip(tf.nest.flatten(plain), tf.nest.flatten(transposed), strict=True):
        assert np.abs(a.numpy()).max() > 0
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6)

    h_in = tf.random.normal([5, 8])
    w = tf.random.normal([8, 3])
    h_dy = tf.random.normal([5, 3])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([h_in, w])
        plain_ = tf.matmul(h_in, w)
        given, later = matmul(h_in, w, tf.transpose(w)), matmul(h_in, w)
    wanted = tape.gradient(plain_, [h_in, w], output_gradients=h_dy)
    for product in (given, later):  # w_t given, or transposed in the backward pass
        got = tape.gradient(product, [h_in, w], output_gradients=h_dy)
        for a, b in zip(wanted, got, strict=True):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6)


def test_bfloat16_precision_is_close_but_not_float32(tiny_model):
    options_file, weight_file = tiny_model
    sentences = [["a", "bird", "sings", "loudly"], ["ünïcode"], ["x" * 30, "y", "z"]]
    fp32 = BidirectionalLanguageModel(options_file, weight_file, stateful=False)
    bf16 = BidirectionalLanguageModel(options_file, weight_file, stateful=False,
                                      precision="bfloat16")
    ids = Batcher(None, 12).batch_sentences(sentences)
    a = fp32(ids)["lm_embeddings"].numpy()
    b = bf16(ids)["lm_embeddings"].numpy()
    assert b.dtype == np.float32
    rel = np.linalg.norm(b - a) / np.linalg.norm(a)
    assert 1e-5 < rel < 2e-2, rel  # rounded as bf16 (8-bit mantissa), nothing worse
    for e32, e16 in zip(fp32.embed_sentences(sentences), bf16.embed_sentences(sentences),
                        strict=True):
        np.testing.assert_allclose(e16, e32, rtol=0, atol=0.05 * np.abs(e32).max())
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16"):
        BidirectionalLanguageModel(options_file, weight_file, precision="float16")


def test_dump_bilm_embeddings_in_bfloat16(tiny_model, tmp_path):
    import h5py

    options_file, weight_file = tiny_model
    text = tmp_path / "in.txt"
    text.write_text("a bird sings\n\nthe end\n")
    files = {}
    for precision in ["float32", "bfloat16"]:
        files[precision] = tmp_path / f"{precision}.hdf5"
        dump_bilm_embeddings(None, text, options_file, weight_file, files[precision],
                             stateful=False, progress=False, precision=precision)
    with h5py.File(files["float32"]) as f32, h5py.File(files["bfloat16"]) as f16:
        assert sorted(f32) == sorted(f16) == ["0", "1", "2"]
        for key in f32:
            assert f16[key].dtype == np.float32 and f16[key].shape == f32[key].shape
            np.testing.assert_allclose(f16[key][()], f32[key][()], rtol=0,
                                       atol=0.05 * max(np.abs(f32[key][()]).max(initial=0), 1))


def _full_width_cnn(cnn, char_ids, shifted):
    """The char CNN over all max_chars columns (no trimming, no grouping): the reference."""
    table = tf.convert_to_tensor(cnn.char_embed)
    if cnn.options.padding_row == "learned":
        char_ids = char_ids if shifted else char_ids + 1
    elif shifted:
        table = tf.concat([tf.zeros_like(table[:1]), table], axis=0)
    x = tf.gather(table, char_ids)[:, tf.newaxis]
    pooled = [tf.reduce_max(tf.nn.conv2d(x, k, 1, "VALID"), axis=[1, 2]) + b
              for k, b in zip(cnn.kernels, cnn.biases, strict=True)]
    return tf.nn.relu(tf.concat(pooled, -1))


@pytest.mark.parametrize("padding_row", ["zero", "learned"])
@pytest.mark.parametrize("shifted", [True, False])
def test_char_cnn_length_groups_change_nothing(padding_row, shifted):
    """Tokens convolved in length groups over only the columns they need give the full-width
    CNN's outputs and gradients: mixed lengths (1 to 50 characters, no padding at all),
    fewer tokens than groups (empty groups), no tokens."""
    from bilm.data.vocabulary import BOW_CHAR, EOW_CHAR, PAD_CHAR
    from bilm.nn.char_cnn import CharCNN
    from bilm.options import BiLMOptions

    opts = BiLMOptions.from_dict({
        "lstm": {"dim": 8, "projection_dim": 4},
        "char_cnn": {"filters": [[1, 3], [2, 4], [5, 6]], "n_highway": 0,
                     "embedding": {"dim": 3}, "n_characters": 262,
                     "max_characters_per_token": 50, "padding_row": padding_row}}).char_cnn
    tf.random.set_seed(3)
    cnn = CharCNN(opts)
    for b in cnn.biases:
        b.assign(tf.random.normal(b.shape))
    rng = np.random.default_rng(0)

    def token(n_chars):  # training ids; 50 columns with no padding when n_chars >= 48
        ids = np.full(50, PAD_CHAR)
        body = rng.integers(0, 256, min(n_chars, 48))
        ids[: len(body) + 2] = [BOW_CHAR, *body, EOW_CHAR]
        return ids

    for lengths in ([5, 1, 48, 2, 9, 3, 3, 17, 0], [4, 30], [7], []):
        ids = np.array([token(n) for n in lengths], np.int32).reshape(-1, 50)
        if shifted and lengths:  # inference ids, and a padding token (all 0)
            ids = np.concatenate([ids + 1, np.zeros((1, 50), np.int32)])
        ids = tf.constant(ids)
        if not lengths:  # (the full-width reference hits oneDNN's empty-batch conv2d bug)
            assert cnn(ids, shifted=shifted).shape == (0, 13)
            continue
        with tf.GradientTape(persistent=True) as tape:
            out = cnn(ids, shifted=shifted)
            ref = _full_width_cnn(cnn, ids, shifted)
            weights = tf.random.normal(tf.shape(ref))
            loss_out, loss_ref = (tf.reduce_sum(weights * o) for o in (out, ref))
        # the same products, convolved over fewer columns: equal up to oneDNN's rounding
        # (bit-equal in most runs; TensorFlow 2.21's kernels differ by an ulp now and then)
        assert_f32_close(out.numpy(), ref.numpy(), ulps=2)
        assert out.shape == (len(ids), 13)
        variables = [cnn.char_embed, *cnn.kernels, *cnn.biases]
        for g, g_ref in zip(tape.gradient(loss_out, variables),
                            tape.gradient(loss_ref, variables), strict=True):
            g, g_ref = tf.convert_to_tensor(g).numpy(), tf.convert_to_tensor(g_ref).numpy()
            np.testing.assert_allclose(g, g_ref, rtol=0, atol=1e-5 * np.abs(g_ref).max())
            assert np.abs(g_ref).max() > 0
