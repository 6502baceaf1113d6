"""Training runs a user can trust, through the library functions the command line and the
bin/ scripts call (in-process, tiny models): seeds, exact resume, batch-size changes, the
recorded length, empty and damaged text, non-finite weights, --overwrite, the vocabulary,
the token-count cache and word-input batches."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bilm.data import BidirectionalLMDataset, LMDataset, Vocabulary
from bilm.data.dataset import DataError
from bilm.evaluation import evaluate_run
from bilm.training.loop import TrainingError, train
from bilm.training.run_folder import RunError, TrainingRun
from bilm.training.runs import load_run, resume_training, start_training
from bilm.training.trainer import Trainer
from tests.conftest import TINY_ONE_LAYER_OPTIONS

TEXT = ("the light was good .\nand god saw the light .\nthe earth was without form .\n"
        "and darkness was upon the face of the deep .\n")

TINY = {
    **TINY_ONE_LAYER_OPTIONS,
    "batch_size": 4, "unroll_steps": 5, "n_negative_samples_batch": 8,
    "jit_compile": False,  # XLA compiles cost seconds per new model; exactness holds either way
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("corpus")
    (d / "train").mkdir()
    for k in range(2):
        (d / "train" / f"shard.{k}.txt").write_text(TEXT * 20)
    words = sorted({w for w in TEXT.split()})
    (d / "vocab.txt").write_text("\n".join(["<S>", "</S>", "<UNK>", *words]) + "\n")
    return {"dir": d, "train": d / "train" / "shard.*", "vocab": d / "vocab.txt"}


@pytest.fixture(scope="module")
def base_run(corpus, tmp_path_factory) -> Path:
    """A 3-batch run (seed 3) that tests copy before changing it."""
    save = tmp_path_factory.mktemp("base") / "run"
    start(corpus, save, n_batches=3)
    return save


def copy_run(base: Path, to: Path) -> Path:
    shutil.copytree(base, to)
    # the checkpoint state file names absolute paths: point it at the copy
    state = (to / "checkpoint").read_text().replace(str(base), str(to))
    (to / "checkpoint").write_text(state)
    return to


def start(corpus, save: Path, n_batches: int | None = 3, **kwargs) -> str:
    kwargs.setdefault("seed", 3)
    kwargs.setdefault("checkpoint_minutes", None)
    options = {**TINY, **kwargs.pop("options", {})}
    return start_training(str(save), options, str(corpus["train"]), str(corpus["vocab"]),
                          n_batches=n_batches, progress=False, **kwargs)


def weights(ckpt: str) -> dict[str, np.ndarray]:
    """Every saved tensor (weights, accumulators, step, LSTM states) but bookkeeping."""
    return {n: tf.train.load_variable(ckpt, n) for n, _ in tf.train.list_variables(ckpt)
            if not n.startswith("_") and "save_counter" not in n}


def assert_same(a: str, b: str) -> None:
    wa, wb = weights(a), weights(b)
    assert sorted(wa) == sorted(wb)
    for name in wa:
        np.testing.assert_array_equal(wa[name], wb[name], err_msg=name)


def test_same_seed_same_run_and_resume_continues_exactly(corpus, base_run, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="bilm")
    again = start(corpus, tmp_path / "again", n_batches=3)
    assert_same(str(base_run / "model-3"), again)  # the seed fixes data, weights, dropout, ...
    one = start(corpus, tmp_path / "one", n_batches=6)
    split = resume_training(str(copy_run(base_run, tmp_path / "split")), n_batches=6,
                            progress=False)
    assert split.endswith("model-6")
    assert_same(one, split)  # train 3 + resume to 6 == train 6, bit for bit
    state = json.loads((tmp_path / "one" / "run.json").read_text())
    assert (state["seed"], state["data_seed"], state["target_batches"]) == (3, 3, 6)
    assert state["train_prefix"] == str(corpus["train"])
    # no seed: one is picked, logged and recorded, so the run can be repeated
    caplog.clear()
    other = start(corpus, tmp_path / "picked", n_batches=3, seed=None)
    picked = json.loads((tmp_path / "picked" / "run.json").read_text())["seed"]
    assert f"seed {picked}" in caplog.text and picked != 3
    assert not np.array_equal(weights(again)["variables/softmax.SW/.ATTRIBUTES/VARIABLE_VALUE"],
                              weights(other)["variables/softmax.SW/.ATTRIBUTES/VARIABLE_VALUE"])


@pytest.mark.slow
def test_resume_with_another_batch_size(base_run, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="bilm")
    a, b = copy_run(base_run, tmp_path / "a"), copy_run(base_run, tmp_path / "b")
    # a: 3 batches of 4 rows, then to 7 with 8 rows in one resume
    resume_training(str(a), n_batches=7, changes={"batch_size": 8}, progress=False)
    assert "changed from 4 rows (checkpoint) to 8: the carried LSTM states start from zeros" \
        in caplog.text
    assert json.loads((a / "options.json").read_text())["batch_size"] == 8
    # b: the same in two resumes; the second, plain resume keeps the new batch size
    resume_training(str(b), n_batches=5, changes={"batch_size": 8}, progress=False)
    final = resume_training(str(b), n_batches=7, progress=False)
    assert final.endswith("model-7")
    assert json.loads((b / "run.json").read_text())["segments"] == [[0, 4, 5], [3, 8, 5]]
    assert_same(str(a / "model-7"), final)  # the data stream replays exactly


def test_a_failed_resume_leaves_the_run_as_it_was(base_run, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="bilm")
    save = copy_run(base_run, tmp_path / "run")
    files = {p.name: p.read_bytes() for p in save.iterdir() if p.is_file()}
    small = tmp_path / "small.txt"
    small.write_text("<S>\n</S>\n<UNK>\nthe\n")
    with pytest.raises(RunError, match="has 4 entries but this run was trained with"):
        resume_training(str(save), vocab_file=str(small), changes={"batch_size": 8},
                        progress=False)
    with pytest.raises(ValueError, match="n_gpus=9 but only"):
        resume_training(str(save), n_gpus=9, n_batches=5, changes={"batch_size": 8},
                        progress=False)
    assert {p.name: p.read_bytes() for p in save.iterdir() if p.is_file()} == files
    # the run keeps its recorded length (3): a plain resume has nothing to do
    assert resume_training(str(save), progress=False).endswith("model-3")
    assert "already at batch 3 of 3: nothing to train" in caplog.text
    assert resume_training(str(save), n_batches=4, progress=False).endswith("model-4")
    assert json.loads((save / "run.json").read_text())["target_batches"] == 4


@pytest.fixture
def time_limit():
    """Fail instead of hanging: an infinite loop is what these tests guard against."""

    def alarm(*_):
        raise TimeoutError("took more than 120 s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_empty_training_files_are_an_error(corpus, tmp_path, time_limit):
    empty = tmp_path / "empty"
    empty.mkdir()
    for k in range(2):
        (empty / f"e.{k}.txt").write_text("" if k else "\n\n")
    pattern = str(empty / "e.*")
    with pytest.raises(DataError, match=r"the 2 file\(s\) matching '.*e\.\*' hold no tokens"):
        start_training(str(tmp_path / "a"), TINY, pattern, str(corpus["vocab"]), n_batches=3,
                       seed=0, progress=False)
    with pytest.raises(RunError, match=r"matching '.*e\.\*' hold no tokens"):
        start_training(str(tmp_path / "b"), TINY, pattern, str(corpus["vocab"]), seed=0,
                       progress=False)


def test_no_checkpoint_holds_non_finite_weights(corpus, tmp_path, monkeypatch):
    step = Trainer.train_step

    def poisoned(self, batch, states):  # an accumulator explodes during batch 2
        out = step(self, batch, states)
        if int(self.step.numpy()) == 2:
            acc = self.optimizer.accumulators["softmax/b"]
            acc.assign(tf.fill(acc.shape, float("nan")))
        return out

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    save = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"non-finite \(NaN/inf\) by batch 2; not saved. "
                       r"The last good checkpoint is .*model-1"):
        start(corpus, save, n_batches=4, checkpoint_every=1)
    assert tf.train.latest_checkpoint(str(save)).endswith("model-1")
    assert np.isfinite(weights(str(save / "model-1"))[
        "optimizer/softmax.Sb/.ATTRIBUTES/VARIABLE_VALUE"]).all()


@pytest.mark.slow
def test_overwrite_removes_the_earlier_run_first(corpus, tmp_path):
    save = tmp_path / "run"
    start(corpus, save, n_batches=3)
    (save / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="already holds a training run"):
        start(corpus, save, n_batches=3)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    # a new run that stops before its first checkpoint (here: before it wrote anything):
    # nothing of the old one may remain
    with pytest.raises(DataError):
        start_training(str(save), {**TINY, "dropout": 0.5}, str(empty), str(corpus["vocab"]),
                       n_batches=3, overwrite=True, seed=1, progress=False)
    assert sorted(p.name for p in save.iterdir()) == ["notes.txt"]
    with pytest.raises(RunError, match="not a bilm training directory"):
        resume_training(str(save), progress=False)
    # the folder now holds only the user's file: not a run, so a plain train is refused
    # (naming it), and --overwrite trains there, keeping it
    with pytest.raises(RunError, match=r"holds no bilm run \(notes.txt\)"):
        start(corpus, save, n_batches=2)
    assert start(corpus, save, n_batches=2, overwrite=True).endswith("model-2")
    assert (save / "notes.txt").read_text() == "mine"


def test_invalid_utf8_lines_are_skipped_and_reported(corpus, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="bilm")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(TEXT.encode() * 3 + b"caf\xe9 au lait .\n" + TEXT.encode() * 3)
    start_training(str(tmp_path / "run"), TINY, str(bad), str(corpus["vocab"]), n_batches=8,
                   seed=0, progress=False, checkpoint_minutes=None)
    assert f"{bad}:13: not valid UTF-8 (invalid continuation byte at byte 3); line skipped" \
        in caplog.text
    assert caplog.text.count("line skipped") == 1  # once, not per direction or pass
    assert "1 lines of the training files were not valid UTF-8 and were skipped" in caplog.text


def test_the_run_keeps_and_checks_its_vocabulary(corpus, base_run, tmp_path):
    save = base_run  # read only
    assert (save / "vocab.txt").read_text() == corpus["vocab"].read_text()
    loaded = load_run(str(save))  # no vocabulary needed
    assert loaded.vocab.size == loaded.options.n_tokens_vocab == 19
    small = tmp_path / "small.txt"
    small.write_text("<S>\n</S>\n<UNK>\nthe\n")
    with pytest.raises(RunError, match=r"small\.txt has 4 entries but this run was trained "
                       r"with 19 .* omit --vocab"):
        load_run(str(save), str(small))
    shuffled = tmp_path / "shuffled.txt"
    words = corpus["vocab"].read_text().split("\n")
    shuffled.write_text("\n".join([*words[:3], *reversed(words[3:-1])]) + "\n")
    with pytest.raises(RunError, match="is not the one this run was trained with"):
        evaluate_run(str(save), str(corpus["train"]), vocab_file=str(shuffled))
    ppl = evaluate_run(str(save), str(corpus["train"]), batch_size=4, progress=False)
    assert 1.0 < ppl < 19 * 2  # under a uniform guess over the 19-entry vocabulary, doubled


@pytest.mark.slow
def test_token_counts_are_cached_in_the_run_not_the_corpus(corpus, tmp_path):
    save = tmp_path / "run"
    start(corpus, save, n_batches=None, options={"n_epochs": 1})
    state = json.loads((save / "run.json").read_text())
    tokens = 2 * 20 * len(TEXT.split())
    assert sum(n for n, _ in state["token_counts"].values()) == tokens
    assert sum(n for _, n in state["token_counts"].values()) == 2 * 20 * 4  # lines
    assert json.loads((save / "options.json").read_text())["n_train_tokens"] == tokens
    assert state["target_batches"] == tokens // (4 * 5)
    assert not [p for p in corpus["dir"].rglob("*") if p.name.startswith(".bilm")]


def test_checkpoint_interval_and_training_log(corpus, tmp_path):
    save = tmp_path / "run"
    start(corpus, save, n_batches=6, checkpoint_every=2)
    state = tf.train.get_checkpoint_state(str(save))
    assert [Path(p).name for p in state.all_model_checkpoint_paths] == ["model-4", "model-6"]
    resume_training(str(save), n_batches=8, progress=False)
    with open(save / "training_log.csv") as f:
        rows = f.read().strip().split("\n")
    assert rows[0] == "batch,train_perplexity,gradient_norm,tokens_per_second,elapsed_seconds"
    batches = [int(r.split(",")[0]) for r in rows[1:]]
    elapsed = [float(r.split(",")[4]) for r in rows[1:]]
    assert batches == [6, 8] and elapsed[1] > elapsed[0] > 0


def test_word_input_batches_and_training(corpus, tmp_path):
    vocab = Vocabulary(str(corpus["vocab"]), validate_file=True)
    batch = next(LMDataset(str(corpus["train"]), vocab, seed=0).iter_batches(2, 3))
    assert batch["tokens_characters"] is None  # as bilm-tf: the key is there, None
    batch = next(BidirectionalLMDataset(str(corpus["train"]), vocab, seed=0).iter_batches(2, 3))
    assert batch["tokens_characters"] is None and batch["tokens_characters_reverse"] is None
    words = {k: v for k, v in TINY.items() if k != "char_cnn"}
    ckpt = start_training(str(tmp_path / "run"), words, str(corpus["train"]),
                          str(corpus["vocab"]), n_batches=2, seed=0, progress=False)
    assert "variables/encoder.Sembedding/.ATTRIBUTES/VARIABLE_VALUE" in weights(ckpt)


def test_data_history_replays_the_stream(corpus):
    vocab = Vocabulary(str(corpus["vocab"]), validate_file=True)

    def stream(history=()):
        data = LMDataset(str(corpus["train"]), vocab, shuffle_on_load=True, seed=5)
        return data.iter_batches(4, 5, history)

    continuous = stream()
    expected = [next(continuous) for _ in range(7)]
    # the same geometry resumed at batch 3 continues the same rows
    resumed = stream([(3, 4, 5)])
    for k in range(3, 7):
        np.testing.assert_array_equal(next(resumed)["token_ids"], expected[k]["token_ids"])
    # segments of one geometry merge; a changed geometry reads on after the old one
    merged = stream([(1, 4, 5), (2, 4, 5)])
    np.testing.assert_array_equal(next(merged)["token_ids"], expected[3]["token_ids"])
    replay = stream([(2, 8, 5)])
    # by definition: the sentences 2 batches of 8 rows read, then a fresh 4-row packing
    from bilm.data.dataset import get_batch

    sentences = LMDataset(str(corpus["train"]), vocab, shuffle_on_load=True,
                          seed=5)._sentences()
    wide = get_batch(sentences, 8, 5, None)
    next(wide), next(wide)
    narrow = get_batch(sentences, 4, 5, None)
    for _ in range(3):
        np.testing.assert_array_equal(next(replay)["token_ids"], next(narrow)["token_ids"])


def test_training_directory_checks(tmp_path):
    with pytest.raises(RunError, match="training directory not found"):
        TrainingRun(tmp_path / "none").check()
    (tmp_path / "options.json").write_text("{}")
    with pytest.raises(RunError, match="no checkpoint in"):
        TrainingRun(tmp_path).check()
    (tmp_path / "checkpoint").write_text("")
    (tmp_path / "run.json").write_text('{"seed": 1, "segments": [[0, "x"]]}')
    with pytest.raises(RunError, match="damaged"):
        TrainingRun(tmp_path).read_state()
    assert os.path.exists(tmp_path / "options.json")


def test_train_rejects_a_forward_dataset_for_a_bilm(corpus, tmp_path):
    vocab = Vocabulary(str(corpus["vocab"]), validate_file=True)
    with pytest.raises(ValueError, match="BidirectionalLMDataset"):
        train({**TINY, "char_cnn": None, "n_tokens_vocab": vocab.size},
              LMDataset(str(corpus["train"]), vocab), 1, str(tmp_path), str(tmp_path),
              n_batches=1)
