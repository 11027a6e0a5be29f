"""tools/setup_env.sh stops before a step that would run out of disk, and says what to do.

A ``df`` on PATH reports 100 MiB free; the interpreters the script would call do nothing, so a
script that went on past its check fails differently and installs nothing.
"""
import os
import os.path as osp
import subprocess

import pytest

from conftest import REPO_ROOT

FAKE_DF = """#!/usr/bin/env bash
echo "Filesystem 1024-blocks Used Available Capacity Mounted on"
echo "/dev/fake 1000000 897600 102400 90% /"
"""
# Answers every call with failure: `import torch` fails, `-m venv` creates nothing.
FAILING_PYTHON = '#!/usr/bin/env bash\nexit 3\n'


def write_executable(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


@pytest.mark.parametrize('venv_state', ['missing', 'without torch'])
def test_refuses_to_install_torch_without_room(tmp_path, venv_state):
    write_executable(tmp_path / 'bin' / 'df', FAKE_DF)
    write_executable(tmp_path / 'bin' / 'python', FAILING_PYTHON)
    venv = tmp_path / 'envs' / 'venv'
    if venv_state == 'without torch':
        write_executable(venv / 'bin' / 'python', FAILING_PYTHON)
    env = dict(
        os.environ,
        PATH=f'{tmp_path / "bin"}{os.pathsep}{os.environ["PATH"]}',
        PYTHON=str(tmp_path / 'bin' / 'python'),
        MMGLNET_VENV=str(venv))

    result = subprocess.run(['bash', osp.join(REPO_ROOT, 'tools', 'setup_env.sh')],
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=60)

    assert result.returncode == 1, result.stderr
    assert 'installing torch==' in result.stderr
    assert 'needs about 6144 MiB free' in result.stderr
    assert f'at {venv}, but only 100 MiB are free there' in result.stderr
    assert 'MMGLNET_VENV' in result.stderr
    assert venv.exists() == (venv_state == 'without torch')
