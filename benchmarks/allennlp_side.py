"""AllenNLP's half of ``benchmarks/transformer_embed.py``: runs in AllenNLP's own environment
(``benchmarks/setup_allennlp_env.sh``), never imports bilm or TensorFlow, and answers as JSON
on stdout (its own chatter goes to stderr).

    python allennlp_side.py build CONFIG.json ARCHIVE.tar.gz --seed 0 \
        --sentences S.txt --reference REF.npz
        AllenNLP's LanguageModel built from CONFIG's "model" by AllenNLP's own from_params,
        with seeded random weights, saved as a model archive (config.json, weights.th,
        vocabulary/); with --sentences, AllenNLP's character ids and layer outputs for those
        sentences (one per line, split on whitespace) into REF.npz.
    python allennlp_side.py time ARCHIVE.tar.gz --sentences S.txt --batch-size 64 \
        --repeats 3 --threads 2 [--matmul-size 4096]
        The archive loaded by ``load_archive`` (return_all_layers, softmax deleted, eval mode),
        then a warm-up pass and ``--repeats`` timed passes over the sentences in file order,
        ``--batch-size`` at a time: ELMo character ids by AllenNLP's indexer, the
        LanguageModel's token embedder and contextualizer under ``torch.no_grad()``, and the
        layers stacked as bilm's ``lm_embeddings`` (token layer twice, ``<S>``/``</S>``
        removed) -- what ``LanguageModelTokenEmbedder`` computes before its scalar mix.
    python allennlp_side.py dump ARCHIVE.tar.gz --sentences S.txt --output OUT.hdf5
        "Embed this file into HDF5" with AllenNLP's modules (as ``time`` computes them, torch's
        default threads), one dataset per line: ``benchmarks/embed_file.py``'s AllenNLP side.
    python allennlp_side.py versions
        Imports AllenNLP's modules and prints the versions this side runs on.

This environment's torchvision cannot be installed against the CPU-only torch (PyPI's wheels
link CUDA's libtorch), and AllenNLP imports it only for its vision modules, which this script
never uses: :func:`import_allennlp` puts an empty stand-in on the import path instead.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.abc
import importlib.machinery
import json
import os
import resource
import sys
import tarfile
import tempfile
import time
import types
import warnings


class _EmptyModule(types.ModuleType):
    """A module whose every attribute is another empty module (``torchvision.ops.boxes``)."""

    def __getattr__(self, name: str) -> types.ModuleType:
        if name.startswith("__"):
            raise AttributeError(name)
        child = _EmptyModule(f"{self.__name__}.{name}")
        setattr(self, name, child)
        return child


class _NoTorchvision(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _EmptyModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []


@functools.cache
def import_allennlp() -> types.SimpleNamespace:
    """AllenNLP's classes this script uses (registering the language-model components)."""
    sys.meta_path.insert(0, _NoTorchvision())
    warnings.filterwarnings("ignore")
    with contextlib.redirect_stdout(sys.stderr):
        import allennlp_models.lm  # noqa: F401 (registers language_model and the transformer)
        from allennlp.common import Params
        from allennlp.data import Token, Vocabulary
        from allennlp.data.token_indexers import ELMoTokenCharactersIndexer
        from allennlp.models import Model
        from allennlp.models.archival import load_archive
        from allennlp.nn.util import remove_sentence_boundaries
    return types.SimpleNamespace(
        Params=Params, Token=Token, Vocabulary=Vocabulary, Model=Model,
        ELMoTokenCharactersIndexer=ELMoTokenCharactersIndexer, load_archive=load_archive,
        remove_sentence_boundaries=remove_sentence_boundaries)


def read_sentences(path: str) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        return [line.split() for line in f if line.strip()]


def peak_rss_mb() -> float:
    """This process's peak RSS: ``VmHWM`` (Linux's ``ru_maxrss`` would carry the parent's
    peak across fork and exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Embedder:
    """Sentences -> (batch, n_layers + 1, T, 2 * dim) with AllenNLP's modules."""

    def __init__(self, a: types.SimpleNamespace, archive: str) -> None:
        import torch

        # as LanguageModelTokenEmbedder loads a language model: every layer returned
        model = a.load_archive(archive, overrides=json.dumps(
            {"model.contextualizer.return_all_layers": True})).model

        self.torch, self.a, self.model = torch, a, model
        self.indexer = a.ELMoTokenCharactersIndexer()
        self.vocab = model.vocab
        model.eval()
        model.delete_softmax()
        self.token_name = next(iter(model._text_field_embedder._token_embedders))
        self.n_chars = 50  # ELMoCharacterMapper.max_word_length

    def ids(self, sentences: list[list[str]]):
        """AllenNLP's ELMo character ids, ``<S>``/``</S>`` added, padded with zeros."""
        import numpy as np

        batch = np.zeros((len(sentences), max(len(s) for s in sentences) + 2, self.n_chars),
                         np.int64)
        for i, s in enumerate(sentences):
            tokens = [self.a.Token(t) for t in ("<S>", *s, "</S>")]
            rows = self.indexer.tokens_to_indices(tokens, self.vocab)["elmo_tokens"]
            batch[i, : len(rows)] = rows
        return self.torch.from_numpy(batch)

    def __call__(self, sentences: list[list[str]]):
        torch = self.torch
        ids = self.ids(sentences)
        with torch.no_grad():
            out = self.model({self.token_name: {"token_characters": ids}})
            mask = out["mask"]
            tokens = out["noncontextual_token_embeddings"]
            layers = [torch.cat([tokens, tokens], -1), *out["lm_embeddings"]]
            layers = [self.a.remove_sentence_boundaries(t, mask)[0] for t in layers]
            return torch.stack(layers, 1), ids


def build(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    a = import_allennlp()
    torch.manual_seed(args.seed)
    with open(args.config, encoding="utf-8") as f:
        config = json.load(f)
    sentences = read_sentences(args.sentences) if args.sentences else []
    vocab = a.Vocabulary()
    words = ["<S>", "</S>", *dict.fromkeys(t for s in sentences for t in s)]
    vocab.add_tokens_to_namespace(words[: args.vocab_size], "tokens")
    model = a.Model.from_params(vocab=vocab, params=a.Params(json.loads(json.dumps(
        config["model"]))))
    # the random weights: AllenNLP's own initialisation (seeded), then every vector that it
    # starts at 0 or 1 (biases, layer norms) moved off it, so that the check below tests
    # where each of them goes
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                noise = (torch.rand(p.shape, generator=generator) - 0.5) * 0.2
                p.add_(noise)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(model.state_dict(), os.path.join(tmp, "weights.th"))
        with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
        vocab.save_to_files(os.path.join(tmp, "vocabulary"))
        with tarfile.open(args.archive, "w:gz") as tar:
            for name in ("config.json", "weights.th", "vocabulary"):
                tar.add(os.path.join(tmp, name), arcname=name,
                        filter=lambda info: None if info.name.endswith(".lock") else info)
    result = {"archive": args.archive, "parameters": sum(p.numel() for p in
                                                          model.parameters()),
              "vocab_size": vocab.get_vocab_size("tokens")}
    if sentences:
        # the reference outputs: the archive loaded back as a user loads it
        embed = Embedder(a, args.archive)
        arrays = {}
        for i, s in enumerate(sentences):
            layers, ids = embed([s])
            arrays[f"layers/{i}"] = layers[0].numpy()
            arrays[f"ids/{i}"] = ids[0].numpy().astype(np.int32)
        np.savez(args.reference, **arrays)
        result["reference"] = args.reference
    return result


def time_passes(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    a = import_allennlp()
    embed = Embedder(a, args.archive)
    sentences = read_sentences(args.sentences)
    n_tokens = sum(len(s) for s in sentences)

    def one_pass() -> float:
        start = time.perf_counter()
        for i in range(0, len(sentences), args.batch_size):
            layers, _ = embed(sentences[i : i + args.batch_size])
            layers.numpy()
        return time.perf_counter() - start

    warm_up = one_pass()
    times = [one_pass() for _ in range(args.repeats)]
    rss = peak_rss_mb()  # before the matmul's own buffers
    return {"side": "allennlp", "times": times, "warm_up": warm_up, "n_tokens": n_tokens,
            "n_sentences": len(sentences), "peak_rss_mb": rss,
            "matmul_gflops": matmul_gflops(args.matmul_size) if args.matmul_size else None,
            "threads": torch.get_num_threads(), **versions()}


def dump(args: argparse.Namespace) -> dict:
    """The task users run, with AllenNLP's modules: every line of a file embedded (batches of
    ``--batch-size`` in file order, as :class:`Embedder`) into HDF5, one dataset per line keyed
    by its index, (n_layers + 1, n_tokens, 2 * dim) float32 -- ``bilm embed``'s layout."""
    import h5py
    import torch

    a = import_allennlp()
    embed = Embedder(a, args.archive)
    sentences = read_sentences(args.sentences)
    with h5py.File(args.output, "w") as out:
        for i in range(0, len(sentences), args.batch_size):
            batch = sentences[i : i + args.batch_size]
            layers = embed(batch)[0].numpy()
            for j, s in enumerate(batch):
                out.create_dataset(str(i + j), data=layers[j, :, : len(s)])
    return {"side": "allennlp", "n_sentences": len(sentences),
            "threads": torch.get_num_threads(), "peak_rss_mb": peak_rss_mb()}


def matmul_gflops(n: int, repeats: int = 5) -> float:
    """Best of ``repeats`` fp32 ``torch.matmul`` n x n x n, in GFLOP/s."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def versions() -> dict:
    """The versions of what this side runs on (importing AllenNLP's modules first)."""
    import importlib.metadata

    import_allennlp()
    return {"python": sys.version.split()[0],
            **{name: importlib.metadata.version(name)
               for name in ("torch", "allennlp", "allennlp-models", "transformers")}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("config")
    b.add_argument("archive")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--sentences")
    b.add_argument("--reference")
    b.add_argument("--vocab-size", type=int, default=64)
    t = sub.add_parser("time")
    t.add_argument("archive")
    t.add_argument("--sentences", required=True)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--matmul-size", type=int, default=0,
                   help="also measure torch.matmul at this size (GFLOP/s)")
    d = sub.add_parser("dump")
    d.add_argument("archive")
    d.add_argument("--sentences", required=True)
    d.add_argument("--output", required=True)
    d.add_argument("--batch-size", type=int, default=64)
    sub.add_parser("versions")
    args = p.parse_args()
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        run = {"build": build, "time": time_passes, "dump": dump,
               "versions": lambda _: versions()}
        result = run[args.command](args)
    print(json.dumps(result), file=stdout)


if __name__ == "__main__":
    main()
