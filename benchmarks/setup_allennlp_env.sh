#!/usr/bin/env bash
# AllenNLP's own environment for benchmarks/transformer_embed.py (its side runs in a separate
# process there): allennlp 2.10.1 + allennlp-models 2.10.1 on a CPU torch. Never a dependency
# of bilm; the folder is git-ignored.
#
#   bash benchmarks/setup_allennlp_env.sh [ENV_DIR]      # default benchmarks/.envs/allennlp
#
# AllenNLP 2.10 pins torch < 1.13, transformers < 4.21, spacy < 3.4 and friends, none of which
# install on Python 3.11 (nor a CPU-only torch from PyPI). So: its two packages without their
# dependencies, on today's CPU torch (TORCH_SPEC, default torch==2.13.0+cpu, found through
# pip's find-links, e.g. PIP_FIND_LINKS=/opt/wheels), plus the packages their imports of the
# language-model modules really need, at versions that still have the names AllenNLP uses:
# transformers 4.46 (transformers.AdamW, registered at import time), huggingface_hub < 1
# (HfFolder, Repository), cached-path 1.1 (allennlp's pin). torchvision is left out: PyPI's
# wheels link CUDA's libtorch and fail to load on the CPU torch; benchmarks/allennlp_side.py
# stands an empty module in for it (only AllenNLP's vision modules use it).
# About 1.7 GB on disk, 2-3 minutes with a warm pip cache.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENV_DIR="${1:-$HERE/.envs/allennlp}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0+cpu}"

"$PYTHON" -c 'import sys; assert sys.version_info[:2] >= (3, 10), sys.version' || {
    echo "needs Python >= 3.10 (PYTHON=$PYTHON)" >&2; exit 1; }
"$PYTHON" -m venv "$ENV_DIR"
PIP=("$ENV_DIR/bin/python" -m pip --disable-pip-version-check)

# every install below (build environments of source packages too) keeps this torch
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "$TORCH_SPEC" > "$constraints"
export PIP_CONSTRAINT="$constraints"

"${PIP[@]}" install -q "$TORCH_SPEC"
"${PIP[@]}" install -q --no-deps allennlp==2.10.1 allennlp-models==2.10.1 cached-path==1.1.6
"${PIP[@]}" install -q \
    "numpy>=1.23,<2.5" "transformers==4.46.3" "huggingface_hub>=0.23,<1" "spacy>=3.4,<3.9" \
    "nltk>=3.6.5" "scipy>=1.7.3" "scikit-learn>=1.0.1" "h5py>=3.6" "tensorboardX>=1.2" \
    "fairscale>=0.4.6,<0.5" "lmdb>=1.2.1" "dill>=0.3.4" "base58>=2.1.1" \
    "more-itertools>=8.12" "boto3>=1,<2" "google-cloud-storage>=1.32,<4" "rich>=12.1"

echo "(pip's complaints above about allennlp's own pins are expected: they are bypassed on purpose)"

# the check transformer_embed.py relies on: AllenNLP's language-model modules import
"$ENV_DIR/bin/python" "$HERE/allennlp_side.py" versions
echo "AllenNLP environment ready: $ENV_DIR/bin/python"
