"""Small hostile files must not cost gigabytes, nor read other files (an outside review).

1. A ``weights.th`` whose tensors are views the file cannot back (a (40000, 40000) tensor with
   strides (0, 0) over one element; overlapping strides; a storage of 2**40 elements in a
   300-byte file) is refused before anything is allocated, in both of torch's layouts.
2. An AllenNLP archive whose members inflate to gigabytes, or are links or devices, is refused
   from the members' declared sizes and types and the first bytes of ``weights.th``.
3. An HDF5 weight file whose objects are soft or external links (to another file's numbers) is
   refused by every reader.

Every crafted file is built here, in ``tmp_path``; the command line runs in a subprocess
bounded in time and address space, as a user runs it.
"""

from __future__ import annotations

import io
import os
import pickle
import resource
import struct
import subprocess
import sys
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from bilm.io import torch_pickle as torch_weights
from bilm.io.allennlp import ArchiveError, read_archive
from bilm.io.hdf5 import WeightFileError, list_datasets, read_embedding_file
from bilm.io.torch_pickle import TorchWeightsError, load_torch_state_dict

LEGACY_FILE = Path(__file__).resolve().parent / "data" / "torch" / "state_dict_legacy.th"
ZIP_FILE = Path(__file__).resolve().parent / "data" / "torch" / "state_dict_zip.th"
MiB = 1 << 20

# ---- the command line, bounded --------------------------------------------------------------

AS_LIMIT = 3 << 30  # TensorFlow's import needs about 1.5 GiB of address space


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def bilm(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "bilm.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120,
                          preexec_fn=_limit_memory)


def assert_user_error(r: subprocess.CompletedProcess, *words: str) -> str:
    """Exit code 2 and exactly one stderr line, containing ``words``."""
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def one_line(error: pytest.ExceptionInfo, *words: str) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    return message


def peak_traced(func) -> int:
    """The peak of Python's traced allocations (bytes) while ``func()`` runs."""
    tracemalloc.start()
    try:
        func()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# ---- torch.save files, written by hand ------------------------------------------------------
# (the layouts of bilm/io/torch_pickle.py's module doc; no torch needed)


def _global(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def _value(value: object) -> bytes:
    """A plain value's pickle opcodes (protocol 2, without PROTO and STOP)."""
    return pickle.dumps(value, protocol=2)[2:-1]


def _tensor(key: str, numel: int, offset: int, size: tuple, stride: tuple, legacy: bool,
            ) -> bytes:
    """torch._utils._rebuild_tensor_v2(<storage key>, offset, size, stride, False, {})."""
    pid = (b"(" + _value("storage") + _global("torch", "FloatStorage") + _value(key)
           + _value("cpu") + _value(numel) + (b"N" if legacy else b"") + b"tQ")
    hooks = _global("collections", "OrderedDict") + b")R"
    return (_global("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + _value(offset)
            + _value(tuple(size)) + _value(tuple(stride)) + b"\x89" + hooks + b"tR")


def _state_dict(tensors: dict[str, tuple], legacy: bool) -> bytes:
    """An OrderedDict of name -> (storage key, storage numel, offset, size, stride)."""
    items = b"".join(_value(name) + _tensor(*spec, legacy=legacy)
                     for name, spec in tensors.items())
    return b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + items + b"u."


def legacy_weights(tensors: dict[str, tuple], storages: dict[str, bytes],
                   counts: dict[str, int] | None = None) -> bytes:
    """A legacy-layout weights.th; ``counts`` overrides the element count before a storage."""
    info = {"protocol_version": 1001, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 8}}
    header = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, info))
    data = b"".join(struct.pack("<q", (counts or {}).get(key, len(raw) // 4)) + raw
                    for key, raw in storages.items())
    return (header + _state_dict(tensors, legacy=True) + pickle.dumps(list(storages), protocol=2)
            + data)


def zip_weights(tensors: dict[str, tuple], storages: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("archive/data.pkl", _state_dict(tensors, legacy=False))
        z.writestr("archive/byteorder", b"little")
        for key, raw in storages.items():
            z.writestr(f"archive/data/{key}", raw)
        z.writestr("archive/version", b"3\n")
    return buffer.getvalue()


def floats(*values: float) -> bytes:
    return np.asarray(values, "<f4").tobytes()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def refused(path: Path, *words: str) -> str:
    with pytest.raises(TorchWeightsError) as error:
        load_torch_state_dict(path)
    return one_line(error, str(path), *words)


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_hand_written_files_load(tmp_path, layout):
    # the helpers above write what the reader (and torch) read; views torch does write load
    make = legacy_weights if layout == "legacy" else zip_weights
    tensors = {
        "matrix": ("0", 6, 0, (2, 3), (3, 1)),
        "transposed": ("0", 6, 0, (3, 2), (1, 3)),
        "tail": ("0", 6, 4, (2,), (1,)),
        "column": ("0", 6, 1, (2, 1), (3, 7)),  # a dimension of size 1 may have any stride
        "unit": ("0", 6, 5, (1, 1), (0, 0)),
        "empty": ("1", 0, 0, (0, 5), (0, 0)),  # no elements: no storage needed
        "scalar": ("2", 1, 0, (), ()),
    }
    path = write(tmp_path / "weights.th", make(
        tensors, {"0": floats(0, 1, 2, 3, 4, 5), "1": b"", "2": floats(7.5)}))
    loaded = load_torch_state_dict(path)
    assert loaded["matrix"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert loaded["transposed"].tolist() == [[0, 3], [1, 4], [2, 5]]
    assert loaded["tail"].tolist() == [4, 5]
    assert loaded["column"].tolist() == [[1], [4]]
    assert loaded["unit"].tolist() == [[5]]
    assert loaded["empty"].shape == (0, 5)
    assert float(loaded["scalar"]) == 7.5


@pytest.mark.parametrize("layout", ["legacy", "zip"])
@pytest.mark.parametrize("size", [(40000, 40000), (100000, 100000)])
def test_a_broadcast_tensor_over_one_element_is_refused(tmp_path, layout, size):
    make = legacy_weights if layout == "legacy" else zip_weights
    data = make({"encoder.weight": ("0", 1, 0, size, (0, 0))}, {"0": floats(1.0)})
    assert len(data) < 1000
    path = write(tmp_path / "weights.th", data)
    refused(path, "tensor 'encoder.weight'", f"size {size}", "stride (0, 0)")


@pytest.mark.parametrize("size, stride, numel", [
    ((1000, 1000), (1, 1), 1999),  # rows overlapping by 999 elements: 1M floats from 2K
    ((3,), (0,), 1),  # a zero stride over a dimension of 3
    ((4, 3), (1, 2), 12),  # columns overlapping rows
])
def test_overlapping_strides_are_refused(tmp_path, size, stride, numel):
    path = write(tmp_path / "weights.th", legacy_weights(
        {"w": ("0", numel, 0, size, stride)}, {"0": floats(*range(numel))}))
    refused(path, "tensor 'w'", "overlap")


def test_a_storage_larger_than_a_biLM_is_refused_before_reading(tmp_path):
    # a 2**40-element storage declared (and counted) in a file of a few hundred bytes
    numel = 1 << 40
    path = write(tmp_path / "weights.th", legacy_weights(
        {"w": ("0", numel, 0, (numel,), (1,))}, {"0": floats(1.0)}, counts={"0": numel}))
    assert path.stat().st_size < 1000
    refused(path, "storage '0'", f"{numel:,}")
    zipped = write(tmp_path / "zipped.th", zip_weights(
        {"w": ("0", numel, 0, (numel,), (1,))}, {"0": floats(1.0)}))
    refused(zipped, "storage '0'", f"{numel:,}")


def test_a_legacy_storage_count_beyond_the_file_is_refused_before_allocating(tmp_path):
    # within the cap (256 MiB), but the file holds 4 bytes of it: read as it comes, not
    # allocated from the count
    numel = 1 << 26
    path = write(tmp_path / "weights.th", legacy_weights(
        {"w": ("0", numel, 0, (numel,), (1,))}, {"0": floats(1.0)}, counts={"0": numel}))
    assert peak_traced(lambda: refused(path, "is truncated", "storage '0'")) < 16 * MiB


def test_the_total_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(torch_weights, "MAX_TOTAL_BYTES", 64)
    message = refused(LEGACY_FILE, "tensor '", "64 bytes")
    assert "MAX_TOTAL_BYTES" in message
    refused(ZIP_FILE, "tensor '", "64 bytes")


def test_a_zip_member_longer_than_its_storage_is_not_read_whole(tmp_path):
    # a 32 MiB member of zeros (a few KB deflated) for a one-element storage: torch reads
    # the storage's bytes, so does this reader, not the whole member
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", _state_dict({"w": ("0", 1, 0, (1,), (1,))}, False))
        z.writestr("archive/data/0", floats(2.5) + bytes(32 * MiB))
    path = write(tmp_path / "weights.th", buffer.getvalue())
    assert path.stat().st_size < MiB
    result = {}
    peak = peak_traced(lambda: result.update(load_torch_state_dict(path)))
    assert result["w"].tolist() == [2.5]
    assert peak < 8 * MiB, peak


# ---- AllenNLP archives --------------------------------------------------------------------


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name: str, data: bytes | None = None, kind: bytes = tarfile.REGTYPE,
           linkname: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, data


class _Zeros(io.RawIOBase):
    """``n`` zero bytes, as a stream (nothing of that size is held)."""

    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def zeros_archive(path: Path, size: int) -> Path:
    """config.json, then a weights.th of ``size`` zero bytes (about size / 1000 compressed)."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        info, data = member("config.json", b"{}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("weights.th")
        info.size = size
        tar.addfile(info, io.BufferedReader(_Zeros(size), 1 << 20))
    return path


def archive_refused(path: Path, *words: str) -> str:
    with pytest.raises(ArchiveError) as error:
        read_archive(path)
    return one_line(error, str(path), *words)


def test_weights_th_header_is_checked_before_the_rest_is_read(tmp_path):
    path = zeros_archive(tmp_path / "model.tar.gz", 64 * MiB)
    peak = peak_traced(lambda: archive_refused(path, "weights.th",
                                               "not a PyTorch weights file"))
    assert peak < 16 * MiB, peak


def test_a_member_larger_than_its_cap_is_refused_before_reading(tmp_path):
    # a config.json of 65 MiB (valid JSON: braces around spaces): configs are a few KB
    path = make_tar(tmp_path / "model.tar.gz",
                    [member("config.json", b"{" + b" " * (65 * MiB) + b"}"),
                     member("weights.th", LEGACY_FILE.read_bytes())])
    peak = peak_traced(lambda: archive_refused(path, "config.json", "68,157,442 bytes"))
    assert peak < 16 * MiB, peak


def test_the_weights_cap_is_configurable(tmp_path, monkeypatch):
    from bilm.io import allennlp

    monkeypatch.setattr(allennlp, "MAX_WEIGHTS_BYTES", 1000)
    path = make_tar(tmp_path / "model.tar.gz", [member("config.json", b"{}"),
                                                member("weights.th", LEGACY_FILE.read_bytes())])
    archive_refused(path, "weights.th", f"{LEGACY_FILE.stat().st_size:,} bytes", "1,000")


@pytest.mark.parametrize("kind, linkname, words", [
    (tarfile.SYMTYPE, "/dev/zero", ("symbolic link", "/dev/zero")),
    (tarfile.LNKTYPE, "config.json", ("hard link", "config.json")),
    (tarfile.CHRTYPE, "", ("character device",)),
    (tarfile.FIFOTYPE, "", ("FIFO",)),
])
def test_links_and_devices_in_an_archive_are_refused(tmp_path, kind, linkname, words):
    path = make_tar(tmp_path / "model.tar.gz", [
        member("config.json", b"{}"), member("weights.th", None, kind, linkname)])
    archive_refused(path, "weights.th", "not a regular file", *words)


def test_a_device_in_an_archive_folder_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "weights.th").symlink_to("/dev/null")
    archive_refused(folder, "weights.th", "not a regular file")


def test_a_good_archive_still_reads(tmp_path):
    path = make_tar(tmp_path / "model.tar.gz", [
        member("config.json", b'{"model": {},}'), member("weights.th", LEGACY_FILE.read_bytes()),
        member("vocabulary/tokens.txt", b"<S>\n</S>\n")])
    archive = read_archive(path)
    assert archive.tokens == ["<S>", "</S>"] and archive.config == {"model": {}}
    assert set(archive.weights) == set(load_torch_state_dict(LEGACY_FILE))
    zipped = make_tar(tmp_path / "zipped.tar.gz", [
        member("config.json", b"{}"), member("weights.th", ZIP_FILE.read_bytes()),
        member("vocabulary/tokens.txt", b"<S>\n")])
    assert set(read_archive(zipped).weights) == set(load_torch_state_dict(ZIP_FILE))


# ---- HDF5 links ---------------------------------------------------------------------------


@pytest.fixture
def linked(tiny_model, tmp_path):
    """Copies of the tiny model's weights whose objects are links (soft, or to another file)."""
    options_file, weight_file = tiny_model
    other = tmp_path / "other.hdf5"  # another file with the same names, other numbers
    with h5py.File(weight_file, "r") as source, h5py.File(other, "w") as f:
        for name in ("char_embed", "CNN"):
            source.copy(name, f)
        f["char_embed"][...] = 7.0
        f["embedding"] = np.ones((3, 4), np.float32)

    def make(name: str, edit) -> Path:
        path = tmp_path / name
        path.write_bytes(weight_file.read_bytes())
        with h5py.File(path, "a") as f:
            edit(f)
        return path

    def external_dataset(f):
        del f["char_embed"]
        f["char_embed"] = h5py.ExternalLink(str(other), "/char_embed")

    def external_group(f):
        del f["CNN"]
        f["CNN"] = h5py.ExternalLink(str(other), "/CNN")

    def soft(f):  # the numbers moved under softmax/ (ignored), a soft link in their place
        f.move("CNN_proj/b_proj", "softmax/b_proj")
        f["CNN_proj/b_proj"] = h5py.SoftLink("/softmax/b_proj")

    return {"options": options_file, "other": other,
            "external_dataset": make("external_dataset.hdf5", external_dataset),
            "external_group": make("external_group.hdf5", external_group),
            "soft": make("soft.hdf5", soft)}


@pytest.mark.parametrize("case, link, target", [
    ("external_dataset", "char_embed", "other.hdf5:/char_embed"),
    ("external_group", "CNN", "other.hdf5:/CNN"),
    ("soft", "CNN_proj/b_proj", "/softmax/b_proj"),
])
def test_hdf5_links_are_refused_by_every_reader(linked, case, link, target):
    from bilm import BidirectionalLanguageModel

    path = linked[case]
    words = (str(path), f"'{link}'", target, "link")
    with pytest.raises(WeightFileError) as error:
        list_datasets(path)
    one_line(error, *words)
    with pytest.raises(WeightFileError) as error:
        BidirectionalLanguageModel(linked["options"], path)
    one_line(error, *words)


def test_a_group_containing_itself_is_refused(tmp_path):
    path = tmp_path / "cycle.hdf5"
    with h5py.File(path, "w") as f:
        f["CNN/b_cnn_0"] = np.zeros(4, np.float32)
        f["CNN/again"] = f["CNN"]  # a hard link to its own group
    with pytest.raises(WeightFileError) as error:
        list_datasets(path)
    one_line(error, str(path), "'CNN/again'", "contains itself")


def test_an_external_link_in_an_embedding_file_is_refused(tmp_path, linked):
    path = tmp_path / "tokens.hdf5"
    with h5py.File(path, "w") as f:
        f["embedding"] = h5py.ExternalLink(str(linked["other"]), "/embedding")
    with pytest.raises(WeightFileError) as error:
        read_embedding_file(path)
    one_line(error, str(path), "'embedding'", "other.hdf5:/embedding")


# ---- the command line: one line, exit 2, bounded ------------------------------------------


def test_cli_info_refuses_an_external_link(linked):
    r = bilm("info", "--options", linked["options"], "--weights", linked["external_dataset"])
    assert_user_error(r, str(linked["external_dataset"]), "'char_embed'", "external link",
                      "other.hdf5")
    assert "the weights match" not in r.stdout


def test_cli_import_allennlp_refuses_a_broadcast_tensor(tmp_path):
    weights = legacy_weights({"big": ("0", 1, 0, (40000, 40000), (0, 0))}, {"0": floats(1.0)})
    assert len(weights) < 400
    path = make_tar(tmp_path / "model.tar.gz",
                    [member("config.json", b"{}"), member("weights.th", weights)])
    r = bilm("import-allennlp", path, tmp_path / "run")
    assert_user_error(r, str(path), "weights.th", "tensor 'big'")
    assert not (tmp_path / "run").exists()


def test_cli_import_allennlp_refuses_a_symlinked_member(tmp_path):
    path = make_tar(tmp_path / "model.tar.gz", [
        member("config.json", b"{}"), member("weights.th", None, tarfile.SYMTYPE, "/dev/zero")])
    r = bilm("import-allennlp", path, tmp_path / "run")
    assert_user_error(r, str(path), "weights.th", "symbolic link")


@pytest.mark.slow
def test_cli_import_allennlp_refuses_2_gib_of_zeros(tmp_path):
    # the review's case: weights.th inflating to 2 GiB from a few MB of .tar.gz
    path = zeros_archive(tmp_path / "model.tar.gz", 2 << 30)
    assert path.stat().st_size < 16 * MiB
    r = bilm("import-allennlp", path, tmp_path / "run")
    assert_user_error(r, str(path), "weights.th", "not a PyTorch weights file")
