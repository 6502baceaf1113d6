"""The encoder contract suite's helpers: the encoders under test with their tiny options, a
tiny corpus, the command line run in-process, and the reference values the suite compares
against (as keras-hub's ``run_backbone_test`` and AllenNLP's
``ensure_model_can_train_save_and_load`` do, with our value tolerances).

The command line runs in this process (``bilm.cli.main``): a subprocess would not see an
encoder registered by a test module, and each would pay TensorFlow's import again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests import third_encoder
from tests.conftest import TINY_OPTIONS, TINY_TRANSFORMER_OPTIONS, Cli, bilm

__all__ = ["ENCODERS", "SENTENCES", "Cli", "TrainedRun", "bilm", "checkpoint_values",
           "contextualizer", "make_corpus", "reference_embeddings", "reference_logprobs",
           "tiny_run_options"]

# every encoder runs the same suite: the package's two and one registered by a test module
ENCODERS = ("lstm", "transformer", third_encoder.NAME)

# the model shapes (conftest's tiny models; the third encoder's own), the preset bilm train
# starts from, and training keys that differ by encoder
_SHAPES = {"lstm": TINY_OPTIONS, "transformer": TINY_TRANSFORMER_OPTIONS,
           third_encoder.NAME: third_encoder.TINY_CONV_OPTIONS}
PRESETS = {"lstm": "tiny", "transformer": "transformer-tiny",
           third_encoder.NAME: f"{third_encoder.NAME}-tiny"}
_TRAINING = {"batch_size": 4, "unroll_steps": 5, "n_negative_samples_batch": 8,
             "jit_compile": False, "n_epochs": 1}
_ENCODER_TRAINING = {"transformer": {"warmup_steps": 10, "learning_rate": 2.0}}

# every training sentence has 6 tokens: a sentence batch then always has the same shape, and
# the training step is traced once per run instead of once more for a generalized shape
TEXT = ("the light was very good .\nand god saw the light .\nthe earth was without form .\n"
        "darkness was upon the deep .\ngod divided light from darkness .\n")
# held-out and embedded sentences: training ones, new ones, an unknown word, a blank line
SENTENCES = [["the", "light", "was", "very", "good", "."], ["and", "god", "saw", "the", "light"],
             ["darkness", "was", "upon", "the", "deep", "."], ["firmament"], [],
             ["god", "saw", "the", "earth", "was", "without", "form", "."]]


def tiny_run_options(name: str) -> dict:
    """The ``--options`` file's dict for ``bilm train --preset PRESETS[name]``."""
    return {**_SHAPES[name], **_TRAINING, **_ENCODER_TRAINING.get(name, {})}


def make_corpus(directory: Path) -> dict[str, Path]:
    """Two training shards, a held-out file (SENTENCES, one per line) and a vocabulary made
    by ``bilm vocab``."""
    (directory / "train").mkdir(parents=True)
    for k in range(2):
        (directory / "train" / f"shard.{k}.txt").write_text(TEXT * 12)
    heldout = directory / "heldout.txt"
    heldout.write_text("".join(" ".join(s) + "\n" for s in SENTENCES))
    vocab = directory / "vocab.txt"
    bilm("vocab", directory / "train" / "shard.*", vocab).ok()
    return {"train": directory / "train" / "shard.*", "heldout": heldout, "vocab": vocab}


@dataclass
class TrainedRun:
    """One encoder's runs: ``full`` trained N batches at once, ``split`` trained N/2 then
    resumed to N (same seed), and the full run exported (all layers, and the first one).
    What several tests compare against is computed once (:meth:`reference`,
    :meth:`loaded`)."""

    name: str
    corpus: dict[str, Path]
    full: Path
    split: Path
    export: Path  # weights.hdf5, options.json beside it
    export_one: Path  # --layers 1
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def options_file(self) -> Path:
        return self.export.parent / "options.json"

    def max_chars(self) -> int:
        from bilm.options import load_options

        return load_options(self.options_file).max_characters_per_token

    def reference(self) -> list[np.ndarray]:
        """The exported model's ``lm_embeddings`` of each of SENTENCES alone."""
        if "reference" not in self._cache:
            self._cache["reference"] = reference_embeddings(self.options_file, self.export,
                                                            SENTENCES)
        return self._cache["reference"]

    def loaded(self):
        """The full run's latest checkpoint (:func:`bilm.training.load_run`)."""
        if "loaded" not in self._cache:
            from bilm.training import load_run

            self._cache["loaded"] = load_run(str(self.full))
        return self._cache["loaded"]


def checkpoint_values(ckpt: str) -> dict[str, np.ndarray]:
    """Every value a checkpoint holds (weights, optimizer slots, the step, states)."""
    import tensorflow as tf

    return {n: tf.train.load_variable(ckpt, n) for n, _ in tf.train.list_variables(ckpt)
            if not n.startswith("_") and "save_counter" not in n}


def reference_embeddings(options_file: Path, weight_file: Path,
                         sentences: list[list[str]]) -> list[np.ndarray]:
    """``lm_embeddings`` of each sentence alone (stateless), (n_layers + 1, n, 2 * dim)."""
    from bilm import Batcher, BidirectionalLanguageModel

    model = BidirectionalLanguageModel(options_file, weight_file, stateful=False)
    batcher = Batcher(None, model.options.max_characters_per_token)
    return [model(batcher.batch_sentences([s]))["lm_embeddings"].numpy()[0, :, : len(s)]
            for s in sentences]


def reference_logprobs(lm, vocab, sentences: list[list[str]]) -> np.ndarray:
    """(n_sentences, 2) natural-log probability of each sentence under each direction,
    computed here from the checkpoint's top layer and softmax (float64 log-softmax): the
    forward LM predicting its words and ``</S>``, the backward one its words and ``<S>``."""
    import tensorflow as tf

    from bilm.data.sentences import sentence_batch

    result = np.zeros((len(sentences), 2))
    w = np.asarray(lm.softmax_weights, np.float64)
    b = np.asarray(lm.softmax_b, np.float64)
    for i, sentence in enumerate(sentences):
        batch = sentence_batch(vocab, [sentence])
        key = "tokens_characters" if lm.options.use_character_inputs else "token_ids"
        emb = lm.encoder.embed_tokens(tf.constant(batch[key]), shifted=False)
        layers, _ = lm.contextualizer.sentence_layers(emb, tf.constant(batch["lengths"]))
        top = layers[-1].numpy()[:, 0].astype(np.float64)  # (2, T, dim)
        logits = top @ w.T + b
        logits -= logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        ids, n = batch["token_ids"][0], len(sentence) + 2
        result[i, 0] = sum(logp[0, t, ids[t + 1]] for t in range(n - 1))
        result[i, 1] = sum(logp[1, t, ids[t - 1]] for t in range(1, n))
    return result


def read_scores(path: Path) -> tuple[list[str], np.ndarray]:
    """``bilm score``'s TSV: header, rows as floats (an empty backward column: NaN)."""
    lines = path.read_text().rstrip("\n").split("\n")
    rows = [[float(x) if x else math.nan for x in line.split("\t")] for line in lines[1:]]
    return lines[0].split("\t"), np.array(rows)


def contextualizer(name: str, input_dropout: float = 0.0, **changes):
    """A fresh network of encoder ``name`` (its tiny options, ``changes`` to its section),
    built through its registry entry, weights drawn with seed 0."""
    import keras

    from bilm.encoders import get_spec

    spec = get_spec(name)
    section = dict(_SHAPES[name].get("encoder", _SHAPES[name].get("lstm")))
    section.pop("type", None)
    options = spec.options.from_dict({**section, **changes})
    keras.utils.set_random_seed(0)
    return spec.network(options, n_directions=2, input_dropout=input_dropout,
                        compute_dtype="float32")
