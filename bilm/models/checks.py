"""Checking that a model's weights load: every dataset present, every shape right, every
value finite (imports TensorFlow)."""

from __future__ import annotations

from bilm.models.registry import ModelFiles

__all__ = ["check_weights"]


def check_weights(files: ModelFiles) -> None:
    """Build the model from ``files`` (WeightFileError, OptionsError: what is wrong)."""
    from bilm.inference.language_model import BidirectionalLanguageModel
    from bilm.options import load_options

    options = load_options(files.options_file)
    BidirectionalLanguageModel(files.options_file, files.weight_file, stateful=False,
                               use_character_inputs=options.use_character_inputs)
