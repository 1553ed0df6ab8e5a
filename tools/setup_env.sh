#!/usr/bin/env bash
# Create or update the project's virtual environment at ./.venv, idempotently.
#
# Order matters: torch + torchvision first (the only pair that works together here), then the package
# with its dev extras, then the packages that must be installed without their dependencies
# (tools/requirements-nodeps.txt), then mamba-ssm built without CUDA (it needs torch at build time, so it
# cannot be part of the same pip step as torch), then the Jupyter kernel.
#
# Environment knobs (all optional):
#   PYTHON            interpreter that creates the venv (default python3)
#   TORCH_SPEC        torch requirement (default torch==2.14.1 torchvision==0.29.1)
#   TORCH_INDEX_URL   e.g. https://download.pytorch.org/whl/cpu on a CPU-only CI runner
#   RRG_SKIP_MAMBA=1  do not build mamba-ssm (the course then verifies against our own reference only)
#   MAMBA_CUDA=1      build mamba-ssm's CUDA kernels (on a GPU box with nvcc; slow)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv
PY=$VENV/bin/python
STAMP=$VENV/.rrg-setup-stamp
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
MAMBA_SPEC=${MAMBA_SPEC:-"mamba-ssm==2.3.2.post1"}

# Everything that decides what gets installed goes into the stamp: if none of it changed, do nothing.
want=$(cat tools/setup_env.sh settings.ini setup.py tools/requirements-nodeps.txt 2>/dev/null; \
       echo "$TORCH_SPEC ${TORCH_INDEX_URL:-} ${RRG_SKIP_MAMBA:-} ${MAMBA_CUDA:-} $MAMBA_SPEC")
want=$(printf '%s' "$want" | sha256sum | cut -d' ' -f1)
if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

t0=$(date +%s)
[ -x "$PY" ] || "$PYTHON" -m venv "$VENV"
PIP="$PY -m pip --disable-pip-version-check"
$PIP install -q --upgrade "pip>=23" "setuptools>=68" wheel
# 1. the torch pair
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  $PIP install -q $TORCH_SPEC --index-url "$TORCH_INDEX_URL"
else
  $PIP install -q $TORCH_SPEC
fi
# 2. the package, editable, with the dev extras (papermill, pytest, jupyterlab, ...)
$PIP install -q -e ".[dev]" --config-settings editable_mode=compat
# 3. packages whose declared dependencies are heavy or uninstallable here; their runtime needs are in settings.ini
if [ -s tools/requirements-nodeps.txt ]; then
  $PIP install -q --no-deps -r tools/requirements-nodeps.txt
fi
# 4. mamba-ssm: its setup.py imports torch, so no build isolation; without CUDA unless asked for
if [ -z "${RRG_SKIP_MAMBA:-}" ]; then
  if ! $PY -c "import importlib.metadata as m; assert m.version('mamba-ssm') == '${MAMBA_SPEC#*==}'" 2>/dev/null; then
    if [ -n "${MAMBA_CUDA:-}" ]; then
      MAMBA_FORCE_BUILD=TRUE $PIP install -q --no-build-isolation --no-deps "$MAMBA_SPEC"
    else
      MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE $PIP install -q --no-build-isolation --no-deps "$MAMBA_SPEC"
    fi
  fi
fi
# 5. the Jupyter kernel used by papermill and JupyterLab
$PY -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (rrg-tutorial)" >/dev/null
echo "$want" > "$STAMP"
echo "environment ready in $(( $(date +%s) - t0 )) s: $VENV"
