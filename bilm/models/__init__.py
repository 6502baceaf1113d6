"""Released and trained ELMo models, whatever family they come from: a path or a catalogue
name becomes files every command reads (:func:`open_model`); ``bilm models`` lists the
catalogue, ``bilm download`` fetches from it. See docs/models.md."""

from __future__ import annotations

from bilm.models.registry import (
    ModelError,
    ModelFamily,
    ModelFiles,
    detect_model,
    families,
    model_files,
    open_model,
    register_family,
)

__all__ = ["ModelError", "ModelFamily", "ModelFiles", "detect_model", "families", "model_files",
           "open_model", "register_family"]
