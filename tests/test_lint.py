"""The whole tree passes the project's linters (flake8, isort, yapf; settings in setup.cfg).

The same checks as ``.pre-commit-config.yaml``, with the versions of requirements/tests.txt, so a
change that is not formatted or that flake8 rejects fails here rather than in a later review.
"""
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

PYTHON_PATHS = ['mmglnet', 'tools', 'tests', 'configs', 'setup.py']
CHECKS = {
    'flake8': ['-m', 'flake8'] + PYTHON_PATHS,
    'isort': ['-m', 'isort', '--check-only', '--diff'] + PYTHON_PATHS,
    'yapf': ['-m', 'yapf', '--diff', '--recursive', '--parallel'] + PYTHON_PATHS,
}


@pytest.mark.parametrize('tool', sorted(CHECKS))
def test_tree_passes(tool):
    result = subprocess.run(
        [sys.executable] + CHECKS[tool], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    report = (result.stdout + result.stderr)[-5000:]
    assert result.returncode == 0, (
        f'{tool} finds problems (fix them, or run `pre-commit run --all-files`):\n{report}')
    assert not result.stdout.strip() or tool == 'flake8', report
