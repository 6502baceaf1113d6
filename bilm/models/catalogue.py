"""The catalogue of released ELMo models (``bilm models``) and their download into the cache
(``bilm download NAME``; a name works wherever a model path does).

Entries name the publisher's URLs. ``$BILM_MODELS_URL`` points every download at a mirror
instead: entry NAME's file F is then fetched from ``$BILM_MODELS_URL/NAME/F``.
``$BILM_CATALOGUE`` adds entries from a JSON file (a list of objects with :class:`Entry`'s
fields): a team's own models, or a mirror's.

A download goes into ``<cache>/models/NAME.download/`` (each file as ``F.part`` until it is
whole; a stopped download resumes where it stopped, by an HTTP range request), is unpacked
there when it is a TF Hub tar archive, is verified by opening it as its family, and only
then is renamed to ``<cache>/models/NAME``: the final name never holds half a model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from bilm.models.cache import cache_root
from bilm.models.registry import ModelError

__all__ = ["CATALOGUE_ENV", "MIRROR_ENV", "Entry", "entries", "fetch", "find_entry",
           "local_path"]

logger = logging.getLogger(__name__)

MIRROR_ENV = "BILM_MODELS_URL"
CATALOGUE_ENV = "BILM_CATALOGUE"
RETRIES = 3  # a dropped connection is resumed this many times before giving up
TIMEOUT = 60.0  # seconds without a byte before a connection counts as dropped


@dataclass(frozen=True)
class Entry:
    """One released model.

    Attributes:
        name: what ``--model`` and ``bilm download`` take.
        family: the family that reads it (:mod:`bilm.models.registry`).
        language: its language(s).
        size: its shape, in words.
        page: the publisher's page describing it.
        files: local file name -> URL.
        unpack: "tar" when the download is a TF Hub module's tar archive to unpack.
        sizes: local file name -> its size in bytes, where the publisher states it (a
            server announcing another size is refused).
    """

    name: str
    family: str
    language: str
    size: str
    page: str
    files: dict[str, str] = field(default_factory=dict)
    unpack: str | None = None
    sizes: dict[str, int] = field(default_factory=dict)


_ALLENNLP = "https://s3-us-west-2.amazonaws.com/allennlp/models/elmo"
_ALLENNLP_PAGE = "https://allennlp.org/elmo"
_EFML_PAGE = "https://github.com/HIT-SCIR/ELMoForManyLangs"
_DEEPPAVLOV = "http://files.deeppavlov.ai/deeppavlov_data"


def _allennlp(name: str, shape: str, size: str) -> Entry:
    return Entry(name, "bilm-tf", "English", size, _ALLENNLP_PAGE, {
        "options.json": f"{_ALLENNLP}/{shape}/elmo_{shape}_options.json",
        "weights.hdf5": f"{_ALLENNLP}/{shape}/elmo_{shape}_weights.hdf5"})


# ELMoForManyLangs' models on the NLPL repository, IDs 136-179 (its README's table)
_EFML = [
    "Arabic", "Bulgarian", "Catalan", "Czech", "Old_Church_Slavonic", "Danish", "German", "Greek",
    "English", "Spanish", "Estonian", "Basque", "Persian", "Finnish", "French", "Irish",
    "Galician", "Ancient_Greek", "Hebrew", "Hindi", "Croatian", "Hungarian", "Indonesian",
    "Italian", "Japanese", "Korean", "Latin", "Latvian", "Dutch", "Norwegian_Bokmål",
    "Norwegian_Nynorsk", "Polish", "Portuguese", "Romanian", "Russian", "Slovak", "Slovene",
    "Swedish", "Turkish", "Uyghur", "Ukrainian", "Urdu", "Vietnamese", "Chinese",
]


def _builtin() -> list[Entry]:
    found = [
        _allennlp("elmo-small", "2x1024_128_2048cnn_1xhighway", "2x1024 LSTM, 128 projection"),
        _allennlp("elmo-medium", "2x2048_256_2048cnn_1xhighway", "2x2048 LSTM, 256 projection"),
        _allennlp("elmo-original", "2x4096_512_2048cnn_2xhighway",
                  "2x4096 LSTM, 512 projection"),
        _allennlp("elmo-original-5.5b", "2x4096_512_2048cnn_2xhighway_5.5B",
                  "2x4096 LSTM, 512 projection, 5.5B tokens"),
        Entry("transformer-elmo", "allennlp-archive", "English", "6-layer Transformer, 512",
              "https://github.com/allenai/allennlp-models",
              {"model.tar.gz": "https://s3-us-west-2.amazonaws.com/allennlp/models/"
                               "transformer-elmo-2019.01.10.tar.gz"}),
        Entry("tfhub-elmo-3", "tfhub", "English", "2x4096 LSTM, 512 projection",
              "https://tfhub.dev/google/elmo/3",
              {"module.tar.gz": "https://tfhub.dev/google/elmo/3?tf-hub-format=compressed"},
              unpack="tar"),
    ]
    for corpus in ("news_wmt11-16_1.5M_steps", "wiki_600k_steps",
                   "twitter_2013-01_2018-04_600k_steps"):
        short = corpus.split("_")[0]
        found.append(Entry(f"deeppavlov-ru-{short}", "tfhub", "Russian",
                           "2x4096 LSTM, 512 projection", "https://docs.deeppavlov.ai",
                           {"module.tar.gz": f"{_DEEPPAVLOV}/elmo_ru-{corpus}.tar.gz"},
                           unpack="tar"))
    for i, language in enumerate(_EFML):
        # (IDs 164 and 165 are Dutch and Norwegian Bokmål, out of alphabetical order)
        nlpl_id = {"Dutch": 164, "Norwegian_Bokmål": 165}.get(language, 136 + i)
        found.append(Entry(f"efml-{language.lower().replace('_', '-')}", "efml",
                           language.replace("_", " "),
                           "2x4096 LSTM, 512 projection; char CNN + 100-d words",
                           _EFML_PAGE,
                           {f"{nlpl_id}.zip": f"http://vectors.nlpl.eu/repository/11/"
                                              f"{nlpl_id}.zip"}))
    return found


def entries() -> list[Entry]:
    """The catalogue: the built-in entries, then ``$BILM_CATALOGUE``'s (which replace
    built-in entries of the same name)."""
    found = {e.name: e for e in _builtin()}
    extra = os.environ.get(CATALOGUE_ENV)
    if extra:
        for e in _read_catalogue(extra):
            found[e.name] = e
    return list(found.values())


def _read_catalogue(path: str) -> list[Entry]:
    try:
        with open(path, encoding="utf-8") as f:
            items = json.load(f)
        if not isinstance(items, list):
            raise TypeError("a JSON list of entries")
        return [Entry(**item) for item in items]
    except (OSError, ValueError, TypeError) as e:
        raise ModelError(f"${CATALOGUE_ENV}={path}: not a catalogue ({e})") from None


def find_entry(name: str) -> Entry | None:
    """The catalogue entry called ``name``, or None."""
    return next((e for e in entries() if e.name == name), None)


def local_path(entry: Entry) -> str:
    """Where ``entry`` lives once downloaded."""
    return os.path.join(cache_root(), "models", entry.name)


def _url(entry: Entry, filename: str) -> str:
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        return f"{mirror.rstrip('/')}/{entry.name}/{filename}"
    return entry.files[filename]


def fetch(entry: Entry, progress: bool = True, verify: bool = True) -> str:
    """The path of ``entry``'s model in the cache (its one file, or its folder), downloaded
    first when the cache lacks it (see the module doc); ModelError (one line) when a download
    fails or the model does not open."""
    from bilm.models.registry import families

    final = local_path(entry)
    if os.path.isdir(final):
        return _model_path(final, entry)
    if entry.family not in {f.name for f in families()}:
        raise ModelError(f"{entry.name} is an {entry.family} model, a family this version of "
                         "bilm does not read yet")
    staging = final + ".download"
    os.makedirs(staging, exist_ok=True)
    for filename in entry.files:
        _download(_url(entry, filename), os.path.join(staging, filename), progress,
                  entry.sizes.get(filename))
    try:
        if entry.unpack == "tar":
            _unpack_tar(staging, entry)
        if verify:
            _verify(staging, entry)
    except ModelError:
        shutil.rmtree(staging, ignore_errors=True)  # whole but wrong: fetched afresh next time
        raise
    os.rename(staging, final)
    logger.info("%s: downloaded into %s", entry.name, final)
    return _model_path(final, entry)


def _model_path(folder: str, entry: Entry) -> str:
    """The path the family reads in a downloaded folder: the one file, or the folder."""
    if entry.unpack == "tar":
        return os.path.join(folder, "module")
    if len(entry.files) == 1:
        return os.path.join(folder, next(iter(entry.files)))
    return folder


def _verify(folder: str, entry: Entry) -> None:
    from bilm.models.registry import open_model

    files = open_model(_model_path(folder, entry))
    if entry.family not in files.family.split("/"):
        logger.warning("%s: the catalogue says %s, the files read as %s", entry.name,
                       entry.family, files.family)
    from bilm.models.checks import check_weights

    check_weights(files)


def _unpack_tar(folder: str, entry: Entry) -> None:
    from bilm.models.tars import unpack_tar

    archive = os.path.join(folder, next(iter(entry.files)))
    unpack_tar(archive, os.path.join(folder, "module"))
    os.remove(archive)


def _download(url: str, path: str, progress: bool, size: int | None = None) -> None:
    """``url`` into ``path``, through ``path + '.part'`` (resumed where an earlier try
    stopped); ModelError after :data:`RETRIES` dropped connections."""
    if os.path.isfile(path):
        return
    part = path + ".part"
    for attempt in range(RETRIES + 1):
        try:
            if _download_part(url, part, progress, size):
                os.rename(part, path)
                return
        except (urllib.error.URLError, OSError) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code not in (408, 429, 500, 502,
                                                                         503, 504):
                raise ModelError(f"{url}: the server answered {e.code} {e.reason}") from None
            reason = getattr(e, "reason", e)
            logger.warning("%s: %s (try %d of %d)", url, reason, attempt + 1, RETRIES + 1)
        time.sleep(min(2.0 ** attempt, 10.0) if attempt < RETRIES else 0.0)
    have = os.path.getsize(part) if os.path.exists(part) else 0
    raise ModelError(f"download of {url} stopped at {have:,} bytes after {RETRIES + 1} tries; "
                     "run the command again to resume it")


def _download_part(url: str, part: str, progress: bool, size: int | None) -> bool:
    """One request: append to ``part`` from its current size. True when the file is whole;
    ModelError when the server's size is not ``size`` (the catalogue's)."""
    from bilm.io.progress import Progress

    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left past what we have: the part is whole
            return True
        raise
    with response:
        total = _total(response, have)
        if size is not None and total is not None and total != size:
            if os.path.exists(part):
                os.remove(part)
            raise ModelError(f"{url}: the server sends {total:,} bytes where the catalogue "
                             f"says {size:,}; not downloaded (a changed file, or a wrong "
                             "mirror)")
        if response.status == 200 and have:  # the server ignored the range: start over
            have = 0
        mode = "ab" if have else "wb"
        got = have
        with open(part, mode) as f, Progress(os.path.basename(part[:-5]), total=total,
                                             unit="B", enabled=progress, initial=have) as bar:
            while chunk := response.read(1 << 20):
                f.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
                if total is not None and got > total:
                    break
    if total is None:
        return True
    if got > total:
        os.remove(part)
        raise ModelError(f"{url}: the server sent more than the {total:,} bytes it announced; "
                         "the partial file was removed")
    if got < total:
        raise ConnectionError(f"connection dropped at {got:,} of {total:,} bytes")
    return True


def _total(response: Any, have: int) -> int | None:
    """The whole file's size, from Content-Range (a resumed request) or Content-Length."""
    content_range = response.headers.get("Content-Range")
    if response.status == 206 and content_range and "/" in content_range:
        size = content_range.rsplit("/", 1)[1]
        return int(size) if size.isdigit() else None
    length = response.headers.get("Content-Length")
    if length is None or not length.isdigit():
        return None
    return int(length) + (have if response.status == 206 else 0)
