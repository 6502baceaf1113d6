"""What bfloat16 inference costs in accuracy: the deviation from float32 per layer, and the
effect on a downstream task.

    python benchmarks/bf16_effect.py                 # all three shapes + the KJV task
    python benchmarks/bf16_effect.py --shapes small --no-task

1. Deviation: random-weight models at the published shapes, and a biLM trained on KJV, embed
   the first ``--n-sentences`` held-out KJV sentences with ``embed_sentences`` in float32 and
   in bfloat16 (``BidirectionalLanguageModel(precision=...)``); per layer: the largest
   absolute difference, that over the largest float32 magnitude, and the relative RMS error
   ``||bf16 - fp32|| / ||fp32||``.
2. Downstream: the KJV sections task of ``examples/kjv_sections.py`` (6 classes): the layer
   means of each verse, concatenated, + logistic regression (its model (a2)), with features
   from the float32 and from the bfloat16 model; accuracy, macro-F1 and how many test
   predictions agree. The biLM is the example's (``tiny`` preset, 1500 batches), trained in
   ``--workdir`` unless one is there.

Speed in bfloat16 is ``embed_throughput.py --precision bfloat16``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KJV = ROOT.parent / "shared" / "corpus" / "kjv"


def embed_all(options_file, weight_file, sentences, precision: str):
    import numpy as np

    from bilm.inference.language_model import BidirectionalLanguageModel

    model = BidirectionalLanguageModel(options_file, weight_file, stateful=False,
                                       precision=precision)
    return [np.asarray(e) for e in model.embed_sentences(sentences)]


def deviation(name: str, options_file, weight_file, sentences) -> None:
    import numpy as np

    fp32 = np.concatenate(embed_all(options_file, weight_file, sentences, "float32"), axis=1)
    bf16 = np.concatenate(embed_all(options_file, weight_file, sentences, "bfloat16"), axis=1)
    for k in range(fp32.shape[0]):
        a, b = fp32[k], bf16[k]
        diff = np.abs(b - a)
        rms = np.linalg.norm(b - a) / np.linalg.norm(a)
        print(f"{name:<10}{k:>6}{diff.max():>12.4f}{np.abs(a).max():>12.3f}"
              f"{diff.max() / np.abs(a).max():>12.2e}{rms:>12.2e}", flush=True)


def layer_means(options_file, weight_file, texts, precision: str):
    import numpy as np

    sentences = [t.split() for t in texts]
    out = embed_all(options_file, weight_file, sentences, precision)
    return np.stack([e.mean(axis=1).reshape(-1) for e in out])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="*", default=["small", "medium", "original"])
    p.add_argument("--n-sentences", type=int, default=512)
    p.add_argument("--task", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bilm-bf16",
                   help="where the KJV biLM is trained (reused when there)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if not KJV.exists():
        sys.exit(f"needs {KJV} (../shared beside the checkout)")
    sys.path[:0] = [str(HERE), str(ROOT / "examples")]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import embed_throughput
    import kjv_sections
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    options_file, weight_file = kjv_sections.train_bilm(KJV, args.workdir, 1500)
    sentences = embed_throughput.read_sentences(str(embed_throughput.DEFAULT_DATA),
                                                args.n_sentences)
    print(f"# bf16 vs fp32, {len(sentences)} held-out KJV sentences, TF {tf.__version__}")
    print(f"{'model':<10}{'layer':>6}{'max |diff|':>12}{'max |fp32|':>12}{'max rel':>12}"
          f"{'rms rel':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.shapes:
            deviation(name, *embed_throughput.write_model(name, tmp), sentences)
    deviation("KJV tiny", options_file, weight_file, sentences)
    if not args.task:
        return
    train_labels, train_texts = kjv_sections.read_tsv(KJV / "sections" / "train.tsv")
    test_labels, test_texts = kjv_sections.read_tsv(KJV / "sections" / "test.tsv")
    classes = sorted(set(train_labels) | set(test_labels))
    y_train = np.array([classes.index(c) for c in train_labels])
    y_test = np.array([classes.index(c) for c in test_labels])
    predictions = {}
    for precision in ["float32", "bfloat16"]:
        import keras

        keras.utils.set_random_seed(0)
        x_train = layer_means(options_file, weight_file, train_texts, precision)
        x_test = layer_means(options_file, weight_file, test_texts, precision)
        pred = kjv_sections.logistic_regression(x_train, y_train, x_test, len(classes))
        predictions[precision] = pred
        print(f"KJV sections, layer means + LR, {precision:<9} features: accuracy "
              f"{np.mean(pred == y_test):.3f}, macro-F1 "
              f"{kjv_sections.macro_f1(y_test, pred, len(classes)):.3f}", flush=True)
    agree = np.mean(predictions["float32"] == predictions["bfloat16"])
    print(f"test predictions that agree: {agree:.1%} of {len(y_test)}")


if __name__ == "__main__":
    main()
