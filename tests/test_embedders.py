"""The token-embedder registry (bilm.embedders): how options.json selects an embedder, the
checks on a registered embedder's section, and the built-ins' unchanged layout. The contract
suite (tests/test_encoder_contract.py) trains, exports and embeds with a registered one."""

from __future__ import annotations

import json

import pytest

from bilm.embedders import EmbedderSpec, get_spec, names, register
from bilm.options import BiLMOptions, OptionsError
from tests import third_embedder
from tests.conftest import TINY_OPTIONS

LSTM = TINY_OPTIONS["lstm"]


def test_the_built_ins_keep_bilm_tfs_layout():
    char = BiLMOptions.from_dict(TINY_OPTIONS)
    word = BiLMOptions.from_dict({"lstm": LSTM, "n_tokens_vocab": 10})
    assert (char.embedder_type, char.use_character_inputs, char.max_characters_per_token) == (
        "char_cnn", True, 12)
    assert char.embedder_options is char.char_cnn
    assert (word.embedder_type, word.use_character_inputs, word.max_characters_per_token) == (
        "word", False, None)
    assert word.embedder_options is None
    assert "token_embedder" not in char.to_dict() and "token_embedder" not in word.to_dict()
    assert {"char_cnn", "word", third_embedder.NAME} <= set(names())
    assert get_spec("char_cnn").describe_options(char.char_cnn) == (
        "char_cnn: filters [[1, 4], [2, 4], [3, 8]], 1 highway, embedding 4, n_characters 262")


def test_a_registered_embedder_is_selected_by_its_section_and_round_trips():
    d = {"lstm": LSTM, "token_embedder": dict(third_embedder.TINY_CHAR_BAG)}
    options = BiLMOptions.from_dict(d)
    assert options.embedder_type == third_embedder.NAME
    assert options.embedder_options == third_embedder.CharBagOptions(6, 12)
    assert (options.use_character_inputs, options.max_characters_per_token) == (True, 12)
    assert options.char_cnn is None
    assert options.to_dict() == d
    assert BiLMOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options


@pytest.mark.parametrize("section, message", [
    ({"type": "nope"}, r"option 'token_embedder.type' in f.json must be one of 'char_bag'.*"
                       r"got 'nope'"),
    ({"type": "char_cnn"}, r"'char_cnn' is bilm-tf's own embedder, chosen without this "
                           r"section"),
    ({"type": "word"}, r"'word' is bilm-tf's own embedder"),
    ({"type": "char_bag"}, r"missing option 'token_embedder.char_dim' in f.json"),
    ({"type": "char_bag", "char_dim": 4, "max_characters_per_token": 2000},
     r"option 'token_embedder.max_characters_per_token' in f.json must be an integer in "
     r"\[3, 1000\]"),
    ([1], r"option 'token_embedder' in f.json must be a JSON object"),
])
def test_a_bad_section_is_one_line_naming_the_key(section, message):
    with pytest.raises(OptionsError, match=message):
        BiLMOptions.from_dict({"lstm": LSTM, "token_embedder": section}, source="f.json")


def test_char_cnn_and_a_token_embedder_section_are_not_both_kept():
    with pytest.raises(OptionsError, match=r"have both 'char_cnn' and 'token_embedder'; keep "
                                           r"one"):
        BiLMOptions.from_dict({**TINY_OPTIONS, "token_embedder": third_embedder.TINY_CHAR_BAG})


def test_register_refuses_a_taken_name_and_an_inconsistent_spec():
    with pytest.raises(ValueError, match="'char_cnn' is already registered"):
        register(EmbedderSpec(name="char_cnn", input="chars", network=print))
    with pytest.raises(ValueError, match="input must be one of 'chars', 'words', got 'bytes'"):
        register(EmbedderSpec(name="bytes_x", input="bytes", network=print))
    with pytest.raises(ValueError, match="declares type 'char_bag' and input 'chars'"):
        register(EmbedderSpec(name="bag_2", input="chars", network=print,
                              options=third_embedder.CharBagOptions))
    with pytest.raises(KeyError, match="unknown token embedder type 'nope'; registered: "):
        get_spec("nope")
    assert "bytes_x" not in names() and "bag_2" not in names()


def test_the_network_is_built_through_the_registry():
    """BiLMEncoder builds the options' embedder; word input (a token-embedding file) replaces
    any embedder by a word table; asking a word model for characters is refused."""
    from bilm.model.encoder import BiLMEncoder
    from bilm.model.token_embedder import TokenEmbedder

    bag = BiLMOptions.from_dict({"lstm": LSTM, "token_embedder": third_embedder.TINY_CHAR_BAG})
    encoder = BiLMEncoder(bag)
    assert isinstance(encoder.token_embedder, third_embedder.CharBagEmbedder)
    assert [e.h5_key for e in encoder.token_embedder.weight_entries()] == [
        "CharBag/char_embed", "CharBag/W", "CharBag/b"]
    words = BiLMEncoder(bag, use_character_inputs=False, n_word_vocab=7)
    assert isinstance(words.token_embedder, TokenEmbedder)
    assert tuple(words.embedding.shape) == (7, LSTM["projection_dim"])
    word_model = BiLMOptions.from_dict({"lstm": LSTM, "n_tokens_vocab": 10})
    with pytest.raises(ValueError, match="character inputs need a 'char_cnn'"):
        BiLMEncoder(word_model, use_character_inputs=True)


def test_a_registered_char_embedders_model_reads_words_through_its_token_dump(tmp_path):
    """bilm-tf's token-input path (``dump_token_embeddings``, then ``use_character_inputs=
    False``) with a registered character embedder: the embedder's own datasets in the weight
    file are not "unexpected", and the word model's embeddings equal the character model's."""
    import numpy as np

    from bilm import BidirectionalLanguageModel, TokenBatcher, dump_token_embeddings
    from tests.conftest import make_model_files

    options = {"lstm": LSTM, "token_embedder": third_embedder.TINY_CHAR_BAG}
    options_file, weight_file = make_model_files(tmp_path, options, seed=1)
    sentences = [["god", "saw", "the", "light"], ["the", "earth", "."]]
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(["<S>", "</S>", "god", "saw", "the", "light", "earth",
                                     "."]) + "\n")
    tokens = tmp_path / "tokens.hdf5"
    dump_token_embeddings(vocab_file, options_file, weight_file, tokens, progress=False)
    words = BidirectionalLanguageModel(options_file, weight_file, use_character_inputs=False,
                                       embedding_weight_file=tokens, stateful=False)
    chars = BidirectionalLanguageModel(options_file, weight_file, stateful=False)
    by_word = list(words.embed_sentences(sentences, token_batcher=TokenBatcher(vocab_file)))
    by_char = list(chars.embed_sentences(sentences))
    for a, b in zip(by_word, by_char, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
