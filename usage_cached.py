"""ELMo precomputed for a whole dataset: write every sentence's biLM layers to HDF5, then read.

    python usage_cached.py [MODEL_DIR]
"""

import sys
import tempfile
from pathlib import Path

import h5py

from bilm.logs import configure_logging, import_tensorflow

configure_logging()  # bilm's messages and progress; TensorFlow's chatter hidden
import_tensorflow()  # (its start-up lines too)

from bilm import dump_bilm_embeddings  # noqa: E402

HERE = Path(__file__).resolve().parent
model_dir = Path(sys.argv[1] if len(sys.argv) > 1 else
                 HERE.parent / "shared" / "fixtures" / "bilm-tf" / "model")
options_file = model_dir / "options.json"
weight_file = model_dir / "lm_weights.hdf5"

raw_context = ["Pretrained biLMs compute representations useful for NLP tasks .",
               "They give state of the art performance for many tasks .",
               "What are biLMs useful for ?"]

with tempfile.TemporaryDirectory() as tmp:
    dataset_file = Path(tmp) / "dataset_file.txt"
    dataset_file.write_text("\n".join(raw_context) + "\n", encoding="utf-8")
    embedding_file = Path(tmp) / "elmo_embeddings.hdf5"
    # stateful=False: batched and reproducible. Leave it out for bilm-tf's exact numbers
    # (one sentence at a time, LSTM state carried from line to line).
    dump_bilm_embeddings(None, dataset_file, options_file, weight_file, embedding_file,
                         stateful=False)
    with h5py.File(embedding_file, "r") as f:
        for key in sorted(f, key=int):
            # shape (n_layers + 1, n_tokens, 2 * projection_dim)
            print(f"sentence {key}: {f[key].shape}")
        second_sentence = f["1"][...]
print("layer 2 of the 2nd sentence's first token:", second_sentence[2, 0, :4])
