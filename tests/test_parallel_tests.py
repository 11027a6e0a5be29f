"""The test suite's pytest-xdist workers: one per CPU, each with its share of the CPUs.

Runs pytest on a one-test file with this directory's ``conftest.py`` loaded as a plugin; the test
records, in each worker, what the worker count and the thread settings were.
"""
import json
import os
import subprocess
import sys

import pytest

from conftest import MAX_TEST_WORKERS, REPO_ROOT, usable_cpus

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
RECORDING_TEST = '''
import json
import os

import torch


def test_record(worker_id):
    with open(os.path.join(os.environ['RECORD_DIR'], worker_id + '.json'), 'w') as f:
        json.dump(dict(workers=os.environ['PYTEST_XDIST_WORKER_COUNT'],
                       torch_threads=torch.get_num_threads(),
                       omp_threads=os.environ.get('OMP_NUM_THREADS')), f)
'''


def _record_workers(tmp_path, workers: str) -> list:
    (tmp_path / 'test_record.py').write_text(RECORDING_TEST)
    env = dict(os.environ, RECORD_DIR=str(tmp_path), PYTHONPATH=TESTS_DIR)
    env.pop('OMP_NUM_THREADS', None)  # as in a plain shell, not inherited from this worker
    for name in ('PYTEST_XDIST_WORKER', 'PYTEST_XDIST_WORKER_COUNT'):  # this run's, if in one
        env.pop(name, None)
    command = [
        sys.executable, '-m', 'pytest', '-p', 'conftest', '-p', 'no:cacheprovider', '-o',
        'addopts=', '-n', workers, '--rootdir',
        str(tmp_path), '-q',
        str(tmp_path / 'test_record.py')
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(p.read_text()) for p in sorted(tmp_path.glob('gw*.json'))]


@pytest.mark.parametrize('workers', ['auto', '2'])
def test_workers_share_the_cpus(tmp_path, workers):
    records = _record_workers(tmp_path, workers)
    assert len(records) == 1  # one test: one worker ran it
    count = min(usable_cpus(), MAX_TEST_WORKERS) if workers == 'auto' else int(workers)
    threads = max(1, usable_cpus() // count)
    expected = dict(workers=str(count), torch_threads=threads, omp_threads=str(threads))
    if count == 1:  # one worker has the CPUs to itself: torch's and OpenMP's defaults
        expected.update(torch_threads=records[0]['torch_threads'], omp_threads=None)
    assert records[0] == expected
