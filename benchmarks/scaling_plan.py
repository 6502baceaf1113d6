"""The scaling plan on paper: step time and tokens/s of data-parallel training at the original
shape and vocabulary, for 1 to 256 GPUs, over NVLink and over 100 Gb/s Ethernet, dense vs
sparse softmax gradients.

    python benchmarks/scaling_plan.py --cpu-step-seconds 6.1   # measured: train_throughput.py
                                                               #   --shape original

Inputs (printed with the table):

- parameters, counted from the model the options build (never listed by hand): the dense
  part (char CNN, highways, projection, LSTMs) and the softmax table (V rows of D + 1);
- rows of the softmax gradient each replica sends when it is sparse: the targets of both
  directions (batch_size x unroll_steps each) and each direction's negatives (as
  ``bilm.model.lm`` draws them; the same on every replica, seeded by the step);
- single-device step times: this CPU's, measured (``--cpu-step-seconds``); a GTX 1080's from
  bilm-tf's own report (10 epochs of 768,648,884 tokens on 3 GPUs in about two weeks); a GPU
  ten times that fast (a stand-in for a current one: no GPU was lent to this work);
- links: NVLink 4 (H100 SXM) 450 GB/s per GPU and direction, 100 Gb/s Ethernet 12.5 GB/s,
  with 5 and 30 microseconds per message (published peak figures: real all-reduces reach
  70-90% of them, so these times are lower bounds).

Formulas (the standard ring algorithms, alpha-beta model, R replicas, bandwidth B, latency a):

- dense all-reduce of S bytes: ``2 (R-1) a + 2 (R-1)/R * S / B`` (the same per replica for
  any R: it does not grow with the cluster);
- sparse all-gather of G bytes from each replica: ``(R-1) a + (R-1) * G / B`` (grows with R);
- step = compute + communication (no overlap: the gradients are reduced after the backward
  pass, as bilm-tf did); tokens/s = R * batch_size * unroll_steps / step; efficiency =
  compute / step.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

V_1B = 793_471  # the 1B Word Benchmark vocabulary (bilm-tf's)
N_TRAIN_TOKENS = 768_648_884  # bilm-tf's train_elmo.py
BILM_TF_SECONDS = 14 * 86_400  # "about two weeks", 10 epochs, 3 GTX 1080
LINKS = {"NVLink 4": (450e9, 5e-6), "100 Gb/s Ethernet": (12.5e9, 30e-6)}
REPLICAS = (1, 8, 64, 256)


def count_parameters(vocab_size: int) -> dict[str, int]:
    """Dense and softmax parameters of the original shape, from the built model (the softmax
    counted from its row width: building 793k rows is not needed to know their size)."""
    from bilm.model.lm import LanguageModel
    from bilm.options import BiLMOptions
    from bilm.presets import preset

    shape = preset("original")  # built with 8 words (and so 8 negatives): the dense part
    options = BiLMOptions.from_dict({**shape, "n_tokens_vocab": 8, "n_negative_samples_batch": 8})
    lm = LanguageModel(options)
    table = {id(lm.softmax_w), id(lm.softmax_b)}
    dense = sum(int(v.shape.num_elements()) for v in lm.trainable_variables
                if id(v) not in table)
    width = int(lm.softmax_w.shape[1]) + 1  # a row of W and its bias
    return {"dense": dense, "softmax_row": width, "softmax": vocab_size * width,
            "batch_size": options.batch_size, "unroll_steps": options.unroll_steps,
            "negatives": shape["n_negative_samples_batch"], "directions": 2}


def ring_all_reduce(size: float, r: int, bandwidth: float, latency: float) -> float:
    return 0.0 if r == 1 else 2 * (r - 1) * latency + 2 * (r - 1) / r * size / bandwidth


def ring_all_gather(size: float, r: int, bandwidth: float, latency: float) -> float:
    return 0.0 if r == 1 else (r - 1) * latency + (r - 1) * size / bandwidth


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu-step-seconds", type=float, required=True,
                   help="measured seconds per step at the original shape on this machine "
                   "(benchmarks/train_throughput.py --shape original)")
    p.add_argument("--vocab-size", type=int, default=V_1B)
    args = p.parse_args()
    n = count_parameters(args.vocab_size)
    tokens = n["batch_size"] * n["unroll_steps"]  # per replica and step, one direction
    rows = n["directions"] * (tokens + n["negatives"])  # sparse rows sent per replica
    dense_bytes = 4 * n["dense"]
    softmax_dense = 4 * n["softmax"]
    sparse_bytes = rows * (4 * n["softmax_row"] + 4)  # values and an int32 index per row
    bilm_tf_step = tokens / (10 * N_TRAIN_TOKENS / BILM_TF_SECONDS / 3)
    computes = {"this CPU (measured)": args.cpu_step_seconds,
                "GTX 1080 (bilm-tf's 2 weeks)": bilm_tf_step,
                "a GPU 10x a GTX 1080": bilm_tf_step / 10}

    print("## Inputs\n")
    print(f"- dense parameters: {n['dense']:,} ({dense_bytes / 1e6:,.0f} MB float32)")
    print(f"- softmax: {args.vocab_size:,} rows x {n['softmax_row']} = {n['softmax']:,} "
          f"({softmax_dense / 1e9:.2f} GB float32)")
    print(f"- per replica and step: {n['batch_size']} x {n['unroll_steps']} = {tokens:,} "
          f"tokens; sparse softmax rows sent = 2 x ({tokens:,} targets + {n['negatives']:,} "
          f"negatives) = {rows:,} ({sparse_bytes / 1e6:.1f} MB)")
    for name, t in computes.items():
        print(f"- compute per step, {name}: {t:.3f} s")
    for name, (bw, lat) in LINKS.items():
        print(f"- {name}: {bw / 1e9:g} GB/s, {lat * 1e6:g} us per message")
    print("\n## Bytes each replica sends per step\n")
    print("| replicas | dense softmax (all-reduce of everything) | sparse softmax (all-reduce "
          "of the dense part + all-gather of the rows) |")
    print("|---|---|---|")
    for r in REPLICAS:
        full = 2 * (r - 1) / r * (dense_bytes + softmax_dense)
        sparse = 2 * (r - 1) / r * dense_bytes + (r - 1) * sparse_bytes
        print(f"| {r} | {full / 1e9:.2f} GB | {sparse / 1e9:.2f} GB |")
    print("\n## Step time and tokens/s\n")
    print("| compute | link | replicas | dense softmax: step, tokens/s, efficiency | "
          "sparse softmax: step, tokens/s, efficiency |")
    print("|---|---|---|---|---|")
    for cname, compute in computes.items():
        for lname, (bw, lat) in LINKS.items():
            for r in REPLICAS:
                cells = []
                for sparse in (False, True):
                    if sparse:
                        comm = (ring_all_reduce(dense_bytes, r, bw, lat)
                                + ring_all_gather(sparse_bytes, r, bw, lat))
                    else:
                        comm = ring_all_reduce(dense_bytes + softmax_dense, r, bw, lat)
                    step = compute + comm
                    cells.append(f"{step:.3f} s, {r * tokens / step:,.0f}, "
                                 f"{compute / step:.0%}")
                print(f"| {cname} | {lname} | {r} | {cells[0]} | {cells[1]} |")
    # where the sparse all-gather overtakes the dense all-reduce of the softmax
    crossover = next(r for r in range(2, 10_000)
                     if (r - 1) * sparse_bytes > 2 * (r - 1) / r * softmax_dense)
    print(f"\nThe sparse all-gather sends more than a dense all-reduce of the softmax from "
          f"{crossover} replicas on.")


if __name__ == "__main__":
    main()
