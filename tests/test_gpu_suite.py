"""tools/analysis_tools/gpu_suite.sh: its choices are checked before a device second is spent.

The comparisons themselves need a GPU (the suite's dry run, ``SUITE_DRY_RUN=1``, runs them on
the CPU with timm installed; docs/benchmark.md says how).
"""
import os
import os.path as osp
import re
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT

SUITE = osp.join(REPO_ROOT, 'tools', 'analysis_tools', 'gpu_suite.sh')


def run_suite(tmp_path, **env) -> subprocess.CompletedProcess:
    """Runs a copy of the suite in an empty tree (no wheels to install, no benchmark tool),
    with a python that cannot start: whatever gets past the checks fails loudly."""
    script = tmp_path / 'tree' / 'tools' / 'analysis_tools' / 'gpu_suite.sh'
    script.parent.mkdir(parents=True)
    shutil.copy(SUITE, script)
    environment = dict(os.environ, PYTHON=str(tmp_path / 'no-python'), **env)
    return subprocess.run(['bash', str(script), str(tmp_path / 'out')],
                          env=environment,
                          capture_output=True,
                          text=True,
                          timeout=60)


def listed_comparisons() -> set:
    script = open(SUITE).read()
    listed = re.search(r'^COMPARISONS=\(([^)]*)\)', script, re.M).group(1).split()
    return set(listed)


def test_every_comparison_is_listed_for_suite_only():
    script = open(SUITE).read()
    run = set(re.findall(r'^\s*(?:LIMIT=\d+ )?compare (\w+)', script, re.M))
    assert run == listed_comparisons()


@pytest.mark.parametrize('env,message', [
    (dict(SUITE_PART='compile'), 'SUITE_PART=compile is not one of eager, compiled, extra, all'),
    (dict(SUITE_ONLY='gpu_infer_fp16 gpu_infer_fp16_poolin'),
     'SUITE_ONLY names gpu_infer_fp16_poolin, which is not a comparison of this suite: '
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
    for name in ('gpu_train_fp16_fused_adamw', 'gpu_infer_fp16_pooling',
                 'gpu_latency_1792_profile'):
        assert f'## {name} skipped: not in SUITE_ONLY' in log
    # The chosen one ran (and failed here: the python given cannot start).
    assert '## gpu_block_cudagraphs failed' in log and result.returncode == 1
