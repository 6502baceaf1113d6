"""A reference TF Hub v1 ELMo module, built the way DeepPavlov built its ELMo modules
(``deeppavlov/models/elmo/elmo2tfhub.py``, DeepPavlov 0.1.0 .. 0.11, TF 1.15 + tensorflow_hub
0.7) from bilm-tf's own TF1 graph, with small random weights -- plus the outputs that graph
computes -- so that an importer reading only the module's ``variables/`` can be tested.

Runs with bilm-tf's folder FIRST on ``PYTHONPATH`` (like ``bilmtf_side.py``) and tensorflow_hub
0.15.0 (the last release with the TF1 ``hub.create_module_spec`` / ``hub.Module`` API) in its
own ``--target`` folder after it, never in our environment::

    bash benchmarks/setup_bilmtf_env.sh        # bilm-tf into benchmarks/.envs/bilmtf
    .venv/bin/python -m pip install --no-deps --target benchmarks/.envs/tfhub \
        tensorflow_hub==0.15.0
    PYTHONPATH=benchmarks/.envs/bilmtf:benchmarks/.envs/tfhub TF_USE_LEGACY_KERAS=1 \
        .venv/bin/python benchmarks/tfhub_side.py make-reference tests/data/tfhub

``make-reference OUT_DIR`` writes ``OUT_DIR/options.json`` + ``weights.hdf5`` (a random bilm-tf
model in bilm-tf's HDF5 layout), ``OUT_DIR/module/`` (the hub module), ``sentences.json`` and
``expected.npz`` (the module's outputs for the ``tokens`` and ``default`` signatures, and
bilm-tf's own ``lm_embeddings`` for the same sentences), and prints a JSON summary.

Where this differs from DeepPavlov's builder (everything else is mirrored line by line):
``_MAX_BATCH_SIZE`` is 16, not 1024 (the LSTM state variables are (max_batch_size, dim) each and
are saved in the module; 1024 would make the module too big for a test fixture); bilm-tf's
``BidirectionalLanguageModel`` is the original (it takes the options *file*; DeepPavlov's copy
of it takes the dict, otherwise identical); the aggregation variables are set to non-uniform
"trained" values before export (DeepPavlov's ``export2hub`` initialises a fresh module and
exports it, so its modules hold the initial values: ELMo_W zeros, ELMo_gamma one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TFHUB_DIR = HERE / ".envs" / "tfhub"

OPTIONS = {
    "bidirectional": True,
    "char_cnn": {
        "activation": "relu",
        "embedding": {"dim": 4},
        "filters": [[1, 4], [2, 8], [3, 8]],
        "max_characters_per_token": 50,
        "n_characters": 262,
        "n_highway": 1,
    },
    "dropout": 0.1,
    "lstm": {
        "cell_clip": 3,
        "dim": 16,
        "n_layers": 2,
        "proj_clip": 3,
        "projection_dim": 8,
        "use_skip_connections": True,
    },
    "all_clip_norm_val": 10.0,
    "n_epochs": 1,
    "n_train_tokens": 1000,
    "batch_size": 4,
    "n_tokens_vocab": 10,
    "unroll_steps": 5,
    "n_negative_samples_batch": 8,
}

# "trained" values of the output mix (DeepPavlov's exports hold their initial zeros and one)
AGG_W = [0.3, -0.2, 0.5]
AGG_GAMMA = [1.7]

LONG = "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft"
SENTENCES = [
    ["Hello"],
    ["The", "cat", "sat", "on", "the", "mat", "."],
    ["Привет", ",", "мир", "!"],
    ["naïve", "café", "Zürich", "日本語", "😀"],
    [LONG, "is", "a", "very", "long", "word", "indeed", "."],
]

_MAX_BATCH_SIZE = 16  # DeepPavlov: 1024


def import_tf_hub_bilm():
    """tensorflow_hub 0.15 (against the real ``tensorflow``), then bilm-tf (against
    ``tensorflow.compat.v1``, as ``bilmtf_side.import_bilm_tf`` does)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow  # noqa: F401

    # tensorflow_hub 0.15 imports tf.compat.v1.estimator at import time, gone since TF 2.16;
    # only its estimator helpers need it, and nothing here uses them
    stub = types.ModuleType("tensorflow_hub.estimator")
    stub.LatestModuleExporter = stub.register_module_for_export = None
    sys.modules["tensorflow_hub.estimator"] = stub
    if str(TFHUB_DIR) not in sys.path:
        sys.path.append(str(TFHUB_DIR))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tensorflow_hub as hub
    if not hasattr(hub, "create_module_spec"):
        raise SystemExit(f"{hub.__file__} ({hub.__version__}) has no TF1 module API; "
                         "install tensorflow_hub==0.15.0 into benchmarks/.envs/tfhub")
    sys.path.insert(0, str(HERE))
    from bilmtf_side import import_bilm_tf

    tf1, bilm = import_bilm_tf()
    return tf1, hub, bilm


# ------------------------------------------------------------------ the random bilm-tf model

def write_model(out: Path, seed: int = 0) -> dict:
    """options.json + weights.hdf5 in bilm-tf's layout (``dump_weights`` / ``_pretrained_
    initializer``), seeded random values."""
    import h5py

    rng = np.random.default_rng(seed)
    o = OPTIONS
    cc, ls = o["char_cnn"], o["lstm"]
    d_char = cc["embedding"]["dim"]
    n_filters = sum(n for _, n in cc["filters"])
    proj, dim = ls["projection_dim"], ls["dim"]

    def r(*shape, scale=0.5):
        return (rng.standard_normal(shape) * scale).astype("float32")

    w = {"char_embed": r(cc["n_characters"] - 1, d_char, scale=1.0)}  # no padding row
    for i, (width, count) in enumerate(cc["filters"]):
        w[f"CNN/W_cnn_{i}"] = r(1, width, d_char, count)
        w[f"CNN/b_cnn_{i}"] = r(count, scale=0.1)
    for k in range(cc["n_highway"]):
        for name, shape in [("W_carry", (n_filters, n_filters)), ("b_carry", (n_filters,)),
                            ("W_transform", (n_filters, n_filters)),
                            ("b_transform", (n_filters,))]:
            w[f"CNN_high_{k}/{name}"] = r(*shape, scale=0.3)
    w["CNN_proj/W_proj"] = r(n_filters, proj, scale=0.4)
    w["CNN_proj/b_proj"] = r(proj, scale=0.1)
    for d in range(2):
        for k in range(ls["n_layers"]):
            root = f"RNN_{d}/RNN/MultiRNNCell/Cell{k}/LSTMCell"
            w[f"{root}/W_0"] = r(proj + proj, 4 * dim, scale=0.6)
            w[f"{root}/B"] = r(4 * dim, scale=0.5)  # non-zero biases
            w[f"{root}/W_P_0"] = r(dim, proj, scale=1.2)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "options.json", "w") as f:
        json.dump(o, f, indent=1)
    with h5py.File(out / "weights.hdf5", "w", libver="latest") as f:
        for k, v in w.items():
            f.create_dataset(k, data=v)
    return {k: list(v.shape) for k, v in w.items()}


# -------------------------------------------------- DeepPavlov's weight_layers and module_fn

def weight_layers(tf, name, bilm_ops, l2_coef=None, use_top_only=False, do_layer_norm=False,
                  reuse=False):
    """``deeppavlov/models/elmo/elmo_model.py: weight_layers`` (bilm-tf's ``weight_layers`` plus
    ``reuse``, ``mean_op``, ``word_emb`` and ``lstm_outputs1/2``), mirrored."""

    def _l2_regularizer(weights):
        if l2_coef is not None:
            return l2_coef * tf.reduce_sum(tf.square(weights))
        else:
            return 0.0

    lm_embeddings = bilm_ops["lm_embeddings"]
    mask = bilm_ops["mask"]

    n_lm_layers = int(lm_embeddings.get_shape()[1])
    lm_dim = int(lm_embeddings.get_shape()[3])

    with tf.control_dependencies([lm_embeddings, mask]):
        mask_float = tf.cast(mask, "float32")
        broadcast_mask = tf.expand_dims(mask_float, axis=-1)

        def _do_ln(x):
            x_masked = x * broadcast_mask
            N = tf.reduce_sum(mask_float) * lm_dim
            mean = tf.reduce_sum(x_masked) / N
            variance = tf.reduce_sum(((x_masked - mean) * broadcast_mask) ** 2) / N
            return tf.nn.batch_normalization(x, mean, variance, None, None, 1E-12)

        if use_top_only:
            layers = tf.split(lm_embeddings, n_lm_layers, axis=1)
            sum_pieces = tf.squeeze(layers[-1], squeeze_dims=1)
            reg = 0.0
        else:
            with tf.variable_scope("aggregation", reuse=reuse):
                W = tf.get_variable(
                    f"{name}_ELMo_W",
                    shape=(n_lm_layers,),
                    initializer=tf.zeros_initializer,
                    regularizer=_l2_regularizer,
                    trainable=True,
                )

            normed_weights = tf.split(tf.nn.softmax(W + 1.0 / n_lm_layers), n_lm_layers)
            layers = tf.split(lm_embeddings, n_lm_layers, axis=1)

            pieces = []
            for w, t in zip(normed_weights, layers, strict=True):
                if do_layer_norm:
                    pieces.append(w * _do_ln(tf.squeeze(t, squeeze_dims=1)))
                else:
                    pieces.append(w * tf.squeeze(t, squeeze_dims=1))
            sum_pieces = tf.add_n(pieces)

            reg = [r for r in tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)
                   if r.name.find(f"{name}_ELMo_W/") >= 0]
            if len(reg) != 1:
                raise ValueError

        with tf.variable_scope("aggregation", reuse=reuse):
            gamma = tf.get_variable(
                f"{name}_ELMo_gamma",
                shape=(1,),
                initializer=tf.ones_initializer,
                regularizer=None,
                trainable=True,
            )

        weighted_lm_layers = sum_pieces * gamma
        weighted_lm_layers_masked = sum_pieces * broadcast_mask

        weighted_lm_layers_sum = tf.reduce_sum(weighted_lm_layers_masked, 1)

        mask_sum = tf.reduce_sum(mask_float, 1)
        mask_sum = tf.maximum(mask_sum, [1])

        weighted_lm_layers_mean = weighted_lm_layers_sum / tf.expand_dims(mask_sum, -1)

        word_emb_2n = tf.squeeze(layers[0], [1])
        word_emb_1n = tf.slice(word_emb_2n, [0, 0, 0], [-1, -1, lm_dim // 2])
        lstm_outputs1 = tf.squeeze(layers[1], [1])
        lstm_outputs2 = tf.squeeze(layers[2], [1])

        ret = {"weighted_op": weighted_lm_layers,
               "mean_op": weighted_lm_layers_mean,
               "regularization_op": reg,
               "word_emb": word_emb_1n,
               "lstm_outputs1": lstm_outputs1,
               "lstm_outputs2": lstm_outputs2, }

    return ret


def make_module_spec(tf, hub, bilm, options_file, weight_file):
    """``deeppavlov/models/elmo/elmo2tfhub.py: make_module_spec``, mirrored (see the module
    docstring for the differences)."""

    def module_fn():
        _bos_id = 256
        _eos_id = 257
        _bow_id = 258
        _eow_id = 259
        _pad_id = 260

        _max_word_length = 50
        _parallel_iterations = 10
        _max_batch_size = _MAX_BATCH_SIZE

        id_dtype = tf.int32
        id_nptype = np.int32
        max_word_length = tf.constant(_max_word_length, dtype=id_dtype, name="max_word_length")

        version = tf.constant("from_dp_1", dtype=tf.string, name="version")

        def _make_bos_eos(c):
            r = np.zeros([_max_word_length], dtype=id_nptype)
            r[:] = _pad_id
            r[0] = _bow_id
            r[1] = c
            r[2] = _eow_id
            return tf.constant(r, dtype=id_dtype)

        bos_ids = _make_bos_eos(_bos_id)
        eos_ids = _make_bos_eos(_eos_id)

        def token2ids(token):
            with tf.name_scope("token2ids_preprocessor"):
                char_ids = tf.decode_raw(token, tf.uint8, name="decode_raw2get_char_ids")
                char_ids = tf.cast(char_ids, tf.int32, name="cast2int_token")
                char_ids = tf.strided_slice(char_ids, [0], [max_word_length - 2],
                                            [1], name="slice2resized_token")
                ids_num = tf.shape(char_ids)[0]
                fill_ids_num = (_max_word_length - 2) - ids_num
                pads = tf.fill([fill_ids_num], _pad_id)
                bow_token_eow_pads = tf.concat([[_bow_id], char_ids, [_eow_id], pads],
                                               0, name="concat2bow_token_eow_pads")
                return bow_token_eow_pads

        def sentence_tagging_and_padding(sen_dim):
            with tf.name_scope("sentence_tagging_and_padding_preprocessor"):
                sen = sen_dim[0]
                dim = sen_dim[1]
                extra_dim = tf.shape(sen)[0] - dim
                sen = tf.slice(sen, [0, 0], [dim, max_word_length], name="slice2sen")

                bos_sen_eos = tf.concat([[bos_ids], sen, [eos_ids]], 0, name="concat2bos_sen_eos")
                bos_sen_eos_plus_one = bos_sen_eos + 1
                bos_sen_eos_pads = tf.pad(bos_sen_eos_plus_one, [[0, extra_dim], [0, 0]],
                                          "CONSTANT", name="pad2bos_sen_eos_pads")
                return bos_sen_eos_pads

        tokens = tf.placeholder(shape=(None, None), dtype=tf.string, name="ph2tokens")
        sequence_len = tf.placeholder(shape=(None,), dtype=tf.int32, name="ph2sequence_len")

        tok_shape = tf.shape(tokens)
        line_tokens = tf.reshape(tokens, shape=[-1], name="reshape2line_tokens")

        with tf.device("/cpu:0"):
            tok_ids = tf.map_fn(
                token2ids,
                line_tokens,
                dtype=tf.int32, back_prop=False, parallel_iterations=_parallel_iterations,
                name="map_fn2get_tok_ids")

        tok_ids = tf.reshape(tok_ids, [tok_shape[0], tok_shape[1], -1], name="reshape2tok_ids")
        with tf.device("/cpu:0"):
            sen_ids = tf.map_fn(
                sentence_tagging_and_padding,
                (tok_ids, sequence_len),
                dtype=tf.int32, back_prop=False, parallel_iterations=_parallel_iterations,
                name="map_fn2get_sen_ids")

        lm = bilm.BidirectionalLanguageModel(str(options_file), str(weight_file),
                                             max_batch_size=_max_batch_size)

        embeddings_op = lm(sen_ids)

        elmo_output = weight_layers(tf, "elmo_output", embeddings_op, l2_coef=0.0)

        weighted_op = elmo_output["weighted_op"]
        mean_op = elmo_output["mean_op"]
        word_emb = elmo_output["word_emb"]
        lstm_outputs1 = elmo_output["lstm_outputs1"]
        lstm_outputs2 = elmo_output["lstm_outputs2"]

        hub.add_signature("tokens", {"tokens": tokens, "sequence_len": sequence_len},
                          {"elmo": weighted_op,
                           "default": mean_op,
                           "word_emb": word_emb,
                           "lstm_outputs1": lstm_outputs1,
                           "lstm_outputs2": lstm_outputs2,
                           "version": version})

        # ---- next signature
        def_strings = tf.placeholder(shape=(None), dtype=tf.string)
        def_tokens_sparse = tf.string_split(def_strings)
        def_tokens_dense = tf.sparse_to_dense(sparse_indices=def_tokens_sparse.indices,
                                              output_shape=def_tokens_sparse.dense_shape,
                                              sparse_values=def_tokens_sparse.values,
                                              default_value="")
        def_mask = tf.not_equal(def_tokens_dense, "")
        def_int_mask = tf.cast(def_mask, dtype=tf.int32)
        def_sequence_len = tf.reduce_sum(def_int_mask, axis=-1)

        def_tok_shape = tf.shape(def_tokens_dense)
        def_line_tokens = tf.reshape(def_tokens_dense, shape=[-1], name="reshape2line_tokens")

        with tf.device("/cpu:0"):
            def_tok_ids = tf.map_fn(
                token2ids,
                def_line_tokens,
                dtype=tf.int32, back_prop=False, parallel_iterations=_parallel_iterations,
                name="map_fn2get_tok_ids")

        def_tok_ids = tf.reshape(def_tok_ids, [def_tok_shape[0], def_tok_shape[1], -1],
                                 name="reshape2tok_ids")
        with tf.device("/cpu:0"):
            def_sen_ids = tf.map_fn(
                sentence_tagging_and_padding,
                (def_tok_ids, def_sequence_len),
                dtype=tf.int32, back_prop=False, parallel_iterations=_parallel_iterations,
                name="map_fn2get_sen_ids")

        def_embeddings_op = lm(def_sen_ids)

        def_elmo_output = weight_layers(tf, "elmo_output", def_embeddings_op, l2_coef=0.0,
                                        reuse=True)

        hub.add_signature("default", {"strings": def_strings},
                          {"elmo": def_elmo_output["weighted_op"],
                           "default": def_elmo_output["mean_op"],
                           "word_emb": def_elmo_output["word_emb"],
                           "lstm_outputs1": def_elmo_output["lstm_outputs1"],
                           "lstm_outputs2": def_elmo_output["lstm_outputs2"],
                           "version": version})

    return hub.create_module_spec(module_fn)


def export2hub(tf, hub, bilm, options_file, weight_file, hub_dir: Path) -> dict:
    """DeepPavlov's ``export2hub`` plus setting the output mix to "trained" values."""
    spec = make_module_spec(tf, hub, bilm, options_file, weight_file)
    with tf.Graph().as_default():
        module = hub.Module(spec)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            vm = module.variable_map
            sess.run([tf.assign(vm["aggregation/elmo_output_ELMo_W"], AGG_W),
                      tf.assign(vm["aggregation/elmo_output_ELMo_gamma"], AGG_GAMMA)])
            module.export(str(hub_dir), sess)
            return {"signatures": {s: {"inputs": sorted(module.get_input_info_dict(s)),
                                       "outputs": sorted(module.get_output_info_dict(s))}
                                   for s in module.get_signature_names()},
                    "variable_map": sorted(vm)}


# ------------------------------------------------------------------------ running the module

OUTPUTS = ["word_emb", "lstm_outputs1", "lstm_outputs2", "elmo", "default"]


def padded_tokens(sentences):
    n = max(len(s) for s in sentences)
    return ([s + [""] * (n - len(s)) for s in sentences],
            np.array([len(s) for s in sentences], dtype=np.int32))


def run_module(tf, hub, hub_dir: Path, sentences) -> dict:
    """The exported module, loaded from disk by ``hub.Module``: the ``tokens`` signature twice
    in one fresh session (is it stateful?), then ``default`` in another fresh session."""
    toks, lens = padded_tokens(sentences)
    res = {}
    with tf.Graph().as_default():
        module = hub.Module(str(hub_dir))
        tok_ph = tf.placeholder(tf.string, (None, None))
        len_ph = tf.placeholder(tf.int32, (None,))
        out = module({"tokens": tok_ph, "sequence_len": len_ph}, signature="tokens",
                     as_dict=True)
        state_vars = [v for v in tf.global_variables()
                      if v.name.split("/")[-1].startswith("Variable")]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            res["state_zero_before"] = all(not np.any(x) for x in sess.run(state_vars))
            feed = {tok_ph: toks, len_ph: lens}
            first = sess.run({k: out[k] for k in [*OUTPUTS, "version"]}, feed)
            res["state_nonzero_after_first_call"] = [
                v.name for v, x in zip(state_vars, sess.run(state_vars), strict=True) if np.any(x)]
            second = sess.run({k: out[k] for k in OUTPUTS}, feed)
            res["n_state_vars_in_graph"] = len(state_vars)
    res["tokens"] = first
    res["tokens_call2"] = second
    with tf.Graph().as_default():
        module = hub.Module(str(hub_dir))
        str_ph = tf.placeholder(tf.string, (None,))
        out = module(str_ph, as_dict=True)  # signature "default"
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            res["default_sig"] = sess.run({k: out[k] for k in OUTPUTS},
                                          {str_ph: [" ".join(s) for s in sentences]})
    return res


def run_bilm_tf(tf, bilm, options_file, weight_file, sentences) -> dict:
    """bilm-tf's own BidirectionalLanguageModel + Batcher, fresh session (zero state)."""
    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp) / "vocab.txt"
        vocab.write_text("<S>\n</S>\n<UNK>\n", encoding="utf-8")
        batcher = bilm.Batcher(str(vocab), 50)
        ids_np = batcher.batch_sentences(sentences)
    with tf.Graph().as_default():
        ids = tf.placeholder("int32", shape=(None, None, 50))
        model = bilm.BidirectionalLanguageModel(str(options_file), str(weight_file),
                                                max_batch_size=_MAX_BATCH_SIZE)
        ops = model(ids)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            emb, mask = sess.run([ops["lm_embeddings"], ops["mask"]], {ids: ids_np})
    return {"lm_embeddings": emb, "mask": mask, "char_ids": ids_np}


def make_reference(out: Path) -> dict:
    tf, hub, bilm = import_tf_hub_bilm()
    out.mkdir(parents=True, exist_ok=True)
    hdf5_shapes = write_model(out)
    options_file, weight_file = out / "options.json", out / "weights.hdf5"
    hub_dir = out / "module"
    if hub_dir.exists():
        import shutil

        shutil.rmtree(hub_dir)
    with contextlib.redirect_stdout(sys.stderr):  # bilm-tf prints
        info = export2hub(tf, hub, bilm, options_file, weight_file, hub_dir)
        mod = run_module(tf, hub, hub_dir, SENTENCES)
        ref = run_bilm_tf(tf, bilm, options_file, weight_file, SENTENCES)
    with open(out / "sentences.json", "w", encoding="utf-8") as f:
        json.dump(SENTENCES, f, ensure_ascii=False, indent=1)

    arrays = {f"tokens/{k}": np.asarray(v) for k, v in mod["tokens"].items() if k != "version"}
    arrays.update({f"tokens_call2/{k}": np.asarray(v) for k, v in mod["tokens_call2"].items()})
    arrays.update({f"default_sig/{k}": np.asarray(v) for k, v in mod["default_sig"].items()})
    arrays["bilm_tf/lm_embeddings"] = ref["lm_embeddings"]
    arrays["bilm_tf/mask"] = ref["mask"]
    arrays["bilm_tf/char_ids"] = ref["char_ids"].astype(np.int32)
    arrays["sequence_len"] = np.array([len(s) for s in SENTENCES], dtype=np.int32)
    np.savez_compressed(out / "expected.npz", **arrays)

    # checks: module vs bilm-tf, formulas
    t, lm, mask = mod["tokens"], ref["lm_embeddings"], ref["mask"]
    w = np.exp(np.array(AGG_W) + 1 / 3)
    w /= w.sum()
    mix = np.einsum("l,bltd->btd", w, lm)
    mf = mask.astype(np.float32)[..., None]
    diff = lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b))))  # noqa: E731
    checks = {
        "word_emb_vs_bilm_tf_layer0_first_half": diff(t["word_emb"], lm[:, 0, :, :8]),
        "layer0_halves_equal": diff(lm[:, 0, :, :8], lm[:, 0, :, 8:]),
        "lstm_outputs1_vs_bilm_tf_layer1": diff(t["lstm_outputs1"], lm[:, 1]),
        "lstm_outputs2_vs_bilm_tf_layer2": diff(t["lstm_outputs2"], lm[:, 2]),
        "elmo_vs_gamma_times_softmax_mix": diff(t["elmo"], AGG_GAMMA[0] * mix),
        "default_vs_masked_mean_of_unscaled_mix": diff(
            t["default"], (mix * mf).sum(1) / np.maximum(mf.sum(1), 1)),
        "elmo_at_padding_max_abs": float(np.max(np.abs(t["elmo"] * (1 - mf)))),
        "default_signature_vs_tokens_signature": {
            k: diff(mod["default_sig"][k], t[k]) for k in OUTPUTS},
        "tokens_call2_vs_call1": {k: diff(mod["tokens_call2"][k], t[k]) for k in OUTPUTS},
        "max_abs_lstm_outputs1": float(np.max(np.abs(t["lstm_outputs1"]))),
    }
    # the checkpoint against the HDF5 file
    import h5py

    reader = tf.train.load_checkpoint(str(hub_dir / "variables" / "variables"))
    lstm_names = {"rnn/lstm_cell/kernel": "LSTMCell/W_0", "rnn/lstm_cell/bias": "LSTMCell/B",
                  "rnn/lstm_cell/projection/kernel": "LSTMCell/W_P_0"}
    ckpt_vs_hdf5 = {}
    with h5py.File(weight_file, "r") as f:
        for name, _ in tf.train.list_variables(str(hub_dir / "variables" / "variables")):
            v = reader.get_tensor(name)
            if not name.startswith("bilm/") or "/Variable" in name:
                ckpt_vs_hdf5[name] = (f"state, max|x|={np.abs(v).max():g}"
                                      if "Variable" in name else v.tolist())
                continue
            key = name[len("bilm/"):]
            for a, b in lstm_names.items():
                key = key.replace(a, b)
            h = f[key][...]
            if key == "char_embed":
                ckpt_vs_hdf5[name] = (f"{key}: row 0 zero={not np.any(v[0])}, "
                                      f"rows 1: equal={np.array_equal(v[1:], h)}")
            else:
                ckpt_vs_hdf5[name] = f"{key}: equal={np.array_equal(v, h)}"
    import tensorflow_hub as hub_mod

    summary = {
        "tf": tf.VERSION, "tensorflow_hub": hub_mod.__version__, "bilm_tf": bilm.__file__,
        "module": info, "hdf5": hdf5_shapes,
        "checkpoint": [[n, s] for n, s in tf.train.list_variables(
            str(hub_dir / "variables" / "variables"))],
        "shapes": {k: list(np.shape(v)) for k, v in t.items()},
        "version_output": t["version"].decode() if isinstance(t["version"], bytes)
        else str(t["version"]),
        "state_zero_before_first_call": mod["state_zero_before"],
        "state_vars_nonzero_after_first_call": mod["state_nonzero_after_first_call"],
        "n_state_vars_in_graph": mod["n_state_vars_in_graph"],
        "checks": checks,
        "checkpoint_vs_hdf5": ckpt_vs_hdf5,
    }
    with open(out / "summary.json", "w") as f:
        json.dump(summary, f, indent=1, ensure_ascii=False)
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make-reference")
    m.add_argument("out", type=Path)
    args = p.parse_args()
    if args.command == "make-reference":
        print(json.dumps(make_reference(args.out), ensure_ascii=False))


if __name__ == "__main__":
    main()
