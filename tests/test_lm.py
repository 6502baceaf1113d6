"""The training head: the XLA-friendly sampled softmax and the two-stage gradients."""

import keras
import numpy as np
import tensorflow as tf

from bilm import BiLMOptions
from bilm.model.lm import LanguageModel
from bilm.nn.sampled_softmax import (
    log_uniform_unique_sample,
    sampled_softmax_loss,
    sampled_softmax_loss_static,
)


def test_static_sampled_softmax_equals_tf():
    rng = np.random.default_rng(0)
    w = tf.constant(rng.normal(size=(50, 6)), tf.float32)
    b = tf.constant(rng.normal(size=(50,)), tf.float32)
    x = tf.constant(rng.normal(size=(7, 6)), tf.float32)
    labels = tf.constant([0, 1, 2, 3, 10, 20, 49], tf.int64)  # frequent ids: accidental hits
    seed = tf.constant([4, 2], tf.int64)
    sampled, tries = log_uniform_unique_sample(8, 50, seed)
    assert len(set(sampled.numpy())) == 8 and int(tries) >= 8
    ours = sampled_softmax_loss_static(w, b, labels, x, sampled, tries)
    reference = sampled_softmax_loss(w, b, labels, x, 8, 50, seed)  # tf.nn's arithmetic
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-5, atol=1e-5)


def word_lm(share: bool) -> LanguageModel:
    options = BiLMOptions.from_dict({
        "lstm": {"dim": 8, "projection_dim": 4, "n_layers": 1}, "n_tokens_vocab": 20,
        "share_embedding_softmax": share, "n_negative_samples_batch": 5, "dropout": 0.0,
        "unroll_steps": 3, "batch_size": 2})
    return LanguageModel(options)


def assert_two_stage_equals_one_tape(lm, batch, seed, scale=3.0):
    """train_gradients (XLA head + CNN stage) against one tape over the forward pass."""
    variables = lm.trainable_variables
    loss, _, grads = lm.train_gradients(batch, None, seed, variables, scale=scale)
    with tf.GradientTape() as tape:
        ref_loss, _ = lm(batch, None, training=True, seed=seed)
        scaled = ref_loss * scale
    ref = tape.gradient(scaled, variables)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-6)
    for v, g, r in zip(variables, grads, ref, strict=True):
        np.testing.assert_allclose(g.numpy(), tf.convert_to_tensor(r).numpy(), rtol=1e-4,
                                   atol=1e-6, err_msg=v.path)
    return grads


def test_two_stage_gradients_equal_one_tape():
    rng = np.random.default_rng(1)
    batch = {k: tf.constant(rng.integers(0, 20, size=(2, 3)), tf.int32)
             for k in ("token_ids", "next_token_id", "token_ids_reverse",
                       "next_token_id_reverse")}
    seed = tf.constant([1, 2], tf.int64)
    for share in (False, True):
        lm = word_lm(share)
        grads = assert_two_stage_equals_one_tape(lm, batch, seed)
        if share:  # the shared embedding gets the softmax's gradient and the input's
            assert lm.softmax_w is None and np.abs(grads[0].numpy()).sum() > 0


def test_sentence_scores_equal_the_training_loss():
    from bilm.data import UnicodeCharsVocabulary
    from bilm.evaluation import score_sentences

    vocab = UnicodeCharsVocabulary(None, 12, tokens=["<S>", "</S>", "<UNK>", "a", "b", "c"])
    options = BiLMOptions.from_dict({
        "lstm": {"dim": 8, "projection_dim": 4, "n_layers": 2, "use_skip_connections": True},
        "char_cnn": {"filters": [[1, 4], [2, 4]], "embedding": {"dim": 3}, "n_characters": 261,
                     "max_characters_per_token": 12, "n_highway": 1},
        "n_tokens_vocab": 6, "dropout": 0.0})
    lm = LanguageModel(options)
    sentence = ["a", "c", "zz", "b"]
    short = ["c"]
    scores = list(score_sentences(lm, vocab, [sentence, short, []], batch_size=2))
    assert [s.n_tokens for s in scores] == [4, 1, 0]
    # the same sentence as one training window (batch 1, unroll n + 1, zero state)
    fwd, bwd = sentence, sentence[::-1]
    ids, rids = vocab.encode(fwd, split=False), vocab.encode(bwd, reverse=True, split=False)
    batch = {
        "tokens_characters": vocab.encode_chars(fwd, split=False)[None, :-1],
        "tokens_characters_reverse": vocab.encode_chars(bwd, reverse=True, split=False)[None, :-1],
        "next_token_id": ids[None, 1:], "next_token_id_reverse": rids[None, 1:],
    }
    batch = {k: tf.constant(v, tf.int32) for k, v in batch.items()}
    loss, _ = lm(batch, training=False)
    mean_nll = -(scores[0].logprob_forward + scores[0].logprob_backward) / 2 / 5
    np.testing.assert_allclose(float(loss), mean_nll, rtol=1e-5)
    np.testing.assert_allclose(scores[0].perplexity, np.exp(float(loss)), rtol=1e-5)


def test_two_stage_gradients_full_softmax_with_dropout():
    rng = np.random.default_rng(1)
    options = BiLMOptions.from_dict({
        "lstm": {"dim": 16, "projection_dim": 8, "n_layers": 2, "use_skip_connections": True},
        "char_cnn": {"filters": [[1, 4], [2, 4]], "embedding": {"dim": 3}, "n_characters": 261,
                     "max_characters_per_token": 12, "n_highway": 1},
        "n_tokens_vocab": 30, "dropout": 0.1, "sample_softmax": False})
    batch = {k: tf.constant(rng.integers(0, 30, size=(2, 3)), tf.int32)
             for k in ("next_token_id", "next_token_id_reverse")}
    for k in ("tokens_characters", "tokens_characters_reverse"):
        batch[k] = tf.constant(rng.integers(0, 261, size=(2, 3, 12)), tf.int32)
    seed = tf.constant([1, 2], tf.int64)
    for jit in (False, True):
        assert_two_stage_equals_one_tape(LanguageModel(options, jit_compile=jit), batch, seed)


def char_lm_options(**changes) -> BiLMOptions:
    return BiLMOptions.from_dict({
        "lstm": {"dim": 32, "projection_dim": 16, "n_layers": 2, "use_skip_connections": True,
                 "cell_clip": 3, "proj_clip": 3},
        "char_cnn": {"filters": [[1, 8], [2, 8], [3, 16]], "embedding": {"dim": 4},
                     "n_characters": 261, "max_characters_per_token": 12, "n_highway": 1},
        "n_tokens_vocab": 60, "n_negative_samples_batch": 16, "dropout": 0.1,
        "batch_size": 4, "unroll_steps": 5, **changes})


def char_batch(seed: int = 0, batch_size: int = 4, steps: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    batch = {k: rng.integers(0, 60, size=(batch_size, steps)).astype(np.int32)
             for k in ("next_token_id", "next_token_id_reverse")}
    for k in ("tokens_characters", "tokens_characters_reverse"):
        batch[k] = rng.integers(0, 261, size=(batch_size, steps, 12)).astype(np.int32)
    return batch


def test_mixed_bfloat16_loss_and_gradients_close_to_float32():
    keras.utils.set_random_seed(0)  # the bound holds for these weights, not for any draw
    batch = {k: tf.constant(v) for k, v in char_batch().items()}
    seed = tf.constant([1, 2], tf.int64)
    f32 = LanguageModel(char_lm_options(), jit_compile=False)
    bf16 = LanguageModel(char_lm_options(precision="mixed_bfloat16"), jit_compile=False)
    assert bf16.precision == "mixed_bfloat16"
    for a, b in zip(f32.weights, bf16.weights, strict=True):
        assert b.dtype == "float32"  # master weights stay float32
        b.assign(a)
    loss32, _, grads32 = f32.train_gradients(batch, None, seed, f32.trainable_variables, 10.0)
    loss16, _, grads16 = bf16.train_gradients(batch, None, seed, bf16.trainable_variables,
                                              10.0)
    np.testing.assert_allclose(float(loss16), float(loss32), rtol=1e-2)
    assert float(loss16) != float(loss32)  # the matmuls did run in bfloat16
    for v, g32, g16 in zip(f32.trainable_variables, grads32, grads16, strict=True):
        assert g16.dtype == tf.float32, v.path
        g32, g16 = g32.numpy(), g16.numpy()
        # bfloat16 keeps 8 mantissa bits: ~0.5% per product; a max-pool can switch position
        err = np.linalg.norm(g16 - g32) / np.linalg.norm(g32)
        assert err < 0.15, (v.path, err)
        if "lstm" in v.path or "cnn" in v.path:
            assert err > 1e-4, (v.path, err)  # and the CNN and LSTM gradients too


def _trainer(**changes):
    from bilm.training.trainer import Trainer

    return Trainer(char_lm_options(dropout=0.0, **changes), tf.distribute.get_strategy())


def test_mixed_bfloat16_steps_reduce_the_loss():
    trainer = _trainer(precision="mixed_bfloat16", learning_rate=0.5, jit_compile=False)
    batch = trainer.distribute_batch(char_batch())
    losses = []
    for _ in range(6):  # the same batch from the zero state, 6 Adagrad steps
        loss, _, _, skipped = trainer.train_step(batch, trainer.distributed_states())
        assert not bool(skipped)
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 0.2, losses


def test_mixed_float16_loss_scaling_skips_overflow_steps(tmp_path):
    trainer = _trainer(precision="mixed_float16", jit_compile=False)
    trainer.LOSS_SCALE_GROWTH_STEPS = 2
    batch = trainer.distribute_batch(char_batch())
    states = trainer.distributed_states()

    def snapshot():
        return ({n: v.numpy() for n, v in trainer.variables.items()},
                {n: a.numpy() for n, a in trainer.optimizer.accumulators.items()})

    before = snapshot()
    trainer.loss_scale.assign(1e38)  # loss * scale overflows: every gradient is inf/nan
    _, _, _, skipped = trainer.train_step(batch, states)
    assert bool(skipped)
    after = snapshot()
    for old, new in zip(before, after, strict=True):
        for name in old:
            np.testing.assert_array_equal(old[name], new[name], err_msg=name)
    assert float(trainer.loss_scale.numpy()) == np.float32(5e37)
    assert int(trainer.step.numpy()) == 1 and int(trainer.good_steps.numpy()) == 0

    trainer.loss_scale.assign(2.0**10)
    for _ in range(2):
        loss, _, _, skipped = trainer.train_step(batch, states)
        assert not bool(skipped) and np.isfinite(float(loss))
    assert not np.array_equal(trainer.variables["softmax/b"].numpy(), before[0]["softmax/b"])
    assert float(trainer.loss_scale.numpy()) == 2.0**11  # doubled after 2 finite steps
    assert int(trainer.good_steps.numpy()) == 0

    # the loss scale is checkpointed (a resumed run scales as the first would have)
    path = trainer.checkpoint.write(str(tmp_path / "ckpt"))
    resumed = _trainer(precision="mixed_float16", jit_compile=False)
    resumed.restore(path)
    assert float(resumed.loss_scale.numpy()) == 2.0**11 and int(resumed.step.numpy()) == 3
    # a float32 checkpoint (no loss scale) restores into a float16 trainer: scale kept
    plain = _trainer()
    path = plain.checkpoint.write(str(tmp_path / "plain"))
    resumed.restore(path)
    assert float(resumed.loss_scale.numpy()) == 2.0**11 and int(resumed.step.numpy()) == 0
