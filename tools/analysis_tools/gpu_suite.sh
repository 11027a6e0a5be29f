#!/usr/bin/env bash
# Every GPU comparison of docs/benchmark.md in one command, sized to finish inside one 10-minute call.
#
#   bash tools/analysis_tools/gpu_suite.sh [OUT_DIR]
#
# Runs tools/analysis_tools/benchmark.py five times (fp16 inference eager and compiled, the fp16
# training step with its profile, batch-1 latency eager and with CUDA graphs), each JSON written to
# OUT_DIR (default: $OUT where set, else work_dirs/benchmarks), and the whole log to OUT_DIR/suite.log.
# Commit the JSON files under docs/benchmarks/ and regenerate docs/benchmark.md with
# tools/analysis_tools/render_benchmark_docs.py.
#
# The GLNet core needs only torch and mmengine; timm provides the peers. On a machine without
# mmengine, put pure-Python wheels in .whl/ (see docs/benchmark.md, "On a GPU machine without the
# OpenMMLab packages"): they are installed into a private folder first.
#
# Environment:
#   SUITE_MODELS   GLNet models to compare (default: "glnet_4g glnet_stl"); each gets its reference
#                  path too (the stand-in for the official code) where the mode compares them.
#   SUITE_LIMIT    seconds allowed per comparison (default: 150).
#   SUITE_DRY_RUN  1: tiny sizes and few iterations, on the CPU, to check the script end to end.
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"
OUT_DIR="${1:-${OUT:-work_dirs/benchmarks}}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/suite.log"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/mmglnet_site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/mmglnet_site:$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi

GLNETS=(${SUITE_MODELS:-glnet_4g glnet_stl})
WITH_REFERENCE=()
for model in "${GLNETS[@]}"; do WITH_REFERENCE+=("$model" "${model}_reference"); done
PEERS=(swin_t convnext_t)
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
SIZES=()
if [ "${SUITE_DRY_RUN:-0}" = 1 ]; then
    SIZES=(--device cpu --batch-size 2 --infer-size 64 --train-size 64 --train-batch-size 2
           --latency-sizes 64 --warmup 1 --iters 1 --repeats 1 --precision fp32
           --train-precision fp32 --latency-precision fp32)
fi

{
    echo "# gpu_suite: commit $COMMIT, $(date -u +%FT%TZ)"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
        torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm \
        --format=csv,noheader
} 2>&1 | tee "$LOG"

status=0
compare() {
    local name="$1"; shift
    echo "## $name: benchmark.py $*" | tee -a "$LOG"
    if [ "${SUITE_DRY_RUN:-0}" = 1 ] && [[ " $* " == *" --cuda-graphs "* ]]; then
        echo "## $name skipped in the dry run: CUDA graphs need a GPU" | tee -a "$LOG"
        return
    fi
    timeout "${SUITE_LIMIT:-150}" "$PY" tools/analysis_tools/benchmark.py "$@" "${SIZES[@]}" \
        --git-commit "$COMMIT" --out "$OUT_DIR/$name.json" 2>&1 | tee -a "$LOG"
    local code="${PIPESTATUS[0]}"
    [ "$code" = 0 ] || { echo "## $name failed with exit code $code" | tee -a "$LOG"; status=1; }
}

compare gpu_infer_fp16 --models "${WITH_REFERENCE[@]}" "${PEERS[@]}" --modes infer \
    --precision fp16 --channels-last
compare gpu_infer_fp16_compile --models "${GLNETS[@]}" "${PEERS[@]}" --modes infer \
    --precision fp16 --channels-last --compile
compare gpu_train_fp16 --models "${WITH_REFERENCE[@]}" "${PEERS[@]}" --modes train \
    --channels-last --profile
compare gpu_latency --models "${WITH_REFERENCE[@]}" "${PEERS[@]}" --modes latency --channels-last
compare gpu_latency_cuda_graphs --models "${GLNETS[@]}" "${PEERS[@]}" --modes latency \
    --channels-last --cuda-graphs
exit "$status"
