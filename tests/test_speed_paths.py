"""The fast paths compute what the plain ones do: the LSTM that skips finished rows, and the
bfloat16 inference mode (close to float32, by a bound, and really in bf16)."""

import numpy as np
import pytest
import tensorflow as tf

from bilm import Batcher, BidirectionalLanguageModel
from bilm.layers.lstm import ProjectedLSTM
from bilm.model import dump_bilm_embeddings


@pytest.mark.parametrize("residual", [False, True])
def test_skipping_finished_rows_changes_nothing(residual):
    tf.random.set_seed(1)
    layer = ProjectedLSTM(input_dim=6, dim=10, projection_dim=6, n_directions=2,
                          cell_clip=0.5, proj_clip=0.4, residual=residual)
    layer.bias.assign(tf.random.normal(layer.bias.shape))
    x = tf.random.normal([2, 7, 5, 6])
    # unsorted, with ties, a zero-length (padding) row and a full-length one
    lengths = tf.constant([3, 7, 0, 3, 5])
    state = tuple(tf.random.normal([2, 5, n]) for n in (10, 6))
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
    for e32, e16 in zip(fp32.embed_sentences(sentences), bf16.embed_sentences(sentences)):
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
