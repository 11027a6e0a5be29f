#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment at <repo>/.venv.
#
# Idempotent: when everything is already installed it only checks and returns in seconds.
# Order matters: torch first (so that nothing pulls a CUDA build), then mmcv built from source
# with its C++ ops (cached by pip's wheel cache; never rebuilt when installed), then the rest.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMGLNET_VENV:-$REPO_ROOT/.venv}"
CONSTRAINTS="$REPO_ROOT/requirements/constraints.txt"
PYTHON_BIN="${PYTHON:-python3}"
STAMP="$VENV/.mmglnet-setup-stamp"

log() { echo "[setup_env] $*" >&2; }
pin() { grep -E "^$1[=<>]" "$CONSTRAINTS" | head -n1; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment at $VENV"
    "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

# Fast path: every requirement file unchanged since the last successful set-up.
fingerprint() {
    cat "$CONSTRAINTS" "$REPO_ROOT"/requirements/*.txt "$REPO_ROOT/setup.py" | sha256sum | cut -d' ' -f1
}
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(fingerprint)" ] \
        && "$PY" -c "import torch, mmcv.ops, mmengine, mmdet, mmseg, mmglnet" 2>/dev/null; then
    log "environment at $VENV is up to date"
    exit 0
fi

# Constraints without torch: a machine that brings its own torch keeps it.
PIP_CONSTRAINTS="$(mktemp)"
trap 'rm -f "$PIP_CONSTRAINTS"' EXIT
grep -vE '^torch[=<>]' "$CONSTRAINTS" > "$PIP_CONSTRAINTS"

if "$PY" -c "import torch" 2>/dev/null; then
    log "torch $("$PY" -c 'import torch; print(torch.__version__)') already present"
else
    log "installing $(pin torch) (CPU build)"
    "${PIP[@]}" install "$(pin torch)"
fi

"${PIP[@]}" install -q -c "$PIP_CONSTRAINTS" wheel numpy

if "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$(pin mmcv | cut -d= -f3)'" 2>/dev/null; then
    log "mmcv $(pin mmcv | cut -d= -f3) with ops already installed"
else
    log "installing $(pin mmcv) with its C++ ops (built from source once, ~15 min on 2 cores; then cached by pip)"
    BUILD_SETUPTOOLS="$(sed -n 's/^# build-only: //p' "$CONSTRAINTS")"
    "${PIP[@]}" install -q "$BUILD_SETUPTOOLS"
    MMCV_WITH_OPS=1 "${PIP[@]}" install --no-build-isolation "$(pin mmcv)" "$(pin numpy)"
fi

log "installing the OpenMMLab codebases, test tools and mmglnet (editable)"
"${PIP[@]}" install -q -c "$PIP_CONSTRAINTS" "$(pin setuptools)" \
    -r "$REPO_ROOT/requirements/codebases.txt" \
    -r "$REPO_ROOT/requirements/tests.txt" \
    -e "$REPO_ROOT"

"$PY" -c "import torch, mmcv.ops, mmengine, mmdet, mmseg, mmglnet" 
fingerprint > "$STAMP"
log "environment ready at $VENV"
