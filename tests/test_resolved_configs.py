"""Every config resolves to what tests/data/resolved_configs.json records.

The configs share their common parts through bases (``configs/_base_/``,
``configs/demo/_base_/``); moving a setting into a base must not change what any config
resolves to. The record was written from the tree before the bases were introduced; after an
intended change of a config, write it again from the repository root with::

    python tests/test_resolved_configs.py --write tests/data/resolved_configs.json
"""
import argparse
import glob
import json
import os.path as osp

import pytest
from mmengine.config import Config

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
RECORD = osp.join(REPO_ROOT, 'tests', 'data', 'resolved_configs.json')


def config_names(configs_dir: str) -> list:
    """Paths (relative to ``configs_dir``) of the configs meant to be run: not the bases."""
    paths = glob.glob(osp.join(configs_dir, '**', '*.py'), recursive=True)
    names = (osp.relpath(path, configs_dir) for path in paths)
    return sorted(name for name in names if '_base_' not in name.split(osp.sep))


def resolve(path: str) -> dict:
    """The config at ``path`` after inheritance, as plain JSON values.

    Tuples become lists (as JSON has no tuples); nothing in a resolved config depends on
    where the repository lies (the ``filename`` of a config is not part of its dict).
    """
    cfg = Config.fromfile(path, import_custom_modules=False)
    return json.loads(json.dumps(cfg.to_dict(), sort_keys=True))


def resolve_all(configs_dir: str) -> dict:
    """``{name: resolved config}`` for every config under ``configs_dir``."""
    return {name: resolve(osp.join(configs_dir, name)) for name in config_names(configs_dir)}


CONFIGS = config_names(osp.join(REPO_ROOT, 'configs'))


def load_record() -> dict:
    with open(RECORD) as f:
        return json.load(f)


def test_the_record_lists_every_config():
    assert CONFIGS == sorted(load_record())


@pytest.mark.parametrize('name', CONFIGS)
def test_config_resolves_as_recorded(name):
    expected = load_record()[name]
    actual = resolve(osp.join(REPO_ROOT, 'configs', name))
    assert sorted(actual) == sorted(expected)
    for key in expected:
        assert actual[key] == expected[key], key


def main() -> None:
    parser = argparse.ArgumentParser(description='Write the record of the resolved configs.')
    parser.add_argument('--write', required=True, help='JSON file to write')
    parser.add_argument(
        '--configs',
        default=osp.join(REPO_ROOT, 'configs'),
        help='configs folder to resolve (default: this repository\'s)')
    args = parser.parse_args()
    with open(args.write, 'w') as f:
        json.dump(resolve_all(args.configs), f, indent=1, sort_keys=True)
        f.write('\n')


if __name__ == '__main__':
    main()
