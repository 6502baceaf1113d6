"""Embedding dumps to HDF5: every vocabulary token's embedding (:func:`dump_token_embeddings`)
and every line of a text file's (:func:`dump_bilm_embeddings`, reduced per sentence by
:func:`reduce_embeddings`), with the readers of the text file's sentences."""

from __future__ import annotations

import json
import logging
import os
from array import array
from collections.abc import Iterator, Sequence

import h5py
import numpy as np

from bilm.data.batcher import Batcher
from bilm.data.lines import count_lines
from bilm.data.vocabulary import UnicodeCharsVocabulary
from bilm.inference.language_model import BidirectionalLanguageModel
from bilm.io.files import atomic_path, check_free_space
from bilm.io.progress import Progress
from bilm.models.registry import model_files
from bilm.options import OptionsError, load_options

__all__ = ["LAYERS", "LAYOUTS", "POOLS", "SentenceKeyError", "dump_bilm_embeddings",
           "dump_token_embeddings", "reduce_embeddings"]

logger = logging.getLogger(__name__)


def _read_max_chars(options_file: str | os.PathLike[str]) -> int:
    options = load_options(options_file)
    if not options.use_character_inputs:
        raise OptionsError(f"{options_file}: a word-input model has no character CNN")
    return options.max_characters_per_token


def dump_token_embeddings(vocab_file: str | os.PathLike[str],
                          options_file: str | os.PathLike[str] | None = None,
                          weight_file: str | os.PathLike[str] | None = None,
                          outfile: str | os.PathLike[str] | None = None, batch_size: int = 4096,
                          progress: bool = True, overwrite: bool = True, *,
                          model: str | os.PathLike[str] | None = None) -> None:
    """Write the context-independent embedding of every vocabulary token (bilm-tf's layout).

    The model is ``options_file`` + ``weight_file``, or ``model``: a path of any family
    bilm reads, or a catalogue name (:func:`bilm.models.open_model`).

    ``outfile`` gets dataset ``embedding`` (n_vocab, dim), rows in file order; a
    token-input :class:`BidirectionalLanguageModel` reads it as ``embedding_weight_file``.
    The file is written atomically; ``overwrite=False`` never replaces an existing one, not
    even one that another process wrote meanwhile (:class:`~bilm.io.files.OutputExistsError`).
    """
    options_file, weight_file, _ = model_files(options_file, weight_file, model)
    if outfile is None:
        raise ValueError("outfile is required")
    max_chars = _read_max_chars(options_file)
    vocab = UnicodeCharsVocabulary(vocab_file, max_chars)
    lm = BidirectionalLanguageModel(options_file, weight_file, stateful=False)
    if isinstance(lm.batcher, Batcher):
        ids = vocab.word_char_ids + 1
    else:  # an embedder with ids of its own (ELMoForManyLangs')
        ids = np.stack([lm.batcher.token_char_ids(vocab.id_to_word(i))
                        for i in range(vocab.size)]) + 1
    bar = Progress("dump_token_embeddings", total=len(ids), unit="tokens", enabled=progress)
    parts = []
    for i in range(0, len(ids), batch_size):
        parts.append(lm.embed_tokens(ids[i : i + batch_size]).numpy())
        bar.update(len(parts[-1]))
    bar.close()
    dim = lm.encoder.dim
    embeddings = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
    embeddings = embeddings.astype(np.float32)
    with atomic_path(outfile, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as f:
        check_free_space(os.path.dirname(tmp), embeddings.nbytes, os.fspath(outfile))
        f.create_dataset("embedding", data=embeddings)


# Choices of dump_bilm_embeddings (and ``bilm embed``); the first of each is the default.
LAYERS = ("all", "top", "average")
POOLS = ("none", "mean", "max")
LAYOUTS = ("bilm", "allennlp")


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def reduce_embeddings(embeddings: np.ndarray, layers: str = "all",
                      pool: str = "none") -> np.ndarray:
    """Select layers and pool tokens of one sentence's ``lm_embeddings``.

    Args:
        embeddings: (n_layers + 1, n_tokens, dim), as :meth:`embed_sentences` yields.
        layers: ``"all"`` keeps every layer; ``"top"`` the top LSTM layer; ``"average"`` the
            mean of all n_layers + 1 layers (AllenNLP's ``--top`` / ``--average``).
        pool: ``"none"`` keeps one vector per token; ``"mean"`` / ``"max"`` reduce over the
            sentence's tokens. A sentence without tokens (a blank line) pools to zeros.

    Returns:
        float32: (n_layers + 1, n_tokens, dim) for all layers, (n_tokens, dim) for top or
        average; pooling drops the n_tokens axis.
    """
    _check_choice("layers", layers, LAYERS)
    _check_choice("pool", pool, POOLS)
    out = embeddings
    if layers == "top":
        out = out[-1]  # shape (n_tokens, dim)
    elif layers == "average":
        out = out.mean(axis=0)  # shape (n_tokens, dim)
    if pool != "none":
        token_axis = out.ndim - 2
        if out.shape[token_axis] == 0:  # mean/max of nothing: zeros, so every line has a row
            out = np.zeros(out.shape[:token_axis] + out.shape[token_axis + 1 :], np.float32)
        elif pool == "mean":
            out = out.mean(axis=token_axis)
        else:
            out = out.max(axis=token_axis)
    return out.astype(np.float32, copy=False)


def _read_sentences(path: str | os.PathLike[str]) -> Iterator[list[str]]:
    """The whitespace tokens of each line of a UTF-8 text file: a line ends at "\\n" only
    (never at \\r, \\x0b, \\x0c, \\x1c-\\x1e, \\x85, U+2028 or U+2029, which universal newlines
    or ``str.splitlines()`` would break it at), so sentence i is line i, as training reads
    the same file. UnicodeDecodeError for text that is not UTF-8."""
    with open(path, encoding="utf-8", newline="\n") as f:
        for line in f:
            yield line.split()


def _sentence_to_index(path: str) -> dict[str, str]:
    """AllenNLP's ``sentence_to_index``: each stripped line -> its line index as a string (a
    repeated line maps to its last occurrence, as in AllenNLP); lines end at "\\n" only."""
    return {key: str(index) for index, key in enumerate(_read_sentence_keys(path))}


# AllenNLP 0.9's ``allennlp elmo`` (allennlp/commands/elmo.py, ElmoEmbedder.embed_file) has two
# flags for its layout, taken here with the same meaning:
# * --use-sentence-keys: the key of a line's dataset is the sentence itself, the line with
#   surrounding whitespace stripped (``line.strip()``; inner whitespace is kept as it is), not
#   its line number; no ``sentence_to_index`` is written. A sentence seen before is an error
#   (AllenNLP: "Key already exists in OUT. To encode duplicate sentences, do not pass the
#   --use-sentence-keys flag."), checked there as each key is written, so a run dies at the
#   duplicate and leaves a half-written file; here a pre-scan of the input finds it before the
#   model is loaded, and the output is written atomically as always.
# * --forget-sentences: without --use-sentence-keys, no ``sentence_to_index`` is written (keys
#   stay line numbers); with it, nothing changes (there is no index to leave out).
# AllenNLP only warns that sentence keys "can fail if sentences contain forward slashes or
# colons". In HDF5 (h5py) a '/' in a name makes groups ("a/b" is dataset "b" in group "a";
# "a//b", "/a" and "a/" lose or change characters), a name "." is the file's root, a NUL ends
# the name early and "" is no name: files that AllenNLP fails on half-way or writes with keys
# that are not the sentences. A colon is an ordinary character. So such a line (and a blank
# line, which AllenNLP refuses in every mode) is an error here, found by the same pre-scan.


class SentenceKeyError(ValueError):
    """A line that cannot be its own dataset key with ``use_sentence_keys``: a repeated
    sentence, a blank line, or one HDF5 would not store under its text ('/', NUL, ".")."""


def _quote(sentence: str, limit: int = 60) -> str:
    return repr(sentence if len(sentence) <= limit else sentence[:limit] + "...")


def _sentence_key_problem(key: str) -> str | None:
    """Why ``key`` (a stripped line) cannot be an HDF5 dataset name as it is, or None."""
    if not key:
        return "a blank line has no sentence"
    if "/" in key:
        return f"the sentence {_quote(key)} holds a '/', which HDF5 reads as a group"
    if "\0" in key:
        return f"the sentence {_quote(key)} holds a NUL character, which ends an HDF5 name"
    if key == ".":
        return "the sentence '.' names the HDF5 file's root group"
    return None


def _read_sentence_keys(path: str) -> Iterator[str]:
    """Each line of ``path`` with surrounding whitespace stripped: AllenNLP's sentence keys
    (lines end at "\\n" only, as :func:`_read_sentences` reads them)."""
    with open(path, encoding="utf-8", newline="\n") as f:
        for line in f:
            yield line.strip()


def _check_sentence_keys(path: str) -> None:
    """SentenceKeyError at the first line of ``path`` that cannot be its own key: one
    :func:`_sentence_key_problem` names, or a repeat of an earlier sentence. Two passes over
    the file that hold 16 bytes per line at most (the sentences' hashes, sorted), and then
    only the sentences whose hashes repeat, so that a file of any size is checked first."""
    hashes = array("q")
    for index, key in enumerate(_read_sentence_keys(path)):
        problem = _sentence_key_problem(key)
        if problem:
            raise SentenceKeyError(f"{path}:{index + 1}: {problem}, so it cannot be a "
                                   "sentence key; without --use-sentence-keys the keys are "
                                   "line numbers, which take any line")
        hashes.append(hash(key))
    ordered = np.sort(np.frombuffer(hashes, dtype=np.int64)) if hashes else np.zeros(0, np.int64)
    repeated = set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())
    if not repeated:
        return
    first: dict[str, int] = {}  # a repeated hash's sentences (a collision is no duplicate)
    for index, key in enumerate(_read_sentence_keys(path)):
        if hash(key) not in repeated:
            continue
        if key in first:
            raise SentenceKeyError(
                f"{path}:{index + 1}: duplicate sentence {_quote(key)} (first on line "
                f"{first[key] + 1}); a sentence key names one dataset. To encode duplicate "
                "sentences, do not pass --use-sentence-keys")
        first[key] = index


def dump_bilm_embeddings(vocab_file: str | os.PathLike[str] | None,
                         dataset_file: str | os.PathLike[str],
                         options_file: str | os.PathLike[str] | None = None,
                         weight_file: str | os.PathLike[str] | None = None,
                         outfile: str | os.PathLike[str] | None = None, stateful: bool = True,
                         batch_size: int = 64, progress: bool = True, *, layers: str = "all",
                         pool: str = "none", layout: str = "bilm",
                         max_tokens: int | None = None, precision: str = "float32",
                         overwrite: bool = True, use_sentence_keys: bool = False,
                         forget_sentences: bool = False,
                         model: str | os.PathLike[str] | None = None) -> None:
    """Embed every line of a tokenized text file (one sentence per line) into HDF5.

    The model is ``options_file`` + ``weight_file``, or ``model``: a path of any family
    bilm reads, or a catalogue name (:func:`bilm.models.open_model`).

    ``outfile`` gets one dataset per line, key ``str(line_index)``, float32; with the defaults
    its shape is (n_layers + 1, n_tokens, 2 * dim) (bilm-tf's layout) and a blank
    line gives n_tokens 0.

    With the defaults this is bilm-tf's computation: one sentence at a time, LSTM state
    carried from line to line. ``stateful=False`` embeds up to ``batch_size`` sentences at a
    time, grouped by length, each from a zero state: deterministic and many times faster;
    ``max_tokens`` bounds a batch's rows x time steps (default ``batch_size * 64``, see
    :meth:`BidirectionalLanguageModel.embed_sentences`), so a very long line is embedded
    alone. The file is streamed and the output is written atomically. ``vocab_file`` only
    caches char ids.

    ``layers`` (all | top | average) and ``pool`` (none | mean | max) reduce each sentence
    as :func:`reduce_embeddings` does: e.g. top + mean gives one (2 * dim,) vector
    per line, zeros for a blank line. ``layout="allennlp"`` adds AllenNLP's ``elmo`` command's
    ``sentence_to_index`` dataset: shape (1,), a JSON string mapping each stripped line to its
    key (it holds every distinct line in memory while writing). With ``layout="allennlp"``
    only, AllenNLP's two flags: ``use_sentence_keys`` keys each dataset by its stripped line
    instead of its index and writes no ``sentence_to_index``; the input is checked first, and
    a repeated sentence, a blank line or one holding '/' or NUL, or ".", raises
    :class:`SentenceKeyError` before the model is loaded. ``forget_sentences`` leaves
    ``sentence_to_index`` out (the keys stay line indices). ``precision="bfloat16"``
    computes in bfloat16 (see :class:`BidirectionalLanguageModel`); the file stays float32.
    ``overwrite=False`` never replaces an existing ``outfile``, not even one that another
    process wrote meanwhile (:class:`~bilm.io.files.OutputExistsError`).
    """
    _check_dump_arguments(layers, pool, layout, batch_size, max_tokens)
    if (use_sentence_keys or forget_sentences) and layout != "allennlp":
        raise ValueError("use_sentence_keys and forget_sentences apply to layout='allennlp' "
                         f"only; got layout={layout!r}")
    dataset_file = os.fspath(dataset_file)
    if not os.path.exists(dataset_file):
        raise FileNotFoundError(f"dataset file not found: {dataset_file}")
    if use_sentence_keys:
        _check_sentence_keys(dataset_file)  # before the model loads and the output opens
    options_file, weight_file, _ = model_files(options_file, weight_file, model)
    if outfile is None:
        raise ValueError("outfile is required")
    max_chars = _read_max_chars(options_file)
    lm = BidirectionalLanguageModel(options_file, weight_file, stateful=stateful,
                                    max_batch_size=1 if stateful else batch_size,
                                    precision=precision)
    total = count_lines(dataset_file)
    bar = Progress("dump_bilm_embeddings", total=total, unit="sentences", enabled=progress)
    batcher = None
    if stateful:
        batcher = lm.batcher if not isinstance(lm.batcher, Batcher) else Batcher(vocab_file,
                                                                                  max_chars)
    embeddings = _sentence_embeddings(lm, dataset_file, batcher, batch_size, max_tokens)
    keys = _read_sentence_keys(dataset_file) if use_sentence_keys else None
    n_blank = 0
    with atomic_path(outfile, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as fout:
        folder = os.path.dirname(tmp)
        for index, emb in enumerate(embeddings):
            n_blank += emb.shape[1] == 0
            data = reduce_embeddings(emb, layers, pool)
            check_free_space(folder, data.nbytes, os.fspath(outfile))
            key = str(index) if keys is None else next(keys, "")
            if keys is not None and (_sentence_key_problem(key) or key in fout):
                raise SentenceKeyError(f"{dataset_file}:{index + 1}: the file changed while "
                                       "it was embedded: its sentences are no longer keys")
            fout.create_dataset(key, data=data)
            bar.update()
        if layout == "allennlp" and not (use_sentence_keys or forget_sentences):
            index_json = json.dumps(_sentence_to_index(dataset_file))
            check_free_space(folder, len(index_json.encode()), os.fspath(outfile))
            fout.create_dataset("sentence_to_index", (1,), dtype=h5py.string_dtype())[0] = (
                index_json)
    bar.close()
    if n_blank and pool != "none":
        logger.warning("%d blank line(s) have no tokens: their pooled vectors are zeros",
                       n_blank)


def _check_dump_arguments(layers: str, pool: str, layout: str, batch_size: int,
                          max_tokens: int | None) -> None:
    """ValueError for a choice or size :func:`dump_bilm_embeddings` does not take."""
    _check_choice("layers", layers, LAYERS)
    _check_choice("pool", pool, POOLS)
    _check_choice("layout", layout, LAYOUTS)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1; got {max_tokens}")


def _sentence_embeddings(model: BidirectionalLanguageModel, dataset_file: str,
                         batcher: Batcher | None, batch_size: int,
                         max_tokens: int | None) -> Iterator[np.ndarray]:
    """The lm_embeddings of each line of ``dataset_file``: with ``batcher``, one sentence at a
    time with the model's carried state (bilm-tf's computation); without, batched and
    stateless (:meth:`~BidirectionalLanguageModel.embed_sentences`)."""
    if batcher is not None:
        for sentence in _read_sentences(dataset_file):
            ids = batcher.batch_sentences([sentence])
            yield model(ids)["lm_embeddings"].numpy()[0]
    else:
        yield from model.embed_sentences(_read_sentences(dataset_file),
                                         batch_size=batch_size, max_tokens=max_tokens)
