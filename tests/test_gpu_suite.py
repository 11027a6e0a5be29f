"""tools/analysis_tools/gpu_suite.sh: its choices are checked before a device second is spent,
and its GLNet comparisons run end to end in its dry run (tiny sizes on the CPU).

The peers come from timm, which the test environment does not install; the dry run of every
comparison with them is run by hand before a device session (docs/benchmark.md).
"""
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import torch

from conftest import REPO_ROOT, load_tool

SUITE = osp.join(REPO_ROOT, 'tools', 'analysis_tools', 'gpu_suite.sh')


def run_suite(tmp_path, with_benchmark: bool = False, **env) -> subprocess.CompletedProcess:
    """Runs a copy of the suite in a tree of its own (no carried wheels to install). Without
    ``with_benchmark`` the tree has no benchmark tool and the python cannot start: whatever
    gets past the checks fails loudly. ``env`` may give another ``PYTHON``."""
    script = tmp_path / 'tree' / 'tools' / 'analysis_tools' / 'gpu_suite.sh'
    script.parent.mkdir(parents=True)
    shutil.copy(SUITE, script)
    python = str(tmp_path / 'no-python')
    if with_benchmark:
        for tool in ('benchmark.py', 'check_compiled_training.py'):
            shutil.copy(osp.join(osp.dirname(SUITE), tool), script.parent)
        demo_arch = osp.join('configs', 'demo', '_base_', 'glnet-tiny.py')
        os.makedirs(osp.dirname(tmp_path / 'tree' / demo_arch))
        shutil.copy(osp.join(REPO_ROOT, demo_arch), tmp_path / 'tree' / demo_arch)
        python = sys.executable
    environment = dict(
        os.environ,
        PYTHON=python,
        SUITE_COMMIT='test',
        TORCHINDUCTOR_CACHE_DIR=str(tmp_path / 'compile_cache'))
    environment.update(env)
    return subprocess.run(['bash', str(script), str(tmp_path / 'out')],
                          env=environment,
                          capture_output=True,
                          text=True,
                          timeout=600)


def listed_comparisons() -> set:
    script = open(SUITE).read()
    listed = re.search(r'^COMPARISONS=\(([^)]*)\)', script, re.M).group(1).split()
    return set(listed)


def suite_steps(kind: str) -> set:
    """Names of the suite's steps run by ``compare`` (benchmark.py) or ``check_training``."""
    script = open(SUITE).read()
    return set(re.findall(rf'^\s*(?:LIMIT=\d+ )?{kind} (\w+)', script, re.M))


def test_every_comparison_is_listed_for_suite_only():
    assert suite_steps('compare') | suite_steps('check_training') == listed_comparisons()
    assert suite_steps('check_training')  # the compiled-training check is one of them


def test_each_part_fits_one_device_command():
    """The time limits of a part's steps add up to at most the 600 s of one device command
    (150 s where a step gives none), so that a part cut short is one that overran."""
    script = open(SUITE).read()
    parts = re.findall(r'^if \[ "\$PART" = (\w+) \] \|\| \[ "\$PART" = all \]; then\n(.*?)^fi$',
                       script, re.M | re.S)
    assert {name
            for name, _ in parts} == {
                'eager', 'compiled', 'compiled_more', 'compiled_train', 'blocks', 'extra',
                'autotune', 'cpp_wrapper', 'shifts'
            }
    for name, body in parts:
        limits = [
            int(limit or 150) for limit in re.findall(
                r'^\s*(?:LIMIT=(\d+) )?(?:compare|check_training) \w+', body, re.M)
        ]
        assert limits and sum(limits) <= 600, (name, limits)


@pytest.mark.parametrize('env,message', [
    (dict(SUITE_PART='compile'),
     'SUITE_PART=compile is not one of eager, compiled, compiled_more, compiled_train, blocks, '
     'extra, autotune, cpp_wrapper, shifts, all'),
    (dict(SUITE_ONLY='gpu_infer_fp16 gpu_eager_poolin'),
     'SUITE_ONLY names gpu_eager_poolin, which is not a comparison of this suite: '
     'choose among gpu_infer_fp16 gpu_train_fp16'),
])
def test_bad_choices_stop_before_anything_runs(tmp_path, env, message):
    result = run_suite(tmp_path, **env)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / 'out' / 'suite_all.log').exists()


def test_suite_only_skips_the_other_comparisons_of_the_part(tmp_path):
    result = run_suite(
        tmp_path, SUITE_PART='extra', SUITE_ONLY='gpu_block_cudagraphs', SUITE_DRY_RUN='1')
    log = (tmp_path / 'out' / 'suite_extra.log').read_text()
    for name in ('gpu_eager_fast_path', 'gpu_train_fp16_fused_adamw'):
        assert f'## {name} skipped: not in SUITE_ONLY' in log
    # The chosen one ran (and failed here: the python given cannot start).
    assert '## gpu_block_cudagraphs failed' in log and result.returncode == 1


def fake_compiling_python(tmp_path) -> str:
    """A python for the suite that records, per tool call, whether inductor's cache directory
    already held a compiled graph, then "compiles" one into it."""
    helper = tmp_path / 'fake_compile.py'
    helper.write_text(
        'import json, os, sys\n'
        'if sys.argv[1] != "-c":  # not the device description of the log header\n'
        '    entry = os.path.join(os.environ["TORCHINDUCTOR_CACHE_DIR"], "fxgraph", "graph")\n'
        f'    with open({str(tmp_path / "calls.jsonl")!r}, "a") as f:\n'
        '        f.write(json.dumps(os.path.exists(entry)) + "\\n")\n'
        '    os.makedirs(os.path.dirname(entry), exist_ok=True)\n'
        '    open(entry, "wb").write(os.urandom(int(os.environ.get("GRAPH_BYTES", 8))))\n'
        '    if os.environ.get("KERNEL_BYTES"):  # a Triton kernel, as inductor keeps it\n'
        '        kernel = os.path.join(os.environ["TORCHINDUCTOR_CACHE_DIR"], "triton", "0",\n'
        '                              "KERNELHASH", "kernel.cubin")\n'
        '        os.makedirs(os.path.dirname(kernel), exist_ok=True)\n'
        '        open(kernel, "wb").write(os.urandom(int(os.environ["KERNEL_BYTES"])))\n')
    stub = tmp_path / 'python'
    stub.write_text(f'#!/bin/bash\nexec {sys.executable} {helper} "$@"\n')
    stub.chmod(0o755)
    return str(stub)


def calls_so_far(tmp_path) -> list:
    """Per tool call of the fake python: whether the cache held a compiled graph."""
    return [json.loads(line) for line in (tmp_path / 'calls.jsonl').read_text().splitlines()]


def test_compile_cache_comes_back_and_warms_the_next_run(tmp_path):
    """The caches a part compiled come back packed in OUT_DIR, in parts that each fit what a
    device call brings back; given to the next run (on a fresh machine: an empty cache
    directory), they are in place before its first tool starts."""
    python = fake_compiling_python(tmp_path)

    def run(name: str, **env) -> subprocess.CompletedProcess:
        """One comparison of the suite in ``tmp_path / name`` with the fake compiler."""
        result = run_suite(
            tmp_path / name, SUITE_PART='eager', SUITE_ONLY='gpu_infer_fp16', PYTHON=python, **env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    # An incompressible graph of 1.5 MiB: two parts of at most 1 MiB.
    first = run('first', GRAPH_BYTES=str(3 << 19), SUITE_CACHE_PART_MB='1')
    out = tmp_path / 'first' / 'out'
    assert 'compile cache: none carried' in first.stdout
    # What takes the room, for the next engineer to pare the cache down.
    assert ('## compile cache holds 1.5 MiB in 1 files; MiB by folder: fxgraph 1.5; by file '
            'type: (none) 1.5') in first.stdout
    parts = sorted(p.name for p in out.iterdir() if p.name.startswith('compile_cache'))
    assert parts == ['compile_cache.tar.gz.part00', 'compile_cache.tar.gz.part01']
    assert not [p for p in out.iterdir() if p.name.startswith('.')]  # no copy left half-way
    for part in parts:
        assert (out / part).stat().st_size <= 1 << 20
        assert (out / part).stat().st_mode & 0o044 == 0o044  # readable by whoever fetches it

    second = run('second', SUITE_COMPILE_CACHE=str(out / 'compile_cache.tar.gz'))
    assert (f'compile cache: unpacked {out}/compile_cache.tar.gz (2 part(s), 1 files)'
            in second.stdout)
    assert calls_so_far(tmp_path) == [False, True]  # cold, then warm

    # A part missing: the archive cannot be unpacked, and the run compiles cold.
    (out / 'compile_cache.tar.gz.part01').unlink()
    cut = run('cut', SUITE_COMPILE_CACHE=str(out / 'compile_cache.tar.gz'))
    assert 'could not be unpacked; compiling cold' in cut.stdout
    assert calls_so_far(tmp_path)[-1] is False  # nothing half-unpacked in the cache

    small = run('small', GRAPH_BYTES=str(3 << 19), SUITE_CACHE_MAX_MB='1')
    assert 'compile cache: 2 MiB packed, over SUITE_CACHE_MAX_MB=1; not written' in small.stdout
    assert not list((tmp_path / 'small' / 'out').glob('compile_cache*'))

    # 0: the cache is not wanted back (a call whose files must all be results).
    unpacked = run('unpacked', SUITE_CACHE_MAX_MB='0')
    assert 'compile cache: not packed (SUITE_CACHE_MAX_MB=0)' in unpacked.stdout
    assert 'MiB packed' not in unpacked.stdout
    assert not list((tmp_path / 'unpacked' / 'out').glob('compile_cache*'))


def test_the_packed_cache_leaves_out_the_triton_kernels_the_graph_entries_bundle(tmp_path):
    python = fake_compiling_python(tmp_path)
    result = run_suite(
        tmp_path,
        SUITE_PART='eager',
        SUITE_ONLY='gpu_infer_fp16',
        PYTHON=python,
        GRAPH_BYTES='4096',
        KERNEL_BYTES=str(3 << 19))
    assert result.returncode == 0, result.stdout + result.stderr
    assert ('## compile cache: triton/ (2 MiB) left out of the archive: its kernels travel in '
            'the FX-graph entries') in result.stdout
    parts = sorted((tmp_path / 'out').glob('compile_cache.tar.gz.part*'))
    archive = tmp_path / 'cache.tar.gz'
    archive.write_bytes(b''.join(part.read_bytes() for part in parts))
    with tarfile.open(archive) as packed:
        names = packed.getnames()
    assert './fxgraph/graph' in names
    assert not [name for name in names if name.startswith('./triton')]


def test_a_missing_compile_cache_stops_before_anything_runs(tmp_path):
    result = run_suite(tmp_path, SUITE_COMPILE_CACHE=str(tmp_path / 'cache.tar.gz'))
    assert result.returncode == 2
    assert (f'SUITE_COMPILE_CACHE={tmp_path}/cache.tar.gz is neither a file nor the first name '
            f'of parts ({tmp_path}/cache.tar.gz.part00, ...)') in result.stderr
    assert not (tmp_path / 'out' / 'suite_all.log').exists()


def test_dry_run_measures_the_glnet_comparisons_end_to_end(tmp_path):
    comparisons = [
        'gpu_infer_fp16', 'gpu_train_fp16', 'gpu_latency', 'gpu_eager_fast_path',
        'gpu_check_compiled_training'
    ]
    result = run_suite(
        tmp_path,
        with_benchmark=True,
        SUITE_DRY_RUN='1',
        SUITE_MODELS='glnet_stl',
        SUITE_EXTRA='',
        SUITE_PEERS='',
        SUITE_ONLY=' '.join(comparisons))
    log = (tmp_path / 'out' / 'suite_all.log').read_text()
    assert result.returncode == 0, log[-3000:]
    expected_models = {
        'gpu_infer_fp16': {'glnet_stl', 'glnet_stl_reference'},
        'gpu_train_fp16': {
            'glnet_stl', 'glnet_stl_reference', 'glnet_stl_triton_layernorm',
            'glnet_stl_triton_bias_grad'
        },
        'gpu_latency': {'glnet_stl', 'glnet_stl_reference'},
        'gpu_eager_fast_path': {
            'glnet_stl', 'glnet_stl_reference', 'glnet_stl_torch_pooling',
            'glnet_stl_conv_pointwise', 'glnet_stl_triton_layernorm', 'glnet_stl_autocast_casts',
            'glnet_stl_precast'
        },
    }
    for name, models in expected_models.items():
        record = json.loads((tmp_path / 'out' / f'{name}.json').read_text())
        assert {row['model'] for row in record['results']} == models, name
        assert all(row['images_per_s'] > 0 for row in record['results']), name
        assert record['git']['commit'] == 'test'
    # The settings the suite gives reach the tool: operator counts and profiles.
    train = json.loads((tmp_path / 'out' / 'gpu_train_fp16.json').read_text())
    assert all(row['aten_ops_per_step'] > 0 for row in train['results'])
    assert train['settings']['channels_last'] is True
    # The compiled-training check ran (on the CPU: no CUDA graphs) and found no difference.
    check = log[log.index('## gpu_check_compiled_training:'):]
    assert 'OK: largest relative difference' in check.split(
        '## gpu_check_compiled_training done')[0]


def test_every_device_command_passes_the_benchmark_tools_checks(tmp_path, monkeypatch):
    """Each benchmark command of every part, as the device would run it, is accepted by the
    tool's own argument checks (model names, flag combinations), here with a CUDA device
    pretended: a typo found on the device costs minutes of its time."""
    calls = tmp_path / 'calls.jsonl'
    stub = tmp_path / 'python'
    stub.write_text('#!/bin/bash\n'
                    f'exec {sys.executable} -c "import json, sys; '
                    f"open('{calls}', 'a').write(json.dumps(sys.argv[1:]) + '\\\\n')\" \"$@\"\n")
    stub.chmod(0o755)
    script = tmp_path / 'tree' / 'tools' / 'analysis_tools' / 'gpu_suite.sh'
    script.parent.mkdir(parents=True)
    shutil.copy(SUITE, script)
    result = subprocess.run(['bash', str(script), str(tmp_path / 'out')],
                            env=dict(
                                os.environ,
                                PYTHON=str(stub),
                                SUITE_COMMIT='test',
                                TORCHINDUCTOR_CACHE_DIR=str(tmp_path / 'compile_cache')),
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    commands = [json.loads(line) for line in calls.read_text().splitlines()]
    by_tool = {}
    for command in commands:
        if command[0] != '-c':  # the device's description in the log's header
            by_tool.setdefault(command[0], []).append(command[1:])
    assert set(by_tool) == {
        'tools/analysis_tools/benchmark.py', 'tools/analysis_tools/check_compiled_training.py'
    }
    benchmarks = by_tool['tools/analysis_tools/benchmark.py']
    checks = by_tool['tools/analysis_tools/check_compiled_training.py']
    assert len(benchmarks) == len(suite_steps('compare'))
    assert len(checks) == len(suite_steps('check_training'))
    benchmark, check = load_tool('benchmark'), load_tool('check_compiled_training')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda: 'pretended GPU')
    from mmglnet.models import compilation
    monkeypatch.setattr(compilation, 'cuda_toolkit_home', lambda: '/pretended/cuda')
    # Each run writes its stacks 10 s before its step's limit, should it be stuck.
    limits = {
        name: int(limit or 150)
        for limit, name in re.findall(r'^\s*(?:LIMIT=(\d+) )?compare (\w+)',
                                      open(SUITE).read(), re.M)
    }
    for command in benchmarks:
        args = benchmark.parse_args(command)
        assert args.device == 'cuda' and args.out.endswith('.json'), command
        name = osp.basename(args.out)[:-len('.json')]
        assert args.dump_stacks_after == limits[name] - 10, command
    for command in checks:
        args = check.parse_args(command)
        assert args.device == 'cuda' and args.mode == 'reduce-overhead', command
