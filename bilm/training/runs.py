"""Runs as the command line and bilm-tf's scripts use them: start a training run, resume
one, and load a trained one (options, checkpoint, vocabulary and language model, weights only,
with no trainer and no strategy)."""

from __future__ import annotations

import functools
import glob
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from bilm.data.vocabulary import Vocabulary
from bilm.io.checkpoints import restore_first_intact
from bilm.model.lm import LanguageModel
from bilm.options import BiLMOptions, OptionsError, load_options
from bilm.training.adapt import Adaptation
from bilm.training.distribute import replica_device
from bilm.training.inputs import _as_options, _dataset, load_vocab
from bilm.training.loop import DEFAULT_CHECKPOINT_MINUTES, train
from bilm.training.run_folder import RunError, RunState, TrainingRun, writes_run
from bilm.training.run_lock import owns_run
from bilm.training.trainer import restore_weights

__all__ = [
    "AS_RECORDED",
    "RESUME_KEYS",
    "LoadedRun",
    "load_language_model",
    "load_options_latest_checkpoint",
    "load_run",
    "resume_training",
    "start_training",
]

logger = logging.getLogger(__name__)


def _check_trainable(options: BiLMOptions) -> None:
    """Training reads bilm-tf's character ids: an embedder with ids of its own (ELMoForManyLangs')
    would be fed the wrong ones, so it is refused."""
    from bilm.embedders import get_spec

    if options.use_character_inputs and get_spec(options.embedder_type).token_ids is not None:
        raise OptionsError(f"a {options.embedder_type} token embedder reads ids of its own, "
                           "which training does not make yet; it embeds (bilm embed, "
                           "ELMoEmbedding) but does not train")


@owns_run("bilm train")  # before anything is written into the folder
def start_training(save_dir: str, options: BiLMOptions | dict | str, train_prefix: str,
                   vocab_file: str, *, n_gpus: int = 1, seed: int | None = None,
                   n_batches: int | None = None, overwrite: bool = False,
                   checkpoint_every: int | None = None,
                   checkpoint_minutes: float | None = DEFAULT_CHECKPOINT_MINUTES,
                   progress: bool = True, collective_timeout: float | None = None,
                   adapt: Adaptation | None = None) -> str:
    """Start a new training run in ``save_dir`` (``bilm train``, ``train_elmo.py``).

    ``options`` get ``n_tokens_vocab`` from the vocabulary. ``seed`` (None: picked, logged
    and recorded) seeds the weights, dropout, negative sampling and the data order, so the
    same seed gives the same run. A directory holding a run with checkpoints is refused
    unless ``overwrite``; the files of an earlier run (or of a start that stopped before its
    first checkpoint) are removed first, never other files. ``adapt``: start from a trained
    model, freeze parts, stop early on held-out text (``bilm train --init-from``, see
    :mod:`bilm.training.adapt`). Returns the final checkpoint.
    """
    run = TrainingRun(save_dir)
    chief = writes_run()  # a cluster's other workers write nothing into the folder
    if chief:
        run.check_new(overwrite)
    options = _as_options(options)
    _check_trainable(options)
    max_chars = options.max_characters_per_token
    vocab = load_vocab(vocab_file, max_chars)
    try:
        options = options.replace(n_tokens_vocab=vocab.size)
    except OptionsError as e:
        raise OptionsError(f"{e} (n_tokens_vocab is the size of the vocabulary {vocab_file})"
                           ) from None
    if options.sample_softmax and options.n_negative_samples_batch > vocab.size:
        raise OptionsError(f"n_negative_samples_batch is {options.n_negative_samples_batch} "
                           f"but the vocabulary {vocab_file} has {vocab.size} words to draw "
                           "negatives from; lower it (--options)")
    if chief:
        # an earlier run's files (or those of a start that stopped before its first
        # checkpoint); the user's own files were refused above unless overwrite
        run.clear()
    # The data order follows the run's seed, which train() settles (None: picked there; in a
    # cluster, the chief's on every worker) before it builds the stream.
    data = functools.partial(_dataset, options, train_prefix, vocab)
    return train(options, data, n_gpus, save_dir, save_dir, seed=seed, n_batches=n_batches,
                 checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes,
                 progress=progress, collective_timeout=collective_timeout, adapt=adapt)


AS_RECORDED: Any = object()  # resume_training's default: the run's recorded setting

# options a resume may change (the network's shape may not change)
RESUME_KEYS = ("batch_size", "n_epochs", "n_train_tokens", "learning_rate", "dropout",
               "precision", "jit_compile", "unroll_steps", "all_clip_norm_val")


@owns_run("bilm resume")
def resume_training(save_dir: str, *, train_prefix: str | None = None,
                    vocab_file: str | None = None, n_gpus: int = 1,
                    n_batches: int | None = None, changes: dict[str, Any] | None = None,
                    checkpoint_every: Any = AS_RECORDED, checkpoint_minutes: Any = AS_RECORDED,
                    progress: bool = True, collective_timeout: float | None = None) -> str:
    """Continue a run from its latest checkpoint (``bilm resume``, ``restart.py``).

    By default the run goes on to the length it was started with, on the same data and
    vocabulary, with the same seeds, so that training N then resuming to N + M equals
    training N + M. ``changes`` overrides training options (:data:`RESUME_KEYS`; a new
    ``batch_size`` restarts the carried LSTM states); ``n_batches`` sets a new total; the
    checkpoint interval stays as recorded unless given. Options are rewritten only after
    the checkpoint restored. ``checkpoint_every``/``checkpoint_minutes`` default to the
    run's recorded interval. Returns the final checkpoint.
    """
    run = TrainingRun(save_dir)
    run.check()
    options = load_options(run.options_file)
    state = run.read_state()
    ckpt, *fallbacks = _run_checkpoints(run)
    changes = dict(changes or {})
    unknown = sorted(set(changes) - set(RESUME_KEYS))
    if unknown:
        raise RunError(f"a resume cannot change {', '.join(unknown)} (only "
                       f"{', '.join(RESUME_KEYS)})")
    if changes:
        options = options.replace(**changes)
    if train_prefix is None:
        train_prefix = _recorded_prefix(save_dir, run, state)
    vocab_file = run.vocabulary_file(vocab_file, options.n_tokens_vocab, state)
    max_chars = options.max_characters_per_token
    vocab = load_vocab(vocab_file, max_chars)
    if n_batches is None and state is not None and not {"n_epochs", "n_train_tokens"} & set(
            changes):
        n_batches = state.target_batches
        if n_batches is not None and {"batch_size", "unroll_steps"} & set(changes):
            n_batches = None  # recomputed from n_epochs for the new batch geometry
    checkpoint_every, checkpoint_minutes = _checkpoint_interval(state, checkpoint_every,
                                                                checkpoint_minutes)
    seed = state.seed if state is not None else None
    data_seed = state.data_seed if state is not None else None
    data = _dataset(options, train_prefix, vocab, data_seed)
    adapt = Adaptation.from_settings(state.adapt if state is not None else None)
    return train(options, data, n_gpus, save_dir, save_dir, restart_ckpt_file=ckpt, seed=seed,
                 n_batches=n_batches, checkpoint_every=checkpoint_every,
                 checkpoint_minutes=checkpoint_minutes, progress=progress,
                 collective_timeout=collective_timeout, restart_fallbacks=fallbacks,
                 adapt=adapt)


def _recorded_prefix(save_dir: str, run: TrainingRun, state: RunState | None) -> str:
    """The training files a run records (RunError when it records none or they are gone)."""
    if state is None or not state.train_prefix:
        raise RunError(f"{save_dir} does not record its training files (a bilm-tf run); "
                       "pass --train-prefix")
    train_prefix = state.train_prefix
    if not glob.glob(train_prefix):
        raise RunError(f"the training files recorded in {run.path('run.json')} "
                       f"({train_prefix}) match nothing now; pass --train-prefix to say "
                       "where they are")
    return train_prefix


def _checkpoint_interval(state: RunState | None, checkpoint_every: Any,
                         checkpoint_minutes: Any) -> tuple[int | None, float | None]:
    """The interval a resume saves at: the run's recorded one unless either is given."""
    if checkpoint_every is AS_RECORDED and checkpoint_minutes is AS_RECORDED:
        if state is not None:
            return state.checkpoint_every, state.checkpoint_minutes
        return None, DEFAULT_CHECKPOINT_MINUTES
    if checkpoint_every is AS_RECORDED:
        checkpoint_every = None
    elif checkpoint_minutes is AS_RECORDED:
        checkpoint_minutes = None
    return checkpoint_every, checkpoint_minutes


# -- trained runs: loading (evaluation, scoring and export use these) --------------------------

def load_language_model(options: BiLMOptions | dict | str, ckpt_file: str) -> LanguageModel:
    """The :class:`~bilm.model.lm.LanguageModel` of a checkpoint (ours or bilm-tf's), weights only,
    float32, on the first GPU or else the CPU (for evaluation, scoring and export)."""
    return _load_first_intact(options, [ckpt_file])[0]


def _load_first_intact(options: BiLMOptions | dict | str, candidates: Sequence[str],
                       where: str | None = None) -> tuple[LanguageModel, str]:
    """(language model, checkpoint) of the first of ``candidates`` (newest first) that
    restores (:func:`bilm.io.checkpoints.restore_first_intact`)."""
    options = _as_options(options)
    keras.utils.set_random_seed(0)  # the global seeds as a fresh trainer of seed 0 set them
    with tf.device(replica_device()):
        lm = LanguageModel(options, precision="float32")
    path = restore_first_intact(functools.partial(restore_weights, lm), candidates, where)
    return lm, path


def _run_checkpoints(run: TrainingRun) -> list[str]:
    """The run's checkpoints, newest first (RunError when there is none)."""
    candidates = run.checkpoints()
    problem = run.bookkeeping_problem()
    if problem:
        logger.warning("%s; found %d checkpoint(s) by their files", problem, len(candidates))
    if not candidates:
        raise RunError(f"no checkpoint in {run.save_dir}; run bilm train first")
    return candidates


@dataclass
class LoadedRun:
    """A trained run, ready to use: its options, checkpoint, vocabulary and language model."""

    save_dir: str
    options: BiLMOptions
    checkpoint: str
    vocab_file: str
    vocab: Vocabulary
    lm: LanguageModel


def load_run(save_dir: str, vocab_file: str | None = None,
             checkpoint: str | None = None) -> LoadedRun:
    """Load a training directory (ours or bilm-tf's) for evaluation, scoring or export.

    ``vocab_file`` defaults to the run's own copy; one given is checked against the run
    (its size must equal ``n_tokens_vocab``; its words, the recorded ones). ``checkpoint``
    defaults to the latest. Raises :class:`~bilm.training.run_folder.RunError` for a directory
    that is not a run or a vocabulary that does not match.
    """
    run = TrainingRun(save_dir)
    run.check()
    options = load_options(run.options_file)
    candidates = [checkpoint] if checkpoint is not None else _run_checkpoints(run)
    vocab_file = run.vocabulary_file(vocab_file, options.n_tokens_vocab, run.read_state())
    max_chars = options.max_characters_per_token
    vocab = load_vocab(vocab_file, max_chars)
    lm, checkpoint = _load_first_intact(options, candidates, save_dir)
    return LoadedRun(save_dir, options, checkpoint, vocab_file, vocab, lm)


def load_options_latest_checkpoint(tf_save_dir: str) -> tuple[BiLMOptions, str]:
    """(options, latest checkpoint path) of a training directory (ours or bilm-tf's)."""
    options = load_options(os.path.join(tf_save_dir, "options.json"))
    found = TrainingRun(tf_save_dir).checkpoints()
    if not found:
        raise FileNotFoundError(f"no checkpoint in {tf_save_dir}")
    return options, found[0]
