"""ELMo from token input: precompute each vocabulary token's CNN embedding once, then feed ids.

    python usage_token.py [MODEL_DIR]

Faster when the vocabulary is fixed; the outputs equal the character model's.
"""

import sys
import tempfile
from pathlib import Path

from bilm.logs import configure_logging, import_tensorflow

configure_logging()  # bilm's messages and progress; TensorFlow's chatter hidden
import_tensorflow()  # (its start-up lines too)

from bilm import BidirectionalLanguageModel, TokenBatcher, dump_token_embeddings, weight_layers  # noqa: E402

HERE = Path(__file__).resolve().parent
model_dir = Path(sys.argv[1] if len(sys.argv) > 1 else
                 HERE.parent / "shared" / "fixtures" / "bilm-tf" / "model")
options_file = model_dir / "options.json"
weight_file = model_dir / "lm_weights.hdf5"

raw_context = ["Pretrained biLMs compute representations useful for NLP tasks .",
               "They give state of the art performance for many tasks ."]
raw_question = ["What are biLMs useful for ?"]
tokenized_context = [s.split() for s in raw_context]
tokenized_question = [s.split() for s in raw_question]

with tempfile.TemporaryDirectory() as tmp:
    # 1. A vocabulary of every token we will see (with <S> and </S>).
    words = {t for s in tokenized_context + tokenized_question for t in s}
    all_tokens = ["<S>", "</S>", *sorted(words)]
    vocab_file = Path(tmp) / "vocab.txt"
    vocab_file.write_text("\n".join(all_tokens) + "\n", encoding="utf-8")

    # 2. Its context-independent token embeddings.
    token_embedding_file = Path(tmp) / "elmo_token_embeddings.hdf5"
    dump_token_embeddings(vocab_file, options_file, weight_file, token_embedding_file)

    # 3. A token-input model reading them.
    batcher = TokenBatcher(vocab_file)
    bilm = BidirectionalLanguageModel(options_file, weight_file, use_character_inputs=False,
                                      embedding_weight_file=token_embedding_file,
                                      stateful=False)
    context_ops = bilm(batcher.batch_sentences(tokenized_context))
    question_ops = bilm(batcher.batch_sentences(tokenized_question))

elmo_context_input = weight_layers("input", context_ops, l2_coef=0.0)
elmo_question_input = weight_layers("input", question_ops, l2_coef=0.0)
print("ELMo context input:", tuple(elmo_context_input["weighted_op"].shape))
print("ELMo question input:", tuple(elmo_question_input["weighted_op"].shape))
print("first vector of 'Pretrained':", elmo_context_input["weighted_op"].numpy()[0, 0, :4])
