"""Shared test set-up: pytest-xdist workers, where the parity fixtures live, a tiny GLNet arch."""
import importlib.util
import json
import os
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The code the tools share (tools/_support: pre-flight checks, demo data, tool runs), which the
# tests use too; appended, so that no tool script shadows a module of the same name.
sys.path.append(osp.join(REPO_ROOT, 'tools'))
# Official-format checkpoints and the official model's outputs (tests/data/parity/README.md).
PARITY_DIR = osp.join(REPO_ROOT, 'tests', 'data', 'parity')

# The demo's tiny arch (configs/demo/_base_/glnet-tiny.py): 4G-like, small enough for CPU tests,
# with every block type of the G series.
TINY_ARCH = Config.fromfile(
    osp.join(REPO_ROOT, 'configs', 'demo', '_base_', 'glnet-tiny.py'),
    import_custom_modules=False).glnet_tiny.to_dict()

# An STL-like arch: non-overlapping stem, token-layout attention in the last stage.
TINY_STL_ARCH = dict(
    depth=[1, 1, 2, 1],
    embed_dim=[32, 64, 96, 128],
    mixing_modes=['glmix', 'glmix', 'glmix', 'mha'],
    slot_init='ada_avgpool',
    transition_layout='norm.proj',
    norm_layer='bn',
)


def load_script(path: str, module_name: str):
    """A script of the repository (``tools/...``) as a module: the tools are scripts, not a
    package, so tests load them by path and call their functions."""
    spec = importlib.util.spec_from_file_location(module_name, osp.join(REPO_ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_tool(name: str):
    """``tools/analysis_tools/<name>.py`` as a module."""
    return load_script(f'tools/analysis_tools/{name}.py', f'mmglnet_tool_{name}')


def parity_path(name: str) -> str:
    path = osp.join(PARITY_DIR, name)
    if not osp.exists(path):
        raise FileNotFoundError(f'Parity fixture {path} not found: it is part of the repository '
                                '(tests/data/parity/); restore it with git.')
    return path


def load_cases() -> dict:
    with open(parity_path('cases.json')) as f:
        return json.load(f)


# Most tests are tiny models and tool runs in subprocesses that spend their time importing, on one
# core: pytest-xdist runs the suite in one worker per CPU (setup.cfg's addopts: ``-n auto``; pass
# ``-n 0`` to run it in this process). At most this many workers: each imports the whole stack.
MAX_TEST_WORKERS = 8


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it)."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# pytest-xdist's hook: optional (no error where xdist is not installed), tried before xdist's own.
@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per usable CPU (not per physical core), at most 8."""
    return min(usable_cpus(), MAX_TEST_WORKERS)


def pytest_configure(config):
    """In a worker, share the CPUs with the other workers instead of oversubscribing them.

    torch (and the OpenMP of the tools run in subprocesses) would each start a thread per CPU in
    every worker; with the workers busy at once, the threads wait on each other.
    """
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '0'))
    if workers > 1:
        threads = max(1, usable_cpus() // workers)
        torch.set_num_threads(threads)
        os.environ.setdefault('OMP_NUM_THREADS', str(threads))


@pytest.fixture
def tiny_arch():
    return dict(TINY_ARCH)


@pytest.fixture
def tiny_stl_arch():
    return dict(TINY_STL_ARCH)
