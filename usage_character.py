"""ELMo from character input: the model computes every token's representation on the fly.

    python usage_character.py [MODEL_DIR]

MODEL_DIR holds options.json and lm_weights.hdf5 (default: bilm-tf's test model in
../shared/fixtures/bilm-tf/model).
"""

import sys
from pathlib import Path

from bilm.logs import configure_logging, import_tensorflow

configure_logging()  # bilm's messages and progress; TensorFlow's chatter hidden
import_tensorflow()  # (its start-up lines too)

from bilm import Batcher, BidirectionalLanguageModel, weight_layers  # noqa: E402

HERE = Path(__file__).resolve().parent
model_dir = Path(sys.argv[1] if len(sys.argv) > 1 else
                 HERE.parent / "shared" / "fixtures" / "bilm-tf" / "model")
options_file = model_dir / "options.json"
weight_file = model_dir / "lm_weights.hdf5"

# The Batcher turns tokenized sentences into character ids (a vocabulary file is optional).
batcher = Batcher(max_token_length=50)

# stateful=False: each sentence starts from a zero LSTM state, so its vectors do not depend on
# what was embedded before (stateful=True reproduces bilm-tf's carried state exactly).
bilm = BidirectionalLanguageModel(options_file, weight_file, stateful=False)

raw_context = ["Pretrained biLMs compute representations useful for NLP tasks .",
               "They give state of the art performance for many tasks ."]
raw_question = ["What are biLMs useful for ?"]
context_ids = batcher.batch_sentences([s.split() for s in raw_context])
question_ids = batcher.batch_sentences([s.split() for s in raw_question])

context_ops = bilm(context_ids)
question_ops = bilm(question_ids)

# A learned weighted sum of the layers; the same name shares the weights between inputs.
elmo_context_input = weight_layers("input", context_ops, l2_coef=0.0)
elmo_question_input = weight_layers("input", question_ops, l2_coef=0.0)
# A second, separate mix for the output of the task model.
elmo_context_output = weight_layers("output", context_ops, l2_coef=0.0)

print("lm_embeddings:", tuple(context_ops["lm_embeddings"].shape), "(batch, layers, T, dim)")
print("ELMo context input:", tuple(elmo_context_input["weighted_op"].shape))
print("ELMo question input:", tuple(elmo_question_input["weighted_op"].shape))
print("ELMo context output:", tuple(elmo_context_output["weighted_op"].shape))
print("first vector of 'Pretrained':", elmo_context_input["weighted_op"].numpy()[0, 0, :4])
