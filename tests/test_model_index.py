"""The model catalogue (model-index.yml and the metafiles) against the configs and the docs."""
import glob
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import yaml

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

FAMILIES = ('classification', 'detection', 'segmentation')


def load_index():
    with open(osp.join(REPO_ROOT, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    collections, models = [], []
    for path in index['Import']:
        with open(osp.join(REPO_ROOT, path)) as f:
            metafile = yaml.safe_load(f)
        collections += metafile['Collections']
        models += metafile['Models']
    return collections, models


def test_metafiles_name_every_config_once():
    _, models = load_index()
    named = [m['Config'] for m in models]
    assert len(named) == len(set(named)), 'a config is named twice'
    for config in named:
        assert osp.isfile(osp.join(REPO_ROOT, config)), f'{config} does not exist'
    shipped = sorted(
        osp.relpath(path, REPO_ROOT) for family in FAMILIES
        for path in glob.glob(osp.join(REPO_ROOT, 'configs', family, '*.py')))
    assert shipped and sorted(named) == shipped
    assert [m['Name'] for m in models] == [osp.basename(c)[:-3] for c in named]


def test_models_are_complete():
    collections, models = load_index()
    names = {c['Name'] for c in collections}
    for collection in collections:
        assert collection['Paper']['URL'] == 'https://arxiv.org/abs/2411.14429'
        assert osp.isfile(osp.join(REPO_ROOT, collection['README']))
    for model in models:
        assert model['In Collection'] in names, model['Name']
        meta = model['Metadata']
        assert isinstance(meta['Parameters'], int) and isinstance(meta['FLOPs'], int)
        for result in model.get('Results', []):
            assert set(result) == {'Task', 'Dataset', 'Metrics'}
            # Every result is the paper's, and says so.
            assert 'Results Source' in meta, model['Name']


def _markdown_rows(path, first_cell):
    with open(osp.join(REPO_ROOT, path)) as f:
        return [[cell.strip() for cell in line.strip().strip('|').split('|')] for line in f
                if line.startswith('| ' + first_cell)]


def _scaled(text, unit):
    value = float(re.fullmatch(rf'([\d.]+) ?{unit}', text).group(1))
    return round(value * (1e6 if unit == 'M' else 1e9))


def test_figures_match_the_docs():
    """Parameters and FLOPs as computed in docs/configs.md and the README's zoo table."""
    _, models = load_index()
    by_config = {m['Config']: m['Metadata'] for m in models}
    checked = 0
    # docs/configs.md: | variant | model | params | FLOPs (full count) | paper |
    families = {
        'RetinaNet': ['configs/detection/retinanet_glnet{}_fpn_1x_coco.py'],
        'Mask R-CNN (1x, ms-3x)': [
            'configs/detection/mask-rcnn_glnet{}_fpn_1x_coco.py',
            'configs/detection/mask-rcnn_glnet{}_fpn_ms-3x_coco.py'
        ],
        'UperNet': ['configs/segmentation/upernet_glnet{}_160k.py']
    }
    for variant in ('STL', '4G', '9G', '16G'):
        rows = [r for r in _markdown_rows('docs/configs.md', variant + ' |') if r[1] in families]
        for row in rows:
            for pattern in families[row[1]]:
                meta = by_config[pattern.format(variant.lower())]
                assert meta['Parameters'] == _scaled(row[2], 'M'), (pattern, variant)
                assert meta['FLOPs'] == _scaled(row[3], 'G'), (pattern, variant)
                checked += 1
    # README: | model | params | FLOPs@224 | paper top-1 | config | official file |
    for row in _markdown_rows('README.md', 'GLNet-'):
        if len(row) == 6 and row[4].startswith('configs/classification/'):
            meta = by_config[row[4]]
            assert meta['Parameters'] == _scaled(row[1], 'M'), row
            assert meta['FLOPs'] == _scaled(row[2], 'G'), row
            top1 = next(m for m in models if m['Config'] == row[4])['Results'][0]
            assert top1['Metrics']['Top 1 Accuracy'] == float(row[3]), row
            checked += 1
    assert checked == 16 + 7


def test_mim_search_lists_the_models(tmp_path):
    """``mim search mmglnet`` on the package as pip installs it from a wheel, whose
    ``mmglnet/.mim`` holds the configs and model-index.yml (setup.py's mim extension)."""
    source = tmp_path / 'src'
    source.mkdir()
    for name in ('setup.py', 'README.md', 'MANIFEST.in', 'model-index.yml'):
        shutil.copy(osp.join(REPO_ROOT, name), source / name)
    for name in ('mmglnet', 'configs', 'tools', 'requirements'):
        shutil.copytree(
            osp.join(REPO_ROOT, name),
            source / name,
            symlinks=True,
            ignore=shutil.ignore_patterns('.mim', '__pycache__'))
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check', '-q']
    subprocess.run(
        pip +
        ['wheel', '--no-deps', '--no-build-isolation', '-w',
         str(tmp_path / 'dist'),
         str(source)],
        check=True,
        capture_output=True,
        timeout=300)
    [wheel] = glob.glob(str(tmp_path / 'dist' / 'mmglnet-*.whl'))
    site = tmp_path / 'site'
    subprocess.run(
        pip +
        ['install', '--no-deps', '--target', str(site), wheel],
        check=True,
        capture_output=True,
        timeout=300)
    assert (site / 'mmglnet' / '.mim' / 'model-index.yml').is_file()
    assert (site / 'mmglnet' / '.mim' / 'configs' / 'detection' / 'metafile.yml').is_file()

    mim = shutil.which('mim', path=osp.dirname(sys.executable))
    assert mim, 'openmim is a test requirement (requirements/tests.txt)'
    env = dict(os.environ, PYTHONPATH=str(site))
    result = subprocess.run([mim, 'search', 'mmglnet'],
                            capture_output=True,
                            text=True,
                            timeout=120,
                            cwd=str(tmp_path),
                            env=env)
    assert result.returncode == 0, result.stderr
    _, models = load_index()
    for model in models:
        assert f'config id: {model["Name"]}\n' in result.stdout, model['Name']
