"""Reading PyTorch weights.th files without torch: both layouts, exact values, hostile files.

The files in tests/data/torch/ were written by real torch (2.13.0+cpu) with
tests/data/torch/make_files.py, which also checked that torch.load reads them back to
expected.npz; running these tests needs no torch.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import pickletools
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bilm.io.torch_pickle import TorchWeightsError, load_torch_state_dict
from tests.conftest import SHARED, need_shared

DATA = Path(__file__).resolve().parent / "data" / "torch"
ZIP_FILE = DATA / "state_dict_zip.th"
LEGACY_FILE = DATA / "state_dict_legacy.th"
ALLENNLP_ARCHIVE = SHARED / "fixtures" / "allennlp-transformer" / "model.tar.gz"

EXPECTED_DTYPES = {
    "embedding.weight": np.float32, "linear.weight": np.float32, "linear.bias": np.float32,
    "double": np.float64, "half": np.float16, "bfloat": np.float32, "counts": np.int64,
    "int32": np.int32, "int16": np.int16, "int8": np.int8, "uint8": np.uint8, "mask": np.bool_,
    "shared.base": np.float32, "shared.transposed": np.float32, "shared.slice": np.float32,
    "scalar": np.float32, "empty": np.float32, "param": np.float32,
    "negative_view": np.float32,
}


def expected(name: str = "expected.npz") -> dict[str, np.ndarray]:
    with np.load(DATA / name) as npz:
        return {key: npz[key] for key in npz.files}


def assert_same(loaded: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(loaded) == list(want)
    for name, array in want.items():
        got = loaded[name]
        assert isinstance(got, np.ndarray), name
        assert got.dtype == array.dtype, (name, got.dtype, array.dtype)
        assert got.shape == array.shape, (name, got.shape, array.shape)
        assert got.flags.c_contiguous and got.flags.writeable, name
        np.testing.assert_array_equal(got, array, err_msg=name)


def legacy_pickle_ends(data: bytes) -> list[int]:
    """Offsets just past each of a legacy file's five pickles (read, never executed)."""
    stream, ends = io.BytesIO(data), []
    for _ in range(5):
        for _op in pickletools.genops(stream):
            pass
        ends.append(stream.tell())
    return ends


def legacy_header(**sys_info) -> bytes:
    info = {"protocol_version": 1001, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 8}, **sys_info}
    return b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, info))


def rewrite_zip(path: Path, out: Path, replace: dict[str, bytes | None]) -> Path:
    """A copy of a zip with members replaced (bytes) or dropped (None)."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            data = replace.get(name, source.read(name))
            if data is not None:
                target.writestr(name, data)
    return out


def raises(path: Path | str, *fragments: str) -> str:
    with pytest.raises(TorchWeightsError) as info:
        load_torch_state_dict(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---- both layouts, every supported dtype, views ------------------------------------------


@pytest.mark.parametrize("path", [ZIP_FILE, LEGACY_FILE], ids=["zip", "legacy"])
def test_both_layouts_load_to_the_arrays_torch_saved(path):
    loaded = load_torch_state_dict(path)
    want = expected()
    assert_same(loaded, want)
    assert {k: v.dtype.type for k, v in loaded.items()} == EXPECTED_DTYPES
    assert loaded["scalar"].shape == () and float(loaded["scalar"]) == 2.5
    assert loaded["empty"].shape == (0, 4)
    assert loaded["counts"].tolist() == [0, -3, 2**40, 7]
    assert loaded["mask"].tolist() == [True, False, True]
    # torch._neg_view([1.5, -2.0]): the storage keeps [1.5, -2.0], metadata {'neg': True}
    assert loaded["negative_view"].tolist() == [-1.5, 2.0]
    # Transposed view and offset slice of one storage, rebuilt from the strides.
    np.testing.assert_array_equal(loaded["shared.transposed"], loaded["shared.base"].T)
    np.testing.assert_array_equal(loaded["shared.slice"], loaded["shared.base"][1:, 1:3])
    # Copies: changing one entry leaves the entries that shared its storage alone.
    loaded["shared.base"][:] = 0
    assert loaded["shared.transposed"].any()


def test_the_zip_prefix_is_the_file_stem_and_not_assumed():
    with zipfile.ZipFile(ZIP_FILE) as archive:
        assert archive.namelist()[0] == "state_dict_zip/data.pkl"


def test_bfloat16_is_widened_exactly():
    loaded = load_torch_state_dict(ZIP_FILE)["bfloat"]
    bits = loaded.view(np.uint32)
    assert loaded.dtype == np.float32 and not (bits & 0xFFFF).any()  # a bfloat16 in a float32


def test_old_style_rebuild_tensor_and_legacy_storage_views():
    # _rebuild_tensor over views into one storage, as torch 0.3 wrote; expected as torch.load.
    loaded = load_torch_state_dict(DATA / "legacy_old_style.th")
    assert_same(loaded, expected("expected_old_style.npz"))
    assert loaded["view.matrix"].tolist() == [[0.0, 0.5, 1.0], [1.5, 2.0, 2.5]]
    assert loaded["view.column"].tolist() == [0.5, 2.0]


@pytest.mark.parametrize("path", [ZIP_FILE, LEGACY_FILE], ids=["zip", "legacy"])
def test_file_objects_seekable_or_not(path):
    want = expected()
    with open(path, "rb") as file:
        assert_same(load_torch_state_dict(file), want)

    class Stream(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            return self.inner.readinto(buffer)

    assert_same(load_torch_state_dict(Stream(path.read_bytes())), want)
    stream = io.BytesIO(path.read_bytes())
    assert_same(load_torch_state_dict(stream), want)


# ---- a real AllenNLP archive ---------------------------------------------------------------


@pytest.fixture(scope="module")
def allennlp_weights(tmp_path_factory) -> Path:
    need_shared(ALLENNLP_ARCHIVE)
    directory = tmp_path_factory.mktemp("allennlp")
    with tarfile.open(ALLENNLP_ARCHIVE) as archive:
        member = archive.getmember("weights.th")
        (directory / "weights.th").write_bytes(archive.extractfile(member).read())
    return directory / "weights.th"


def test_allennlp_legacy_weights(allennlp_weights):
    weights = load_torch_state_dict(allennlp_weights)
    # The numbers below come from torch 2.13.0+cpu: torch.load(weights.th, weights_only=True)
    # in a throwaway environment (sums taken in float64 over the tensor).
    assert len(weights) == 121
    assert sum(v.size for v in weights.values()) == 94987
    assert {v.dtype for v in weights.values()} == {np.dtype(np.float32)}
    assert sum(k.startswith("_contextualizer") for k in weights) == 101
    assert next(iter(weights)) == "_last_average_loss"
    assert list(weights)[-1] == "_softmax_loss.softmax_b.weight"

    emb = weights["_text_field_embedder.token_embedder_token_characters._embedding._module.weight"]
    assert emb.shape == (262, 4)
    assert emb[1].tolist() == [
        -0.13626031577587128, 0.09184807538986206, -0.025730103254318237, 0.07379677891731262]
    assert emb[261].tolist() == [
        0.07091287523508072, 0.03992973268032074, -0.030018076300621033, 0.000679273100104183]
    assert emb.sum(dtype=np.float64) == pytest.approx(0.47057098476216197, abs=1e-12)

    conv = weights["_text_field_embedder.token_embedder_token_characters._encoder"
                   "._module.char_conv_0.weight"]
    assert conv.shape == (4, 4, 1)
    assert conv.sum(dtype=np.float64) == pytest.approx(-0.10219796653836966, abs=1e-12)
    position = weights["_contextualizer._position.positional_encoding"]
    assert position.shape == (1, 5000, 16)
    assert position.sum(dtype=np.float64) == pytest.approx(6754.2420904788805, rel=1e-12)
    assert np.abs(position).max() == 1.0
    assert weights["_softmax_loss.softmax_w.weight"].shape == (12, 16)
    assert weights["_softmax_loss.softmax_w.weight"].sum(dtype=np.float64) == pytest.approx(
        -1.4247672592755407, abs=1e-12)
    assert weights["_softmax_loss.softmax_b.weight"].shape == (12, 1)
    assert weights["_last_average_loss"].tolist() == [2.561906099319458]
    total = sum(v.sum(dtype=np.float64) for v in weights.values())
    assert total == pytest.approx(7030.503678708823, rel=1e-12)


# ---- hostile pickles: refused, nothing imported or run --------------------------------------


def os_system_pickle(command: str) -> bytes:
    """By hand, protocol 0: os.system(command). Any plain pickle.load would run it."""
    assert "\n" not in command
    data = b"cos\nsystem\n(V" + command.encode() + b"\ntR."
    pickletools.dis(data, out=io.StringIO())  # a well-formed pickle
    return data


def test_os_system_in_the_legacy_state_dict_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.th"
    path.write_bytes(legacy_header() + os_system_pickle(f"touch {marker}"))
    raises(path, "refers to 'os.system', which a weights file never needs; refusing to load it")
    assert not marker.exists()


def test_os_system_as_the_first_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.th"
    path.write_bytes(os_system_pickle(f"touch {marker}"))
    raises(path, "'os.system'", "refusing to load it")
    assert not marker.exists()


def test_a_reduce_to_os_system_in_a_zip_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = pickle.dumps({"weight": Evil()}, protocol=2)
    path = rewrite_zip(ZIP_FILE, tmp_path / "weights.th", {"state_dict_zip/data.pkl": evil})
    raises(path, f"refers to '{os.system.__module__}.system'", "refusing to load it")
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [
    ("builtins", "eval"), ("subprocess", "Popen"), ("torch", "load"),
    ("torch._utils", "_rebuild_device_tensor_from_numpy"), ("collections", "Counter"),
    ("numpy", "load"), ("torch.nn.modules.linear", "Linear"),
])
def test_other_globals_are_refused(tmp_path, module, name):
    path = tmp_path / "weights.th"
    path.write_bytes(legacy_header() + f"c{module}\n{name}\n(tR.".encode())
    raises(path, f"refers to '{module}.{name}'")


def test_a_pickle_cannot_tamper_with_the_allowed_callables(tmp_path):
    # GLOBAL _rebuild_tensor_v2, then BUILD (None, {'__defaults__': ({'neg': True},)}): would
    # change the function for every later file if the callables were shared functions.
    tamper = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__"
              b"}X\x03\x00\x00\x00neg\x88s\x85s\x86b.")
    pickletools.dis(tamper, out=io.StringIO())
    path = tmp_path / "weights.th"
    path.write_bytes(legacy_header() + tamper)
    raises(path, "malformed pickle")
    assert_same(load_torch_state_dict(LEGACY_FILE), expected())


# ---- truncated, wrong, unsupported ----------------------------------------------------------


def test_legacy_cut_in_the_storage_data(tmp_path):
    data = LEGACY_FILE.read_bytes()
    path = tmp_path / "cut.th"
    path.write_bytes(data[:-10])
    raises(path, "is truncated", "storage")
    path.write_bytes(data[: legacy_pickle_ends(data)[4] + 4])  # inside the first element count
    raises(path, "is truncated", "storage")


def test_legacy_cut_in_the_pickle(tmp_path):
    data = LEGACY_FILE.read_bytes()
    path = tmp_path / "cut.th"
    path.write_bytes(data[: legacy_pickle_ends(data)[2] + 200])
    raises(path, "is truncated: a pickle ends early")


@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_zip_cut(tmp_path, keep):
    data = ZIP_FILE.read_bytes()
    path = tmp_path / "cut.th"
    path.write_bytes(data[: int(len(data) * keep)])
    raises(path, "cannot be read as one (truncated?)")


def test_zip_member_missing(tmp_path):
    path = rewrite_zip(ZIP_FILE, tmp_path / "weights.th", {"state_dict_zip/data/0": None})
    raises(path, "is truncated: zip member 'state_dict_zip/data/0'", "is missing")
    path = rewrite_zip(ZIP_FILE, tmp_path / "nopkl.th", {"state_dict_zip/data.pkl": None})
    raises(path, "without 'state_dict_zip/data.pkl'")


def test_zip_storage_shorter_than_its_numel(tmp_path):
    with zipfile.ZipFile(ZIP_FILE) as archive:
        short = archive.read("state_dict_zip/data/0")[:-4]
    path = rewrite_zip(ZIP_FILE, tmp_path / "weights.th", {"state_dict_zip/data/0": short})
    raises(path, "is truncated", "'state_dict_zip/data/0'", "torch.FloatStorage")


def test_not_pytorch_files(tmp_path):
    import h5py

    text = tmp_path / "weights.txt"
    text.write_text("hello, I am not a tensor\n" * 20)
    raises(text, "is not a PyTorch weights file")
    hdf5 = tmp_path / "weights.hdf5"
    with h5py.File(hdf5, "w") as f:
        f["x"] = np.zeros(3)
    raises(hdf5, "is an HDF5 file, not a PyTorch weights file")
    empty = tmp_path / "empty.th"
    empty.write_bytes(b"")
    raises(empty, "is empty")
    packed = tmp_path / "model.tar.gz"
    packed.write_bytes(gzip.compress(LEGACY_FILE.read_bytes()))
    raises(packed, "is gzip-compressed", "extract its weights.th first")
    npz = tmp_path / "weights.npz"  # a zip, but not torch's
    np.savez(npz, x=np.zeros(2))
    raises(npz, "without 'x.npy/data.pkl'")
    with pytest.raises(FileNotFoundError):
        load_torch_state_dict(tmp_path / "missing.th")


def test_unsupported_dtypes(tmp_path):
    data = LEGACY_FILE.read_bytes()
    assert b"ctorch\nHalfStorage\n" in data
    path = tmp_path / "qint8.th"
    path.write_bytes(data.replace(b"ctorch\nHalfStorage\n", b"ctorch\nQInt8Storage\n"))
    raises(path, "'torch.QInt8Storage' (qint8): a dtype this reader does not support")
    with zipfile.ZipFile(ZIP_FILE) as archive:
        pkl = archive.read("state_dict_zip/data.pkl")
    v3 = pkl.replace(b"_rebuild_tensor_v2", b"_rebuild_tensor_v3")  # torch's uint16, float8...
    path = rewrite_zip(ZIP_FILE, tmp_path / "v3.th", {"state_dict_zip/data.pkl": v3})
    raises(path, "'torch._utils._rebuild_tensor_v3'", "does not support")


def test_big_endian_files_are_refused(tmp_path):
    path = rewrite_zip(ZIP_FILE, tmp_path / "big.th", {"state_dict_zip/byteorder": b"big"})
    raises(path, "'big'-endian machine")
    data = LEGACY_FILE.read_bytes()
    path = tmp_path / "big_legacy.th"
    path.write_bytes(legacy_header(little_endian=False) + data[legacy_pickle_ends(data)[2]:])
    raises(path, "big-endian machine")


def test_only_flat_state_dicts(tmp_path):
    path = tmp_path / "checkpoint.th"
    path.write_bytes(legacy_header() + pickle.dumps({"epoch": 3}, protocol=2)
                     + pickle.dumps([], protocol=2))
    raises(path, "state dict entry 'epoch' is a int, not a tensor")
    path.write_bytes(legacy_header() + pickle.dumps([1, 2], protocol=2))
    raises(path, "holds a list, not a state dict")


def test_a_tensor_reaching_past_its_storage(tmp_path):
    data = LEGACY_FILE.read_bytes()
    ends = legacy_pickle_ends(data)
    # 'empty' (0, 4) is harmless; give the scalar (size ()) an offset past its one element.
    obj = data[ends[2]:ends[3]]
    marker = b"X\x06\x00\x00\x00scalar"
    assert obj.count(marker) == 1
    start = obj.index(marker)
    # the scalar's storage offset is the BININT1 0 right after its persistent id (BINPERSID Q)
    at = obj.index(b"QK\x00", start)
    bad = obj[:at] + b"QK\x05" + obj[at + 3:]
    path = tmp_path / "offset.th"
    path.write_bytes(data[:ends[2]] + bad + data[ends[3]:])
    raises(path, "tensor 'scalar'", "reaches past the 1 elements of its storage")
