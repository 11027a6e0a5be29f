"""Shared test fixtures: where the parity fixtures live and a tiny GLNet arch."""
import importlib.util
import json
import os.path as osp
import sys

import pytest
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


def load_tool(name: str):
    """``tools/analysis_tools/<name>.py`` as a module (the tools are scripts, not a package)."""
    path = osp.join(REPO_ROOT, 'tools', 'analysis_tools', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'mmglnet_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parity_path(name: str) -> str:
    path = osp.join(PARITY_DIR, name)
    if not osp.exists(path):
        raise FileNotFoundError(f'Parity fixture {path} not found: it is part of the repository '
                                '(tests/data/parity/); restore it with git.')
    return path


def load_cases() -> dict:
    with open(parity_path('cases.json')) as f:
        return json.load(f)


@pytest.fixture
def tiny_arch():
    return dict(TINY_ARCH)


@pytest.fixture
def tiny_stl_arch():
    return dict(TINY_STL_ARCH)
