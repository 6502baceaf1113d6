"""Import AllenNLP language-model archives (Transformer ELMo) as bilm training runs.

An AllenNLP ``model.tar.gz`` (or its unpacked folder) holds ``config.json`` (hand-edited
ones carry trailing commas: read leniently), ``weights.th`` (a PyTorch state dict, read by
:mod:`bilm.io.torch_pickle` without torch) and ``vocabulary/``. :func:`import_allennlp` turns
it into a save directory that every command accepts like one of our training runs: a
checkpoint with the softmax, ``options.json``, ``vocab.txt`` and ``run.json``.

The vocabulary: AllenNLP's ``tokens`` namespace is padded (id 0 is padding, line i of
``tokens.txt`` is id i + 1) and its softmax has one row per id but the padding one, with
``num_words`` counting it: softmax row r is line r, plus one last row that no token uses.
``vocab.txt`` lists the lines in order (``@@UNKNOWN@@`` written as ``<UNK>``) and names that
last row ``@@PADDING@@``, so that its size is the softmax's.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import re
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from bilm.options import BiLMOptions, OptionsError

__all__ = ["AllenNLPArchive", "ArchiveError", "import_allennlp", "options_from_config",
           "read_archive"]

logger = logging.getLogger(__name__)

UNKNOWN, PADDING = "@@UNKNOWN@@", "@@PADDING@@"
# the contextualizers and token embedders we import
_TRANSFORMER = "bidirectional_language_model_transformer"
_MODELS = ("language_model", "bidirectional-language-model")


class ArchiveError(ValueError):
    """An archive that cannot be imported (the message names the file and the reason)."""


def lenient_json(text: str, source: str) -> Any:
    """JSON that may carry trailing commas (``{"a": 1,}``), as hand-edited AllenNLP configs do;
    commas inside strings are left alone."""
    out, in_string, escape = [], False, False
    for i, ch in enumerate(text):
        if in_string:
            out.append(ch)
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch == "," and re.match(r"\s*[}\]]", text[i + 1 :]):
            continue  # a trailing comma
        out.append(ch)
    try:
        return json.loads("".join(out))
    except json.JSONDecodeError as e:
        raise ArchiveError(f"{source}: config.json is not valid JSON ({e})") from None


@dataclass
class AllenNLPArchive:
    """What an archive holds: its config, its weights (name -> array), its token list."""

    path: str
    config: dict[str, Any]
    weights: dict[str, np.ndarray]
    tokens: list[str]  # tokens.txt, in order (id i + 1 in a padded namespace)
    padded: bool  # whether the 'tokens' namespace has a padding id 0


#: The most bytes ``config.json`` or a vocabulary file may hold (AllenNLP's configs take a few
#: KB, an 800,000-word tokens.txt about 10 MB): a larger member is refused before it is read.
MAX_TEXT_BYTES = 64 << 20
#: The most bytes ``weights.th`` may hold: the tensors a biLM can hold
#: (:data:`bilm.io.torch_pickle.MAX_TOTAL_BYTES`, 4 GiB) and room for the pickle around them.
MAX_WEIGHTS_BYTES = (4 << 30) + (256 << 20)
#: The most members an archive may list (AllenNLP writes about ten).
MAX_MEMBERS = 10_000
_WEIGHTS = "weights.th"
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)


@dataclass(frozen=True)
class _Member:
    """A file of an archive, as its header (or the folder) declares it; nothing read yet."""

    name: str  # in the archive
    size: int  # declared, in bytes
    problem: str | None  # what it is when not a regular file ("a symbolic link (to ...)", ...)
    open: Callable[[], BinaryIO]


def read_archive(path: str | os.PathLike[str]) -> AllenNLPArchive:
    """Read ``model.tar.gz`` (or an unpacked archive folder) without executing anything from
    it, and without reading more than a biLM's archive holds: every member read must be a
    regular file no larger than its cap (:data:`MAX_TEXT_BYTES`, :data:`MAX_WEIGHTS_BYTES`,
    from its declared size, before reading), and ``weights.th`` must start as a PyTorch file
    does (checked from its first bytes; it is then read as a stream, not whole). Raises
    :class:`ArchiveError` (one line naming the archive and the member) for a missing,
    oversized or non-regular member, or a file that is not an archive."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ArchiveError(f"archive not found: {path}")
    with contextlib.ExitStack() as stack:
        find = _members(path, stack)

        def member(name: str, what: str, cap: int, setting: str) -> _Member:
            found = find(name)
            if found is None:
                raise ArchiveError(f"{path} has no {name} ({what}): not an AllenNLP model "
                                   "archive")
            if found.problem:
                raise ArchiveError(f"{path}: {found.name} is {found.problem}, not a regular "
                                   "file; refusing to read it")
            if found.size > cap:
                raise ArchiveError(f"{path}: {found.name} is {found.size:,} bytes, more than "
                                   f"a biLM's archive holds there (bilm.io.allennlp.{setting} = "
                                   f"{cap:,} bytes); refusing to read it")
            return found

        def read(name: str, what: str) -> bytes:
            cap = MAX_TEXT_BYTES
            found = member(name, what, cap, "MAX_TEXT_BYTES")
            data = bytearray()
            try:
                with found.open() as file:  # in pieces, up to one byte past the cap
                    while piece := file.read(min(1 << 20, cap + 1 - len(data))):
                        data += piece
            except _READ_ERRORS as e:
                raise ArchiveError(f"{path}: {found.name} cannot be read (truncated "
                                   f"archive?): {e}") from None
            if len(data) > cap:  # a file grown since it was listed
                raise ArchiveError(f"{path}: {found.name} holds more than {cap:,} bytes "
                                   "(bilm.io.allennlp.MAX_TEXT_BYTES); refusing to read it")
            return bytes(data)

        def weights() -> dict[str, np.ndarray]:
            from bilm.io.torch_pickle import TorchWeightsError, load_torch_state_dict

            found = member(_WEIGHTS, "the weights", MAX_WEIGHTS_BYTES, "MAX_WEIGHTS_BYTES")
            try:
                with found.open() as file:
                    # checks the first bytes, then reads on as a stream
                    return load_torch_state_dict(file, name=f"{path}: {found.name}")
            except TorchWeightsError as e:
                raise ArchiveError(str(e)) from None
            except _READ_ERRORS as e:
                raise ArchiveError(f"{path}: {found.name} cannot be read (truncated "
                                   f"archive?): {e}") from None

        def has(name: str) -> bool:
            return find(name) is not None

        return _parse(path, read, weights, has)


class _Stream(io.RawIOBase):
    """A tar member as a stream that does not seek: seeking back in a .tar.gz decompresses it
    again from its start (the weights reader copies a zip-layout weights.th instead)."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__()
        self._file = file

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._file.readinto(buffer)

    def close(self) -> None:
        self._file.close()
        super().close()


def _tar_problem(info: tarfile.TarInfo) -> str | None:
    if info.isreg():
        return None
    if info.issym():
        return f"a symbolic link (to {info.linkname})"
    if info.islnk():
        return f"a hard link (to {info.linkname})"
    kinds = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
             tarfile.FIFOTYPE: "a FIFO", tarfile.DIRTYPE: "a directory"}
    return kinds.get(info.type, f"a tar member of type {info.type!r}")


def _file_problem(mode: int) -> str | None:
    for test, kind in ((stat.S_ISREG, None), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return kind
    return "not a regular file"


def _folder_members(path: str) -> Iterator[_Member]:
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            try:
                info = os.stat(full)  # a symbolic link in a folder: what it points to
            except OSError:
                problem, size = f"a broken link (to {os.readlink(full)})", 0
            else:
                problem, size = _file_problem(info.st_mode), info.st_size
            yield _Member(os.path.relpath(full, path).replace(os.sep, "/"), size, problem,
                          functools.partial(open, full, "rb"))


def _tar_members(path: str, tar: tarfile.TarFile) -> Iterator[_Member]:
    for count, info in enumerate(tar, 1):
        if count > MAX_MEMBERS:
            raise ArchiveError(f"{path} lists more than {MAX_MEMBERS:,} members "
                               "(bilm.io.allennlp.MAX_MEMBERS): not an AllenNLP model archive")
        yield _Member(info.name.removeprefix("./"), info.size, _tar_problem(info),
                      lambda info=info: _Stream(tar.extractfile(info)))


def _members(path: str, stack: contextlib.ExitStack) -> Callable[[str], _Member | None]:
    """A function finding a member of the archive (a folder, or a tar file read in place:
    nothing extracted, no path written) by its name, or else a name ending in ``/name``.

    The tar's members are listed lazily, as far as a name needs: its headers declare each
    member's type and size, which are checked before the member's data is read or skipped."""
    if os.path.isdir(path):
        members = _folder_members(path)
        where = f"{path} cannot be listed"
    else:
        try:
            tar = stack.enter_context(tarfile.open(path, "r:*"))  # noqa: SIM115 (stack)
        except _READ_ERRORS as e:
            raise ArchiveError(f"{path} is not a readable model archive (.tar.gz): {e}"
                               ) from None
        members = _tar_members(path, tar)
        where = f"{path} is not a readable model archive (.tar.gz)"
    seen: dict[str, _Member] = {}

    def find(name: str) -> _Member | None:
        try:
            while name not in seen:
                listed = next(members, None)
                if listed is None:
                    break
                if listed.problem != "a directory":
                    seen.setdefault(listed.name, listed)
        except _READ_ERRORS as e:
            raise ArchiveError(f"{where}: {e}") from None
        if name in seen:
            return seen[name]
        return next((m for k, m in seen.items() if k.endswith("/" + name)), None)

    return find


def _parse(path: str, read: Callable[[str, str], bytes],
           weights: Callable[[], dict[str, np.ndarray]],
           has: Callable[[str], bool]) -> AllenNLPArchive:
    config = lenient_json(read("config.json", "the model's configuration").decode("utf-8"),
                          path)
    state_dict = weights()
    # one token a line, split at "\n" only, as AllenNLP reads it back (str.splitlines()
    # would also split a token holding \r, \x85 or U+2028, and shift every later id)
    tokens = read("vocabulary/tokens.txt", "the vocabulary").decode("utf-8").split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()  # the final newline
    namespaces = "vocabulary/non_padded_namespaces.txt"
    non_padded = (read(namespaces, "").decode("utf-8") if has(namespaces)
                  else "*tags\n*labels\n")  # AllenNLP's default
    padded = not any(_matches(p.strip(), "tokens") for p in non_padded.splitlines()
                     if p.strip())
    return AllenNLPArchive(path, config, state_dict, tokens, padded)


def _matches(pattern: str, namespace: str) -> bool:
    return namespace.endswith(pattern[1:]) if pattern.startswith("*") else pattern == namespace


def _model_parts(config: dict[str, Any], source: str) -> tuple[dict, str, dict]:
    """(model config, token embedder name, token embedder config)."""
    model = config.get("model")
    if not isinstance(model, dict) or model.get("type") not in _MODELS:
        kind = model.get("type") if isinstance(model, dict) else None
        raise ArchiveError(f"{source} is not a language model archive (model type {kind!r}; "
                           f"expected one of {', '.join(_MODELS)})")
    if model.get("type") == "language_model" and not model.get("bidirectional", False):
        raise ArchiveError(f"{source} holds a forward-only language model; bilm imports "
                           "bidirectional ones")
    embedders = (model.get("text_field_embedder") or {}).get("token_embedders") or {}
    used = {k: v for k, v in embedders.items() if (v or {}).get("type") != "empty"}
    if len(used) != 1:
        raise ArchiveError(f"{source}: expected one token embedder, found {sorted(used)}")
    name, embedder = next(iter(used.items()))
    return model, name, embedder


def options_from_config(config: dict[str, Any], n_softmax_rows: int,
                        source: str = "config.json") -> BiLMOptions:
    """bilm options for an AllenNLP bidirectional LM config (Transformer contextualizer,
    character CNN token embedder). Training keys are Transformer ELMo's recipe (Adam with
    the noam schedule); the archive's own trainer settings are not carried over."""
    model, _, embedder = _model_parts(config, source)
    ctx = model.get("contextualizer") or {}
    if ctx.get("type") != _TRANSFORMER:
        raise ArchiveError(f"{source}: contextualizer {ctx.get('type')!r} is not supported "
                           f"(bilm imports {_TRANSFORMER!r})")
    if embedder.get("type") != "character_encoding" or \
            (embedder.get("encoder") or {}).get("type") != "cnn-highway":
        raise ArchiveError(f"{source}: token embedder {embedder.get('type')!r} is not "
                           "supported (bilm imports character_encoding with a cnn-highway "
                           "encoder)")
    encoder = embedder["encoder"]
    n_chars = embedder.get("embedding", {}).get("num_embeddings", 262)
    if n_chars != 262:
        raise ArchiveError(f"{source}: {n_chars} character embeddings, expected ELMo's 262")
    reader = config.get("dataset_reader", {})
    reader = reader.get("base_reader", reader)  # a sharded reader wraps the real one
    loader = config.get("data_loader", config.get("iterator", {}))
    batch_size = loader.get("batch_size", (loader.get("batch_sampler") or {}).get(
        "batch_size", 64))
    d = {
        "encoder": {"type": "transformer", "dim": ctx["input_dim"],
                    "hidden_dim": ctx["hidden_dim"], "n_layers": ctx["num_layers"],
                    "n_heads": 8, "dropout": ctx.get("dropout", 0.1),
                    "input_dropout": ctx.get("input_dropout") or 0.0},
        "char_cnn": {"filters": encoder["filters"], "n_highway": encoder["num_highway"],
                     "embedding": {"dim": encoder["embedding_dim"]},
                     "activation": encoder.get("activation", "relu"), "n_characters": 262,
                     "max_characters_per_token": 50,  # AllenNLP's ELMo character mapper
                     "projection_dim": encoder["projection_dim"],
                     "projection_location": encoder.get("projection_location",
                                                        "after_highway"),
                     "layer_norm": encoder.get("do_layer_norm", False),
                     "highway_gate": "carry", "padding_row": "learned"},
        "bidirectional": True, "dropout": model.get("dropout") or 0.0,
        "n_tokens_vocab": n_softmax_rows,
        "sample_softmax": model.get("num_samples") is not None,
        "n_negative_samples_batch": min(model.get("num_samples") or 8192,
                                        n_softmax_rows - 1),
        "batch_size": int(batch_size), "max_sentence_length": reader.get(
            "max_sequence_length") or 400,
        "optimizer": "adam", "learning_rate_schedule": "noam", "learning_rate": 1.0,
        "warmup_steps": 6000, "all_clip_norm_val": None, "n_epochs": 10,
    }
    try:
        return BiLMOptions.from_dict(d, source=f"{source} (converted)")
    except OptionsError as e:
        raise ArchiveError(str(e)) from None


def _transpose(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.T)


def archive_values(archive: AllenNLPArchive, lm) -> dict[int, np.ndarray]:
    """id(variable) -> value for every trained variable of ``lm`` (a
    :class:`~bilm.model.lm.LanguageModel` built from :func:`options_from_config`), through one
    explicit table of AllenNLP names; the direction-stacked transformer variables are filled
    direction by direction. Raises :class:`ArchiveError` for a missing, unexpected or
    misshapen weight."""
    from bilm.nn.layout import WeightEntry, weight_table

    w = dict(archive.weights)
    _, name, _ = _model_parts(archive.config, archive.path)
    prefix = f"_text_field_embedder.token_embedder_{name}."
    enc = prefix + "_encoder._module."
    table: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {}  # our key -> theirs

    def take(ours: str, theirs: str, convert: Callable[[np.ndarray], np.ndarray] = np.asarray,
             ) -> None:
        table[ours] = (theirs, convert)

    embedder = lm.encoder.token_embedder
    take("char_embed", prefix + "_embedding._module.weight")
    for i in range(len(embedder.char_cnn.kernels)):
        take(f"CNN/W_cnn_{i}", f"{enc}char_conv_{i}.weight",
             lambda a: np.ascontiguousarray(a.transpose(2, 1, 0)[np.newaxis]))
        take(f"CNN/b_cnn_{i}", f"{enc}char_conv_{i}.bias")
    if embedder.highway is not None:
        dim = embedder.highway.dim
        for k in range(embedder.highway.n_layers):
            layer = f"{enc}_highways._layers.{k}"
            # AllenNLP's fused Linear(d, 2d): the first half is the transform, the second the
            # gate (on the carry path: highway_gate 'carry')
            take(f"CNN_high_{k}/W_transform", f"{layer}.weight",
                 lambda a, dim=dim: _transpose(a[:dim]))
            take(f"CNN_high_{k}/b_transform", f"{layer}.bias", lambda a, dim=dim: a[:dim])
            take(f"CNN_high_{k}/W_carry", f"{layer}.weight",
                 lambda a, dim=dim: _transpose(a[dim:]))
            take(f"CNN_high_{k}/b_carry", f"{layer}.bias", lambda a, dim=dim: a[dim:])
    take("CNN_proj/W_proj", enc + "_projection.weight", _transpose)
    take("CNN_proj/b_proj", enc + "_projection.bias")
    take("CNN_norm/gamma", enc + "_layer_norm.gamma")
    take("CNN_norm/beta", enc + "_layer_norm.beta")
    linears = {"W_query": 0, "W_key": 1, "W_value": 2, "W_output": 3}
    for d, direction in enumerate(("_forward_transformer", "_backward_transformer")):
        base = f"_contextualizer.{direction}."
        for k in range(lm.encoder.n_layers):
            layer = f"{base}layers.{k}."
            ours = f"Transformer_{d}/layer_{k}/"
            for key, i in linears.items():
                take(ours + f"attention/{key}", f"{layer}self_attn.linears.{i}.weight",
                     _transpose)
                take(ours + f"attention/b_{key[2:]}", f"{layer}self_attn.linears.{i}.bias")
            for j, part in enumerate(("attention_norm", "feed_forward_norm")):
                take(ours + f"{part}/gamma", f"{layer}sublayer.{j}.norm.gamma")
                take(ours + f"{part}/beta", f"{layer}sublayer.{j}.norm.beta")
            for n in (1, 2):
                take(ours + f"feed_forward/W_{n}", f"{layer}feed_forward.w_{n}.weight",
                     _transpose)
                take(ours + f"feed_forward/b_{n}", f"{layer}feed_forward.w_{n}.bias")
        take(f"Transformer_{d}/norm/gamma", base + "norm.gamma")
        take(f"Transformer_{d}/norm/beta", base + "norm.beta")

    entries = list(weight_table(lm.encoder))
    # the softmax: sampled (dense (V, dim) or sparse embeddings (V, dim), (V, 1)) or full
    # (SoftmaxLoss: (dim, V))
    if "_softmax_loss.softmax_w.weight" in w:
        take("softmax/W", "_softmax_loss.softmax_w.weight")
        take("softmax/b", "_softmax_loss.softmax_b.weight", lambda a: a.reshape(-1))
    else:
        rows = lm.softmax_w.shape[0]
        take("softmax/W", "_softmax_loss.softmax_w",
             lambda a: a if a.shape[0] == rows else _transpose(a))
        take("softmax/b", "_softmax_loss.softmax_b")
    entries += [WeightEntry(lm.softmax_w, "softmax/W", "lm/softmax/W"),
                WeightEntry(lm.softmax_b, "softmax/b", "lm/softmax/b")]

    values: dict[int, np.ndarray] = {}
    used = set()
    for entry in entries:
        if entry.h5_key not in table:
            raise ArchiveError(f"{archive.path}: no AllenNLP weight is known for {entry.h5_key}")
        theirs, convert = table[entry.h5_key]
        if theirs not in w:
            raise ArchiveError(f"{archive.path}: weights.th has no '{theirs}' (the config "
                               "and the weights do not match)")
        value = convert(w[theirs]).astype(np.float32)
        used.add(theirs)
        if tuple(value.shape) != entry.shape:
            raise ArchiveError(f"{archive.path}: '{theirs}' has shape {w[theirs].shape}, the "
                               f"config implies {entry.shape} for {entry.h5_key}")
        if entry.direction is None:
            values[id(entry.variable)] = value
        else:
            full = values.setdefault(id(entry.variable), entry.variable.numpy().copy())
            full[entry.direction] = value
    buffers = ("_last_average_loss", "_contextualizer._position.positional_encoding")
    unused = sorted(k for k in w if k not in used and k not in buffers)
    if unused:
        raise ArchiveError(f"{archive.path}: weights.th holds weights the config does not "
                           f"account for: {unused[:5]}{' ...' if len(unused) > 5 else ''}")
    return values


def vocabulary_tokens(archive: AllenNLPArchive, n_softmax_rows: int) -> list[str]:
    """vocab.txt's lines: softmax row r's token (see the module doc)."""
    tokens = list(archive.tokens)
    if UNKNOWN in tokens and "<UNK>" not in tokens:
        tokens[tokens.index(UNKNOWN)] = "<UNK>"
    if archive.padded:
        tokens.append(PADDING)  # the softmax row of the id past the last token
    if len(tokens) != n_softmax_rows:
        raise ArchiveError(f"{archive.path}: the vocabulary has {len(archive.tokens)} tokens "
                           f"but the softmax {n_softmax_rows} rows")
    missing = [t for t in ("<S>", "</S>") if t not in tokens]
    if missing:
        raise ArchiveError(f"{archive.path}: the vocabulary lacks {', '.join(missing)} (a "
                           "language model archive has them)")
    return tokens


def softmax_rows(archive: AllenNLPArchive) -> int:
    w = archive.weights
    if "_softmax_loss.softmax_b.weight" in w:
        return int(w["_softmax_loss.softmax_b.weight"].shape[0])
    if "_softmax_loss.softmax_b" in w:
        return int(w["_softmax_loss.softmax_b"].shape[0])
    raise ArchiveError(f"{archive.path}: weights.th has no softmax (_softmax_loss); import "
                       "needs the language model archive, not an embedder")


def import_allennlp(archive_path: str | os.PathLike[str] | AllenNLPArchive,
                    save_dir: str | os.PathLike[str], overwrite: bool = False) -> str:
    """Turn an AllenNLP language-model archive into a bilm training run in ``save_dir``
    (options.json, vocab.txt, run.json and a checkpoint at step 0 with the softmax and fresh
    optimizer slots); returns the checkpoint's path. ``bilm evaluate``, ``score``, ``export``
    and ``resume`` (fine-tuning, given ``--train-prefix``) then take it. ``archive_path`` may
    be an archive :func:`read_archive` already read."""
    import tensorflow as tf

    from bilm.data.vocabulary import Vocabulary
    from bilm.options import save_options
    from bilm.training.core import _Trainer
    from bilm.training.run_folder import RunState, TrainingRun, owned

    archive = (archive_path if isinstance(archive_path, AllenNLPArchive)
               else read_archive(archive_path))
    rows = softmax_rows(archive)
    options = options_from_config(archive.config, rows, archive.path)
    tokens = vocabulary_tokens(archive, rows)
    run = TrainingRun(save_dir)
    run.check_new(overwrite)  # a run, or the user's own files: refused unless overwrite
    trainer = _Trainer(options, tf.distribute.OneDeviceStrategy("/cpu:0"), seed=0)
    values = archive_values(archive, trainer.lm)
    for variable in trainer.variables.values():
        variable.assign(values[id(variable)])
    with owned(save_dir, "bilm import-allennlp"):  # one process writes into a run folder
        run.check_new(overwrite)  # again, under the lock
        run.clear()
        save_options(options, run.options_file)
        state = RunState(seed=0)
        run.store_vocabulary(Vocabulary(tokens=tokens), state)
        run.write_state(state)
        manager = tf.train.CheckpointManager(trainer.checkpoint, os.fspath(save_dir),
                                             max_to_keep=2, checkpoint_name="model")
        path = manager.save(checkpoint_number=0)
    logger.info("imported %s: %d-layer transformer, width %d, %d softmax rows -> %s",
                archive.path, options.n_layers, options.dim, rows, path)
    return path
