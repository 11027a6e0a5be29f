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

import pytest

from conftest import REPO_ROOT

SUITE = osp.join(REPO_ROOT, 'tools', 'analysis_tools', 'gpu_suite.sh')


def run_suite(tmp_path, with_benchmark: bool = False, **env) -> subprocess.CompletedProcess:
    """Runs a copy of the suite in a tree of its own (no carried wheels to install). Without
    ``with_benchmark`` the tree has no benchmark tool and the python cannot start: whatever
    gets past the checks fails loudly."""
    script = tmp_path / 'tree' / 'tools' / 'analysis_tools' / 'gpu_suite.sh'
    script.parent.mkdir(parents=True)
    shutil.copy(SUITE, script)
    python = str(tmp_path / 'no-python')
    if with_benchmark:
        shutil.copy(osp.join(osp.dirname(SUITE), 'benchmark.py'), script.parent)
        python = sys.executable
    environment = dict(os.environ, PYTHON=python, SUITE_COMMIT='test', **env)
    return subprocess.run(['bash', str(script), str(tmp_path / 'out')],
                          env=environment,
                          capture_output=True,
                          text=True,
                          timeout=600)


def listed_comparisons() -> set:
    script = open(SUITE).read()
    listed = re.search(r'^COMPARISONS=\(([^)]*)\)', script, re.M).group(1).split()
    return set(listed)


def test_every_comparison_is_listed_for_suite_only():
    script = open(SUITE).read()
    run = set(re.findall(r'^\s*(?:LIMIT=\d+ )?compare (\w+)', script, re.M))
    assert run == listed_comparisons()


@pytest.mark.parametrize('env,message', [
    (dict(SUITE_PART='compile'),
     'SUITE_PART=compile is not one of eager, compiled, blocks, extra, all'),
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
    for name in ('gpu_train_fp16_fused_adamw', 'gpu_eager_pooling', 'gpu_latency_1792_profile'):
        assert f'## {name} skipped: not in SUITE_ONLY' in log
    # The chosen one ran (and failed here: the python given cannot start).
    assert '## gpu_block_cudagraphs failed' in log and result.returncode == 1


def test_dry_run_measures_the_glnet_comparisons_end_to_end(tmp_path):
    comparisons = ['gpu_infer_fp16', 'gpu_train_fp16', 'gpu_latency', 'gpu_eager_pooling']
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
        'gpu_train_fp16': {'glnet_stl', 'glnet_stl_reference'},
        'gpu_latency': {'glnet_stl', 'glnet_stl_reference'},
        'gpu_eager_pooling': {'glnet_stl', 'glnet_stl_reference', 'glnet_stl_torch_pooling'},
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


def test_every_device_command_passes_the_benchmark_tools_checks(tmp_path, monkeypatch):
    """Each benchmark command of every part, as the device would run it, is accepted by the
    tool's own argument checks (model names, flag combinations), here with a CUDA device
    pretended: a typo found on the device costs minutes of its time."""
    from test_benchmark_tool import load_tool
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
                            env=dict(os.environ, PYTHON=str(stub), SUITE_COMMIT='test'),
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    commands = [json.loads(line) for line in calls.read_text().splitlines()]
    commands = [c[1:] for c in commands if c and c[0] == 'tools/analysis_tools/benchmark.py']
    assert len(commands) == len(listed_comparisons())
    benchmark = load_tool('benchmark')
    monkeypatch.setattr(benchmark.torch.cuda, 'is_available', lambda: True)
    for command in commands:
        args = benchmark.parse_args(command)
        assert args.device == 'cuda' and args.out.endswith('.json'), command
