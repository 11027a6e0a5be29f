"""The official layout read in one place, and wrong weights refused loudly.

* :func:`mmglnet.checkpoint.filter_official_checkpoint` alone (a pure function);
* a backbone loads only if every stem, transition and stage tensor fits; the error counts the
  matches and names the arch the file looks like; ``allow_partial`` loads on purpose; output
  norms that no release file holds are not reported missing;
* ``tools/test.py`` refuses a checkpoint of another model (and accepts it with a flag).
"""
import json
import logging
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger

from mmglnet.apis import build_model
from mmglnet.checkpoint import (CheckpointMismatchError, filter_official_checkpoint,
                                load_pretrained_backbone, read_checkpoint_tensors)
from mmglnet.models import GLNet

from conftest import REPO_ROOT, TINY_ARCH, TINY_STL_ARCH, load_cases, parity_path
from tool_runs import MASK_RCNN, UPERNET, make_tiny_data, run_tool, write_config

CASES = load_cases()


def body_keys(state):
    """Stem, transitions and stages; batch counters carry no weight."""
    return [
        k for k in state
        if k.startswith(('downsample_layers.', 'stages.')) and not k.endswith('num_batches_tracked')
    ]


def official_file(arch=TINY_ARCH, wrap=False, seed=0):
    """An official-layout release dict built from a GLNet classification backbone."""
    torch.manual_seed(seed)
    model = GLNet(arch, out_indices=(3, ), out_norm_cfg=dict(type='BN'))
    weights = {
        ('norm.' + k[6:] if k.startswith('norm3.') else k): v.clone()
        for k, v in model.state_dict().items()
    }
    weights['head.weight'] = torch.randn(10, 128)
    weights['head.bias'] = torch.randn(10)
    weights['tklb_aux_head.weight'] = torch.randn(10, 128)
    weights['tklb_aux_head.bias'] = torch.randn(10)
    if wrap:
        weights = {'module.' + k: v for k, v in weights.items()}
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in weights.items()}
    return {'model': weights, 'model_ema': ema, 'epoch': 300, 'optimizer': {'state': {}}}


# ----------------------------------------------------------------------------------------
# The pure mapping.
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('wrap', [False, True])
def test_filter_maps_the_official_layout(wrap):
    checkpoint = official_file(wrap=wrap)
    before = {k: dict(v) if isinstance(v, dict) else v for k, v in checkpoint.items()}
    state, report = filter_official_checkpoint(checkpoint)
    # Pure: the input is unchanged, the tensors shared.
    assert set(checkpoint['model']) == set(before['model'])
    prefix = 'module.' if wrap else ''
    official = {k[len(prefix):]: v for k, v in checkpoint['model'].items()}
    assert report['weights_key'] == 'model'
    assert report['stripped_prefix'] == ('module.' if wrap else None)
    heads = ['head.bias', 'head.weight', 'tklb_aux_head.bias', 'tklb_aux_head.weight']
    assert sorted(report['dropped']) == heads
    assert sorted(report['classifier']) == heads
    assert report['ignored_entries'] == ['epoch', 'model_ema', 'optimizer']
    # Exactly the keys of the GLNet classification backbone.
    target = GLNet(TINY_ARCH, out_indices=(3, ), out_norm_cfg=dict(type='BN'))
    assert set(state) == set(target.state_dict())
    assert state['norm3.running_var'] is official['norm.running_var']
    assert report['renamed']['norm.weight'] == 'norm3.weight'
    assert state['stages.2.blocks.1.mha_op.in_proj_weight'] is (
        official['stages.2.blocks.1.mha_op.in_proj_weight'])
    target.load_state_dict(state, strict=True)


def test_filter_chooses_the_entry_the_official_evaluation_reads(tmp_path):
    checkpoint = official_file()
    state, report = filter_official_checkpoint(checkpoint, arch='16g')
    assert report['weights_key'] == 'model_ema'
    assert torch.equal(state['norm3.weight'], checkpoint['model_ema']['norm.weight'])
    state, report = filter_official_checkpoint(checkpoint, weights_key='model_ema')
    assert report['weights_key'] == 'model_ema'
    # A 16G-shaped file is recognised from its depths and widths.
    with open(parity_path('official_state_dict_manifest.json')) as f:
        shapes = json.load(f)['glnet_16g']['state_dict']
    meta = {k: torch.empty(s, device='meta') for k, s in shapes.items()}
    _, report = filter_official_checkpoint({'model': meta, 'model_ema': dict(meta)})
    assert report['weights_key'] == 'model_ema' and '16g' in report['key_reason']
    # A bare state dict is used as it is.
    state, report = filter_official_checkpoint(checkpoint['model'])
    assert report['weights_key'] is None and 'norm3.weight' in state


def test_filter_errors_name_the_choices():
    checkpoint = official_file()
    with pytest.raises(KeyError) as error:
        filter_official_checkpoint(checkpoint, weights_key='optimizer')
    assert "'optimizer'" in error.value.args[0]
    assert "Choose one of ['model', 'model_ema']" in error.value.args[0]
    with pytest.raises(ValueError, match='already an mm checkpoint'):
        filter_official_checkpoint({'state_dict': {'backbone.x': torch.zeros(1)}})
    with pytest.raises(ValueError, match="no 'downsample_layers"):
        filter_official_checkpoint({'model': {'fc.weight': torch.zeros(1)}})


def test_filter_agrees_with_the_parity_fixture():
    """On a file made with the official code, the result is the GLNet backbone's key set."""
    for name in ('4g_like', '4g_tklb_like', '16g_like'):
        checkpoint = read_checkpoint_tensors(parity_path(f'{name}.pth'))
        state, report = filter_official_checkpoint(
            checkpoint, weights_key=CASES[name]['weights_key'])
        target = GLNet(
            CASES[name]['official_kwargs'], out_indices=(3, ), out_norm_cfg=dict(type='BN'))
        assert set(state) == set(target.state_dict()), name
        target.load_state_dict(state, strict=True)
        heads = [k for k in checkpoint[report['weights_key']] if 'head.' in k]
        assert sorted(report['dropped']) == sorted(heads)


# ----------------------------------------------------------------------------------------
# Wrong weights are refused.
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def manifest():
    with open(parity_path('official_state_dict_manifest.json')) as f:
        return json.load(f)


def write_release_like(shapes, path, key='model'):
    """A release file with every official key and shape of a preset, at almost no size:
    each tensor is one stored value expanded (stride 0) to its shape."""
    weights = {}
    for i, (name, shape) in enumerate(shapes.items()):
        if name.endswith('num_batches_tracked'):
            weights[name] = torch.tensor(7)
        else:
            weights[name] = torch.full(
                (), 0.25 + i).expand(shape) if shape else torch.tensor(0.25 + i)
    torch.save({key: weights, 'epoch': 300}, path)
    return weights


def demo_segmentor(checkpoint, **init):
    """The tiny UperNet of the demo config, with the backbone initialised from ``checkpoint``."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, UPERNET))
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(checkpoint), **init)
    return build_model(cfg)


def test_a_4g_release_file_for_the_tiny_segmentor_is_refused(manifest, tmp_path):
    """The reported case: a GLNet-4G release file as init_cfg of the tiny demo segmentor."""
    path = tmp_path / 'glnet_4g.pth'
    shapes = manifest['glnet_4g']['state_dict']
    write_release_like(shapes, path)
    segmentor = demo_segmentor(path)
    own = segmentor.backbone.state_dict()
    required = body_keys(own)
    matched = [k for k in required if k in shapes and tuple(shapes[k]) == tuple(own[k].shape)]
    assert 0 < len(matched) < len(required)
    with pytest.raises(CheckpointMismatchError) as error:
        segmentor.init_weights()
    message = str(error.value)
    assert f'only {len(matched)} of its {len(required)} stem, transition and stage' in message
    assert "looks like the '4g' preset" in message
    assert str(path) in message and 'allow_partial=True' in message
    other_shape = [k for k in required if k not in matched]
    assert f'{len(other_shape)} with another shape' in message
    first = other_shape[0]
    assert (f'{first}: file {tuple(shapes[first])} vs model {tuple(own[first].shape)}' in message)
    # The 4G file has more blocks than the tiny arch: those are named too.
    extra = [
        k for k in shapes
        if k.startswith('stages.') and not k.endswith('num_batches_tracked') and k not in own
    ]
    assert f'holds {len(extra)} stem/stage tensor(s) this backbone lacks' in message


def test_a_custom_arch_file_is_described_by_its_depths_and_widths(tmp_path):
    """stl_like (a non-preset arch) into the tiny G-series backbone: refused, described."""
    model = GLNet(
        TINY_ARCH, init_cfg=dict(type='Pretrained', checkpoint=parity_path('stl_like.pth')))
    with pytest.raises(CheckpointMismatchError) as error:
        model.init_weights()
    message = str(error.value)
    assert 'depths [1, 1, 2, 1] and widths [32, 64, 96, 128]' in message
    assert 'no preset' in message


def test_the_4g_like_fixture_is_the_demo_arch_and_loads(tmp_path):
    """4g_like has the demo's tiny arch (num_slots has no tensor with adaptive pooling)."""
    segmentor = demo_segmentor(parity_path('4g_like.pth'))
    segmentor.init_weights()
    official = read_checkpoint_tensors(parity_path('4g_like.pth'))['model']
    own = segmentor.backbone.state_dict()
    for key in body_keys(own):
        assert torch.equal(own[key], official[key]), key


def test_allow_partial_loads_the_matching_tensors(manifest, tmp_path):
    path = tmp_path / 'glnet_4g.pth'
    shapes = manifest['glnet_4g']['state_dict']
    weights = write_release_like(shapes, path)
    segmentor = demo_segmentor(path, allow_partial=True)
    segmentor.init_weights()
    own = segmentor.backbone.state_dict()
    matched = [k for k in body_keys(own) if k in shapes and list(own[k].shape) == shapes[k]]
    for key in matched:
        assert torch.equal(own[key], weights[key].to(own[key].dtype)), key


class _Records(logging.Handler):

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_output_norms_are_not_reported_missing():
    """A release file into a dense-prediction backbone (LN2d output norms on 4 stages)."""
    handler = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        model = GLNet(CASES['4g_like']['official_kwargs'])
        report = load_pretrained_backbone(model, parity_path('4g_like.pth'))
    finally:
        logger.removeHandler(handler)
    assert report['missing'] == [] and report['unexpected'] == []
    assert sorted({k.split('.')[0]
                   for k in report['initialized']}) == ['norm0', 'norm1', 'norm2', 'norm3']
    # The official final BatchNorm does not fit the LayerNorm output norm: skipped, said so.
    assert 'norm3.running_mean' in report['skipped']
    warnings = [r.getMessage() for r in handler.records if r.levelno >= logging.WARNING]
    assert warnings == []


def test_tiny_stl_backbone_refuses_the_g_series_file():
    model = GLNet(
        TINY_STL_ARCH, init_cfg=dict(type='Pretrained', checkpoint=parity_path('4g_like.pth')))
    with pytest.raises(CheckpointMismatchError, match='with another shape'):
        model.init_weights()


# ----------------------------------------------------------------------------------------
# tools/test.py refuses a checkpoint of another model.
# ----------------------------------------------------------------------------------------
def test_test_py_refuses_a_mask_rcnn_checkpoint_for_the_segmentor(tmp_path):
    roots = make_tiny_data(str(tmp_path / 'data'))
    seg_config = write_config(UPERNET, roots['ade'], str(tmp_path / 'seg.py'))
    detector = build_model(osp.join(REPO_ROOT, MASK_RCNN))
    segmentor = build_model(seg_config)
    checkpoint = tmp_path / 'mask_rcnn.pth'
    det_state = detector.state_dict()
    torch.save({'state_dict': det_state, 'meta': {}}, checkpoint)

    own = segmentor.state_dict()
    matched = [k for k, v in det_state.items() if k in own and own[k].shape == v.shape]
    missing = sorted(set(own) - set(det_state))
    unexpected = sorted(set(det_state) - set(own))
    assert matched and missing and unexpected

    work = ['--work-dir', str(tmp_path / 'work')]
    result = run_tool(['tools/test.py', seg_config, str(checkpoint), *work], check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr
    assert f"{len(matched)} of the model's {len(own)} weights" in result.stderr
    assert f'{len(missing)} of the model\'s are not in the file' in result.stderr
    assert missing[0] in result.stderr and unexpected[0] in result.stderr
    assert '--allow-partial-checkpoint' in result.stderr
    assert 'Iter(test)' not in result.stdout  # refused before testing

    result = run_tool(
        ['tools/test.py', seg_config,
         str(checkpoint), *work, '--allow-partial-checkpoint'])
    assert 'Iter(test) [4/4]' in result.stdout and 'mIoU:' in result.stdout


# tools/test.py under a wrapper that reports every checkpoint file mmengine reads.
COUNT_CHECKPOINT_READS = """
import runpy
import sys

from mmengine.runner.checkpoint import CheckpointLoader

load = CheckpointLoader.load_checkpoint.__func__


def counted(cls, filename, *args, **kwargs):
    print('checkpoint read:', filename, flush=True)
    return load(cls, filename, *args, **kwargs)


CheckpointLoader.load_checkpoint = classmethod(counted)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def test_test_py_checks_the_checkpoint_it_reads_once(tmp_path):
    """The fit check sees what the runner read: the file is read once, and tested."""
    roots = make_tiny_data(str(tmp_path / 'data'))
    seg_config = write_config(UPERNET, roots['ade'], str(tmp_path / 'seg.py'))
    checkpoint = str(tmp_path / 'segmentor.pth')
    torch.save({'state_dict': build_model(seg_config).state_dict(), 'meta': {}}, checkpoint)
    result = run_tool([
        '-c', COUNT_CHECKPOINT_READS, 'tools/test.py', seg_config, checkpoint, '--work-dir',
        str(tmp_path / 'work')
    ])
    assert result.stdout.count('checkpoint read:') == 1, result.stdout[-3000:]
    assert f'checkpoint read: {checkpoint}' in result.stdout
    assert 'Iter(test) [4/4]' in result.stdout and 'mIoU:' in result.stdout


def test_whole_model_check_accepts_a_fit_and_names_a_release_file():
    from mmglnet.checkpoint import check_checkpoint_fits_model
    model = GLNet(TINY_ARCH)
    saved = {'module.' + k: v for k, v in model.state_dict().items()}  # a DDP-wrapped save
    report = check_checkpoint_fits_model(model, {'state_dict': saved}, 'fit.pth')
    assert report['missing'] == report['unexpected'] == report['mismatched'] == []
    with pytest.raises(CheckpointMismatchError) as error:
        check_checkpoint_fits_model(model, official_file(), 'glnet_4g.pth')
    message = str(error.value)
    assert f"0 of the model's {len(saved)} weights" in message
    assert 'tools/model_converters/glnet2mm.py' in message
