#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment at <repo>/.venv.
#
# Idempotent: when everything is already installed it only checks and returns in seconds.
# Order matters: torch and torchvision first (so that nothing else picks a torch), then mmcv with
# its C++ ops (built from source once per torch version and kept in a wheelhouse; never rebuilt
# when installed), then the rest.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMGLNET_VENV:-$REPO_ROOT/.venv}"
CONSTRAINTS="$REPO_ROOT/requirements/constraints.txt"
PYTHON_BIN="${PYTHON:-python3}"
STAMP="$VENV/.mmglnet-setup-stamp"
# Built mmcv wheels, one folder per torch build: pip's own wheel cache keys an sdist build by its
# URL only and would hand a wheel compiled against another torch to this one.
WHEELHOUSE_ROOT="${MMGLNET_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmglnet/wheels}"

# Disk the two large steps need (measured: torch's CUDA stack 5.5 GiB in the venv; mmcv's build
# tree 430 MiB under TMPDIR), with some room to spare.
TORCH_INSTALL_MIB=6144
MMCV_BUILD_MIB=1024

log() { echo "[setup_env] $*" >&2; }

# Free space in MiB on the file system that holds $1 (or would hold it: its nearest existing parent).
free_mib() {
    local path="$1"
    while [ ! -e "$path" ]; do path="$(dirname "$path")"; done
    df -Pk "$path" | awk 'NR == 2 { print int($4 / 1024) }'
}
# Stop before a long step that would run out of disk half-way: pip then leaves a venv that imports
# nothing, after minutes of work. Args: path, MiB needed, what needs them, what to do otherwise.
require_free_space() {
    local path="$1" need_mib="$2" what="$3" remedy="$4" have_mib
    have_mib="$(free_mib "$path")"
    if [ "$have_mib" -lt "$need_mib" ]; then
        log "ERROR: $what needs about $need_mib MiB free at $path, but only $have_mib MiB are free there."
        log "$remedy"
        exit 1
    fi
}

pin() { grep -E "^$1[=<>]" "$CONSTRAINTS" | head -n1; }
pinned_version() { pin "$1" | cut -d= -f3; }

require_space_for_torch() {
    require_free_space "$VENV" "$TORCH_INSTALL_MIB" "installing $(pin torch) and $(pin torchvision)" \
        "Free space there, point MMGLNET_VENV at a file system with room, or install torch into $VENV first."
}

if [ ! -x "$VENV/bin/python" ]; then
    require_space_for_torch
    log "creating virtual environment at $VENV"
    "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check --no-input)
# pip prints a red "ERROR: pip's dependency resolver ..." note when an already installed package
# (torch brought by the machine, say) lists a requirement outside the pins; the final import check
# below is what decides success.
quiet_pip() {
    local out
    if ! out="$("${PIP[@]}" "$@" 2>&1)"; then
        echo "$out" >&2
        return 1
    fi
    echo "$out" | grep -vE "^(WARNING: Location|ERROR: pip's dependency resolver)|is ignored: it is neither" \
        | grep -E "^(ERROR|WARNING)" >&2 || true
}

# Fast path: every requirement file unchanged since the last successful set-up, and the stack imports.
fingerprint() {
    cat "$CONSTRAINTS" "$REPO_ROOT"/requirements/*.txt "$REPO_ROOT/setup.py" | sha256sum | cut -d' ' -f1
}
FULL_IMPORT="import torch, torchvision, mmcv.ops, mmengine, mmdet, mmseg, mmpretrain.models, mmglnet"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(fingerprint)" ] \
        && "$PY" -W ignore -c "$FULL_IMPORT" 2>/dev/null; then
    log "environment at $VENV is up to date"
    exit 0
fi

# Constraints without torch/torchvision: a machine that brings its own torch keeps it.
PIP_CONSTRAINTS="$(mktemp)"
BUILD_DIR=""
cleanup() { rm -f "$PIP_CONSTRAINTS"; [ -z "$BUILD_DIR" ] || rm -rf "$BUILD_DIR"; }
trap cleanup EXIT
grep -vE '^torch(vision)?[=<>]' "$CONSTRAINTS" > "$PIP_CONSTRAINTS"

# 1. torch and torchvision.
if "$PY" -c "import torch" 2>/dev/null; then
    TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__)')"
    log "torch $TORCH_VERSION already present (kept)"
    if ! "$PY" -W ignore -c "import torchvision" 2>/dev/null; then
        if [ "${TORCH_VERSION%%+*}" = "$(pinned_version torch)" ]; then
            log "installing $(pin torchvision) to match it"
            quiet_pip install "$(pin torchvision)"
        else
            log "WARNING: no torchvision importable beside torch $TORCH_VERSION; mmpretrain" \
                "(classification) needs the torchvision release made for this torch."
        fi
    fi
else
    require_space_for_torch
    log "installing $(pin torch) and $(pin torchvision)"
    quiet_pip install "$(pin torch)" "$(pin torchvision)"
fi

quiet_pip install -c "$PIP_CONSTRAINTS" wheel numpy

# 2. mmcv with its C++ ops, from the wheelhouse of this torch build.
MMCV_VERSION="$(pinned_version mmcv)"
if "$PY" -W ignore -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
    log "mmcv $MMCV_VERSION with ops already installed"
else
    WHEEL_TAG="$("$PY" - <<'EOF'
import platform
import sys

import torch

ops = f'cuda{torch.version.cuda}' if torch.cuda.is_available() and torch.version.cuda else 'cpu'
print(f'torch{torch.__version__}-cp{sys.version_info[0]}{sys.version_info[1]}-'
      f'{platform.machine()}-{ops}ops')
EOF
)"
    WHEELHOUSE="$WHEELHOUSE_ROOT/$WHEEL_TAG"
    WHEEL="$(ls "$WHEELHOUSE"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
    if [ -z "$WHEEL" ]; then
        log "building mmcv $MMCV_VERSION with its C++ ops for $WHEEL_TAG (once, 10-20 min on 2 cores)"
        require_free_space "${TMPDIR:-/tmp}" "$MMCV_BUILD_MIB" "building mmcv $MMCV_VERSION" \
            "Free space there or set TMPDIR to a directory with room, then run this again."
        BUILD_DIR="$(mktemp -d)"
        quiet_pip install "$(sed -n 's/^# build-only: //p' "$CONSTRAINTS")"
        # mmcv 2.1.0's setup.py asks for -std=c++17; torch >= 2.14's headers need C++20. A compiler
        # wrapper swaps the flag for this build only (nothing in mmcv's sources is changed).
        if "$PY" -c "import sys, torch; v = tuple(int(p) for p in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(v < (2, 14))"; then
            REAL_CXX="$(command -v "${CXX:-g++}")"
            cat > "$BUILD_DIR/cxx20" <<EOF
#!/usr/bin/env bash
args=()
for arg in "\$@"; do
    case "\$arg" in -std=c++14|-std=c++17) arg=-std=c++20 ;; esac
    args+=("\$arg")
done
exec "$REAL_CXX" "\${args[@]}"
EOF
            chmod +x "$BUILD_DIR/cxx20"
            export CC="$BUILD_DIR/cxx20" CXX="$BUILD_DIR/cxx20"
        fi
        # --no-cache-dir: neither take a wheel pip built against another torch nor store this one there.
        MMCV_WITH_OPS=1 "${PIP[@]}" wheel --no-build-isolation --no-deps --no-cache-dir \
            -w "$BUILD_DIR/wheels" "$(pin mmcv)"
        mkdir -p "$WHEELHOUSE"
        BUILT="$(ls "$BUILD_DIR"/wheels/mmcv-*.whl)"
        # Copy under a temporary name, then rename: a killed set-up never leaves half a wheel.
        cp "$BUILT" "$WHEELHOUSE/.partial-$(basename "$BUILT")"
        mv "$WHEELHOUSE/.partial-$(basename "$BUILT")" "$WHEELHOUSE/$(basename "$BUILT")"
        WHEEL="$WHEELHOUSE/$(basename "$BUILT")"
        unset CC CXX
    else
        log "mmcv $MMCV_VERSION for $WHEEL_TAG from $WHEELHOUSE"
    fi
    quiet_pip install -c "$PIP_CONSTRAINTS" "$WHEEL"
fi

# 3. The codebases, test tools and mmglnet.
log "installing the OpenMMLab codebases, test tools and mmglnet (editable)"
quiet_pip install -c "$PIP_CONSTRAINTS" "$(pin setuptools)" \
    -r "$REPO_ROOT/requirements/codebases.txt" \
    -r "$REPO_ROOT/requirements/tests.txt" \
    -e "$REPO_ROOT"

# The resolver note hidden above is printed while packages are still being replaced; what counts
# is the final state, which pip check reports in full.
if ! CHECK="$("${PIP[@]}" check 2>&1)"; then
    echo "$CHECK" | grep -v "is ignored: it is neither" | sed 's/^/[setup_env] WARNING: /' >&2
fi
"$PY" -W ignore -c "$FULL_IMPORT"
fingerprint > "$STAMP"
log "environment ready at $VENV"
