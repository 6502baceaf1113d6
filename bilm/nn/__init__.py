"""Network building blocks (one concept per file), and the weight-table type every network
declares its stored weights with (``layout``, no TensorFlow)."""

from __future__ import annotations

from bilm._lazy import lazy_exports

_EXPORTS = {"CharCNN": "bilm.nn.char_cnn", "Highway": "bilm.nn.highway",
            "ProjectedLSTM": "bilm.nn.lstm", "ScalarMix": "bilm.nn.scalar_mix",
            "WeightEntry": "bilm.nn.layout"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
