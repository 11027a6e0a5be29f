"""What the tools print is worth reading: no known third-party notices, no replica check in a
single process, whole fields in the demo's shortened log lines, no ERROR line from a set-up that
succeeded, and the dist/slurm scripts start the project's Python.
"""
import importlib.util
import os
import os.path as osp
import re
import stat
import subprocess
import sys
from unittest import mock

import pytest

from conftest import REPO_ROOT
from tool_runs import UPERNET, make_tiny_data, run_tool, write_config

KNOWN_NOTICES = ('pkg_resources is deprecated', '``build_loss`` would be deprecated soon',
                 'Default ``avg_non_ignore`` is False', 'The draw is False',
                 '"FileClient" will be deprecated', '"HardDiskBackend" is the alias',
                 'The prefix is not set in metric class',
                 "Failed to add <class 'mmengine.visualization.vis_backend.LocalVisBackend'>",
                 'in the "function" registry tree')


def _load_tool(relative_path, name):
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO_ROOT, relative_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FILTER_CHECK = r'''
import logging, sys, warnings
sys.path.insert(0, sys.argv[1])
from mmengine.logging import MMLogger
before = MMLogger.get_instance('made_before', log_level='INFO')
if sys.argv[2] == 'tools':
    import known_warnings  # noqa: F401
else:
    import mmglnet  # noqa: F401
after = MMLogger.get_instance('made_after', log_level='INFO')
for message in ('pkg_resources is deprecated as an API. See https://setuptools.pypa.io',
                '``build_loss`` would be deprecated soon, please use mmseg.registry',
                'Default ``avg_non_ignore`` is False, if you would like to ignore',
                'The draw is False, it means that the hook for visualization will not take '
                'effect. The results will NOT be visualized or stored.',
                "Failed to add <class 'mmengine.visualization.vis_backend.LocalVisBackend'>, "
                'please provide the `save_dir` argument.'):
    warnings.warn(message, UserWarning)
warnings.warn('pkg_resources is deprecated (same text, another category)', FutureWarning)
warnings.warn('a foreign UserWarning', UserWarning)
for logger in (before, after):
    logger.warning('"FileClient" will be deprecated in future. Please use io functions')
    logger.warning('"HardDiskBackend" is the alias of "LocalBackend" and the former will be')
    logger.warning('The prefix is not set in metric class IoUMetric.')
    logger.warning('Failed to search registry with scope "mmdet" in the "function" registry '
                   'tree. As a workaround, the current "function" registry in "mmengine" is used')
    logger.warning('Failed to search registry with scope "mmdet" in the "model" registry tree')
    logger.info('"FileClient" will be deprecated in future (same text, another level)')
    logger.warning(f'a foreign log warning from {logger.instance_name}')
'''


def _filter_check(mode):
    result = subprocess.run(
        [sys.executable, '-c', FILTER_CHECK,
         osp.join(REPO_ROOT, 'tools'), mode],
        capture_output=True,
        text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_known_warnings_hides_only_the_known_notices():
    output = _filter_check('tools')
    shown = [
        line for line in output.splitlines()
        if any(n in line for n in KNOWN_NOTICES) and '(same text, another' not in line
    ]
    assert not shown, shown
    # The same text in another category or at another level, and anything foreign, still show.
    assert 'pkg_resources is deprecated (same text, another category)' in output
    assert '"FileClient" will be deprecated in future (same text, another level)' in output
    assert 'a foreign UserWarning' in output
    assert 'in the "model" registry tree' in output  # only the "function" registry's is known
    assert 'a foreign log warning from made_before' in output
    assert 'a foreign log warning from made_after' in output


def test_importing_mmglnet_hides_nothing():
    """Library users keep every warning: only the tools install the filters."""
    output = _filter_check('library')
    for notice in KNOWN_NOTICES:
        assert notice in output


def test_train_and_test_print_no_known_notice_and_no_replica_check(tmp_path):
    """A real single-process run of the demo UperNet through tools/train.py and tools/test.py."""
    roots = make_tiny_data(str(tmp_path / 'data'))
    config = write_config(UPERNET, roots['ade'], str(tmp_path / 'cfg.py'), max_iters=1)
    work_dir = tmp_path / 'work'
    train = run_tool(['tools/train.py', config, '--work-dir', str(work_dir)])
    test = run_tool([
        'tools/test.py', config,
        str(work_dir / 'iter_1.pth'), '--work-dir',
        str(tmp_path / 'test')
    ])
    for result in (train, test):
        output = result.stdout + result.stderr
        shown = [notice for notice in KNOWN_NOTICES if notice in output]
        assert not shown, f'known notices printed: {shown}'
        assert 'mIoU' in output
    train_output = train.stdout + train.stderr
    assert 'Iter(train) [1/1]' in train_output
    # ReplicaCheckHook is in the demo configs; one process has nothing to compare.
    assert 'ReplicaCheckHook:' not in train_output
    assert not list(work_dir.glob('*/replica_check.json'))


def test_replica_check_hook_is_silent_in_one_process(tmp_path):
    from mmglnet.engine import ReplicaCheckHook
    runner = mock.MagicMock()
    runner.log_dir = str(tmp_path)
    runner.train_dataloader.dataset = list(range(8))
    hook = ReplicaCheckHook()
    hook.before_train(runner)
    hook.after_train_iter(runner, 0, data_batch=dict(data_samples=[]))
    hook.after_train(runner)
    runner.logger.info.assert_not_called()
    runner.logger.warning.assert_not_called()
    assert os.listdir(tmp_path) == []


MMENGINE_LINE = (
    'Iter(train) [ 40/100]  base_lr: 1.0000e-04 lr: 1.0000e-04  eta: 0:00:18  time: 0.3101  '
    'data_time: 0.0102  memory: 512  grad_norm: 18.6914  loss: 1.8852  decode.loss_ce: 1.3387  '
    'decode.acc_seg: 42.4402  aux.loss_ce: 0.5465  aux.acc_seg: 20.8608')


@pytest.mark.parametrize('width', [40, 90, 160, 170, 200])
def test_demo_shortens_log_lines_at_field_boundaries(width):
    demo = _load_tool('tools/demo.py', 'mmglnet_demo_tool')
    short = demo.shorten_log_line(MMENGINE_LINE, width)
    assert len(short) <= width
    assert short.endswith(' ...')
    kept = short[:-len(' ...')]
    assert MMENGINE_LINE.startswith(kept)
    # Every key shown has its whole value: the original continues with a field separator.
    assert MMENGINE_LINE[len(kept)] == ' '
    assert not kept.rstrip().endswith(':')
    for key, value in re.findall(r'(\S+): (\S+)', kept):
        assert f'{key}: {value}' in MMENGINE_LINE


def test_demo_keeps_short_lines_and_cuts_one_long_word():
    demo = _load_tool('tools/demo.py', 'mmglnet_demo_tool')
    assert demo.shorten_log_line('Saving checkpoint at 2 iterations') == \
        'Saving checkpoint at 2 iterations'
    assert demo.shorten_log_line(MMENGINE_LINE, len(MMENGINE_LINE)) == MMENGINE_LINE
    assert demo.shorten_log_line('x' * 300, 100) == 'x' * 96 + ' ...'


def _quiet_pip_function():
    with open(osp.join(REPO_ROOT, 'tools', 'setup_env.sh')) as f:
        text = f.read()
    found = re.search(r'^quiet_pip\(\) \{\n.*?^\}\n', text, re.M | re.S)
    assert found, 'tools/setup_env.sh defines no quiet_pip function'
    return found.group(0)


def _quiet_pip(pip_output: str, pip_status: int) -> subprocess.CompletedProcess:
    script = ('set -euo pipefail\n'
              'fake_pip() { printf "%s\\n" "$FAKE_OUTPUT"; return "$FAKE_STATUS"; }\n'
              'PIP=(fake_pip)\n' + _quiet_pip_function() + 'quiet_pip install something\n')
    env = dict(os.environ, FAKE_OUTPUT=pip_output, FAKE_STATUS=str(pip_status))
    return subprocess.run(['bash', '-c', script],
                          capture_output=True,
                          text=True,
                          env=env,
                          timeout=60)


RESOLVER_NOTE = (
    "ERROR: pip's dependency resolver does not currently take into account all the packages "
    'that are installed. This behaviour is the source of the following dependency conflicts.\n'
    'torch 2.14.1 requires triton==3.6.0, but you have triton 3.5.0 which is incompatible.')


def test_set_up_prints_no_error_line_when_pip_succeeds():
    result = _quiet_pip(
        'Collecting something\n' + RESOLVER_NOTE + '\nSuccessfully installed something-1.0', 0)
    assert result.returncode == 0
    assert result.stdout == '' and result.stderr == ''


def test_set_up_shows_warnings_and_failures():
    warned = _quiet_pip('WARNING: Retrying after connection broken\nSuccessfully installed', 0)
    assert warned.returncode == 0
    assert warned.stderr.strip() == 'WARNING: Retrying after connection broken'
    failed = _quiet_pip('Collecting something\nERROR: No matching distribution found', 1)
    assert failed.returncode != 0
    assert 'Collecting something' in failed.stderr and 'No matching distribution' in \
        failed.stderr


def _fake_program(path, name):
    """An executable that prints its name and arguments."""
    with open(path, 'w') as f:
        f.write(f'#!/usr/bin/env bash\necho "{name} $*"\n')
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


@pytest.mark.parametrize('script, args', [
    ('dist_train.sh', ['CONFIG', '2']),
    ('dist_test.sh', ['CONFIG', 'CKPT', '2']),
    ('slurm_train.sh', ['PARTITION', 'JOB', 'CONFIG', 'WORK_DIR']),
    ('slurm_test.sh', ['PARTITION', 'JOB', 'CONFIG', 'CKPT']),
])
def test_launch_scripts_use_the_project_python(script, args, tmp_path):
    """The repository's .venv/bin/python, else PYTHON when set, else python on PATH."""
    repo = tmp_path / 'repo'
    (repo / 'tools').mkdir(parents=True)
    (repo / 'tools' / script).write_text(open(osp.join(REPO_ROOT, 'tools', script)).read())
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    _fake_program(bin_dir / 'python', 'PATH-python')
    _fake_program(bin_dir / 'srun', 'srun')  # runs nothing; shows the command
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHON', 'MMGLNET_VENV')}
    env['PATH'] = f'{bin_dir}:{env["PATH"]}'

    def launched(**extra):
        result = subprocess.run(
            ['bash', str(repo / 'tools' / script)] + args,
            env=dict(env, **extra),
            capture_output=True,
            text=True,
            timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    # No .venv: python from PATH (srun receives it as the program to start).
    output = launched()
    assert 'PATH-python' in output or re.search(r'(^|\s)python ', output)
    (repo / '.venv' / 'bin').mkdir(parents=True)
    _fake_program(repo / '.venv' / 'bin' / 'python', 'VENV-python')
    venv_python = str(repo / '.venv' / 'bin' / 'python')
    output = launched()
    assert 'VENV-python' in output or venv_python in output
    output = launched(PYTHON=str(bin_dir / 'python'))
    assert 'PATH-python' in output or str(bin_dir / 'python') in output
    assert venv_python not in output and 'VENV-python' not in output
