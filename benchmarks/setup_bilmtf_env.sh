#!/usr/bin/env bash
# bilm-tf itself beside us, for benchmarks/embed_throughput.py and train_throughput.py (their
# bilm-tf side runs in a separate process, benchmarks/bilmtf_side.py). Never a dependency of
# bilm; the folder is git-ignored.
#
#   bash benchmarks/setup_bilmtf_env.sh [DIR]        # default benchmarks/.envs/bilmtf
#
# bilm-tf is on PyPI as bilm==0.1.post5 and shares our import name `bilm`, so it goes into a
# --target folder (put first on PYTHONPATH by the benchmarks), not into an environment, and
# runs on the TensorFlow the benchmark runs on through tensorflow.compat.v1. It needs Keras 2's
# `tf_keras` (same minor version as TensorFlow) and TF_USE_LEGACY_KERAS=1, which the
# benchmarks set. A few MB; seconds.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${1:-$HERE/.envs/bilmtf}"
PYTHON="${PYTHON:-python3}"
TF_VERSION="$("$PYTHON" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null)" || {
    echo "run with the Python that has TensorFlow (PYTHON=.venv/bin/python)" >&2; exit 1; }
TF_MINOR="${TF_VERSION%.*}"
"$PYTHON" -m pip install --disable-pip-version-check -q --no-deps --target "$DIR" \
    "bilm==0.1.post5" "tf_keras~=${TF_MINOR}.0"
echo "bilm-tf 0.1.post5 and tf_keras ~= ${TF_MINOR} in $DIR"
