"""ELMoForManyLangs' side (HIT-SCIR, "EFML"): reference outputs and timings by EFML's own code.

Runs in EFML's environment, never in bilm's (``bash benchmarks/setup_efml_env.sh`` builds it in
``benchmarks/.envs/efml``)::

    PY=benchmarks/.envs/efml/bin/python
    $PY benchmarks/efml_side.py versions
    $PY benchmarks/efml_side.py make-reference tests/data/efml
    $PY benchmarks/efml_side.py make-model /tmp/efml_big --corpus corpus.txt
    $PY benchmarks/efml_side.py embed /tmp/efml_big --sentences corpus.txt \
        --batch-size 64 --repeats 3 --threads 2

``make-reference OUT_DIR`` writes two small random-weight models in EFML's on-disk format (a
folder like the released ``*.model`` ones: ``config.json``, the model configuration json it
names, ``char.dic``, ``word.dic``, ``token_embedder.pkl``, ``encoder.pkl``), built with EFML's
own classes (``frontend.Model``, ``EmbeddingLayer``) and lexicon code (``biLM.read_corpus``,
``biLM.get_truncated_vocab`` and ``biLM.train``'s lexicon loops), every parameter then moved by
seeded noise. ``word_char/`` has a word embedding (``word_dim`` 6) beside the character CNN;
``char_only/`` has ``word_dim`` 0 (EFML's "no word embedding": ``Embedder`` then ignores
``word.dic``, which EFML's training still writes). Then it runs EFML's
``Embedder(model_dir, batch_size=64).sents2elmo(SENTENCES, output_layer=k)`` for k in 0, 1, 2,
-1, -2, each on a fresh ``Embedder`` (EFML's encoder is stateful: a second call starts from the
LSTM states the first one ended with), and, for ``word_char``, a second call on the same
``Embedder``. Writes ``expected_<name>.npz`` (keys below), ``sentences.json`` and a check that
each sentence embedded alone gives the batched result.

npz keys, ``i`` the sentence's index in sentences.json (EFML returns the input order):
``layer_<k>_sent_<i>`` sents2elmo(output_layer=k)[i] for k in 0, 1, 2, -1, -2;
``second_call_layer_-2_sent_<i>`` (word_char only) the second consecutive -2 call;
``layer_-2_f64_sent_<i>`` the -2 output of EFML's code run in float64 (``model.double()``);
``char_ids_sent_<i>`` / ``word_ids_sent_<i>`` the ids EFML's ``create_one_batch`` gives the
sentence (with its ``<bos>``/``<eos>`` rows; word ids only for word_char).

``make-model OUT_DIR --corpus FILE`` writes a random-weight model at the released shape
(``cnn_50_100_512_4096_sample.json``), char.dic/word.dic from the corpus (one whitespace
tokenized sentence a line) the way ``biLM.train`` makes them. ``embed MODEL_DIR --sentences
FILE`` times ``sents2elmo`` (a warm-up, then ``--repeats`` timed passes over the whole file) and
prints one JSON line: ``{"tokens_per_s": [...], "median": ..., "peak_rss_mb": ...}``.

Run-time patches (EFML's files are installed unmodified, commit b3de5f1, 2020-10-15):

1. ``overrides``: ``modules/highway.py`` decorates ``Highway.forward`` with
   ``overrides.overrides``; overrides >= 4 checks signatures against ``torch.nn.Module.forward``
   (declared ``-> None``) and raises ``TypeError: Highway.forward: return type <class
   'torch.Tensor'> is not a <class 'NoneType'>`` at import. EFML ran with overrides 1.x-3.x, a
   no-op decorator there; ``_patch_overrides`` puts a module whose ``overrides`` is the identity
   in ``sys.modules`` before EFML is imported. Nothing else was needed on torch 2.13 / Python
   3.11 (``torch.autograd.Variable`` still exists and ``torch.load``'s ``weights_only`` default
   reads plain state dicts, legacy and zip layouts).
"""

from __future__ import annotations

import argparse
import codecs
import collections
import json
import logging
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

EFML_COMMIT_DEFAULT = "b3de5f1dc1ac13638a930b49c41e1f1e0e185ca1"


def _patch_overrides() -> None:
    """Patch 1 (see the module docstring): ``overrides.overrides`` as the identity."""
    stub = types.ModuleType("overrides")
    stub.overrides = lambda method: method  # type: ignore[attr-defined]
    sys.modules["overrides"] = stub


_patch_overrides()

import elmoformanylangs  # noqa: E402  (after the patch)
from elmoformanylangs import Embedder  # noqa: E402
from elmoformanylangs import biLM as efml_bilm  # noqa: E402
from elmoformanylangs import elmo as efml_elmo  # noqa: E402
from elmoformanylangs.frontend import Model  # noqa: E402
from elmoformanylangs.modules.embedding_layer import EmbeddingLayer  # noqa: E402

logging.getLogger("elmoformanylangs").setLevel(logging.WARNING)


def efml_commit() -> str:
    """The commit setup_efml_env.sh installed (it leaves it in the env), else the pinned one."""
    marker = Path(sys.prefix) / "EFML_COMMIT"
    return marker.read_text().strip() if marker.exists() else EFML_COMMIT_DEFAULT


# ----------------------------------------------------------------------------------------------
# configurations
# ----------------------------------------------------------------------------------------------


def model_config(
    *,
    char_dim: int,
    word_dim: int,
    filters: list[list[int]],
    n_highway: int,
    projection_dim: int,
    dim: int,
    n_layers: int,
    max_characters_per_token: int,
    cell_clip: float = 3,
    proj_clip: float = 3,
) -> dict[str, Any]:
    """A model configuration with the keys (and key order) of cnn_50_100_512_4096_sample.json."""
    return {
        "encoder": {
            "name": "elmo",
            "projection_dim": projection_dim,
            "cell_clip": cell_clip,
            "proj_clip": proj_clip,
            "dim": dim,
            "n_layers": n_layers,
        },
        "token_embedder": {
            "name": "cnn",
            "activation": "relu",
            "filters": filters,
            "n_highway": n_highway,
            "word_dim": word_dim,
            "char_dim": char_dim,
            "max_characters_per_token": max_characters_per_token,
        },
        "classifier": {"name": "sampled_softmax", "n_samples": 8192},
        "dropout": 0.1,
    }


SMALL = dict(
    char_dim=8,
    filters=[[1, 4], [2, 4], [3, 8]],
    n_highway=2,
    projection_dim=8,
    dim=16,
    n_layers=2,
    max_characters_per_token=10,
)

RELEASED = dict(
    char_dim=50,
    word_dim=100,
    filters=[[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]],
    n_highway=2,
    projection_dim=512,
    dim=4096,
    n_layers=2,
    max_characters_per_token=50,
)

# The "training corpus" the small models' lexicons come from (biLM.train's way).
SMALL_CORPUS = [
    "the cat sat on the mat .",
    "a dog ran in the park , and the cat slept .",
    "Hello world !",
    "the elephant walks slowly in the park .",
    "café crème brûlée",
    "жизнь и мир",
    "中文 字符 测试",
    "quick brown fox jumps over lazy dogs ?",
    "numbers 123 456 7890",
    "new york city , vamos por favor",
]

# Test sentences (lists of tokens, lengths 1..9). See README.md in the output folder for what
# each one exercises.
SENTENCES: list[list[str]] = [
    ["the", "cat", "sat", "on", "the", "mat", "."],
    ["Hello"],
    ["The", "elephants", "internationalization", "walk", "in", "Zürich", "QUIZ", "😀", "!"],
    ["café", "жизнь", "中文", "brûlée"],
    ["straße", "мир", "中\u3000文", "ещё", "dogs"],
    ["a", "dog", "ran", "fast"],
    ["elephant", "123", "?"],
]

OUTPUT_LAYERS = (0, 1, 2, -1, -2)


# ----------------------------------------------------------------------------------------------
# lexicons, the way elmoformanylangs.biLM.train makes and writes them
# ----------------------------------------------------------------------------------------------


def make_lexicons(
    corpus_path: str, max_chars: int, min_count: int = 1, extra_chars: tuple[str, ...] = ()
) -> tuple[dict[str, int], dict[str, int]]:
    """(word_lexicon, char_lexicon) as biLM.train builds them from a training file.

    biLM.read_corpus adds '<bos>'/'<eos>' tokens and cuts tokens to max_chars - 2; the word
    lexicon is '<oov>', '<bos>', '<eos>', '<pad>' (ids 0..3), then biLM.get_truncated_vocab's
    words by falling count; the char lexicon is the characters in order of first appearance
    (those of the '<bos>'/'<eos>' tokens included), then '<bos>', '<eos>', '<oov>', '<pad>',
    '<bow>', '<eow>'. ``extra_chars`` go in before the special entries (not biLM.train: used to
    put U+3000 in, which released models' char.dic have as a line with only an id).
    """
    train_data = efml_bilm.read_corpus(corpus_path, max_chars, max_sent_len=20)
    vocab = efml_bilm.get_truncated_vocab(train_data, min_count)
    word_lexicon: dict[str, int] = {}
    for special_word in ["<oov>", "<bos>", "<eos>", "<pad>"]:
        if special_word not in word_lexicon:
            word_lexicon[special_word] = len(word_lexicon)
    for word, _ in vocab:
        if word not in word_lexicon:
            word_lexicon[word] = len(word_lexicon)

    char_lexicon: dict[str, int] = {}
    for sentence in train_data:
        for word in sentence:
            for ch in word:
                if ch not in char_lexicon:
                    char_lexicon[ch] = len(char_lexicon)
    for ch in extra_chars:
        if ch not in char_lexicon:
            char_lexicon[ch] = len(char_lexicon)
    for special_char in ["<bos>", "<eos>", "<oov>", "<pad>", "<bow>", "<eow>"]:
        if special_char not in char_lexicon:
            char_lexicon[special_char] = len(char_lexicon)
    return word_lexicon, char_lexicon


def write_dic(path: Path, lexicon: dict[str, int]) -> None:
    """biLM.train's format: 'token<TAB>id' a line, in the dict's order, UTF-8."""
    with codecs.open(str(path), "w", encoding="utf-8") as fpo:
        for token, i in lexicon.items():
            print(f"{token}\t{i}", file=fpo)


def training_args(config_path: str, model: str, train_path: str) -> dict[str, Any]:
    """config.json: vars(opt) of biLM.train's argument parser, its defaults (as released models)."""
    return {
        "seed": 1,
        "gpu": -1,
        "train_path": train_path,
        "valid_path": None,
        "test_path": None,
        "config_path": config_path,
        "word_embedding": None,
        "optimizer": "adam",
        "lr": 0.001,
        "lr_decay": 0.8,
        "model": model,
        "batch_size": 32,
        "max_epoch": 10,
        "clip_grad": 5,
        "max_sent_len": 20,
        "min_count": 1,
        "max_vocab_size": 150000,
        "save_classify_layer": False,
        "valid_size": 0,
        "eval_steps": None,
    }


# ----------------------------------------------------------------------------------------------
# writing a model
# ----------------------------------------------------------------------------------------------


def write_model(
    out_dir: Path,
    config: dict[str, Any],
    corpus_lines: list[str],
    *,
    seed: int,
    noise: float,
    config_path_in_json: str,
    config_file_name: str,
    legacy_format: bool,
    extra_chars: tuple[str, ...] = (),
    min_count: int = 1,
    boost_lstm: bool = False,
) -> dict[str, int]:
    """Build EFML's frontend.Model with seeded init, add noise to every parameter, save it
    the way biLM.Model.save_model does (token_embedder / encoder state dicts), with the
    lexicons, config.json and the model configuration. Returns {parameter name: numel}.

    ``boost_lstm``: after the noise, the LSTMs' input_linearity and state_linearity weights
    x1.5, state_projection x4 and the forget-gate bias (state_linearity.bias[cell:2*cell]) +3,
    so that the cell clip and the projection clip (3 and 3) both bite on short sentences
    (on the reference sentences about 2% of the cell values and 0.3-0.5% of the projected
    values are clipped) while float32 rounding stays small (EFML in float32 vs float64: under
    3e-6; stronger boosts made it 1e-5 and more)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    te = config["token_embedder"]
    with tempfile.TemporaryDirectory() as tmp:
        corpus_path = os.path.join(tmp, "train.txt")
        with open(corpus_path, "w", encoding="utf-8") as f:
            f.write("\n".join(corpus_lines) + "\n")
        word_lexicon, char_lexicon = make_lexicons(
            corpus_path, te["max_characters_per_token"], min_count, extra_chars
        )

    torch.manual_seed(seed)
    random.seed(seed)
    word_emb_layer = (
        EmbeddingLayer(te["word_dim"], word_lexicon, fix_emb=False) if te["word_dim"] > 0 else None
    )
    char_emb_layer = (
        EmbeddingLayer(te["char_dim"], char_lexicon, fix_emb=False) if te["char_dim"] > 0 else None
    )
    model = Model(config, word_emb_layer, char_emb_layer, use_cuda=False)

    gen = torch.Generator().manual_seed(seed + 1)
    sizes: dict[str, int] = {}
    with torch.no_grad():
        for part in ("token_embedder", "encoder"):
            for name, p in getattr(model, part).state_dict().items():
                p.add_(noise * torch.randn(p.shape, generator=gen))
                sizes[f"{part}.{name}"] = p.numel()
                if boost_lstm and part == "encoder":
                    cell = config["encoder"]["dim"]
                    if name.endswith(("input_linearity.weight", "state_linearity.weight")):
                        p.mul_(1.5)
                    elif name.endswith("state_projection.weight"):
                        p.mul_(4.0)
                    elif name.endswith("state_linearity.bias"):
                        p[cell : 2 * cell] += 3.0

    kwargs = {} if not legacy_format else {"_use_new_zipfile_serialization": False}
    torch.save(model.token_embedder.state_dict(), out_dir / "token_embedder.pkl", **kwargs)
    torch.save(model.encoder.state_dict(), out_dir / "encoder.pkl", **kwargs)
    if char_emb_layer is not None:
        write_dic(out_dir / "char.dic", char_lexicon)
    write_dic(out_dir / "word.dic", word_lexicon)  # biLM.train writes it whatever word_dim is
    with open(out_dir / config_file_name, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    args = training_args(config_path_in_json, out_dir.name, "train.txt")
    with codecs.open(str(out_dir / "config.json"), "w", encoding="utf-8") as f:
        json.dump(args, f)
    return sizes


# ----------------------------------------------------------------------------------------------
# make-reference
# ----------------------------------------------------------------------------------------------


def efml_ids(
    embedder: Embedder, sents: list[list[str]]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The char and word ids EFML's sents2elmo feeds the model, per sentence in input order."""
    config = embedder.config
    test, text = efml_elmo.read_list(sents, config["token_embedder"]["max_characters_per_token"])
    w, c, lens, _masks, _texts, recover_ind = efml_elmo.create_batches(
        test, len(sents), embedder.word_lexicon, embedder.char_lexicon, config, text=text
    )
    chars: list[np.ndarray] = [None] * len(sents)  # type: ignore[list-item]
    words: list[np.ndarray] = [None] * len(sents)  # type: ignore[list-item]
    for row, original in enumerate(recover_ind):
        n = lens[0][row]
        chars[original] = c[0][row, :n].numpy()
        words[original] = w[0][row, :n].numpy() if w[0] is not None else None
    return chars, words


def clip_stats(model_dir: str, sents: list[list[str]]) -> dict[str, float]:
    """How often the cell clip and the projection clip bite on these sentences (diagnostic)."""
    counts = collections.Counter()
    real_clamp = torch.clamp

    def counting_clamp(t: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        kind = "cell" if t.shape[-1] == embedder.config["encoder"]["dim"] else "proj"
        counts[kind + "_clipped"] += int(((t < lo) | (t > hi)).sum())
        counts[kind + "_total"] += t.numel()
        return real_clamp(t, lo, hi)

    embedder = Embedder(model_dir, batch_size=64)
    torch.clamp = counting_clamp  # type: ignore[assignment]
    try:
        embedder.sents2elmo(sents, output_layer=-2)
    finally:
        torch.clamp = real_clamp  # type: ignore[assignment]
    return {k: counts[k + "_clipped"] / max(counts[k + "_total"], 1) for k in ("cell", "proj")}


def make_reference(out_root: Path) -> None:
    out_root.mkdir(parents=True, exist_ok=True)
    with open(out_root / "sentences.json", "w", encoding="utf-8") as f:
        json.dump(SENTENCES, f, ensure_ascii=False, indent=1)
        f.write("\n")

    setups = {
        # released-style README setup: config_path relative to the model folder; legacy layout
        # (torch < 1.6's torch.save, as the released 2018 models)
        "word_char": dict(
            config=model_config(word_dim=6, **SMALL),
            seed=11,
            file="cnn_8_6_8_16_sample.json",
            config_path="cnn_8_6_8_16_sample.json",
            legacy=True,
        ),
        # config_path as training left it (an absolute path that does not exist here):
        # Embedder falls back to the file of that name in the model folder; zip layout
        "char_only": dict(
            config=model_config(word_dim=0, **SMALL),
            seed=22,
            file="cnn_8_0_8_16_sample.json",
            config_path="/users4/conll18st/elmo/src/configs/cnn_8_0_8_16_sample.json",
            legacy=False,
        ),
    }
    report: dict[str, Any] = {"efml_commit": efml_commit(), "torch": torch.__version__}
    for name, s in setups.items():
        model_dir = out_root / name
        sizes = write_model(
            model_dir,
            s["config"],
            SMALL_CORPUS,
            seed=s["seed"],
            noise=0.1,
            config_path_in_json=s["config_path"],
            config_file_name=s["file"],
            legacy_format=s["legacy"],
            extra_chars=("\u3000",),
            boost_lstm=True,
        )
        arrays: dict[str, np.ndarray] = {}
        for k in OUTPUT_LAYERS:
            out = Embedder(str(model_dir), batch_size=64).sents2elmo(SENTENCES, output_layer=k)
            assert len(out) == len(SENTENCES)
            for i, a in enumerate(out):
                arrays[f"layer_{k}_sent_{i}"] = np.asarray(a, dtype=np.float32)
        # shapes / consistency of what sents2elmo returned
        for i, sent in enumerate(SENTENCES):
            all3 = arrays[f"layer_-2_sent_{i}"]
            assert all3.shape == (3, len(sent), 2 * s["config"]["encoder"]["projection_dim"])
            for k in (0, 1, 2):
                assert np.array_equal(all3[k], arrays[f"layer_{k}_sent_{i}"]), (name, i, k)
            assert np.allclose(all3.mean(0), arrays[f"layer_-1_sent_{i}"], atol=1e-6)
            p = s["config"]["encoder"]["projection_dim"]
            assert np.array_equal(all3[0, :, :p], all3[0, :, p:])  # layer 0 is [x; x]

        # the same computation in float64 (EFML's code on model.double(): not how EFML runs,
        # a rounding-free yardstick for the float32 arrays above)
        e64 = Embedder(str(model_dir), batch_size=64)
        e64.model.double()
        out64 = e64.sents2elmo(SENTENCES, output_layer=-2)
        for i, a in enumerate(out64):
            assert a.dtype == np.float64
            arrays[f"layer_-2_f64_sent_{i}"] = a
        f32_vs_f64 = max(
            float(np.abs(a - arrays[f"layer_-2_sent_{i}"]).max()) for i, a in enumerate(out64)
        )

        # each sentence alone (fresh Embedder) == the batched run: input order kept, padding inert
        alone_diff = 0.0
        for i, sent in enumerate(SENTENCES):
            one = Embedder(str(model_dir), batch_size=64).sents2elmo([sent], output_layer=-2)[0]
            alone_diff = max(alone_diff, float(np.abs(one - arrays[f"layer_-2_sent_{i}"]).max()))

        # statefulness: two consecutive calls on one Embedder
        state_note: dict[str, Any] = {}
        if name == "word_char":
            e = Embedder(str(model_dir), batch_size=64)
            first = e.sents2elmo(SENTENCES, output_layer=-2)
            second = e.sents2elmo(SENTENCES, output_layer=-2)
            for i, a in enumerate(second):
                arrays[f"second_call_layer_-2_sent_{i}"] = np.asarray(a, dtype=np.float32)
            state_note = {
                "first_call_equals_fresh": all(
                    np.array_equal(a, arrays[f"layer_-2_sent_{i}"]) for i, a in enumerate(first)
                ),
                "second_minus_first_max_abs_layer0": max(
                    float(np.abs(b[0] - a[0]).max()) for a, b in zip(first, second, strict=True)
                ),
                "second_minus_first_max_abs_layer1": max(
                    float(np.abs(b[1] - a[1]).max()) for a, b in zip(first, second, strict=True)
                ),
                "second_minus_first_max_abs_layer2": max(
                    float(np.abs(b[2] - a[2]).max()) for a, b in zip(first, second, strict=True)
                ),
            }

        embedder = Embedder(str(model_dir), batch_size=64)
        chars, words = efml_ids(embedder, SENTENCES)
        for i in range(len(SENTENCES)):
            arrays[f"char_ids_sent_{i}"] = chars[i].astype(np.int32)
            if words[i] is not None:
                arrays[f"word_ids_sent_{i}"] = words[i].astype(np.int32)

        np.savez_compressed(out_root / f"expected_{name}.npz", **arrays)
        report[name] = {
            "parameters": sizes,
            "alone_vs_batched_max_abs": alone_diff,
            "float32_vs_float64_max_abs": f32_vs_f64,
            "clip_fraction": clip_stats(str(model_dir), SENTENCES),
            **state_note,
        }
    print(json.dumps(report, indent=1))


# ----------------------------------------------------------------------------------------------
# make-model / embed (throughput)
# ----------------------------------------------------------------------------------------------


def read_sentences(path: str) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        return [line.split() for line in f if line.split()]


def make_model(out_dir: Path, corpus: str, seed: int, min_count: int) -> None:
    with open(corpus, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    name = "cnn_50_100_512_4096_sample.json"
    sizes = write_model(
        out_dir,
        model_config(**RELEASED),
        lines,
        seed=seed,
        noise=0.01,
        config_path_in_json=name,
        config_file_name=name,
        legacy_format=False,
        min_count=min_count,
    )
    print(json.dumps({"model_dir": str(out_dir), "parameters": sum(sizes.values())}))


def embed(
    model_dir: str, sentences: str, batch_size: int, repeats: int, threads: int, output_layer: int
) -> None:
    torch.set_num_threads(threads)
    sents = read_sentences(sentences)
    n_tokens = sum(len(s) for s in sents)
    embedder = Embedder(model_dir, batch_size=batch_size)
    embedder.sents2elmo(sents[:batch_size], output_layer=output_layer)  # warm-up
    rates: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = embedder.sents2elmo(sents, output_layer=output_layer)
        rates.append(n_tokens / (time.perf_counter() - t0))
        assert len(out) == len(sents)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(
        json.dumps(
            {
                "tokens_per_s": rates,
                "median": statistics.median(rates),
                "peak_rss_mb": peak_rss_mb,
                "sentences": len(sents),
                "tokens": n_tokens,
                "batch_size": batch_size,
                "threads": threads,
                "output_layer": output_layer,
                "torch": torch.__version__,
            }
        )
    )


def layers(model_dir: str, sentences: str) -> None:
    """Every layer (output_layer=-2) of the sentences from a fresh Embedder (zero state), as
    JSON on stdout: the equality check of benchmarks/efml_embed.py."""
    sents = read_sentences(sentences)
    out = Embedder(model_dir, batch_size=64).sents2elmo(sents, output_layer=-2)
    print(json.dumps({"layers": [np.asarray(x).tolist() for x in out]}))


def versions() -> None:
    print(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "torch": torch.__version__,
                "numpy": np.__version__,
                "elmoformanylangs": os.path.dirname(elmoformanylangs.__file__),
                "efml_commit": efml_commit(),
            }
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("versions")
    p = sub.add_parser("make-reference")
    p.add_argument("out_dir", type=Path)
    p = sub.add_parser("make-model", help="random-weight model at the released shape")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--corpus", required=True, help="text file: chars and words of the lexicons")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--min-count", type=int, default=1)
    p = sub.add_parser("embed")
    p.add_argument("model_dir")
    p.add_argument("--sentences", required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output-layer", type=int, default=-1)
    p = sub.add_parser("layers", help="every layer of the sentences, fresh state, as JSON")
    p.add_argument("model_dir")
    p.add_argument("--sentences", required=True)
    a = parser.parse_args(argv)
    if a.cmd == "versions":
        versions()
    elif a.cmd == "make-reference":
        make_reference(a.out_dir)
    elif a.cmd == "layers":
        layers(a.model_dir, a.sentences)
    elif a.cmd == "make-model":
        make_model(a.out_dir, a.corpus, a.seed, a.min_count)
    else:
        embed(a.model_dir, a.sentences, a.batch_size, a.repeats, a.threads, a.output_layer)


if __name__ == "__main__":
    main()
