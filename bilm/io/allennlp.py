"""Reading AllenNLP language-model archives (Transformer ELMo) safely, to import them as bilm
training runs.

An AllenNLP ``model.tar.gz`` (or its unpacked folder) holds ``config.json`` (hand-edited
ones carry trailing commas: read leniently), ``weights.th`` (a PyTorch state dict, read by
:mod:`bilm.io.torch_pickle` without torch) and ``vocabulary/``. :func:`read_archive` reads
them, checking every member before it is read; :func:`import_allennlp`
(:mod:`bilm.io.allennlp_run`) turns an archive into a save directory that every command accepts
like one of our training runs: a checkpoint with the softmax, ``options.json``, ``vocab.txt``
and ``run.json``, through :func:`options_from_config` (:mod:`bilm.io.allennlp_options`) and
the weights in our layout (:mod:`bilm.io.allennlp_weights`).

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
import os
import re
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from bilm._lazy import lazy_exports

__all__ = [
    "AllenNLPArchive",
    "ArchiveError",
    "import_allennlp",  # noqa: F822 (served by __getattr__, below)
    "options_from_config",  # noqa: F822
    "read_archive",
]

# Names of the modules beside this one (which import this one, so they are looked up on first
# use), kept importable from here.
__getattr__, _ = lazy_exports(__name__, {
    "PADDING": "bilm.io.allennlp_run",
    "UNKNOWN": "bilm.io.allennlp_run",
    "archive_values": "bilm.io.allennlp_weights",
    "import_allennlp": "bilm.io.allennlp_run",
    "options_from_config": "bilm.io.allennlp_options",
    "softmax_rows": "bilm.io.allennlp_weights",
    "vocabulary_tokens": "bilm.io.allennlp_run",
})


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
        reader = _ArchiveReader(path, _members(path, stack))
        return _parse(path, reader.read, reader.weights, reader.has)


class _ArchiveReader:
    """The members of one archive, each checked (type, declared size) before it is read."""

    def __init__(self, path: str, find: Callable[[str], _Member | None]) -> None:
        self.path = path
        self._find = find

    def member(self, name: str, what: str, cap: int, setting: str) -> _Member:
        """The member ``name``: a regular file of at most ``cap`` bytes (``setting`` names the
        cap in the message), else :class:`ArchiveError`."""
        path, found = self.path, self._find(name)
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

    def read(self, name: str, what: str) -> bytes:
        """A text member's bytes (at most :data:`MAX_TEXT_BYTES`)."""
        path, cap = self.path, MAX_TEXT_BYTES
        found = self.member(name, what, cap, "MAX_TEXT_BYTES")
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

    def weights(self) -> dict[str, np.ndarray]:
        """``weights.th``'s state dict (at most :data:`MAX_WEIGHTS_BYTES`), read as a stream."""
        from bilm.io.torch_pickle import TorchWeightsError, load_torch_state_dict

        path = self.path
        found = self.member(_WEIGHTS, "the weights", MAX_WEIGHTS_BYTES, "MAX_WEIGHTS_BYTES")
        try:
            with found.open() as file:
                # checks the first bytes, then reads on as a stream
                return load_torch_state_dict(file, name=f"{path}: {found.name}")
        except TorchWeightsError as e:
            raise ArchiveError(str(e)) from None
        except _READ_ERRORS as e:
            raise ArchiveError(f"{path}: {found.name} cannot be read (truncated "
                               f"archive?): {e}") from None

    def has(self, name: str) -> bool:
        return self._find(name) is not None


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

