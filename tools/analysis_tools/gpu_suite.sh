#!/usr/bin/env bash
# Every GPU comparison of docs/benchmark.md, in nine parts that each finish inside one
# 10-minute call.
#
#   bash tools/analysis_tools/gpu_suite.sh [OUT_DIR]
#
# Part "eager" (SUITE_PART=eager): fp16 inference at 224² batch 128, the fp16 training step at 512²
# batch 16 with its operator profile, operator counts and peak memory (GLNet also with the Triton
# LayerNorm, and with the Triton bias gradients), batch-1 latency at 448²,
# 896², 1792² eager and with CUDA graphs (there also with the Triton LayerNorm). Part "compiled"
# (SUITE_PART=compiled), the training step in the CUDA-graph modes: every model's eager forward and
# backward replayed as CUDA graphs (nothing to compile; GLNet also with the Triton LayerNorm, and
# with the Triton bias gradients); GLNet through its compile_backbone option (the backbone as one
# graph, as a config sets it) replayed as CUDA graphs (mode='reduce-overhead') against the eager
# peers and the reference path, with its profile; whether that option trains as eager mode does
# (check_compiled_training.py). Part "compiled_more" (SUITE_PART=compiled_more), every model
# compiled, GLNet through compile_backbone: the training step with CUDA graphs and AdamW's fused
# kernels; the 1792² latency compiled against the eager peers, with inductor's generated Python
# launching the kernels and with its C++ wrapper, with the operator profiles. Part "compiled_train"
# (SUITE_PART=compiled_train): the training step with every model compiled in torch's default mode
# (no CUDA graphs), GLNet through compile_backbone, AdamW's fused kernels, with the profiles. Part
# "blocks" (SUITE_PART=blocks), GLNet through its compile_blocks option: the training step against
# the eager peers (with its profile), fp16 inference with every model compiled, 1792² latency eager
# and with CUDA graphs, and the training step with every model compiled. Part "extra"
# (SUITE_PART=extra), in this order: fp16 inference with every model compiled (GLNet through
# compile_backbone) with the operator profiles; eager fp16 inference and 1792² latency with their
# operator profiles, the fast path's slot pooling and pointwise products against torch's kernels,
# the LayerNorms by mmglnet's Triton kernel (an experiment, *_triton_layernorm), and every model
# with its weights cast once (*_precast); compile_blocks with every block replayed as a CUDA graph
# (training step, 1792² latency); the training step with AdamW's fused kernels for every model
# (eager). Part "autotune" (SUITE_PART=autotune): fp16 inference with every model compiled with
# mode='max-autotune-no-cudagraphs' (GLNet through compile_backbone), whose autotuning takes minutes
# per model. Part "cpp_wrapper" (SUITE_PART=cpp_wrapper): fp16 inference with every model
# compiled with inductor's C++ wrapper (GLNet through compile_backbone), with the operator
# profiles. Part "shifts" (SUITE_PART=shifts), an experiment: compile_backbone with its residual
# depth-wise convolutions computed as shifted products that inductor fuses with their neighbours,
# against the plain compile_backbone, in fp16 inference (every model compiled) and in the training
# step with CUDA graphs (with its profile).
# SUITE_PART=all (the default) runs all nine, which takes more than one call. Each comparison
# is one run of tools/analysis_tools/benchmark.py whose JSON goes to OUT_DIR (default: $OUT
# where set, else work_dirs/benchmarks), and the whole log to OUT_DIR/suite_<part>.log.
# Bring the returned files in with tools/analysis_tools/import_device_results.py OUT_DIR (it
# names them after the GPU, puts the compile cache in .compile_cache/ and regenerates
# docs/benchmark.md), then commit docs/benchmarks/ and the page.
#
# The GLNet core needs only torch and mmengine; timm provides the peers. On a machine without
# mmengine, put pure-Python wheels in .whl/ (see docs/benchmark.md, "On a GPU machine without the
# OpenMMLab packages"): they are installed into a private folder first.
#
# Environment:
#   SUITE_PART     eager, compiled, compiled_more, compiled_train, blocks, extra, autotune,
#                  cpp_wrapper, shifts or all (default).
#   SUITE_MODELS   GLNet models compared in every mode (default: "glnet_4g glnet_stl"); each
#                  gets its reference path too (the stand-in for the official code) where the
#                  mode compares them.
#   SUITE_EXTRA    GLNet models added to the eager inference and training comparisons only
#                  (default: "glnet_9g").
#   SUITE_PEERS    the peers compared in every mode (default: "swin_t convnext_t"; the
#                  training-compiled and 1792² profile comparisons keep Swin-T and ConvNeXt-T).
#   SUITE_LIMIT    seconds allowed per comparison, in place of each one's own (LIMIT=...
#                  before a compare line below; 150 where none is given), e.g. a large value
#                  for a dry run on a slow CPU. At its limit a comparison is told to stop
#                  (SIGTERM) and writes what it measured; SUITE_GRACE seconds later (default:
#                  30) it is killed.
#   SUITE_ITERS    "WARMUP ITERS REPEATS" (default: "5 10 3").
#   SUITE_COMMIT   the commit to record (default: git rev-parse HEAD); give it where the copy
#                  of the tree that runs has no .git or a stale one.
#   SUITE_ONLY     names of comparisons to run (e.g. "gpu_train_fp16_compile_blocks
#                  gpu_eager_fast_path"), the others of the part skipped: to fit what is
#                  left of a device budget. Default: all of the part.
#   SUITE_DRY_RUN  1: tiny sizes and few iterations, on the CPU, to check the script end to end.
#   SUITE_COMPILE_CACHE  a .tar.gz of torch.compile's caches (inductor's compiled graphs,
#                  AOTAutograd's, Triton's kernels) written by an earlier run of the suite on
#                  the same kind of GPU with the same torch, whole or in parts (FILE.part00,
#                  FILE.part01, ...): unpacked into inductor's cache directory before the part,
#                  so that graphs it holds are loaded instead of compiled (GLNet-4G's training
#                  graphs with compile_backbone: 162 s cold, 21 s warm on a 2-core CPU machine;
#                  over 210 s cold on an H200). Default: .compile_cache/compile_cache.tar.gz
#                  where it or its parts exist; "none" starts cold. A graph the code has changed
#                  since is compiled again. After every comparison the cache is packed into
#                  OUT_DIR/compile_cache.tar.gz.part00, part01, ... of at most
#                  SUITE_CACHE_PART_MB MiB each (default 15: a device call brings back files of
#                  up to 16 MiB, 8 files in all), and not above SUITE_CACHE_MAX_MB MiB in all
#                  (default 30; an earlier, smaller archive then stays; 0: not packed at
#                  all), Triton's folder left out (inductor bundles its graphs' kernels into
#                  their entries): import_device_results.py puts it in .compile_cache/ for the
#                  next session.
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"
OUT_DIR="${1:-${OUT:-work_dirs/benchmarks}}"
mkdir -p "$OUT_DIR"
PART="${SUITE_PART:-all}"
case "$PART" in
    eager|compiled|compiled_more|compiled_train|blocks|extra|autotune|cpp_wrapper|shifts|all) ;;
    *) echo "SUITE_PART=$PART is not one of eager, compiled, compiled_more, compiled_train," \
           "blocks, extra, autotune, cpp_wrapper, shifts, all" >&2
       exit 2;;
esac
# Every comparison below, by part, so that SUITE_ONLY is checked before anything runs.
COMPARISONS=(gpu_infer_fp16 gpu_train_fp16 gpu_latency gpu_latency_cuda_graphs
    gpu_train_fp16_compile_backbone_cudagraphs gpu_train_fp16_compile_cudagraphs
    gpu_infer_fp16_compile_backbone gpu_latency_compile_backbone
    gpu_latency_compile_backbone_cpp_wrapper gpu_train_fp16_compile_backbone
    gpu_train_fp16_compile_blocks gpu_infer_fp16_compile gpu_latency_compile_blocks
    gpu_latency_compile_blocks_cuda_graphs gpu_train_fp16_compile
    gpu_train_fp16_fused_adamw gpu_eager_fast_path gpu_train_fp16_cuda_graphs
    gpu_block_cudagraphs gpu_check_compiled_training gpu_infer_fp16_compile_autotune
    gpu_infer_fp16_compile_cpp_wrapper
    gpu_infer_fp16_compile_shift_dwconv gpu_train_fp16_shift_dwconv_cudagraphs)
ONLY=(${SUITE_ONLY:-})
# in_list WORD LIST...: whether WORD is one of the LIST.
in_list() { local word="$1"; shift; [[ " $* " == *" $word "* ]]; }
for name in "${ONLY[@]}"; do
    in_list "$name" "${COMPARISONS[@]}" || {
        echo "SUITE_ONLY names $name, which is not a comparison of this suite: choose among" \
            "${COMPARISONS[*]}" >&2; exit 2; }
done
DEFAULT_CACHE=.compile_cache/compile_cache.tar.gz
CACHE_ARCHIVE="${SUITE_COMPILE_CACHE:-$DEFAULT_CACHE}"
if [ "$CACHE_ARCHIVE" = none ]; then
    CACHE_ARCHIVE=
fi
# cache_files ARCHIVE: the archive, or its parts in order, one per line; nothing if neither.
cache_files() {
    if [ -f "$1" ]; then echo "$1"; else compgen -G "$1.part[0-9][0-9]" | sort; fi
}
if [ -n "$CACHE_ARCHIVE" ] && [ -z "$(cache_files "$CACHE_ARCHIVE")" ] \
        && [ "$CACHE_ARCHIVE" != "$DEFAULT_CACHE" ]; then
    echo "SUITE_COMPILE_CACHE=$CACHE_ARCHIVE is neither a file nor the first name of parts" \
        "($CACHE_ARCHIVE.part00, ...): give the compile_cache.tar.gz of an earlier run, or none" \
        "to start cold" >&2; exit 2
fi
LOG="$OUT_DIR/suite_$PART.log"
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
EXTRA=(${SUITE_EXTRA-glnet_9g})
WITH_REFERENCE=()
REFERENCES=()
COMPILED_BLOCKS=()
BLOCK_CUDAGRAPHS=()
COMPILED_BACKBONE=()
CPP_WRAPPED_BACKBONE=()
BACKBONE_CUDAGRAPHS=()
AUTOTUNED_BACKBONE=()
SHIFTED_BACKBONE=()
SHIFTED_BACKBONE_CUDAGRAPHS=()
TORCH_POOLING=()
CONV_POINTWISE=()
TRITON_LAYERNORM=()
TRITON_BIAS_GRAD=()
AUTOCAST_CASTS=()
TRITON_BIAS_GELU=()
for model in "${GLNETS[@]}"; do
    WITH_REFERENCE+=("$model" "${model}_reference")
    REFERENCES+=("${model}_reference")
    COMPILED_BLOCKS+=("${model}_compile_blocks")
    BLOCK_CUDAGRAPHS+=("${model}_compile_blocks_cudagraphs")
    COMPILED_BACKBONE+=("${model}_compile_backbone")
    CPP_WRAPPED_BACKBONE+=("${model}_compile_backbone_cpp_wrapper")
    BACKBONE_CUDAGRAPHS+=("${model}_compile_backbone_cudagraphs")
    AUTOTUNED_BACKBONE+=("${model}_compile_backbone_autotune")
    SHIFTED_BACKBONE+=("${model}_compile_backbone" "${model}_compile_backbone_shift_dwconv")
    SHIFTED_BACKBONE_CUDAGRAPHS+=("${model}_compile_backbone_cudagraphs"
        "${model}_compile_backbone_cudagraphs_shift_dwconv")
    TORCH_POOLING+=("${model}_torch_pooling")
    CONV_POINTWISE+=("${model}_conv_pointwise")
    TRITON_LAYERNORM+=("${model}_triton_layernorm")
    TRITON_BIAS_GRAD+=("${model}_triton_bias_grad")
    AUTOCAST_CASTS+=("${model}_autocast_casts")
    # The Triton bias-GELU acts on the FFNs' depth-wise convolutions, which the STL has not.
    case "$model" in
        glnet_stl*) ;;
        *) TRITON_BIAS_GELU+=("${model}_triton_layernorm_bias_gelu") ;;
    esac
done
PEERS=(${SUITE_PEERS-swin_t convnext_t})
# Every eager model's twin whose weights that autocast casts at every forward are cast once.
PRECAST=()
for model in "${GLNETS[@]}" "${PEERS[@]}"; do
    PRECAST+=("${model}_precast")
done
COMMIT="${SUITE_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
read -r WARMUP ITERS REPEATS <<< "${SUITE_ITERS:-5 10 3}"
SIZES=(--warmup "$WARMUP" --iters "$ITERS" --repeats "$REPEATS")
if [ "${SUITE_DRY_RUN:-0}" = 1 ]; then
    SIZES=(--device cpu --batch-size 2 --infer-size 64 --train-size 64 --train-batch-size 2
           --latency-sizes 64 --warmup 1 --iters 1 --repeats 1 --precision fp32
           --train-precision fp32 --latency-precision fp32)
fi

{
    echo "# gpu_suite part $PART: commit $COMMIT, $(date -u +%FT%TZ)"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
        torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm \
        --format=csv,noheader
} 2>&1 | tee "$LOG"

# Inductor's C++ wrapper (*_cpp_wrapper) builds against CUDA's toolkit, found through CUDA_HOME
# or else the folder above nvcc's: where nvcc is a launcher script in /usr/local/bin, as on the
# CPU machines, torch looks in /usr/local and finds no headers.
if [ -z "${CUDA_HOME:-}" ] && [ -f /usr/local/cuda/include/cuda.h ]; then
    export CUDA_HOME=/usr/local/cuda
fi

# torch.compile's caches: inductor's directory (Triton's lies inside it), warm from an
# earlier run where one was carried.
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-/tmp/mmglnet_compile_cache}"
mkdir -p "$TORCHINDUCTOR_CACHE_DIR"
CARRIED_CACHE=()
[ -n "$CACHE_ARCHIVE" ] && mapfile -t CARRIED_CACHE < <(cache_files "$CACHE_ARCHIVE")
if [ "${#CARRIED_CACHE[@]}" -gt 0 ]; then
    # Unpacked aside first: an archive that breaks off half-way leaves no truncated entry.
    UNPACKED="$(mktemp -d /tmp/mmglnet_unpacked_cache.XXXXXX)" || exit 1
    if cat "${CARRIED_CACHE[@]}" | tar -xz -C "$UNPACKED" \
            && cp -a "$UNPACKED/." "$TORCHINDUCTOR_CACHE_DIR/"; then
        echo "## compile cache: unpacked $CACHE_ARCHIVE (${#CARRIED_CACHE[@]} part(s), $(find \
            "$TORCHINDUCTOR_CACHE_DIR" -type f | wc -l) files) into $TORCHINDUCTOR_CACHE_DIR" \
            | tee -a "$LOG"
    else
        echo "## compile cache: $CACHE_ARCHIVE could not be unpacked; compiling cold" \
            | tee -a "$LOG"
    fi
    rm -rf "$UNPACKED"
else
    echo "## compile cache: none carried; compiling cold into $TORCHINDUCTOR_CACHE_DIR" \
        | tee -a "$LOG"
fi
# largest_first: "SIZE KEY" lines summed by KEY, as "KEY MiB, ..." for the 8 largest.
largest_first() {
    awk '{ s[$2] += $1 } END { for (k in s) printf "%d %s\n", s[k], k }' | sort -rn | head -8 |
        awk '{ printf "%s%s %.1f", (NR > 1 ? ", " : ""), $2, $1 / 1048576 }'
}
# cache_composition: what the cache holds, by folder and by file type, in the log: the
# packed caches of the H200 run (2026-11-27) came to 63 MiB, over what a call brings back,
# and what takes the room (graphs kept twice, kernels no longer used...) was not known.
cache_composition() {
    local listing
    listing="$(find "$TORCHINDUCTOR_CACHE_DIR" -type f -printf '%s %P\n')"
    [ -n "$listing" ] || return 0
    echo "## compile cache holds $(awk '{ t += $1 } END { printf "%.1f", t / 1048576 }' \
        <<< "$listing") MiB in $(wc -l <<< "$listing") files; MiB by folder: $(awk \
        '{ k = $2; sub(/\/.*/, "", k); print $1, k }' <<< "$listing" | largest_first); by file" \
        "type: $(awk '{ n = split($2, p, "/"); m = split(p[n], e, ".");
                       print $1, (m > 1 ? "." e[m] : "(none)") }' <<< "$listing" | largest_first)" \
        | tee -a "$LOG"
}
# pack_compile_cache: the cache as OUT_DIR/compile_cache.tar.gz.part00, ..., after every
# comparison so that a call cut off later still brings it back; left out when too large.
pack_compile_cache() {
    [ -n "$(find "$TORCHINDUCTOR_CACHE_DIR" -type f -print -quit)" ] || return 0
    cache_composition
    local packed max_mb="${SUITE_CACHE_MAX_MB:-30}" part_mb="${SUITE_CACHE_PART_MB:-15}"
    if [ "$max_mb" = 0 ]; then  # not wanted back: no time spent packing it
        echo "## compile cache: not packed (SUITE_CACHE_MAX_MB=0)" | tee -a "$LOG"
        return 0
    fi
    packed="$(mktemp -d /tmp/mmglnet_compile_cache.XXXXXX)" || return 0
    # Inductor puts every file of a graph's Triton kernels into the graph's FX-graph entry as
    # well (torch 2.11's bundle_triton_into_fx_graph_cache, on by default) and writes them back
    # into triton/ when it loads the entry: triton/ would travel twice. Left out, only kernels
    # compiled outside inductor's graphs (mmglnet's Triton LayerNorm, bias gradients) compile
    # again, in seconds.
    if [ -d "$TORCHINDUCTOR_CACHE_DIR/triton" ]; then
        echo "## compile cache: triton/ ($(du -sm "$TORCHINDUCTOR_CACHE_DIR/triton" | cut -f1)" \
            "MiB) left out of the archive: its kernels travel in the FX-graph entries" \
            | tee -a "$LOG"
    fi
    if tar -czf "$packed/archive" --exclude=./triton -C "$TORCHINDUCTOR_CACHE_DIR" .; then
        local size_mb=$(( ($(stat -c %s "$packed/archive") + 1048575) / 1048576 ))
        if [ "$size_mb" -gt "$max_mb" ]; then
            # An earlier, smaller archive stays: its graphs are still valid.
            echo "## compile cache: $size_mb MiB packed, over SUITE_CACHE_MAX_MB=$max_mb;" \
                "not written" | tee -a "$LOG"
        elif split -b "${part_mb}M" -d -a 2 "$packed/archive" "$packed/compile_cache.tar.gz.part"
        then
            # The earlier parts go first: a call cut off now brings back a subset or a part
            # cut short, which the import refuses, never a mixture of two archives. (mktemp's
            # files are private: the copies get the usual permissions.)
            rm -f "$OUT_DIR"/compile_cache.tar.gz.part*
            install -m 644 "$packed"/compile_cache.tar.gz.part* "$OUT_DIR/"
        fi
    fi
    rm -rf "$packed"
}

status=0
# split_peers PEER: TARGET_PEER holds PEER where it is one of PEERS, OTHER_PEERS the rest, in
# order; a comparison puts the target's peer where a run cut short still has it.
split_peers() {
    TARGET_PEER=()
    OTHER_PEERS=()
    local peer
    for peer in "${PEERS[@]}"; do
        if [ "$peer" = "$1" ]; then TARGET_PEER+=("$peer"); else OTHER_PEERS+=("$peer"); fi
    done
}
# step_limit: the seconds the step about to run is allowed (SUITE_LIMIT, else its LIMIT, else
# 150).
step_limit() { echo "${SUITE_LIMIT:-${LIMIT:-150}}"; }
# run_limited NAME TOOL ARGS...: one step of the suite (chosen by `selected`), stopped at its
# time limit (SIGTERM; KILL follows if it has not ended GRACE seconds later).
run_limited() {
    local name="$1"; shift
    local limit
    limit="$(step_limit)"
    timeout --preserve-status -k "${SUITE_GRACE:-30}" "$limit" "$PY" "$@" 2>&1 | tee -a "$LOG"
    local code="${PIPESTATUS[0]}"
    if [ "$code" = 3 ]; then
        echo "## $name cut short at its limit of $limit s: $name.json holds what was measured" \
            | tee -a "$LOG"
        status=1
    elif [ "$code" != 0 ]; then
        echo "## $name failed with exit code $code" | tee -a "$LOG"
        status=1
    fi
    pack_compile_cache
    echo "## $name done ($(date -u +%T))" | tee -a "$LOG"
}
# selected NAME TOOL ARGS...: whether NAME runs (it is in COMPARISONS and SUITE_ONLY), logged.
selected() {
    local name="$1"; shift
    in_list "$name" "${COMPARISONS[@]}" || {
        echo "## $name is missing from COMPARISONS in $0" | tee -a "$LOG"; exit 2; }
    if [ "${#ONLY[@]}" -gt 0 ] && ! in_list "$name" "${ONLY[@]}"; then
        echo "## $name skipped: not in SUITE_ONLY" | tee -a "$LOG"
        return 1
    fi
    echo "## $name: $* ($(date -u +%T))" | tee -a "$LOG"
}
compare() {
    local name="$1"; shift
    selected "$name" benchmark.py "$@" || return 0
    if [ "${SUITE_DRY_RUN:-0}" = 1 ] && in_list --cuda-graphs "$@"; then
        echo "## $name skipped in the dry run: CUDA graphs need a GPU" | tee -a "$LOG"
        return
    fi
    # At the limit benchmark.py stops, writes what it measured and exits 3. 10 s before, it
    # writes every thread's stack to the log, should it be stuck where the signal cannot
    # reach its handler (on the H100 on 2026-11-28 one ended with exit status 143 and no
    # trace).
    local limit
    limit="$(step_limit)"
    run_limited "$name" tools/analysis_tools/benchmark.py "$@" "${SIZES[@]}" \
        --git-commit "$COMMIT" --out "$OUT_DIR/$name.json" \
        --dump-stacks-after "$(( limit > 20 ? limit - 10 : limit ))"
}
# check_training NAME ARGS...: check_compiled_training.py (exit 1: the compiled copy trains
# differently from the eager one).
check_training() {
    local name="$1"; shift
    selected "$name" check_compiled_training.py "$@" || return 0
    local dry=()
    [ "${SUITE_DRY_RUN:-0}" = 1 ] && dry=(--device cpu --precision fp32 --backend aot_eager)
    run_limited "$name" tools/analysis_tools/check_compiled_training.py "$@" "${dry[@]}"
}

if [ "$PART" = eager ] || [ "$PART" = all ]; then
    compare gpu_infer_fp16 --models "${WITH_REFERENCE[@]}" "${EXTRA[@]}" "${PEERS[@]}" \
        --modes infer --precision fp16 --channels-last
    # The eager step also with the Triton LayerNorm and the Triton bias gradients: faster where
    # the step's kernels were replayed as CUDA graphs (H200, 2026-11-30); whether the host,
    # which bounds the eager step, loses by their launches decides whether they become defaults.
    compare gpu_train_fp16 --models "${WITH_REFERENCE[@]}" "${TRITON_LAYERNORM[@]}" \
        "${TRITON_BIAS_GRAD[@]}" "${EXTRA[@]}" "${PEERS[@]}" \
        --modes train --channels-last --profile --count-ops
    compare gpu_latency --models "${WITH_REFERENCE[@]}" "${PEERS[@]}" --modes latency \
        --channels-last
    compare gpu_latency_cuda_graphs --models "${GLNETS[@]}" "${TRITON_LAYERNORM[@]}" \
        "${PEERS[@]}" --modes latency --channels-last --cuda-graphs
fi
if [ "$PART" = compiled ] || [ "$PART" = all ]; then
    # The training step in the CUDA-graph modes, in the order of their value for the targets.
    # First, with nothing to compile: every model's eager forward and backward captured as
    # CUDA graphs (AdamW outside the graphs), against the peers and the reference path in the
    # same mode: the eager kernels without the launches that bound GLNet's eager step. GLNet
    # also with the Triton LayerNorm and its backward (*_triton_layernorm, an experiment):
    # torch's LayerNorm kernels took 10.5 of the 66.5 ms of GPU work in GLNet-4G's eager step
    # on the H100, and the GPU's work bounds the step once the launches are replayed; and with
    # its convolutions' bias gradients summed by mmglnet's Triton kernel (*_triton_bias_grad,
    # an experiment: torch's 269 reductions took 8.8 ms of that step). The peers go first: on
    # the H100 on 2026-11-28 this comparison, GLNet first, printed nothing in its 125 s.
    LIMIT=125 compare gpu_train_fp16_cuda_graphs --models "${PEERS[@]}" "${WITH_REFERENCE[@]}" \
        "${TRITON_LAYERNORM[@]}" "${TRITON_BIAS_GRAD[@]}" --modes train --channels-last \
        --cuda-graphs
    # GLNet with compile_backbone as a config sets it, its graphs replayed as CUDA graphs,
    # against the eager peers and the reference path (the stand-in for the official code).
    # Compiling the backbone's forward and backward takes most of the limit: over 210 s cold
    # on an H200. The eager models go first, each timed once in seconds, so that a run cut
    # short after GLNet's first timing still holds the whole comparison.
    LIMIT=330 compare gpu_train_fp16_compile_backbone_cudagraphs --models "${PEERS[@]}" \
        "${REFERENCES[@]}" "${BACKBONE_CUDAGRAPHS[@]}" --modes train --channels-last --profile
    # Whether that option trains as eager mode does: the backbone as one graph replayed as
    # CUDA graphs, fp16, against an eager copy (demo-size GLNet: its own, smaller graphs).
    # Plain steps only: GLNet refuses to accumulate gradients with CUDA graphs (on the H100 on
    # 2026-11-28, two micro-batches failed in torch's CUDA-graph trees, pytorch#169545).
    LIMIT=90 check_training gpu_check_compiled_training --option compile_backbone \
        --mode reduce-overhead --precision fp16 --steps 4 --accumulate 1
fi
if [ "$PART" = compiled_more ] || [ "$PART" = all ]; then
    # Every model compiled, GLNet through compile_backbone, in the order of their value for
    # the targets. Each limit allows a cold compile (GLNet's training graphs come from the
    # cache where the compiled part ran before on this machine). First the training step
    # with every model compiled with CUDA graphs (torch.compile mode='reduce-overhead'),
    # with AdamW's fused kernels: with the default
    # foreach AdamW the gradient scaler reads the found-inf flag on the host every step, and
    # GLNet-4G's 621 tensors kept the GPU waiting 12.5 ms of a 57.9 ms step on the H100.
    # Swin-T first: after GLNet's graphs, in the same process and without its steps marked,
    # it allocated 5 GB per step while timed and took 190 to 210 ms (H100 and H200), not
    # replaying its graphs. A cold GLNet-4G compile takes about 140 to 170 s, Swin-T's about
    # 70 s. With the profiles: on the H200 on 2026-11-30 GLNet-4G took 36.2 ms to Swin-T's
    # 21.6 (0.60x), each replaying its graphs, the step now bound by the GPU's work.
    LIMIT=330 compare gpu_train_fp16_compile_cudagraphs --models swin_t \
        "${BACKBONE_CUDAGRAPHS[@]}" --modes train --channels-last --compile --cuda-graphs \
        --fused-optimizer --profile
    # The eager peers first (ConvNeXt-T, the latency target's peer, leading), then GLNet's
    # compile: a run cut short after GLNet's first timing holds the target's pair. With the
    # profiles: GLNet-4G took 23.5 ms against ConvNeXt-T's 10.4 on the H100 (2.26x), where
    # its compiled blocks replayed as one CUDA graph took 15.6 ms.
    split_peers convnext_t
    LIMIT=120 compare gpu_latency_compile_backbone --models "${TARGET_PEER[@]}" \
        "${OTHER_PEERS[@]}" "${COMPILED_BACKBONE[@]}" --modes latency --channels-last \
        --latency-sizes 1792 --profile
    # The host, launching the kernels from inductor's generated Python, is the suspect there:
    # GLNet once more with inductor's C++ wrapper (*_cpp_wrapper), which launches them from
    # C++, against the eager ConvNeXt-T. A comparison of its own, so that a slow build of
    # the wrapper (with CUDA's toolkit; how long it takes there is not known) cannot cost
    # the one above its figures or profiles. Its Triton kernels come from the cache that
    # the comparison above filled.
    LIMIT=140 compare gpu_latency_compile_backbone_cpp_wrapper --models "${TARGET_PEER[@]}" \
        "${CPP_WRAPPED_BACKBONE[@]}" --modes latency --channels-last --latency-sizes 1792 \
        --profile
fi
if [ "$PART" = compiled_train ] || [ "$PART" = all ]; then
    # The training step with every model compiled in torch's default mode (no CUDA graphs),
    # GLNet through compile_backbone, with AdamW's fused kernels and the profiles: the
    # compiled training row's best candidate (measured so far with compile_blocks only, 0.22x
    # Swin-T on the H100). Swin-T first (its cold compile about 75 s), then GLNet-4G (about
    # 170 s cold with CUDA graphs on the H100).
    split_peers swin_t
    LIMIT=330 compare gpu_train_fp16_compile_backbone --models "${TARGET_PEER[@]}" \
        "${COMPILED_BACKBONE[@]}" --modes train --channels-last --compile --fused-optimizer \
        --profile
fi
if [ "$PART" = blocks ] || [ "$PART" = all ]; then
    # GLNet with compile_blocks (as a config sets it) against the eager peers and paths.
    LIMIT=170 compare gpu_train_fp16_compile_blocks --models "${COMPILED_BLOCKS[@]}" \
        "${WITH_REFERENCE[@]}" "${PEERS[@]}" --modes train --channels-last --profile --count-ops
    LIMIT=110 compare gpu_infer_fp16_compile --models "${COMPILED_BLOCKS[@]}" "${PEERS[@]}" \
        --modes infer --precision fp16 --channels-last --compile
    LIMIT=70 compare gpu_latency_compile_blocks --models "${COMPILED_BLOCKS[@]}" "${PEERS[@]}" \
        --modes latency --channels-last --latency-sizes 1792
    LIMIT=50 compare gpu_latency_compile_blocks_cuda_graphs --models "${COMPILED_BLOCKS[@]}" \
        "${PEERS[@]}" --modes latency --channels-last --cuda-graphs --latency-sizes 1792
    # Last, as the longest to compile: the training step with every model compiled.
    LIMIT=120 compare gpu_train_fp16_compile --models "${COMPILED_BLOCKS[@]}" swin_t --modes train \
        --channels-last --compile
fi
if [ "$PART" = extra ] || [ "$PART" = all ]; then
    # In the order of their value for the targets, so that a part cut short loses the least.
    # First the eager fast path: GLNet (its weights cast in one multi-tensor copy per
    # forward, batch_weight_casts, the default since 2026-11-30) against autocast's own casts
    # (*_autocast_casts), and with the Triton LayerNorm and the FFNs' biases added with their
    # GELU by Triton (*_triton_layernorm_bias_gelu, two inference experiments), beside the
    # peers with their weights cast once beforehand (*_precast: the host's time for those
    # casts). Then the fast path's
    # eager choices for CUDA, each against its torch kernels in the same fast path and
    # against the reference path: the slot pooling (a mean over equal windows, averaging
    # products over uneven ones, as at 224² in stages 2-3) against torch's adaptive kernel
    # (*_torch_pooling), the pointwise convolutions as products with a fused bias against
    # convolution calls that add it in a second kernel (*_conv_pointwise), and an experiment:
    # the LayerNorms by mmglnet's Triton kernel (*_triton_layernorm; torch's kernel moved
    # 230 GB/s on the 64-channel rows of the H200's profile). fp16 inference at 224² batch 128
    # and the 1792² batch-1 latency (the two eager targets), with the operator profiles.
    LIMIT=190 compare gpu_eager_fast_path --models "${WITH_REFERENCE[@]}" \
        "${AUTOCAST_CASTS[@]}" "${TRITON_BIAS_GELU[@]}" "${PEERS[@]}" "${TORCH_POOLING[@]}" \
        "${CONV_POINTWISE[@]}" "${TRITON_LAYERNORM[@]}" "${PRECAST[@]}" \
        --modes infer latency --precision fp16 --latency-sizes 1792 --channels-last --profile
    # Every model compiled, GLNet through compile_backbone, with the profiles: whether the
    # host (inductor's wrapper launching the generated kernels) or the GPU's work bounds
    # compiled GLNet (0.62x compiled Swin-T on the H200).
    LIMIT=150 compare gpu_infer_fp16_compile_backbone --models "${COMPILED_BACKBONE[@]}" \
        "${PEERS[@]}" --modes infer --precision fp16 --channels-last --compile --profile
    # compile_blocks with mode='reduce-overhead' (each compiled block replayed as a CUDA
    # graph, the launches of a block's forward and backward cut to one) in the training step
    # and the 1792² latency.
    LIMIT=150 compare gpu_block_cudagraphs --models "${BLOCK_CUDAGRAPHS[@]}" \
        "${COMPILED_BLOCKS[@]}" "${PEERS[@]}" --modes train latency --channels-last \
        --latency-sizes 1792
    # AdamW's fused kernels: one launch per group of parameters instead of a dozen
    # multi-tensor launches; GLNet-4G has 621 parameter tensors, Swin-T 171.
    LIMIT=100 compare gpu_train_fp16_fused_adamw --models "${GLNETS[@]}" "${PEERS[@]}" \
        --modes train --channels-last --fused-optimizer --count-ops
fi
if [ "$PART" = autotune ] || [ "$PART" = all ]; then
    # Every model compiled with mode='max-autotune-no-cudagraphs': inductor times candidate
    # kernels for each matrix product and convolution (Triton templates with the bias,
    # residual and activation fused among them: GLNet-4G's 94 pointwise convolutions are
    # such products in channels-last) and keeps the fastest. Swin-T first, then GLNet, then
    # the other peers: a run cut short keeps the pair of the compiled inference target.
    split_peers swin_t
    LIMIT=540 compare gpu_infer_fp16_compile_autotune --models "${TARGET_PEER[@]}" \
        "${AUTOTUNED_BACKBONE[@]}" "${OTHER_PEERS[@]}" --modes infer --precision fp16 \
        --channels-last --compile --compile-mode max-autotune-no-cudagraphs
fi
if [ "$PART" = cpp_wrapper ] || [ "$PART" = all ]; then
    # Every model compiled with inductor's C++ wrapper, which launches the generated kernels
    # from compiled C++ instead of generated Python (GLNet through compile_backbone), with the
    # profiles: the compiled inference target's pair in the same mode (0.62x Swin-T with
    # inductor's Python wrapper on the H200). Swin-T first, then GLNet, then the other peers.
    # How long the wrapper takes to build against CUDA's toolkit is not known yet: on the
    # CPU, GLNet-4G's took three times the plain compile's time.
    split_peers swin_t
    LIMIT=400 compare gpu_infer_fp16_compile_cpp_wrapper --models "${TARGET_PEER[@]}" \
        "${CPP_WRAPPED_BACKBONE[@]}" "${OTHER_PEERS[@]}" --modes infer --precision fp16 \
        --channels-last --compile --compile-options cpp_wrapper=True --profile
fi
if [ "$PART" = shifts ] || [ "$PART" = all ]; then
    # The residual depth-wise convolutions (position encodings, FFN) as shifted products under
    # compilation, fused by inductor with their neighbours (the FFN's GELU among them), against
    # the convolution calls, with the backbone compiled as one graph. Compiling the shifted
    # products took twice as long as the convolutions on the CPU (110 against 60 s for
    # GLNet-4G's inference graph); the plain graphs load from the compiled part's cache.
    LIMIT=240 compare gpu_infer_fp16_compile_shift_dwconv --models "${SHIFTED_BACKBONE[@]}" \
        "${PEERS[@]}" --modes infer --precision fp16 --channels-last --compile
    LIMIT=330 compare gpu_train_fp16_shift_dwconv_cudagraphs --models \
        "${SHIFTED_BACKBONE_CUDAGRAPHS[@]}" "${PEERS[@]}" --modes train --channels-last --profile
fi
exit "$status"
