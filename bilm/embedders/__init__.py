"""Token embedders: what turns token ids into the context-independent vectors every encoder
reads, by name.

Each embedder is one module here holding its options section and registration, an
:class:`EmbedderSpec` (:mod:`bilm.embedders.registry`); its network is a
:class:`TokenEmbedderLayer` (:mod:`bilm.nn.token_embedding`). Training, checkpoints, export,
inference, the Keras layer and the command line build it through :func:`build_token_embedder`
and never name one. Adding one is a module that calls :func:`register`; options.json's
``"token_embedder": {"type": "<name>", ...}`` then selects it.

    char_cnn  bilm-tf's (and AllenNLP's) char CNN + highway + projection: the ``char_cnn``
              section, bilm-tf's layout
    word      a word embedding table: a model with no ``char_cnn`` section (or one read
              through the token embeddings ``dump_token_embeddings`` wrote)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bilm._lazy import lazy_exports
from bilm.embedders.registry import (
    INPUTS,
    EmbedderOptions,
    EmbedderSpec,
    get_spec,
    names,
    register,
)

if TYPE_CHECKING:
    from bilm.nn.token_embedding import TokenEmbedderLayer

__all__ = ["INPUTS", "EmbedderOptions", "EmbedderSpec", "TokenEmbedderLayer",
           "build_token_embedder", "describe_embedder", "get_spec", "names", "register"]

# the network base class needs TensorFlow: imported on first use
__getattr__, _ = lazy_exports(__name__, {"TokenEmbedderLayer": "bilm.nn.token_embedding"})


def build_token_embedder(options: Any, use_character_inputs: bool | None = None,
                         n_word_vocab: int | None = None,
                         compute_dtype: str = "float32") -> TokenEmbedderLayer:
    """The token embedder ``options`` (a :class:`bilm.options.BiLMOptions`) describe.

    ``use_character_inputs=False`` reads word ids through a word embedding of
    ``n_word_vocab`` rows whatever the options' embedder (bilm-tf's token-embedding file).
    """
    name = options.embedder_type
    if use_character_inputs is False:
        name = "word"
    elif use_character_inputs and get_spec(name).input != "chars":
        raise ValueError("character inputs need a 'char_cnn' (or a character "
                         "'token_embedder') section in the options")
    return get_spec(name).network(options, n_word_vocab=n_word_vocab,
                                  compute_dtype=compute_dtype)


def describe_embedder(options: Any) -> str:
    """One line for ``bilm info``: the token embedder's type and shape."""
    return get_spec(options.embedder_type).describe_options(options.embedder_options)
