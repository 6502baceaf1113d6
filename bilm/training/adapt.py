"""A run that starts from a trained model (``bilm train --init-from MODEL``): adapting a
released or trained biLM to the user's text and vocabulary.

MODEL is one of

- a training run (ours, bilm-tf's, or an imported AllenNLP archive): its latest checkpoint,
  softmax included, and its vocabulary;
- an AllenNLP language-model archive (``model.tar.gz`` or its unpacked folder), softmax and
  vocabulary included;
- options + HDF5 weights (bilm-tf's and AllenNLP's released ELMo files, ``bilm export``'s
  output): the encoder only, no softmax. An ``.hdf5`` file takes its options from
  ``--options``; a folder holding ``options.json`` and one weights file is read as the pair;
- an NLPL archive (``.zip``) or a catalogue name (``bilm models``): the model it holds
  (:func:`bilm.models.open_model`).

The new run has MODEL's shape (its encoder and token embedder sections), the training keys
of :data:`FINE_TUNING` over MODEL's own, then ``--options`` and the flags; its vocabulary is
the user's. Its initial weights (:func:`initialize`): MODEL's encoder and token embedder, as
they are; the softmax over the user's vocabulary: the rows (and biases) of the words MODEL's
softmax has are MODEL's; the other rows start as zeros (``new_rows="zeros"``, the default:
the better start measured in docs/adaptation.md) or as the direction of the word's token
embedding under MODEL's token embedder (``"token-embedding"``), with the median of MODEL's
biases (0 without a softmax).
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bilm.options import BiLMOptions, OptionsError

__all__ = ["FINE_TUNING", "NEW_ROWS", "AdaptError", "Adaptation", "InitModel",
           "adapted_options", "check_heldout", "initialize", "read_init_model",
           "token_embedding_rows"]

logger = logging.getLogger(__name__)

# The training keys a run started from a model gets before --options and the flags: one pass
# over the user's text (the ELMo paper fine-tunes its biLM for an epoch on the task's text),
# whose tokens are counted afresh (MODEL's n_train_tokens counted its own corpus).
FINE_TUNING: dict[str, Any] = {"n_epochs": 1, "n_train_tokens": None}

# How softmax rows of words MODEL's softmax lacks start (the first is the default: measured
# better, by a small margin, in docs/adaptation.md)
NEW_ROWS = ("zeros", "token-embedding")

_WEIGHT_NAMES = ("weights.hdf5", "lm_weights.hdf5", "model.hdf5")


class AdaptError(ValueError):
    """MODEL cannot start this run (one line: what and why)."""


@dataclass
class InitModel:
    """A model read for ``--init-from``.

    Attributes:
        path: as given.
        kind: ``"run"``, ``"allennlp archive"`` or ``"weights"``.
        options: MODEL's options (its shape).
        values: its weights by :func:`bilm.model.lm.training_variables` name (numpy).
        tokens: the word of each softmax row; None when MODEL has no softmax.
    """

    path: str
    kind: str
    options: BiLMOptions
    values: dict[str, np.ndarray]
    tokens: list[str] | None


def read_init_model(path: str, options_file: str | None = None) -> InitModel:
    """Read MODEL (see the module doc). ``options_file`` is the options of a bare ``.hdf5``
    MODEL (required there); other MODELs carry their own."""
    from bilm.training.run_folder import TrainingRun

    if not os.path.exists(path) or _is_zip(path) or _is_efml(path):
        from bilm.models import ModelError, open_model

        try:  # a catalogue name, an NLPL archive: their files in our layout
            files = open_model(path)
        except ModelError as e:
            raise AdaptError(f"--init-from: {e}") from None
        model = (_read_run(files.run_dir) if files.run_dir else
                 _read_weights(files.weight_file, options_file or files.options_file))
        model.path = path
    elif os.path.isdir(path) and TrainingRun(path).checkpoints():
        model = _read_run(path)
    elif _is_archive(path):
        model = _read_archive(path)
    else:
        model = _read_weights(path, options_file)
    from bilm.embedders import get_spec

    if get_spec(model.options.embedder_type).token_ids is not None:
        raise AdaptError(f"--init-from: {path} is a {model.options.embedder_type} model, whose "
                         "ids training does not make yet; it embeds but does not train")
    if not model.options.use_character_inputs:
        raise AdaptError(f"--init-from: {path} reads word ids (its token embedding is a table "
                         "over its own vocabulary); adapting needs a character-input model")
    logger.info("starting from %s (%s%s)", path, model.kind,
                "" if model.tokens is None else f", softmax over {len(model.tokens)} words")
    return model


def _is_efml(path: str) -> bool:
    from bilm.models.efml import FAMILY

    return FAMILY.detect(path)


def _is_zip(path: str) -> bool:
    from bilm.models.nlpl import FAMILY

    return FAMILY.detect(path)


def _is_archive(path: str) -> bool:
    if os.path.isdir(path):
        return os.path.exists(os.path.join(path, "config.json"))
    import tarfile

    return path.endswith((".tar.gz", ".tgz", ".tar")) or tarfile.is_tarfile(path)


def _read_run(path: str) -> InitModel:
    from bilm.model.lm import training_variables
    from bilm.training.runs import load_run

    loaded = load_run(path)
    vocab = loaded.vocab
    return InitModel(path, "run", loaded.options,
                     {n: np.asarray(v.numpy()) for n, v in training_variables(loaded.lm).items()},
                     [vocab.id_to_word(i) for i in range(vocab.size)])


def _read_archive(path: str) -> InitModel:
    from bilm.io.allennlp import read_archive
    from bilm.io.allennlp_options import options_from_config
    from bilm.io.allennlp_run import vocabulary_tokens
    from bilm.io.allennlp_weights import archive_values, softmax_rows
    from bilm.model.lm import LanguageModel, training_variables

    archive = read_archive(path)
    rows = softmax_rows(archive)
    options = options_from_config(archive.config, rows, archive.path)
    tokens = vocabulary_tokens(archive, rows)
    lm = LanguageModel(options, precision="float32")
    by_id = archive_values(archive, lm)
    return InitModel(path, "allennlp archive", options,
                     {n: np.asarray(by_id[id(v)]) for n, v in training_variables(lm).items()},
                     tokens)


def _read_weights(path: str, options_file: str | None) -> InitModel:
    from bilm.io.weights import load_weights
    from bilm.model.encoder import BiLMEncoder
    from bilm.model.lm import encoder_variables
    from bilm.options import load_options

    if os.path.isdir(path):
        found = [p for p in (os.path.join(path, n) for n in _WEIGHT_NAMES) if os.path.isfile(p)]
        options_file = os.path.join(path, "options.json")  # (--options then overrides keys)
        if len(found) != 1 or not os.path.isfile(options_file):
            raise AdaptError(f"--init-from: {path} is neither a run (no checkpoint), an "
                             "AllenNLP archive (no config.json), nor a folder with options.json "
                             f"and one of {', '.join(_WEIGHT_NAMES)}")
        path = found[0]
    elif options_file is None:
        raise AdaptError(f"--init-from {path}: HDF5 weights need their options (--options "
                         "options.json)")
    options = load_options(options_file)
    encoder = BiLMEncoder(options.replace(n_tokens_vocab=None), precision="float32")
    load_weights(encoder, path)  # WeightFileError: a missing, extra or misshapen weight
    return InitModel(path, "weights", options,
                     {n: np.asarray(v.numpy()) for n, v in encoder_variables(encoder).items()},
                     None)


def adapted_options(model: InitModel, override: Mapping[str, Any] | None,
                    changes: Mapping[str, Any]) -> BiLMOptions:
    """The new run's options: MODEL's, then :data:`FINE_TUNING`, then ``override`` (an
    ``--options`` file's keys, merged section by section), then ``changes`` (the flags);
    ``n_tokens_vocab`` is left for the user's vocabulary to set."""
    from bilm.presets import merge_options

    d = merge_options(model.options.to_dict(), FINE_TUNING)
    if override:
        d = merge_options(d, dict(override))
    d.update(changes)
    d.pop("n_tokens_vocab", None)
    try:
        return BiLMOptions.from_dict(d, source=f"{model.path} (adapted)")
    except OptionsError as e:
        raise OptionsError(f"--init-from {model.path}: {e}") from None


def initialize(variables: Mapping[str, Any], model: InitModel, words: list[str],
               embed_words: Any = None, new_rows: str = NEW_ROWS[0]) -> tuple[int, int]:
    """Give a new run's ``variables`` (:func:`~bilm.model.lm.training_variables`) their
    initial values from ``model``: every encoder variable MODEL's (same shape, else
    :class:`AdaptError`), and the softmax over ``words`` (the user's vocabulary, row order):
    rows of MODEL's words carried over (weights and bias); the others, when ``new_rows`` is
    ``"token-embedding"``, the direction of the word's token embedding (``embed_words``: words
    -> (len(words), dim), MODEL's token embedder's) at the median length of MODEL's softmax
    rows (1 without a softmax), else zeros; their bias the median of MODEL's biases (0
    without a softmax). Returns (rows carried over, new rows)."""
    if new_rows not in NEW_ROWS:
        raise ValueError(f"new_rows must be one of {', '.join(NEW_ROWS)}; got {new_rows!r}")
    ours = [n for n in variables if not n.startswith("softmax/")]
    theirs = [n for n in model.values if not n.startswith("softmax/")]
    missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if missing or extra:
        raise AdaptError(f"--init-from {model.path}: its encoder does not have the options' "
                         f"shape (the options have {', '.join(missing) or 'nothing'} it lacks; "
                         f"it has {', '.join(extra) or 'nothing'} they lack)")
    for name in ours:
        value, variable = model.values[name], variables[name]
        if tuple(value.shape) != tuple(variable.shape):
            raise AdaptError(f"--init-from {model.path}: its {name} is {tuple(value.shape)} "
                             f"but the options make it {tuple(variable.shape)}; the options "
                             "must keep MODEL's shape")
        variable.assign(value)
    return _init_softmax(variables, model, words, embed_words, new_rows)


def _init_softmax(variables: Mapping[str, Any], model: InitModel, words: list[str],
                  embed_words: Any, new_rows: str) -> tuple[int, int]:
    weights, bias = variables.get("softmax/W"), variables["softmax/b"]
    b = np.zeros(bias.shape, np.float32)
    carried: list[tuple[int, int]] = []
    if model.tokens is not None:
        index = {t: i for i, t in enumerate(model.tokens)}
        carried = [(i, index[w]) for i, w in enumerate(words) if w in index]
    new = sorted(set(range(len(words))) - {i for i, _ in carried})
    norm = 1.0  # a new row's length: MODEL's rows' (median), else a fresh random row's (~1)
    if model.tokens is not None:
        b[new] = np.median(model.values["softmax/b"])
        if "softmax/W" in model.values:
            norm = float(np.median(np.linalg.norm(model.values["softmax/W"], axis=1)))
    if carried:
        ours, theirs = (np.array(c) for c in zip(*carried, strict=True))
        b[ours] = model.values["softmax/b"][theirs]
    if weights is not None:
        w = np.zeros(weights.shape, np.float32)
        if new and new_rows == "token-embedding":
            e = np.asarray(embed_words([words[i] for i in new]), np.float32)
            # the embedding's direction at a softmax row's length: token embeddings are
            # ~10x longer than output rows, and unscaled rows dominate every prediction
            lengths = np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
            w[new] = e / lengths * norm
        if carried:
            w[ours] = model.values["softmax/W"][theirs]
        weights.assign(w)
    bias.assign(b)
    logger.info("softmax: %d of %d rows carried over from %s, %d new (%s)", len(carried),
                len(words), model.path, len(new), new_rows if weights is not None else "zeros")
    return len(carried), len(new)


def check_heldout(heldout: str | None, patience: int | None) -> None:
    """One line for held-out settings that cannot work (before TensorFlow starts)."""
    if patience is not None and heldout is None:
        raise AdaptError("--patience stops on held-out perplexity: give --heldout GLOB too")
    if heldout is not None and not glob.glob(os.path.expanduser(heldout)):
        raise AdaptError(f"--heldout {heldout!r} matches no file")


def token_embedding_rows(encoder: Any, max_characters_per_token: int,
                         batch_size: int = 4096) -> Any:
    """A function: words -> (len(words), dim) float32, their context-independent embeddings
    under ``encoder``'s token embedder (as :func:`~bilm.dump_token_embeddings` computes
    them)."""
    from bilm.data.vocabulary import token_to_char_ids

    def embed(words: list[str]) -> np.ndarray:
        ids = np.stack([token_to_char_ids(w, max_characters_per_token) for w in words]) + 1
        return np.concatenate([np.asarray(encoder.embed_tokens(ids[i : i + batch_size]),
                                          np.float32)
                               for i in range(0, len(ids), batch_size)])

    return embed


@dataclass
class Adaptation:
    """What a run does beyond training from scratch, given to
    :func:`~bilm.training.loop.train`: start from ``model`` (None: from scratch, or a
    resume), hold the ``freeze`` parts fixed (:func:`bilm.model.lm.frozen_variables`), and
    evaluate on ``heldout`` at each checkpoint, stopping after ``patience`` evaluations
    without a better perplexity (:mod:`bilm.training.early_stopping`). Recorded in run.json
    (:attr:`settings`) so that ``bilm resume`` carries on the same way."""

    model: InitModel | None = None
    freeze: tuple[str, ...] = ()
    new_rows: str = NEW_ROWS[0]
    heldout: str | None = None
    patience: int | None = None
    init_from: str | None = None  # recorded: the model's path
    _stopping: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.new_rows not in NEW_ROWS:
            raise ValueError(f"new_rows must be one of {', '.join(NEW_ROWS)}; "
                             f"got {self.new_rows!r}")
        check_heldout(self.heldout, self.patience)
        if self.heldout is not None:  # absolute: a resume may start from another folder
            self.heldout = os.path.abspath(os.path.expanduser(self.heldout))
        if self.model is not None and self.init_from is None:
            self.init_from = os.path.abspath(self.model.path)

    @property
    def settings(self) -> dict[str, Any]:
        return {"init_from": self.init_from, "freeze": list(self.freeze),
                "new_rows": self.new_rows, "heldout": self.heldout, "patience": self.patience}

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> Adaptation | None:
        """The adaptation a run recorded (None for none); its held-out files must still
        exist."""
        if not settings:
            return None
        return cls(freeze=tuple(settings.get("freeze") or ()),
                   new_rows=settings.get("new_rows") or NEW_ROWS[0],
                   heldout=settings.get("heldout"), patience=settings.get("patience"),
                   init_from=settings.get("init_from"))

    def initialize(self, trainer: Any, vocab: Any) -> None:
        """A new run's initial weights from :attr:`model` (nothing without one)."""
        if self.model is None:
            return
        words = [vocab.id_to_word(i) for i in range(vocab.size)]
        embed = token_embedding_rows(trainer.lm.encoder,
                                     trainer.options.max_characters_per_token)
        initialize(trainer.variables, self.model, words, embed, self.new_rows)

    @property
    def early_stopping(self) -> Any:
        """The :class:`~bilm.training.early_stopping.EarlyStopping` of ``heldout`` (None
        without)."""
        if self.heldout is not None and self._stopping is None:
            from bilm.training.early_stopping import EarlyStopping

            self._stopping = EarlyStopping(self.heldout, self.patience)
        return self._stopping
