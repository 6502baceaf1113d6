"""What a user sees while a command starts and runs (issue 22, item 5): training's start-up
said step by step with its times, evaluation's progress with a total and an ETA, and log
lines instead of a bar on a terminal of width 0. In-process, tiny models."""

from __future__ import annotations

import functools
import logging
import os
import re
import sys

import pytest

import bilm.evaluation
from bilm.evaluation import _held_out_lines, evaluate_run
from bilm.io import progress
from bilm.io.progress import Progress
from bilm.training.runs import start_training
from tests.conftest import TINY_ONE_FILTER_OPTIONS

TEXT = "the light was good .\nand god saw the light .\n\nthe earth was without form .\n"

TINY = {
    **TINY_ONE_FILTER_OPTIONS,
    "batch_size": 4, "unroll_steps": 1, "n_negative_samples_batch": 8, "jit_compile": False,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    (d / "text.txt").write_text(TEXT * 10)  # 40 lines, 10 of them blank
    words = sorted(set(TEXT.split()))
    (d / "vocab.txt").write_text("\n".join(["<S>", "</S>", "<UNK>", *words]) + "\n")
    return d


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """(run folder, the log records of its training)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    bilm_logger = logging.getLogger("bilm")
    level = bilm_logger.level
    bilm_logger.addHandler(handler)
    bilm_logger.setLevel(logging.INFO)
    try:
        save = tmp_path_factory.mktemp("run") / "run"
        start_training(str(save), TINY, str(corpus / "text.txt"), str(corpus / "vocab.txt"),
                       n_batches=1, seed=3, progress=False, checkpoint_minutes=None)
    finally:
        bilm_logger.removeHandler(handler)
        bilm_logger.setLevel(level)
    return save, records


def test_training_says_its_start_up_in_order_with_times(trained):
    messages = [r.getMessage() for r in trained[1]]
    steps = [r"seed 3", r"building the model \(lstm encoder, 1 replica\(s\)\)",
             r"model built in (\d+\.\d) s", r"compiling the first training step\.\.\.",
             r"first step done in (\d+\.\d) s"]
    at = []
    for pattern in steps:
        found = [i for i, m in enumerate(messages) if re.fullmatch(pattern, m)]
        assert len(found) == 1, (pattern, messages)
        at.append(found[0])
    assert at == sorted(at), messages  # said in the order it happens
    built = float(re.fullmatch(steps[2], messages[at[2]]).group(1))
    first = float(re.fullmatch(steps[4], messages[at[4]]).group(1))
    assert 0 <= built < 600 and 0 < first < 600
    # the first step is said before the progress starts, and only once
    assert sum("first step" in m for m in messages) == 1


def test_held_out_lines_is_a_newline_count(tmp_path):
    (tmp_path / "a.txt").write_text("one two\n\nthree\n")  # a blank line counts
    (tmp_path / "b.txt").write_text("four\nfive")  # the last line without its newline
    (tmp_path / "c.txt").write_text("")
    assert _held_out_lines(str(tmp_path / "*.txt")) == 5


def test_evaluate_progress_has_a_total_and_an_eta(trained, corpus, monkeypatch, caplog):
    # not a terminal (whatever pytest's stderr is), and a log line at every update
    monkeypatch.setattr(progress, "_stderr_is_terminal", lambda: False)
    monkeypatch.setattr(bilm.evaluation, "Progress", functools.partial(Progress, interval=0.0))
    caplog.set_level(logging.INFO, logger="bilm")
    ppl = evaluate_run(str(trained[0]), str(corpus / "text.txt"), batch_size=4)
    assert ppl > 1
    lines = [r.getMessage() for r in caplog.records if r.name == "bilm.io.progress"]
    assert len(lines) > 3, lines
    pattern = r"evaluate: (\d+)/40 lines, [\d.,]+ lines/s, ETA (\d\d:\d\d)"
    assert all(re.match(pattern, line) for line in lines[1:]), lines
    counts = [int(re.match(r"evaluate: (\d+)/40", line).group(1)) for line in lines]
    assert counts == sorted(counts) and 0 < counts[0] < 40
    assert lines[-1].startswith("evaluate: 40/40 lines") and lines[-1].endswith("ETA 00:00")


class _Terminal:
    """A stderr that is a terminal (isatty) and records what is written to it."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return 2

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("columns", [0, 80])
def test_a_terminal_of_width_zero_gets_log_lines(columns, monkeypatch, caplog):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(os, "get_terminal_size",
                        lambda fd=None: os.terminal_size((columns, 24)))
    caplog.set_level(logging.INFO, logger="bilm")
    bar = Progress("train", total=3, unit="batches", interval=0.0)
    if columns:  # a real width: tqdm's bar, as before (not drawn here)
        assert bar._tty
        return
    for _ in range(3):
        bar.update()
    bar.close()
    assert bar._bar is None and terminal.text == ""  # no tqdm output
    lines = [r.getMessage() for r in caplog.records if r.name == "bilm.io.progress"]
    assert [line.split(",")[0] for line in lines] == ["train: 2/3 batches",
                                                      "train: 3/3 batches"]
    assert "ETA" in lines[0]


def test_sentence_evaluation_progress_reaches_its_total(corpus, monkeypatch, caplog):
    # the sentences protocol (a Transformer): blank lines hold no sentence, the count still
    # ends at the files' lines
    from bilm.data import UnicodeCharsVocabulary
    from bilm.data.sentences import SentenceDataset
    from bilm.model.lm import LanguageModel
    from bilm.options import BiLMOptions

    monkeypatch.setattr(progress, "_stderr_is_terminal", lambda: False)
    monkeypatch.setattr(bilm.evaluation, "Progress", functools.partial(Progress, interval=0.0))
    caplog.set_level(logging.INFO, logger="bilm")
    vocab = UnicodeCharsVocabulary(str(corpus / "vocab.txt"), 10)
    options = BiLMOptions.from_dict({
        "encoder": {"type": "transformer", "dim": 8, "hidden_dim": 12, "n_layers": 1,
                    "n_heads": 2, "dropout": 0.0, "input_dropout": 0.0},
        "char_cnn": {"filters": [[1, 4]], "embedding": {"dim": 4}, "n_characters": 261,
                     "max_characters_per_token": 10, "projection_location": "after_highway",
                     "layer_norm": True},
        "n_tokens_vocab": vocab.size, "dropout": 0.0})
    data = SentenceDataset(str(corpus / "text.txt"), vocab, test=True)
    assert bilm.evaluation.heldout_perplexity(LanguageModel(options), data, batch_size=8) > 1
    lines = [r.getMessage() for r in caplog.records if r.name == "bilm.io.progress"]
    counts = [int(re.match(r"evaluate: (\d+)/40 lines", line).group(1)) for line in lines]
    assert counts[0] < 30 and counts[-2] == 30 and counts[-1] == 40, lines  # 30 sentences
    assert "ETA" in lines[-1]
