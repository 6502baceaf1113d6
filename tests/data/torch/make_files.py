"""Regenerate the PyTorch test files in this folder WITH REAL TORCH (not part of the test run).

The tests read these files without torch (``bilm.io.torch_pickle``); this script is how they were
made, and it checks with ``torch.load`` that torch itself reads them back to the saved arrays::

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch numpy     # a CPU wheel is enough
    /tmp/torchenv/bin/python tests/data/torch/make_files.py

Writes:

* ``state_dict_zip.th``    ``torch.save`` in the zip layout (torch's default since 1.6);
* ``state_dict_legacy.th`` the same dict, ``_use_new_zipfile_serialization=False``;
* ``expected.npz``         the arrays both must load to (bfloat16 widened to float32);
* ``legacy_old_style.th``  a legacy-layout file written by hand the way torch 0.3 wrote one:
  tensors pickled with ``torch._utils._rebuild_tensor`` over storage *views* (``view_metadata``
  set), which today's torch never writes but still reads;
* ``expected_old_style.npz`` its arrays (as torch.load reads them).

The zip files carry a random ``serialization_id``, so regenerated files differ byte-wise.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def state_dict() -> collections.OrderedDict:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(3, 4, generator=g)
    sd = collections.OrderedDict()
    sd["embedding.weight"] = torch.randn(5, 3, generator=g)
    sd["linear.weight"] = torch.randn(4, 3, generator=g)
    sd["linear.bias"] = torch.randn(4, generator=g)
    sd["double"] = torch.randn(2, 2, generator=g, dtype=torch.float64)
    sd["half"] = torch.randn(3, generator=g).half()
    sd["bfloat"] = torch.randn(2, 3, generator=g).bfloat16()
    sd["counts"] = torch.tensor([0, -3, 2**40, 7], dtype=torch.int64)
    sd["int32"] = torch.tensor([-(2**31), 5, 2**31 - 1], dtype=torch.int32)
    sd["int16"] = torch.tensor([-7, 300], dtype=torch.int16)
    sd["int8"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["uint8"] = torch.tensor([0, 255, 9], dtype=torch.uint8)
    sd["mask"] = torch.tensor([True, False, True])
    # Three tensors over one storage: the matrix, its transpose and a slice with an offset.
    sd["shared.base"] = base
    sd["shared.transposed"] = base.t()
    sd["shared.slice"] = base[1:, 1:3]
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 4)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    # A negative view: torch stores the positive values and the metadata {'neg': True}.
    sd["negative_view"] = torch._neg_view(torch.tensor([1.5, -2.0]))
    return sd


def as_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().resolve_neg()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.contiguous().numpy().copy()


def check(path: Path, expected: dict[str, np.ndarray]) -> None:
    loaded = torch.load(path, weights_only=False)
    assert list(loaded) == list(expected), path
    for name, want in expected.items():
        got = as_numpy(loaded[name])
        assert got.dtype == want.dtype and got.shape == want.shape, (path, name)
        assert np.array_equal(got, want), (path, name)


class _Storage:
    """A storage reference as torch 0.3's pickler emitted it (a persistent id)."""

    def __init__(self, key: str, numel: int, view: tuple[str, int, int] | None) -> None:
        self.pid = ("storage", torch.FloatStorage, key, "cpu", numel, view)


class _OldTensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (storage, offset, size, stride)

    def __reduce__(self):
        return (torch._utils._rebuild_tensor, self.args)


class _OldPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _Storage) else None


def write_old_style(path: Path) -> dict[str, np.ndarray]:
    """A legacy file with _rebuild_tensor over views of one 10-element float storage."""
    root = np.arange(10, dtype="<f4") * 0.5 - 1.0
    view = _Storage("100", 10, ("101", 2, 6))  # elements 2..7 of storage '100'
    whole = _Storage("100", 10, None)
    obj = collections.OrderedDict()
    obj["whole"] = _OldTensor(whole, 0, (2, 5), (5, 1))
    obj["view.matrix"] = _OldTensor(view, 0, (2, 3), (3, 1))
    obj["view.column"] = _OldTensor(view, 1, (2,), (3,))
    buf = io.BytesIO()
    for header in (
        0x1950A86A20F9469CFC6C,
        1001,
        {"protocol_version": 1001, "little_endian": True,
         "type_sizes": {"short": 2, "int": 4, "long": 8}},
    ):
        pickle.dump(header, buf, protocol=2)
    _OldPickler(buf, protocol=2).dump(obj)
    pickle.dump(["100"], buf, protocol=2)
    buf.write(struct.pack("<q", root.size))
    buf.write(root.tobytes())
    path.write_bytes(buf.getvalue())
    # What torch.load makes of it is the ground truth.
    loaded = torch.load(path, weights_only=False)
    return {name: as_numpy(t) for name, t in loaded.items()}


def main() -> None:
    sd = state_dict()
    expected = {name: as_numpy(t) for name, t in sd.items()}
    assert expected["shared.slice"].tolist() == as_numpy(sd["shared.base"])[1:, 1:3].tolist()
    torch.save(sd, HERE / "state_dict_zip.th")
    torch.save(sd, HERE / "state_dict_legacy.th", _use_new_zipfile_serialization=False)
    np.savez(HERE / "expected.npz", **expected)
    for name in ("state_dict_zip.th", "state_dict_legacy.th"):
        check(HERE / name, expected)

    old = write_old_style(HERE / "legacy_old_style.th")
    assert old["view.matrix"].tolist() == [[0.0, 0.5, 1.0], [1.5, 2.0, 2.5]], old
    assert old["view.column"].tolist() == [0.5, 2.0], old
    np.savez(HERE / "expected_old_style.npz", **old)

    for path in sorted(HERE.iterdir()):
        print(f"{path.name:28s} {path.stat().st_size:6d} bytes")
    print("torch", torch.__version__, "numpy", np.__version__, "python", sys.version.split()[0])


if __name__ == "__main__":
    main()
