"""An independent NumPy biLM forward pass, written from DESIGN.md's semantics, for tests."""

from __future__ import annotations

import h5py
import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def token_embeddings(w, options, char_ids):
    """char_ids: shifted (n, max_chars) -> (n, projection_dim)."""
    cnn = options["char_cnn"]
    table = np.concatenate([np.zeros((1, w["char_embed"].shape[1])), w["char_embed"]])
    x = table[char_ids]  # (n, chars, d)
    pooled = []
    for i, (width, _count) in enumerate(cnn["filters"]):
        k = w[f"CNN/W_cnn_{i}"][0]  # (width, d, count)
        n_pos = x.shape[1] - width + 1
        conv = sum(x[:, p : p + n_pos] @ k[p] for p in range(width))
        pooled.append(conv.max(axis=1) + w[f"CNN/b_cnn_{i}"])
    h = np.concatenate(pooled, -1)
    h = np.maximum(h, 0) if cnn["activation"] == "relu" else np.tanh(h)
    for k in range(cnn["n_highway"]):
        g = sigmoid(h @ w[f"CNN_high_{k}/W_carry"] + w[f"CNN_high_{k}/b_carry"])
        t = np.maximum(h @ w[f"CNN_high_{k}/W_transform"] + w[f"CNN_high_{k}/b_transform"], 0)
        h = g * t + (1 - g) * h
    if "CNN_proj/W_proj" in w:
        h = h @ w["CNN_proj/W_proj"] + w["CNN_proj/b_proj"]
    return h


def lstm_sequence(w, prefix, x, cell_clip, proj_clip):
    """One LSTM layer over one sentence x (T, n_in) from zero state -> (T, out)."""
    kernel, bias = w[f"{prefix}/W_0"], w[f"{prefix}/B"]
    proj = w.get(f"{prefix}/W_P_0")
    dim = bias.shape[0] // 4
    out_dim = proj.shape[1] if proj is not None else dim
    c, h = np.zeros(dim), np.zeros(out_dim)
    outs = []
    for t in range(x.shape[0]):
        z = np.concatenate([x[t], h]) @ kernel + bias
        i, j, f, o = np.split(z, 4)
        c = sigmoid(f + 1.0) * c + sigmoid(i) * np.tanh(j)
        if cell_clip:
            c = np.clip(c, -cell_clip, cell_clip)
        h = sigmoid(o) * np.tanh(c)
        if proj is not None:
            h = h @ proj
            if proj_clip:
                h = np.clip(h, -proj_clip, proj_clip)
        outs.append(h)
    return np.stack(outs)


def load(weight_file):
    with h5py.File(weight_file, "r") as f:
        w = {}
        f.visititems(lambda n, o: w.__setitem__(n, o[...].astype(np.float64))
                     if isinstance(o, h5py.Dataset) else None)
    return w


def bilm_sentence(w, options, char_ids):
    """Stateless lm_embeddings of one sentence; char_ids (n_tokens + 2, chars) shifted."""
    lstm = options["lstm"]
    emb = token_embeddings(w, options, char_ids)
    layers = [np.concatenate([emb, emb], -1)]
    inputs = [emb, emb[::-1]]
    for k in range(lstm.get("n_layers", 1)):
        outs = []
        for d in range(2):
            prefix = f"RNN_{d}/RNN/MultiRNNCell/Cell{k}/LSTMCell"
            y = lstm_sequence(w, prefix, inputs[d], lstm.get("cell_clip"), lstm.get("proj_clip"))
            if lstm.get("use_skip_connections") and k > 0:
                y = y + inputs[d]
            outs.append(y)
        inputs = outs
        layers.append(np.concatenate([outs[0], outs[1][::-1]], -1))
    return np.stack(layers)[:, 1:-1]
