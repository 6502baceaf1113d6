import numpy as np
import pytest

from bilm.data import Batcher, TokenBatcher, UnicodeCharsVocabulary, Vocabulary, VocabularyError
from bilm.data.vocabulary import token_to_char_ids


def write_vocab(tmp_path, text: bytes | str, name="vocab.txt"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_char_ids_by_hand():
    # 'ab' -> begin-word 258, 97, 98, end-word 259, then padding 260
    np.testing.assert_array_equal(token_to_char_ids("ab", 7), [258, 97, 98, 259, 260, 260, 260])
    np.testing.assert_array_equal(token_to_char_ids("<S>", 5), [258, 256, 259, 260, 260])
    np.testing.assert_array_equal(token_to_char_ids("</S>", 5), [258, 257, 259, 260, 260])
    # non-ASCII: UTF-8 bytes of 'é' are 0xC3 0xA9
    np.testing.assert_array_equal(token_to_char_ids("é", 6), [258, 195, 169, 259, 260, 260])
    # a long token is cut to max - 2 bytes
    long = token_to_char_ids("x" * 200, 50)
    assert long[0] == 258 and long[49] == 259 and (long[1:49] == ord("x")).all()


def test_batcher_shapes_and_shift_with_and_without_vocab(tmp_path):
    vocab = write_vocab(tmp_path, "<S>\n</S>\n<UNK>\nthe\n")
    sentences = [["the", "cat"], ["a"], ["Привет", "x" * 200]]
    with_vocab = Batcher(vocab, 50).batch_sentences(sentences)
    without = Batcher(None, 50).batch_sentences(sentences)
    np.testing.assert_array_equal(with_vocab, without)
    assert with_vocab.shape == (3, 4, 50)
    assert with_vocab[0, 0, 1] == 256 + 1 and with_vocab[0, 3, 1] == 257 + 1
    assert with_vocab[1, 2, 1] == 257 + 1  # </S> right after 'a'
    assert (with_vocab[1, 3] == 0).all()  # padding token: all zeros
    assert with_vocab[0, 1, 1] == ord("t") + 1


def test_batcher_rejects_empty_and_string_sentences():
    with pytest.raises(ValueError, match="empty list"):
        Batcher(None, 50).batch_sentences([])
    with pytest.raises(TypeError, match="list of tokens"):
        Batcher(None, 50).batch_sentences(["the cat"])


def test_token_batcher(tmp_path):
    vocab = write_vocab(tmp_path, "</S>\n<S>\n<UNK>\nthe\ncat\n")
    ids = TokenBatcher(vocab).batch_sentences([["the", "cat", "dog"], ["cat"]])
    # ids + 1: <S>=2, the=4, cat=5, <UNK>=3, </S>=1, padding 0
    np.testing.assert_array_equal(ids, [[2, 4, 5, 3, 1], [2, 5, 1, 0, 0]])


def test_token_batcher_without_unk(tmp_path):
    vocab = write_vocab(tmp_path, "<S>\n</S>\nthe\n")
    batcher = TokenBatcher(vocab)
    np.testing.assert_array_equal(batcher.batch_sentences([["the"]]), [[1, 3, 2]])
    with pytest.raises(KeyError, match="no <UNK>"):
        batcher.batch_sentences([["dog"]])


def test_vocabulary_ids_and_specials_anywhere(tmp_path):
    vocab = Vocabulary(write_vocab(tmp_path, "a\nb\n<S>\n</S>\n<UNK>\n"), validate_file=True)
    assert (vocab.bos, vocab.eos, vocab.unk, vocab.size) == (2, 3, 4, 5)
    np.testing.assert_array_equal(vocab.encode("a zz b"), [2, 0, 4, 1, 3])
    np.testing.assert_array_equal(vocab.encode("a", reverse=True), [3, 0, 2])
    chars = UnicodeCharsVocabulary(write_vocab(tmp_path, "<S>\n</S>\nab\n", "v2"), 6)
    np.testing.assert_array_equal(chars.encode_chars("ab"), [
        [258, 256, 259, 260, 260, 260], [258, 97, 98, 259, 260, 260],
        [258, 257, 259, 260, 260, 260]])
    # reverse: </S> first, <S> last, the tokens in the order given (bilm-tf; the backward
    # stream passes them already reversed) -- the same rule as encode(reverse=True)
    bos, eos, ab, b = chars.encode_chars("<S> </S> ab b")[1:-1]
    np.testing.assert_array_equal(chars.encode_chars("ab b", reverse=True), [eos, ab, b, bos])


@pytest.mark.parametrize("content, message", [
    ("<S>\n</S>\nthe\nthe\n", "vocab.txt:4: duplicate token 'the' (first on line 3)"),
    ("<S>\n\n</S>\n", "vocab.txt:2: blank line"),
    (b"<S>\n</S>\n\xff\xfe\n", "vocab.txt:3: invalid UTF-8"),
])
def test_bad_vocabulary_files(tmp_path, content, message):
    with pytest.raises(VocabularyError) as err:
        Vocabulary(write_vocab(tmp_path, content))
    assert message in str(err.value)


def test_missing_specials(tmp_path):
    path = write_vocab(tmp_path, "<S>\nthe\n")
    with pytest.raises(VocabularyError, match="lacks </S>, <UNK>"):
        Vocabulary(path, validate_file=True)
    with pytest.raises(VocabularyError, match="lacks </S>"):
        TokenBatcher(path)
    with pytest.raises(VocabularyError, match="not found"):
        Vocabulary(tmp_path / "missing.txt")
