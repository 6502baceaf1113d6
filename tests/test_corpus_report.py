"""``bilm corpus-report`` (bilm.data.corpus_report) on made-up text in three scripts (Czech and
Vietnamese Latin with diacritics, Cyrillic, CJK): every figure checked against a value
worked out by hand (and, where it is a rule, recomputed independently here), the JSON file
equal to the printed table, invalid UTF-8 counted without dying, mistakes one line, exit 2.
Pure Python, no TensorFlow: each test takes milliseconds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bilm.data.corpus_report import corpus_report, format_report
from bilm.data.vocabulary import EOW_CHAR, token_to_char_ids
from tests.conftest import ROOT, bilm

CJK20 = "東京都立中央図書館日本語自然言語処理研究"  # 20 characters, 60 UTF-8 bytes: cut at 50
CJK16 = CJK20[:16]  # 48 bytes: whole at 50
CYR24 = "абвгдежзийклмнопрстуфхцч"  # 24 characters, 48 bytes: whole at 50
CYR25 = CYR24 + "ш"  # 50 bytes: cut at 50

# a.txt: Czech and Vietnamese; b.txt: Cyrillic and CJK, line 3 not valid UTF-8
TRAIN_A = ["Příliš žluťoučký kůň úpěl ďábelské ódy", "Tiếng Việt có dấu", "", "kůň kůň kůň"]
TRAIN_B = ["Привет мир привет мир", f"{CJK20} {CJK16} 東京", None, f"{CYR24} {CYR25}"]
HELDOUT = ["кот Příliš 猫 мир Việt", "ódy ёж"]
TRAIN_TOKENS = " ".join(line for line in TRAIN_A + TRAIN_B if line).split()


def _write(path: Path, lines: list[str | None]) -> Path:
    """One line each; None: a line that is not UTF-8 (a Latin-1 byte, then text)."""
    path.write_bytes(b"".join(b"\xff\xfe broken\n" if line is None else
                              line.encode("utf-8") + b"\n" for line in lines))
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    (tmp_path / "train").mkdir()
    _write(tmp_path / "train" / "a.txt", TRAIN_A)
    _write(tmp_path / "train" / "b.txt", TRAIN_B)
    _write(tmp_path / "heldout.txt", HELDOUT)
    return tmp_path


def _cli(*args: object) -> tuple[int, str, str]:
    """``bilm -q ARGS`` in this process: (exit code, stdout, stderr)."""
    r = bilm(*args)
    return r.code, r.out, r.err


def _rows(table: str) -> dict[str, list[str]]:
    """The printed table: label -> its cells (columns are 2+ spaces apart)."""
    rows = {}
    for line in table.splitlines():
        cells = re.split(r"\s{2,}", line.rstrip())
        if len(cells) > 1:
            rows[cells[0]] = cells[1:]
    return rows


def test_the_three_scripts_by_hand(corpus):
    r = corpus_report(str(corpus / "train" / "*.txt"), str(corpus / "heldout.txt"))
    t = r.train
    assert (t.files, t.lines, t.sentences, t.blank_lines, t.invalid_lines) == (2, 8, 6, 1, 1)
    assert t.invalid_examples == [f"{corpus / 'train' / 'b.txt'}:3"]
    assert (t.tokens, t.types) == (22, 18) == (len(TRAIN_TOKENS), len(set(TRAIN_TOKENS)))
    # sentence lengths 6 4 3 | 4 3 2: sorted 2 3 3 4 4 6; nearest rank ceil(p * 6 / 100)
    assert t.sentence_length == {"min": 2, "median": 3, "p95": 6, "p99": 6, "max": 6}
    h = r.heldout
    assert (h.lines, h.sentences, h.tokens, h.types, h.invalid_lines) == (2, 2, 7, 7, 0)
    assert h.sentence_length == {"min": 2, "median": 2, "p95": 5, "p99": 5, "max": 5}
    # 50 keeps 48 bytes: CJK20 (60 bytes) and CYR25 (50) are cut, CJK16 and CYR24 (48) not
    assert (r.kept_bytes, r.longest_token_bytes) == (48, 60)
    assert (r.tokens_cut, r.types_cut) == (2, 2)
    assert r.tokens_cut_share == 2 / 22 and r.types_cut_share == 2 / 18
    # held-out characters the training text lacks: ё and 猫, once each, by code point
    assert r.unseen_characters == ["ё", "猫"] and r.unseen_character_occurrences == 2
    assert r.unseen_characters == sorted(set("".join(HELDOUT)) - set("".join(TRAIN_TOKENS))
                                         - {" "})
    assert r.characters == len(set("".join(TRAIN_TOKENS)))
    # bilm vocab's vocabulary: 18 types + 3 specials; held-out OOV: кот, 猫, ёж
    assert (r.vocab_size, r.train_oov_rate, r.heldout_oov_rate) == (21, 0.0, 3 / 7)
    assert r.n_train_tokens == 22  # the invalid line's tokens are not read
    # 99.9% of 22 tokens is all 22: the longest, 60 bytes, + 2
    assert r.suggested_max_characters_per_token == 62
    # counts kůň 4, мир 2, the rest 1: only min count 1 covers 98%
    assert (r.suggested_min_count, r.suggested_vocab_size, r.suggested_vocab_coverage) == (
        1, 21, 1.0)
    assert r.suggested_heldout_oov_rate == 3 / 7
    assert len(r.notes) == 2 and "to 62" in r.notes[0] and "b.txt:3" in r.notes[1]


def test_the_cut_is_the_char_cnns(corpus):
    """'Cut' is what token_to_char_ids does to a token: its bytes beyond N - 2 are lost."""
    for n in (50, 52, 62):
        r = corpus_report(str(corpus / "train" / "*.txt"), max_characters_per_token=n)
        lost = [w for w in TRAIN_TOKENS
                if list(token_to_char_ids(w, n)).index(EOW_CHAR) - 1 < len(w.encode())]
        assert r.tokens_cut == len(lost), n
        assert r.tokens_cut_share == len(lost) / len(TRAIN_TOKENS)
    assert lost == [] and len(r.notes) == 1 and "UTF-8" in r.notes[0]  # no note on the cut
    # 16 CJK or 24 Cyrillic characters fill the 48 bytes that 50 keeps
    assert len(token_to_char_ids(CJK20, 50)) == 50
    assert bytes(map(int, token_to_char_ids(CJK20, 50)[1:49])).decode() == CJK16
    assert bytes(map(int, token_to_char_ids(CYR25, 50)[1:49])).decode() == CYR24


def test_the_suggestions_follow_their_rules(tmp_path):
    # 99.9%: one long token in 1,000 may be cut (50 stays), two may not
    words = " ".join(["ó"] * 999)
    one = _write(tmp_path / "one.txt", [words, CJK20])
    two = _write(tmp_path / "two.txt", [" ".join(["ó"] * 998), CJK20, CJK20])
    assert corpus_report(str(one)).suggested_max_characters_per_token == 50
    assert corpus_report(str(two)).suggested_max_characters_per_token == 62
    # min count: counts 60, 30, 8, 1, 1 of 100 tokens; >= 8 covers 98 (98%), >= 30 only 90
    text = ["мир " * 60, "Việt " * 30, "東京 " * 8, "ёж", "kůň"]
    train = _write(tmp_path / "zipf.txt", text)
    held = _write(tmp_path / "held.txt", ["ёж kůň 猫 мир"])
    r = corpus_report(str(train), str(held))
    assert (r.suggested_min_count, r.suggested_vocab_size) == (8, 6)
    assert r.suggested_vocab_coverage == 0.98
    assert r.heldout_oov_rate == 1 / 4  # 猫
    assert r.suggested_heldout_oov_rate == 3 / 4  # ёж, kůň (seen once), 猫
    # lengths 1 1 8 30 60: the median is the 3rd, p95 and p99 the 5th
    assert r.train.sentence_length == {"min": 1, "median": 8, "p95": 60, "p99": 60, "max": 60}


def test_json_equals_the_printed_table(corpus):
    out = corpus / "report.json"
    vocab = _write(corpus / "vocab.txt", ["<S>", "</S>", "<UNK>", "мир", "Příliš", "кот"])
    code, printed, err = _cli("corpus-report", corpus / "train" / "*.txt", "--heldout",
                              corpus / "heldout.txt", "--vocab", vocab, "--json", out)
    assert code == 0, err
    data = json.loads(out.read_text(encoding="utf-8"))
    rows = _rows(printed)
    assert rows[""] == ["training", "held-out"]
    for key in ("files", "lines", "tokens", "types"):
        assert rows[key] == [str(data["train"][key]), str(data["heldout"][key])]
    assert rows["invalid UTF-8 lines (skipped)"] == ["1", "0"]
    for key, value in data["train"]["sentence_length"].items():
        assert rows[f"sentence length, {key} (tokens)"] == [
            str(value), str(data["heldout"]["sentence_length"][key])]
    assert rows["tokens cut (over 48 bytes)"] == ["2 (9.091%)"]
    assert f"{100 * data['tokens_cut_share']:.3f}%" == "9.091%"
    assert rows["types cut (over 48 bytes)"] == [f"2 ({100 * 2 / 18:.3f}%)"]
    # the given vocabulary: training tokens outside it 22 - 2 мир - 1 Příliš; held-out 4 of 7
    assert data["vocab"] == str(vocab) and data["vocab_size"] == 6
    assert data["train_oov_rate"] == 19 / 22 and data["heldout_oov_rate"] == 4 / 7
    assert rows["OOV rate, training"] == [f"{100 * 19 / 22:.3f}%"]
    assert rows["OOV rate, held-out"] == ["57.143%"]
    assert rows["vocabulary"] == [f"{vocab} (6 entries)"]
    assert rows["n_train_tokens"] == ["22"] and data["n_train_tokens"] == 22
    assert rows["suggested max_characters_per_token"][0].startswith("62 ")
    assert rows["suggested vocabulary --min-count"][0].startswith("1 (21 entries, 100.000%")
    assert rows["held-out characters unseen in training"] == [
        "2 (2 occurrences): ё (U+0451), 猫 (U+732B)"]
    assert data["unseen_characters"] == ["ё", "猫"]
    assert data["train"]["invalid_examples"] == [f"{corpus / 'train' / 'b.txt'}:3"]
    assert printed.rstrip("\n") == format_report(corpus_report(
        str(corpus / "train" / "*.txt"), str(corpus / "heldout.txt"), vocab))
    # again: refused without --overwrite (the file kept), replaced with it
    before = out.read_bytes()
    code, _, err = _cli("corpus-report", corpus / "train" / "*.txt", "--json", out)
    assert code == 2 and err.count("\n") == 1 and "--overwrite" in err
    assert out.read_bytes() == before
    assert _cli("corpus-report", corpus / "train" / "*.txt", "--json", out, "--overwrite")[0] == 0
    assert json.loads(out.read_text(encoding="utf-8"))["heldout"] is None


def test_without_heldout_text(corpus):
    code, printed, err = _cli("corpus-report", corpus / "train" / "*.txt",
                              "--max-characters-per-token", "62")
    assert code == 0, err
    rows = _rows(printed)
    assert rows[""] == ["training"] and rows["tokens"] == ["22"]
    assert rows["tokens cut (over 60 bytes)"] == ["0 (0.000%)"]
    assert "OOV rate, held-out" not in rows and "held-out characters unseen in training" \
        not in rows
    assert err == ""


def test_invalid_utf8_is_counted_not_fatal(tmp_path):
    lines = [None, "Příliš ódy", None, "", None, None, None, None, "мир 東京"]
    r = corpus_report(str(_write(tmp_path / "bad.txt", lines)))
    assert (r.train.lines, r.train.invalid_lines, r.train.sentences, r.train.blank_lines) == (
        9, 6, 2, 1)
    assert r.train.invalid_examples == [f"{tmp_path / 'bad.txt'}:{n}" for n in (1, 3, 5, 6, 7)]
    assert r.n_train_tokens == 4


@pytest.mark.parametrize("case", ["no files", "no heldout files", "blank", "all invalid",
                                  "heldout blank", "no vocab", "bad vocab", "small N"])
def test_mistakes_are_one_line_exit_2(corpus, case):
    train, held = corpus / "train" / "*.txt", corpus / "heldout.txt"
    args = {
        "no files": [corpus / "nothing*.txt"],
        "no heldout files": [train, "--heldout", corpus / "nothing*.txt"],
        "blank": [_write(corpus / "blank.txt", ["", "  ", "\t"])],
        "all invalid": [_write(corpus / "invalid.txt", [None, None])],
        "heldout blank": [train, "--heldout", _write(corpus / "blank.txt", [""])],
        "no vocab": [train, "--heldout", held, "--vocab", corpus / "missing.txt"],
        "bad vocab": [train, "--vocab", _write(corpus / "v.txt", ["<S>", "", "x"])],
        "small N": [train, "--max-characters-per-token", "2"],
    }[case]
    words = {"no files": "no training files match", "no heldout files": "no held-out files",
             "blank": "hold no tokens", "all invalid": "2 lines are not valid UTF-8",
             "heldout blank": "held-out files hold no tokens",
             "no vocab": "vocabulary file not found", "bad vocab": "blank line",
             "small N": "must be >= 3"}[case]
    code, out, err = _cli("corpus-report", *args)
    assert code == 2 and err.count("\n") == 1 and "error: " in err and words in err, err
    assert out == ""


def test_no_tensorflow(corpus):
    """The command imports no TensorFlow (it answers in a fraction of a second)."""
    code = ("import sys; from bilm.cli import main; "
            f"rc = main(['-q', 'corpus-report', {str(corpus / 'heldout.txt')!r}]); "
            "assert rc == 0; assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "n_train_tokens" in r.stdout
