"""The training head: the XLA-friendly sampled softmax and the two-stage gradients."""

import numpy as np
import tensorflow as tf

from bilm import BiLMOptions
from bilm.layers.sampled_softmax import (
    log_uniform_unique_sample,
    sampled_softmax_loss,
    sampled_softmax_loss_static,
)
from bilm.lm import LanguageModel


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
    for v, g, r in zip(variables, grads, ref):
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
    from bilm.scoring import score_sentences

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
