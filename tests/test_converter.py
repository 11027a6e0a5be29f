"""tools/model_converters/glnet2mm.py: official release files to mm checkpoints, exactly.

Each parity case is converted with the tool (a subprocess, as a user runs it), loaded into the
GLNet backbone plus the official classifier computation (final BatchNorm, mean of tokens, head;
the token-labeling formula for 4g_tklb_like) and compared with the official ``eval_logits``.
"""
import importlib.util
import json
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmglnet.checkpoint import read_checkpoint_tensors
from mmglnet.converters import (classification_config_name, convert_official_checkpoint,
                                preset_backbone_shapes)
from mmglnet.models import GLNet
from mmglnet.models.classification import token_labeling_logits

from conftest import REPO_ROOT, load_cases, parity_path

CASES = load_cases()
CONVERTER = osp.join(REPO_ROOT, 'tools', 'model_converters', 'glnet2mm.py')
PRESETS = ['stl', 'stl_paramslot', '4g', '9g', '16g']
# (case, --key): the 16g-like fixture is a custom shape, so its EMA weights need --key.
CONVERSIONS = [('stl_like', None), ('stl_paramslot_like', None), ('4g_like', None),
               ('4g_tklb_like', None), ('16g_like', 'model_ema')]


def run_converter(src, dst, key=None):
    """The tool as a user runs it, in its own process."""
    command = [sys.executable, CONVERTER, src, dst] + (['--key', key] if key else [])
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def load_tool():
    spec = importlib.util.spec_from_file_location('glnet2mm', CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def converter_error(*argv):
    """The tool's error message for ``argv`` (run in this process: cheaper than a subprocess)."""
    with pytest.raises(SystemExit) as exit_info:
        load_tool().main(list(argv))
    assert isinstance(exit_info.value.code, str), 'expected an error message'
    return exit_info.value.code


@pytest.fixture(scope='module')
def convert(tmp_path_factory):
    """Convert a case with the tool once per (case, key); returns (path, completed process)."""
    out_dir = tmp_path_factory.mktemp('converted')
    done = {}

    def _convert(case, key=None):
        if (case, key) not in done:
            dst = str(out_dir / f'{case}_{key or "default"}.pth')
            result = run_converter(parity_path(f'{case}.pth'), dst, key)
            assert result.returncode == 0, result.stderr
            done[(case, key)] = (dst, result)
        return done[(case, key)]

    return _convert


def load_converted(path):
    # What the tool writes must load with weights_only=True: tensors, dicts and strings only.
    return torch.load(path, map_location='cpu', weights_only=True)


def relative_error(actual, expected):
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def linear_from(state, prefix):
    weight = state[prefix + 'weight']
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    layer.load_state_dict(dict(weight=weight, bias=state[prefix + 'bias']))
    return layer


def official_classifier_logits(state, arch, inputs):
    """GLNet backbone (final BatchNorm as its output norm) + the official classifier."""
    backbone = GLNet(arch, out_indices=(3, ), out_norm_cfg=dict(type='BN'))
    own = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    backbone.load_state_dict(own, strict=True)
    backbone.eval()
    with torch.no_grad():
        feature = backbone(inputs)[0]
        if 'head.aux_fc.weight' in state:
            return token_labeling_logits(feature, linear_from(state, 'head.fc.'),
                                         linear_from(state, 'head.aux_fc.'))
        return F.linear(feature.mean(dim=(2, 3)), state['head.fc.weight'], state['head.fc.bias'])


def expected(case):
    return torch.load(parity_path(f'{case}.expected.pth'), weights_only=True)


@pytest.mark.parametrize('case,key', CONVERSIONS)
def test_converted_case_gives_official_logits(case, key, convert):
    path, result = convert(case, key)
    checkpoint = load_converted(path)
    assert set(checkpoint) == {'meta', 'state_dict'}
    meta, state = checkpoint['meta'], checkpoint['state_dict']
    assert meta['source_file'] == f'{case}.pth'
    assert meta['weights_key'] == (key or CASES[case]['weights_key'])
    assert meta['arch'] == 'custom'  # the fixtures are small, no preset's shapes
    assert meta['token_labeling'] == CASES[case].get('token_labeling', False)
    assert meta['num_classes'] == CASES[case]['num_classes']
    assert all(k.startswith(('backbone.', 'head.fc.', 'head.aux_fc.')) for k in state)
    assert 'custom' in result.stdout and repr(meta['weights_key']) in result.stdout

    reference = expected(case)
    logits = official_classifier_logits(state, CASES[case]['official_kwargs'], reference['input'])
    assert relative_error(logits, reference['eval_logits']) <= 1e-4


def test_16g_like_default_key_is_model_and_model_ema_is_what_matches(tmp_path, capsys):
    """The key choice matters: this file's 'model' weights do not give the official logits."""
    path = str(tmp_path / '16g_like_default.pth')
    load_tool().main([parity_path('16g_like.pth'), path])
    assert "'model_ema'" in capsys.readouterr().out  # the report points at the other entry
    checkpoint = load_converted(path)
    assert checkpoint['meta']['weights_key'] == 'model'
    reference = expected('16g_like')
    logits = official_classifier_logits(checkpoint['state_dict'],
                                        CASES['16g_like']['official_kwargs'], reference['input'])
    assert relative_error(logits, reference['eval_logits']) > 1e-2


def test_4g_like_non_weight_entries_are_left_out(convert):
    source = read_checkpoint_tensors(parity_path('4g_like.pth'))
    others = sorted(k for k in source if k != 'model')
    assert others, 'the fixture is expected to hold args/optimizer entries'
    # The release file cannot be loaded the weights-only way; the converted one can.
    with pytest.raises(Exception):
        torch.load(parity_path('4g_like.pth'), weights_only=True)
    path, result = convert('4g_like')
    checkpoint = load_converted(path)
    assert set(checkpoint) == {'meta', 'state_dict'}
    assert all(torch.is_tensor(v) for v in checkpoint['state_dict'].values())
    assert str(others) in result.stdout
    # Every tensor of 'model' is converted (backbone + head), and nothing else.
    model_tensors = [k for k, v in source['model'].items() if torch.is_tensor(v)]
    assert len(checkpoint['state_dict']) == len(model_tensors)


def test_4g_tklb_like_needs_its_token_labeling_head(convert):
    path, result = convert('4g_tklb_like')
    state = load_converted(path)['state_dict']
    assert 'token labeling' in result.stdout
    assert state['head.aux_fc.weight'].shape == state['head.fc.weight'].shape
    plain = {k: v for k, v in state.items() if not k.startswith('head.aux_fc.')}
    reference = expected('4g_tklb_like')
    logits = official_classifier_logits(plain, CASES['4g_tklb_like']['official_kwargs'],
                                        reference['input'])
    assert relative_error(logits, reference['eval_logits']) > 1e-2


@pytest.fixture(scope='module')
def manifest():
    with open(parity_path('official_state_dict_manifest.json')) as f:
        return json.load(f)


def official_meta_state(shapes):
    """An official-layout state dict of shape-only (meta) tensors."""
    return {k: torch.empty(shape, device='meta') for k, shape in shapes.items()}


@pytest.mark.parametrize('preset', PRESETS)
@pytest.mark.parametrize('token_labeling', [False, True])
def test_presets_are_detected_from_the_official_key_manifest(preset, token_labeling, manifest):
    shapes = dict(manifest[f'glnet_{preset}']['state_dict'])
    if token_labeling:
        shapes.update({f'tklb_aux_head.{k}': shapes[f'head.{k}'] for k in ('weight', 'bias')})
    model, ema = official_meta_state(shapes), official_meta_state(shapes)
    state, report = convert_official_checkpoint({'model': model, 'model_ema': ema})
    assert report['arch'] == preset
    assert report['token_labeling'] == token_labeling
    assert report['num_classes'] == 1000
    # The official evaluation reads model_ema for 16G, model otherwise.
    chosen = ema if preset == '16g' else model
    assert report['weights_key'] == ('model_ema' if preset == '16g' else 'model')
    assert state['backbone.downsample_layers.0.1.weight'] is (
        chosen['downsample_layers.0.1.weight'])
    # The mm keys are the classification backbone's and the head's, nothing else.
    backbone = {k[len('backbone.'):] for k in state if k.startswith('backbone.')}
    counters = {k for k in backbone if k.endswith('num_batches_tracked')}
    assert backbone - counters == set(preset_backbone_shapes(preset))
    heads = {k for k in state if k.startswith('head.')}
    expected_heads = {'head.fc.weight', 'head.fc.bias'}
    if token_labeling:
        expected_heads |= {'head.aux_fc.weight', 'head.aux_fc.bias'}
    assert heads == expected_heads
    config = classification_config_name(preset, token_labeling)
    if preset in ('4g', '9g') or not token_labeling:  # the released models
        assert osp.isfile(osp.join(REPO_ROOT, 'configs', 'classification', config))


def test_a_preset_with_a_wrong_shape_is_custom(manifest):
    shapes = dict(manifest['glnet_4g']['state_dict'])
    shapes['stages.0.blocks.0.mlp.0.weight'] = [200, 64, 1, 1]
    _, report = convert_official_checkpoint({'model': official_meta_state(shapes)})
    assert report['arch'] == 'custom'
    assert report['depths'] == [4, 4, 18, 4] and report['embed_dims'] == [64, 128, 256, 512]


def test_bad_inputs_get_clear_errors(tmp_path, convert):
    out = str(tmp_path / 'out.pth')
    message = converter_error(parity_path('16g_like.pth'), out, '--key', 'optimizer')
    assert "'optimizer'" in message and "['model', 'model_ema']" in message

    converted, _ = convert('16g_like', 'model_ema')
    assert 'already an mm checkpoint' in converter_error(converted, out)
    assert 'does not exist' in converter_error(str(tmp_path / 'missing.pth'), out)
    assert 'is the input file' in converter_error(converted, converted)
    # Damaged and foreign files: named, with what is wrong.
    with open(converted, 'rb') as f:
        data = f.read()
    for name, content, words in [
        ('empty.pth', b'', 'is empty (0 bytes)'),
        ('truncated.pth', data[:len(data) // 2], 'is truncated or damaged'),
        ('raw.pth', pickle.dumps({'model': {
            'w': [1.0]
        }}), 'plain Python pickle'),
    ]:
        bad = tmp_path / name
        bad.write_bytes(content)
        message = converter_error(str(bad), out)
        assert str(bad) in message and words in message, message
    assert not osp.exists(out)


def backbone_body(state, prefix=''):
    """The stem, transitions and stages: what detection and segmentation reuse."""
    return {
        k[len(prefix):]: v
        for k, v in state.items()
        if k.startswith((prefix + 'downsample_layers.', prefix + 'stages.'))
    }


def check_body_loaded(model_state, converted_state):
    expected_body = backbone_body(converted_state, 'backbone.')
    loaded = backbone_body(model_state)
    assert set(loaded) == set(expected_body)
    for key, value in expected_body.items():
        assert torch.equal(loaded[key], value.to(loaded[key].dtype)), key


def test_converted_checkpoint_initialises_a_detector_backbone(convert):
    from mmengine.config import Config

    from mmglnet.apis import build_model
    path, _ = convert('4g_like')
    cfg = Config.fromstring("_base_ = 'mmdet::_base_/models/retinanet_r50_fpn.py'", '.py')
    cfg.model.backbone = dict(
        type='mmglnet.GLNet',
        arch=CASES['4g_like']['official_kwargs'],
        out_indices=(1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    cfg.model.neck.update(in_channels=[64, 96, 128], out_channels=32, start_level=0)
    cfg.model.bbox_head.update(in_channels=32, feat_channels=32, stacked_convs=1)
    cfg.default_scope = 'mmdet'
    detector = build_model(cfg)
    detector.init_weights()
    check_body_loaded(detector.backbone.state_dict(), load_converted(path)['state_dict'])


def test_converted_checkpoint_initialises_a_segmentor_backbone(convert):
    from mmengine.config import Config

    from mmglnet.apis import build_model
    path, _ = convert('4g_tklb_like')
    cfg = Config.fromstring("_base_ = 'mmseg::_base_/models/fpn_r50.py'", '.py')
    cfg.model.backbone = dict(
        type='mmglnet.GLNet',
        arch=CASES['4g_tklb_like']['official_kwargs'],
        init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    cfg.model.neck.update(in_channels=[32, 64, 96, 128], out_channels=32)
    cfg.model.decode_head.update(
        in_channels=[32, 32, 32, 32], channels=16, norm_cfg=dict(type='BN', requires_grad=True))
    cfg.model.update(pretrained=None, data_preprocessor=dict(type='SegDataPreProcessor'))
    cfg.default_scope = 'mmseg'
    segmentor = build_model(cfg)
    segmentor.init_weights()
    check_body_loaded(segmentor.backbone.state_dict(), load_converted(path)['state_dict'])
