"""Which part of the Bible is a verse from? ELMo features against a bag-of-words baseline.

    python examples/kjv_sections.py                       # ../shared/corpus/kjv beside the repo
    python examples/kjv_sections.py --corpus DIR --workdir DIR [--options F --weights F]

Data: ``sections/{train,test}.tsv`` (label TAB tokenized verse; 6 sections). The biLM is trained
by this toolkit on the corpus' ``train/`` shards (which exclude the test verses) unless
``--options/--weights`` are given; a trained model in ``--workdir`` is reused.

Compared, on the same split:
  (a) ELMo sentence vectors (the ``default`` output: mean over tokens of the equal-weight mix)
      + logistic regression; (a2) the mean of each layer, concatenated, + logistic regression;
  (b) a small Keras model on the ELMo layer with a learned scalar mix (trainable mix,
      frozen biLM, one hidden layer);
  (c) bag of words (binary unigram features, tokens seen twice in training) + logistic
      regression; (d) bag of words and the ELMo layer means together.
Prints accuracy and macro-F1 of each, and the wall time of every step.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from bilm.keras import ELMoEmbedding

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "kjv"


def read_tsv(path: Path) -> tuple[list[str], list[str]]:
    labels, texts = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            label, text = line.rstrip("\n").split("\t", 1)
            labels.append(label)
            texts.append(text)
    return labels, texts


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    scores = []
    for c in range(n_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def logistic_regression(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                        n_classes: int, l2: float = 1e-4, epochs: int = 60) -> np.ndarray:
    """Multinomial logistic regression (standardized features, L2, Adam); test predictions."""
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    model = keras.Sequential([
        keras.Input(shape=(x_train.shape[1],)),
        keras.layers.Dense(n_classes, kernel_regularizer=keras.regularizers.L2(l2)),
    ])
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit((x_train - mean) / std, y_train, epochs=epochs, batch_size=128, verbose=0)
    return np.argmax(model.predict((x_test - mean) / std, verbose=0), axis=1)


def bag_of_words(train_texts: list[str], test_texts: list[str]) -> tuple[np.ndarray, ...]:
    counts = Counter(t for s in train_texts for t in set(s.lower().split()))
    index = {w: i for i, w in enumerate(w for w, c in counts.items() if c >= 2)}

    def encode(texts):
        x = np.zeros((len(texts), len(index)), np.float32)
        for row, s in enumerate(texts):
            for t in s.lower().split():
                if t in index:
                    x[row, index[t]] = 1.0
        return x

    return encode(train_texts), encode(test_texts)


def train_bilm(corpus: Path, workdir: Path, n_batches: int) -> tuple[Path, Path]:
    """Train a tiny biLM on ``corpus/train`` and export it; reuse one already in workdir."""
    from bilm.data import BidirectionalLMDataset
    from bilm.data.build_vocab import build_vocab
    from bilm.presets import preset
    from bilm.training import dump_weights, load_vocab, test, train

    weights = workdir / "model" / "weights.hdf5"
    if weights.exists():
        print(f"reusing the biLM in {weights.parent}")
        return weights.parent / "options.json", weights
    train_glob = str(corpus / "train" / "*")
    vocab_file = workdir / "vocab.txt"
    build_vocab(train_glob, vocab_file, min_count=2, progress=False)
    options = preset("tiny")
    vocab = load_vocab(str(vocab_file), options["char_cnn"]["max_characters_per_token"])
    options["n_tokens_vocab"] = vocab.size
    ckpt = train(options, BidirectionalLMDataset(train_glob, vocab, shuffle_on_load=True, seed=0),
                 1, str(workdir / "checkpoints"), str(workdir / "logs"), n_batches=n_batches,
                 log_every=max(n_batches // 10, 1), seed=0)
    heldout = glob.glob(str(corpus / "heldout" / "*"))
    if heldout:
        ppl = test(str(workdir / "checkpoints" / "options.json"), ckpt,
                   BidirectionalLMDataset(heldout[0], vocab, test=True), batch_size=64,
                   progress=False)
        print(f"biLM held-out perplexity: {ppl:.1f}")
    dump_weights(str(workdir / "checkpoints"), str(weights))
    return weights.parent / "options.json", weights


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help="folder with train/, heldout/ and sections/{train,test}.tsv")
    parser.add_argument("--workdir", type=Path, default=Path("kjv-sections"),
                        help="where the biLM is trained and kept")
    parser.add_argument("--options", type=Path, help="use this biLM instead of training one")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--n-batches", type=int, default=1500, help="biLM training batches")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of model (b)")
    parser.add_argument("--max-sentences", type=int,
                        help="use N evenly spaced verses of each split (a smoke test: every "
                        "section keeps its share)")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("bilm").setLevel(logging.INFO)  # training progress; not TF's chatter
    sections = args.corpus / "sections"
    if not (sections / "train.tsv").exists():
        parser.error(f"{sections}/train.tsv not found; pass --corpus (../shared/corpus/kjv)")
    keras.utils.set_random_seed(0)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    if args.weights is None:
        options_file, weight_file = train_bilm(args.corpus, args.workdir, args.n_batches)
    else:
        options_file, weight_file = args.options, args.weights
    timings["biLM"] = time.perf_counter() - start

    train_labels, train_texts = read_tsv(sections / "train.tsv")
    test_labels, test_texts = read_tsv(sections / "test.tsv")
    if args.max_sentences:
        n = args.max_sentences
        train_labels, train_texts = train_labels[:: max(len(train_texts) // n, 1)][:n], \
            train_texts[:: max(len(train_texts) // n, 1)][:n]
        test_labels, test_texts = test_labels[:: max(len(test_texts) // n, 1)][:n], \
            test_texts[:: max(len(test_texts) // n, 1)][:n]
    classes = sorted(set(train_labels) | set(test_labels))
    y_train = np.array([classes.index(c) for c in train_labels])
    y_test = np.array([classes.index(c) for c in test_labels])
    print(f"{len(train_texts)} training and {len(test_texts)} test verses, "
          f"{len(classes)} sections: {', '.join(classes)}")
    results: dict[str, dict[str, float]] = {}

    def report(name: str, pred: np.ndarray, seconds: float) -> None:
        results[name] = {"accuracy": float(np.mean(pred == y_test)),
                         "macro_f1": macro_f1(y_test, pred, len(classes)), "seconds": seconds}
        r = results[name]
        print(f"{name:<44} accuracy {r['accuracy']:.3f}  macro-F1 {r['macro_f1']:.3f}  "
              f"({seconds:.0f} s)")

    start = time.perf_counter()
    elmo = ELMoEmbedding(options_file, weight_file)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])  # one trace
    def sentence_vectors(texts):
        out = elmo.layer_outputs(texts)
        mask = tf.cast(out["mask"], tf.float32)[..., tf.newaxis]
        n = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
        layers = [out["word_emb"], out["lstm_outputs1"], out["lstm_outputs2"]]
        return out["default"], tf.concat([tf.reduce_sum(x, axis=1) / n for x in layers], -1)

    def features(texts):
        parts = [sentence_vectors(tf.constant(texts[i : i + 64]))
                 for i in range(0, len(texts), 64)]
        return (np.concatenate([d.numpy() for d, _ in parts]),
                np.concatenate([c.numpy() for _, c in parts]))

    (d_train, c_train), (d_test, c_test) = features(train_texts), features(test_texts)
    seconds = time.perf_counter() - start
    report("(a) ELMo 'default' vector + logistic regr.",
           logistic_regression(d_train, y_train, d_test, len(classes)), seconds)
    report("(a2) ELMo layer means, concatenated + LR",
           logistic_regression(c_train, y_train, c_test, len(classes)), seconds)

    start = time.perf_counter()
    inputs = keras.Input(shape=(), dtype="string")
    x = ELMoEmbedding(options_file, weight_file, output="default", dropout=0.2)(inputs)
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(len(classes))(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    train_ds = (tf.data.Dataset.from_tensor_slices((train_texts, y_train))
                .shuffle(len(train_texts), seed=0).batch(64))
    model.fit(train_ds, epochs=args.epochs, verbose=2, shuffle=False)
    logits = model.predict(tf.data.Dataset.from_tensor_slices(test_texts).batch(64), verbose=0)
    report("(b) Keras model on ELMoEmbedding (mix)", np.argmax(logits, axis=1),
           time.perf_counter() - start)
    mix = model.layers[1].scalar_mix
    weights = tf.nn.softmax(mix.scalar_weights).numpy()
    print(f"    learned layer weights {', '.join(f'{w:.3f}' for w in weights)}, "
          f"gamma {float(mix.gamma.numpy()[0]):.2f}")

    start = time.perf_counter()
    b_train, b_test = bag_of_words(train_texts, test_texts)
    pred = logistic_regression(b_train, y_train, b_test, len(classes), l2=1e-3)
    report("(c) bag of words + logistic regr.", pred, time.perf_counter() - start)
    start = time.perf_counter()
    pred = logistic_regression(np.concatenate([b_train, c_train], 1), y_train,
                               np.concatenate([b_test, c_test], 1), len(classes), l2=1e-3)
    report("(d) bag of words + ELMo layer means + LR", pred, time.perf_counter() - start)
    print(f"majority class: accuracy {np.mean(y_test == np.bincount(y_train).argmax()):.3f}; "
          f"biLM step {timings['biLM']:.0f} s")
    return results


if __name__ == "__main__":
    main()
