#!/usr/bin/env bash
# ELMoForManyLangs' own environment (HIT-SCIR, "EFML") for benchmarks/efml_side.py, which makes
# the reference outputs in tests/data/efml/ and times EFML's Embedder. Never a dependency of
# bilm; the folder is git-ignored.
#
#   bash benchmarks/setup_efml_env.sh [ENV_DIR]          # default benchmarks/.envs/efml
#
# A Python 3.11 venv (PYTHON, default python3.11) with a CPU torch (TORCH_SPEC, default
# torch==2.13.0+cpu, found through pip's find-links, e.g. PIP_FIND_LINKS=/opt/wheels; PyPI's
# own torch is the CUDA build), numpy, h5py, overrides, and EFML's package installed with
# --no-deps from its source at commit EFML_COMMIT (the last commit on its master, 2020-10-15,
# "Bells and whistle for a pypi release (#88)"; PyPI's elmoformanylangs 0.0.4.post2 is the same
# code). The source comes from
#   - EFML_SRC, if set: a checkout with setup.py, or a git directory (bare or a clone's .git),
#     from which EFML_COMMIT is exported with `git archive`;
#   - otherwise `git clone https://github.com/HIT-SCIR/ELMoForManyLangs` into a temporary
#     folder, checked out at EFML_COMMIT.
# EFML's files are installed unmodified; the few things it needs on today's torch/Python are
# patched at run time by efml_side.py (see its docstring). A few hundred MB; under a minute
# with the torch wheel on disk.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENV_DIR="${1:-$HERE/.envs/efml}"
PYTHON="${PYTHON:-python3.11}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0+cpu}"
EFML_COMMIT="${EFML_COMMIT:-b3de5f1dc1ac13638a930b49c41e1f1e0e185ca1}"
EFML_URL="${EFML_URL:-https://github.com/HIT-SCIR/ELMoForManyLangs}"

"$PYTHON" -c 'import sys; assert sys.version_info[:2] >= (3, 8), sys.version' || {
    echo "needs Python >= 3.8 (PYTHON=$PYTHON)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
src="$work/ELMoForManyLangs"

if [[ -n "${EFML_SRC:-}" ]]; then
    if [[ -f "$EFML_SRC/setup.py" ]]; then
        cp -r "$EFML_SRC" "$src"
        echo "EFML source: $EFML_SRC (as it is on disk; EFML_COMMIT not checked)"
    else
        mkdir -p "$src"
        git --git-dir="$EFML_SRC" archive "$EFML_COMMIT" | tar -x -C "$src"
        echo "EFML source: $EFML_SRC at $EFML_COMMIT"
    fi
else
    git clone -q "$EFML_URL" "$src"
    git -C "$src" checkout -q "$EFML_COMMIT"
    echo "EFML source: $EFML_URL at $EFML_COMMIT"
fi

"$PYTHON" -m venv "$ENV_DIR"
PIP=("$ENV_DIR/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q "$TORCH_SPEC" "numpy>=1.23" "h5py>=3.6" "overrides"
"${PIP[@]}" install -q --no-deps "$src"
echo "$EFML_COMMIT" > "$ENV_DIR/EFML_COMMIT"

"$ENV_DIR/bin/python" "$HERE/efml_side.py" versions
echo "EFML environment ready: $ENV_DIR/bin/python"
