"""Build docs/benchmark.md from the benchmark runs committed under docs/benchmarks/.

Every ``*.json`` there is the output of ``tools/analysis_tools/benchmark.py``; the page is
generated from them and the prose of ``docs/templates/benchmark.md`` (never edited by hand): a
summary of the targets, then every run with its device, versions, commit, command and table.

Usage:
    python tools/analysis_tools/render_benchmark_docs.py            # writes docs/benchmark.md
    python tools/analysis_tools/render_benchmark_docs.py --check    # fails if it is stale
"""
import argparse
import glob
import json
import os.path as osp
import string
import sys
from typing import Dict, List, Optional, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # run from a checkout without `pip install -e .`

# The page's prose, with $targets, $reproduce and $runs where the generated parts go.
TEMPLATE = osp.join(REPO_ROOT, 'docs', 'templates', 'benchmark.md')

# The targets the runs are checked against, each on every run that matches one of its
# ``ways``, (settings, models): the run's settings, and the candidate models (e.g. GLNet
# eager, or compiled by its own option), each reported where the run has it.
# ``compare`` 'speed': images/s of the model over images/s of ``peer`` >= ``threshold``;
# 'time': time of the model over time of ``peer`` <= ``threshold``; 'memory': step memory per
# megapixel of the model at ``size`` over that at ``peer_size`` <= ``threshold`` (1 when
# memory grows linearly with pixels). A None threshold is only reported.
CUDA_EAGER = dict(device='cuda', compile=False, cuda_graphs=False)
CUDA_COMPILED = dict(device='cuda', compile=True, cuda_graphs=False)
CUDA_COMPILED_GRAPHS = dict(device='cuda', compile=True, cuda_graphs=True)
CUDA_GRAPHS = dict(device='cuda', cuda_graphs=True)
# Every model's eager kernels captured as CUDA graphs, no compilation (in training, the forward
# and backward passes; the optimizer outside).
CUDA_EAGER_GRAPHS = dict(device='cuda', compile=False, cuda_graphs=True)
CPU_EAGER = dict(device='cpu', compile=False)
# GLNet-4G compiled by its own options (compile_blocks, compile_backbone), without and with
# CUDA graphs (mode='reduce-overhead'); the tool does not compile these again, and compiles
# the other models of a run in the same mode (max-autotune-no-cudagraphs for *_autotune;
# torch's default for *_cpp_wrapper, inductor's C++ wrapper an option of GLNet's compile).
GLNET_4G_COMPILED = ('glnet_4g_compile_blocks', 'glnet_4g_compile_backbone',
                     'glnet_4g_compile_backbone_autotune', 'glnet_4g_compile_backbone_cpp_wrapper')
GLNET_4G_GRAPHED = ('glnet_4g_compile_blocks_cudagraphs', 'glnet_4g_compile_backbone_cudagraphs')
GLNET_4G = ('glnet_4g', ) + GLNET_4G_COMPILED
INFER = dict(mode='infer', precision='fp16', size=224, batch=128)
TRAIN = dict(mode='train', precision='fp16', size=512, batch=16)
LATENCY = dict(mode='latency', precision='fp16', size=1792, batch=1)
CPU_INFER = dict(mode='infer', precision='fp32', size=224, batch=8)


def target(title: str, ways, peer: str, case: dict, compare: str, threshold: Optional[float],
           **extra) -> dict:
    """A target; ``ways`` is a (settings, models) pair or a list of them, ``models`` a name or
    a tuple of names."""
    ways = [ways] if isinstance(ways, tuple) else list(ways)
    ways = [(settings, (models, ) if isinstance(models, str) else tuple(models))
            for settings, models in ways]
    return dict(
        title=title, ways=ways, peer=peer, compare=compare, threshold=threshold, **case, **extra)


TARGETS = [
    target('GLNet-4G fp16 inference 224², batch 128, eager', (CUDA_EAGER, 'glnet_4g'), 'swin_t',
           INFER, 'speed', 0.8),
    target('GLNet-4G fp16 inference 224², batch 128, compiled', (CUDA_COMPILED, GLNET_4G), 'swin_t',
           INFER, 'speed', 0.8),
    target('GLNet-STL fp16 inference 224², batch 128, eager', (CUDA_EAGER, 'glnet_stl'), 'swin_t',
           INFER, 'speed', 1.3),
    target('GLNet-4G fp16 training step 512², batch 16, eager', (CUDA_EAGER, 'glnet_4g'), 'swin_t',
           TRAIN, 'speed', 0.8),
    target('GLNet-4G fp16 training step 512², batch 16, compiled', (CUDA_COMPILED, GLNET_4G),
           'swin_t', TRAIN, 'speed', 0.8),
    target('GLNet-4G fp16 training step 512², batch 16, compiled with CUDA graphs',
           (CUDA_COMPILED_GRAPHS, ('glnet_4g', ) + GLNET_4G_GRAPHED), 'swin_t', TRAIN, 'speed',
           0.8),
    target(
        'GLNet-4G fp16 training step 512², batch 16, eager kernels replayed as CUDA graphs '
        '(every model)', (CUDA_EAGER_GRAPHS, 'glnet_4g'), 'swin_t', TRAIN, 'speed', 0.8),
    target(
        'GLNet-4G fp16 training step 512², batch 16, compiled by its own option against the '
        'eager peers', (CUDA_EAGER, GLNET_4G_COMPILED + GLNET_4G_GRAPHED), 'swin_t', TRAIN, 'speed',
        0.8),
    target('GLNet-4G fp16 training step 512², batch 16, against the reference path',
           [(CUDA_EAGER, GLNET_4G + GLNET_4G_GRAPHED),
            (CUDA_EAGER_GRAPHS, 'glnet_4g')], 'glnet_4g_reference', TRAIN, 'speed', 1.5),
    target('GLNet-4G batch-1 latency 1792², without CUDA graphs (GLNet eager or compiled)',
           (CUDA_EAGER, GLNET_4G), 'convnext_t', LATENCY, 'time', 2.0),
    target('GLNet-4G batch-1 latency 1792², CUDA graphs', (CUDA_GRAPHS, GLNET_4G), 'convnext_t',
           LATENCY, 'time', 2.0),
    target(
        'GLNet-4G batch-1 memory linear in pixels: step memory per megapixel at 1792² over 896²',
        (CUDA_EAGER, 'glnet_4g'),
        'glnet_4g',
        LATENCY,
        'memory',
        1.1,
        peer_size=896),
    target('CPU: GLNet-4G forward 224², batch 8, eager, fast vs reference path',
           (CPU_EAGER, 'glnet_4g'), 'glnet_4g_reference', CPU_INFER, 'speed', 1.0),
    target("CPU: GLNet-4G forward 224², batch 8, eager, vs mmdet's Swin-T", (CPU_EAGER, 'glnet_4g'),
           'swin_t_mmdet', CPU_INFER, 'speed', None),
]

# One command per comparison; each fits a 10-minute limit on one H100/H200. Add
# ``--out docs/benchmarks/<name>.json`` (and ``--git-commit`` where the tree has no .git).
REPRODUCE = [
    ('CPU, forward 224², batch 8: fast path, reference path, mmdet\'s Swin-T',
     'python tools/analysis_tools/benchmark.py --models glnet_4g glnet_4g_reference '
     'swin_t_mmdet --modes infer --repeats 7 --device cpu'),
    ('GPU, inference 224², batch 128, fp16 and fp32, eager',
     'python tools/analysis_tools/benchmark.py --models glnet_4g glnet_4g_reference glnet_stl '
     'swin_t convnext_t --modes infer --precision fp16 fp32 --channels-last'),
    ('GPU, inference 224², batch 128, fp16, compiled (GLNet through compile_blocks)',
     'python tools/analysis_tools/benchmark.py --models glnet_4g_compile_blocks '
     'glnet_stl_compile_blocks swin_t convnext_t --modes infer --precision fp16 --channels-last '
     '--compile'),
    ('GPU, inference 224², batch 128, fp16, compiled (GLNet through compile_backbone), with '
     'profiles',
     'python tools/analysis_tools/benchmark.py --models glnet_4g_compile_backbone swin_t '
     'convnext_t --modes infer --precision fp16 --channels-last --compile --profile'),
    ('GPU, inference 224², batch 128, fp16, every model compiled with '
     "mode='max-autotune-no-cudagraphs' (kernels chosen by timing, Triton matrix products with "
     'fused epilogues among them; GLNet through compile_backbone)',
     'python tools/analysis_tools/benchmark.py --models swin_t glnet_4g_compile_backbone_autotune '
     'convnext_t --modes infer --precision fp16 --channels-last --compile '
     '--compile-mode max-autotune-no-cudagraphs'),
    ("GPU, inference 224², batch 128, fp16, every model compiled with inductor's C++ wrapper "
     '(the kernels launched from compiled C++; GLNet through compile_backbone), with profiles',
     'python tools/analysis_tools/benchmark.py --models swin_t '
     'glnet_4g_compile_backbone_cpp_wrapper convnext_t --modes infer --precision fp16 '
     '--channels-last --compile --compile-options cpp_wrapper=True --profile'),
    ('GPU, training step 512², batch 16, fp16, with peak memory',
     'python tools/analysis_tools/benchmark.py --models glnet_4g glnet_4g_reference glnet_stl '
     'swin_t convnext_t --modes train --channels-last'),
    ('GPU, batch-1 latency and memory at 448², 896², 1792², fp16, eager',
     'python tools/analysis_tools/benchmark.py --models glnet_4g glnet_4g_reference convnext_t '
     'swin_t --modes latency --channels-last'),
    ('GPU, the same with CUDA graphs',
     'python tools/analysis_tools/benchmark.py --models glnet_4g glnet_4g_reference convnext_t '
     'swin_t --modes latency --channels-last --cuda-graphs'),
    ('GPU, batch-1 latency 1792², fp16, GLNet with compile_backbone against the eager peers, '
     'with profiles', 'python tools/analysis_tools/benchmark.py --models convnext_t swin_t '
     'glnet_4g_compile_backbone --modes latency --channels-last --latency-sizes 1792 --profile'),
    ("GPU, the same with inductor's C++ wrapper launching GLNet's kernels",
     'python tools/analysis_tools/benchmark.py --models convnext_t '
     'glnet_4g_compile_backbone_cpp_wrapper --modes latency --channels-last --latency-sizes 1792 '
     '--profile'),
    ('GPU, training step with compile_blocks against the eager peers and paths, with profile',
     'python tools/analysis_tools/benchmark.py --models glnet_4g_compile_blocks glnet_4g '
     'glnet_4g_reference swin_t convnext_t --modes train --channels-last --profile'),
    ('GPU, training step with the backbone compiled as one graph replayed as CUDA graphs '
     '(compile_backbone, mode=\'reduce-overhead\') against the eager peers and the reference '
     'path, with profile',
     'python tools/analysis_tools/benchmark.py --models glnet_4g_compile_backbone_cudagraphs '
     'glnet_4g_reference swin_t convnext_t --modes train --channels-last --profile'),
    ('GPU, training step with every model\'s eager forward and backward replayed as CUDA graphs '
     '(no compilation; AdamW outside the graphs)',
     'python tools/analysis_tools/benchmark.py --models glnet_4g glnet_4g_reference swin_t '
     'convnext_t --modes train --channels-last --cuda-graphs'),
    ('GPU, training step with every model compiled with CUDA graphs, AdamW\'s fused kernels',
     'python tools/analysis_tools/benchmark.py --models swin_t '
     'glnet_4g_compile_backbone_cudagraphs --modes train --channels-last --compile '
     '--cuda-graphs --fused-optimizer'),
    ('CPU, the operators one training step dispatches (about the kernel launches of an eager '
     'step on a GPU), fp32; the count does not depend on the input size',
     'python tools/analysis_tools/benchmark.py --device cpu --models glnet_4g glnet_4g_reference '
     'glnet_stl glnet_stl_reference glnet_9g swin_t convnext_t --modes train --train-size 64 '
     '--train-batch-size 2 --count-ops'),
    ('GPU, training step with AdamW\'s fused kernels for every model',
     'python tools/analysis_tools/benchmark.py --models glnet_4g glnet_4g_compile_blocks swin_t '
     'convnext_t --modes train --channels-last --fused-optimizer --count-ops'),
    ('GPU, training step with every model compiled',
     'python tools/analysis_tools/benchmark.py --models glnet_4g_compile_blocks swin_t '
     'convnext_t --modes train --channels-last --compile'),
    ("GPU, training step with every model compiled in torch's default mode, GLNet through "
     "compile_backbone, AdamW's fused kernels, with profiles",
     'python tools/analysis_tools/benchmark.py --models swin_t glnet_4g_compile_backbone --modes '
     'train --channels-last --compile --fused-optimizer --profile'),
]

# Figures a committed run holds that the page does not count towards a target, with the
# evidence: (file name, model) -> why. For what the tool could not tell when it measured them.
IN_DOUBT: Dict[Tuple[str, str], str] = {}

# A step that replays CUDA graphs allocates next to nothing while it is timed (its memory is
# the graphs' pools, filled while they were captured); one that allocated more than this, and
# more than half its step memory, ran without replaying them (CUDA-graph trees still
# recording or warming up, or running their graphs' kernels one by one).
UNREPLAYED_ALLOC_MIB = 512


def load_runs(pattern: str) -> List[dict]:
    runs = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            run = json.load(f)
        run['file'] = osp.relpath(path, REPO_ROOT)
        runs.append(run)
    return runs


def run_device(run: dict) -> str:
    return 'cpu' if run['environment'].get('cuda') is None else 'cuda'


def matches(run: dict, settings: dict) -> bool:
    for key, value in settings.items():
        actual = run_device(run) if key == 'device' else run['settings'].get(key)
        if actual != value:
            return False
    return True


def find_row(run: dict, model: str, mode: str, precision: str, size: int,
             batch: int) -> Optional[dict]:
    for row in run['results']:
        if (row['model'], row['mode'], row['precision'], row['size'],
                row['batch']) == (model, mode, precision, size, batch) and 'ms' in row:
            return row
    return None


def goal_text(target: dict) -> str:
    if target['threshold'] is None:
        return '—'
    sign = '≥' if target['compare'] == 'speed' else '≤'
    unit = dict(speed='×', time='× the time', memory='×')[target['compare']]
    return f'{sign} {target["threshold"]}{unit}'


def step_mem_per_megapixel(row: dict) -> float:
    return row['step_mem_mib'] / (row['batch'] * row['size']**2 / 1e6)


def measure_target(target: dict, ours: dict, theirs: dict):
    """(value, text) of ``target`` for the model's row ``ours`` and the peer's ``theirs``."""
    if target['compare'] == 'speed':
        value = ours['images_per_s'] / theirs['images_per_s']
        return value, (f'{value:.2f}× ({ours["images_per_s"]:.1f} vs '
                       f'{theirs["images_per_s"]:.1f} img/s)')
    if target['compare'] == 'time':
        value = ours['ms'] / theirs['ms']
        return value, f'{value:.2f}× the time ({ours["ms"]:.1f} vs {theirs["ms"]:.1f} ms)'
    large, small = step_mem_per_megapixel(ours), step_mem_per_megapixel(theirs)
    value = large / small
    return value, (f'{value:.2f}× ({large:.1f} vs {small:.1f} MiB per megapixel; peak '
                   f'{theirs["peak_mem_mib"]:.0f} → {ours["peak_mem_mib"]:.0f} MiB)')


def target_rows(runs: List[dict]) -> List[str]:
    lines = ['| target | model | run | measured | target | status |', '|---|---|---|---|---|---|']
    for target in TARGETS:
        found = False
        case = (target['mode'], target['precision'], target['size'], target['batch'])
        peer_case = (target['mode'], target['precision'], target.get('peer_size', target['size']),
                     target['batch'])
        for run in runs:
            models = [
                m for settings, names in target['ways'] if matches(run, settings) for m in names
            ]
            theirs = find_row(run, target['peer'], *peer_case)
            for model in dict.fromkeys(models):
                ours = find_row(run, model, *case)
                if ours is None or theirs is None:
                    continue
                found = True
                value, measured = measure_target(target, ours, theirs)
                status = validity(run, (ours, theirs)) or goal_status(target, value)
                lines.append(f'| {target["title"]} | {model} | [{osp.basename(run["file"])}]'
                             f'(#{anchor(run)}) | {measured} | {goal_text(target)} | {status} |')
        if not found:
            candidates = dict.fromkeys(m for _, names in target['ways'] for m in names)
            lines.append(f'| {target["title"]} | {", ".join(candidates)} | — | '
                         f'not measured yet | {goal_text(target)} | open |')
    return lines


def goal_status(target: dict, value: float) -> str:
    """'met', '**missed**', or 'reported' for a target without a threshold."""
    threshold = target['threshold']
    if threshold is None:
        return 'reported'
    met = value >= threshold if target['compare'] == 'speed' else value <= threshold
    return 'met' if met else '**missed**'


def doubt(run: dict, row: dict) -> Optional[str]:
    """Why ``row``'s figure in ``run`` is in doubt (:data:`IN_DOUBT`), or None."""
    return IN_DOUBT.get((osp.basename(run['file']), row['model']))


def validity(run: dict, rows) -> str:
    """Why the figures of ``rows`` of ``run`` cannot be counted towards a target, or ''."""
    skipped = [row['model'] for row in rows if row.get('cudagraph_skips')]
    if skipped:  # the figure is not of the mode it was meant to measure
        return f'not valid: {" and ".join(skipped)} ran graphs without CUDA graphs'
    compiling = [
        f'{row["model"]} ({row["graphs_compiled_while_timed"]})' for row in rows
        if row.get('graphs_compiled_while_timed')
    ]
    if compiling:
        return f'not valid: graphs compiled while timed by {" and ".join(compiling)}'
    unreplayed = [
        f'{row["model"]} ({allocated_while_timed(row):.0f} MiB)' for row in rows
        if not_replaying(run, row)
    ]
    if unreplayed:
        return ('not valid: allocated while timed, so not replaying CUDA graphs: '
                f'{" and ".join(unreplayed)}')
    doubts = [f'{row["model"]}: {doubt(run, row)}' for row in rows if doubt(run, row)]
    if doubts:
        return 'in doubt: ' + '; '.join(doubts)
    return ''


def replays_graphs(run: dict, row: dict) -> bool:
    """Whether ``row``'s model replayed CUDA graphs (captured by the tool or compiled)."""
    return bool(run['settings'].get('cuda_graphs')) or 'cudagraph_skips' in row


def allocated_while_timed(row: dict) -> Optional[float]:
    """MiB the timed steps of ``row`` allocated at their peak: recorded (``timed_alloc_mib``),
    or, for runs from before, the step memory less what the graphs' pools grew by (an
    underestimate by the gradients a backward graph wrote into its pool); None on the CPU."""
    if 'timed_alloc_mib' in row:
        return row['timed_alloc_mib']
    if 'step_mem_mib' not in row:
        return None
    return row['step_mem_mib'] - row.get('graph_pool_mib', 0)


def not_replaying(run: dict, row: dict) -> bool:
    """Whether ``row``'s model was meant to replay CUDA graphs but allocated like a step that
    does not (:data:`UNREPLAYED_ALLOC_MIB`)."""
    allocated = allocated_while_timed(row)
    return (replays_graphs(run, row) and allocated is not None and allocated > UNREPLAYED_ALLOC_MIB
            and allocated > 0.5 * row['step_mem_mib'])


def graphs_memory_missing(run: dict, row: dict) -> bool:
    """Whether ``row`` replayed CUDA graphs but was measured before the tool counted their
    memory pools (its rows then lack ``graphs_compiled_while_timed``, recorded since)."""
    return replays_graphs(run, row) and 'graphs_compiled_while_timed' not in row


def peak_memory(run: dict, row: dict) -> str:
    if 'peak_mem_mib' not in row:
        return '—'
    if graphs_memory_missing(run, row):
        return f'{row["peak_mem_mib"]:.0f} without the graphs\' memory'
    return f'{row["peak_mem_mib"]:.0f}'


def anchor(run: dict) -> str:
    name = osp.splitext(osp.basename(run['file']))[0]
    return 'run-' + ''.join(c if c.isalnum() else '-' for c in name.lower())


def mode_label(row: dict) -> str:
    names = dict(infer='inference', train='training step', latency='batch-1 latency')
    return (f'{names[row["mode"]]}, {row["precision"]}, {row["size"]}², '
            f'batch {row["batch"]}')


def operator_counts(row: dict) -> str:
    if 'aten_ops_per_step' not in row:
        return ''
    optimizer = row.get('optimizer_aten_ops')
    return str(row['aten_ops_per_step']) + (f' (+{optimizer})' if optimizer else '')


def device_work(row: dict) -> str:
    if 'device_ops' not in row:
        return ''
    return f'{row["device_ops"]} / {row["device_busy_ms"]:.1f} ms'


def cuda_graph_skips(row: dict) -> str:
    return str(row['cudagraph_skips']) if row.get('cudagraph_skips') else ''


# Columns shown where a run recorded them: (header, cell text or '' for the row).
EXTRA_COLUMNS = [
    ('ATen operators per step (+ optimizer)', operator_counts),
    ('profiled step: device kernels / busy time', device_work),
    ('compiled graphs run without CUDA graphs', cuda_graph_skips),
]


def run_section(run: dict) -> List[str]:
    env, settings = run['environment'], run['settings']
    flags = [name for name in ('compile', 'cuda_graphs', 'channels_last') if settings[name]]
    if settings.get('compile_mode'):
        flags.append(f'compile mode {settings["compile_mode"]}')
    if settings.get('compile_options'):
        options = ', '.join(f'{key}={value}' for key, value in settings['compile_options'].items())
        flags.append(f'compile options {options}')
    if settings.get('fused_optimizer'):
        flags.append('fused AdamW')
    git = run['git']
    dirty = ' (with uncommitted changes to the models or the tool)' if git.get('dirty') else ''
    packages = ', '.join(f'{k} {v}' for k, v in env['packages'].items() if v)
    lines = [
        f'<a id="{anchor(run)}"></a>',
        '',
        f'### {osp.basename(run["file"])}',
        '',
        f'- device: {env["device"]}; torch {env["torch"]}' +
        (f', CUDA {env["cuda"]}, cuDNN {env["cudnn"]}' if env.get('cuda') else '') +
        f'; {packages}',
        f'- commit: `{git["commit"]}`{dirty}; date: {run["date"]}',
        f'- mode: {", ".join(flags) if flags else "eager"}; warm-up {settings["warmup"]}, '
        f'{settings["iters"]} iterations × {settings["repeats"]} repeats (models take turns; '
        'medians)',
    ]
    if run.get('load_average_start') is not None:
        lines.append(f'- load average (1, 5, 15 min) at start {run["load_average_start"]}, '
                     f'at end {run.get("load_average_end")}')
    if run.get('note'):
        lines.append(f'- note: {run["note"]}')
    if run.get('cut_short'):
        lines.append(f'- **cut short**: {run["cut_short"]} (the figures below are what was '
                     'measured before)')
    for row in run['results']:
        if row.get('cudagraph_skips'):
            reasons = '; '.join(row.get('cudagraph_skip_reasons', [])) or 'no reason logged'
            lines.append(f'- **{row["model"]} ({mode_label(row)}) ran {row["cudagraph_skips"]} '
                         f'compiled graph(s) without CUDA graphs**: {reasons}')
        if row.get('graphs_compiled_while_timed'):
            lines.append(f'- **{row["model"]} ({mode_label(row)}): dynamo compiled '
                         f'{row["graphs_compiled_while_timed"]} graph(s) while it was timed**: '
                         'its figure has compilation in it')
        if not_replaying(run, row):
            lines.append(f'- **{row["model"]} ({mode_label(row)}) allocated '
                         f'{allocated_while_timed(row):.0f} MiB while timed**: it was not '
                         'replaying CUDA graphs, and its figure is not of that mode')
        if doubt(run, row):
            lines.append(f'- **{row["model"]} ({mode_label(row)}) in doubt**: {doubt(run, row)}')
    if run.get('profile_file'):
        lines.append(f'- operator profile: [{run["profile_file"]}](benchmarks/'
                     f'{run["profile_file"]})')
    lines += ['', f'```\n{run["command"]}\n```', '']
    groups = {}
    for row in run['results']:
        groups.setdefault(mode_label(row), []).append(row)
    baseline = run['baseline']
    for label, rows in groups.items():
        base = next((r for r in rows if r['model'] == baseline and 'ms' in r), None)
        extra = [column for column in EXTRA_COLUMNS if any(column[1](r) for r in rows)]
        lines += [
            f'**{label}**', '',
            f'| model | img/s | ms / iteration | vs {baseline} | peak memory (MiB) '
            '| step memory per megapixel (MiB) |' + ''.join(f' {c[0]} |' for c in extra),
            '|---|---|---|---|---|---|' + '---|' * len(extra)
        ]
        for row in rows:
            if 'error' in row:
                lines.append(f'| {row["model"]} | failed: {row["error"][:80]} | | | | |' +
                             ' |' * len(extra))
                continue
            ratio = '' if base is None else f'{row["images_per_s"] / base["images_per_s"]:.2f}×'
            memory = peak_memory(run, row)
            megapixels = row['batch'] * row['size']**2 / 1e6
            per_pixel = (f'{row["step_mem_mib"] / megapixels:.1f}'
                         if 'step_mem_mib' in row and not graphs_memory_missing(run, row) else '—')
            spread = f'{min(row["samples_ms"]):.1f}–{max(row["samples_ms"]):.1f}'
            lines.append(f'| {row["model"]} | {row["images_per_s"]:.1f} | {row["ms"]:.1f} '
                         f'({spread}) | {ratio} | {memory} | {per_pixel} |' +
                         ''.join(f' {column[1](row) or "—"} |' for column in extra))
        lines.append('')
    return lines


def render(runs: List[dict], template_path: str = TEMPLATE) -> str:
    """The page: the prose of ``template_path`` with the targets, commands and runs filled in."""
    reproduce = []
    for title, command in REPRODUCE:
        reproduce += [f'- {title}:', '', f'  ```\n  {command}\n  ```', '']
    sections = []
    for run in runs:
        sections += run_section(run)
    with open(template_path, encoding='utf-8') as f:
        template = string.Template(f.read())
    text = template.substitute(
        targets='\n'.join(target_rows(runs)),
        reproduce='\n'.join(reproduce).rstrip(),
        runs='\n'.join(sections).rstrip() if runs else 'No runs committed yet.')
    return text.rstrip() + '\n'


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--inputs',
        default=osp.join(REPO_ROOT, 'docs', 'benchmarks', '*.json'),
        help='glob of benchmark JSON files')
    parser.add_argument('--out', default=osp.join(REPO_ROOT, 'docs', 'benchmark.md'))
    parser.add_argument(
        '--check',
        action='store_true',
        help='do not write; exit 1 if the page differs from the JSON files')
    args = parser.parse_args(argv)
    text = render(load_runs(args.inputs))
    if args.check:
        current = open(args.out).read() if osp.exists(args.out) else ''
        if current != text:
            print(f'{args.out} is out of date: run {osp.relpath(__file__, REPO_ROOT)}')
            return 1
        print(f'{args.out} is up to date')
        return 0
    from mmglnet.engine.checkpoint_files import atomic_write_text  # torch: only to write
    atomic_write_text(args.out, text)
    print(f'wrote {args.out} from {args.inputs}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
