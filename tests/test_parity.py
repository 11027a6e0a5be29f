"""Exactness to the official GLNet: stage outputs, parameter counts, checkpoint keys."""
import json

import pytest
import torch

from mmglnet.checkpoint import (extract_backbone_state, load_pretrained_backbone,
                                read_checkpoint_tensors)
from mmglnet.models import GLNet

from conftest import load_cases, parity_path

CASES = load_cases()
PRESETS = ['stl', 'stl_paramslot', '4g', '9g', '16g']


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def build_from_fixture(name: str) -> GLNet:
    """A GLNet with raw stage outputs and the fixture's weights, loaded the user's way."""
    case = CASES[name]
    model = GLNet(
        arch=case['official_kwargs'],
        out_norm_cfg=None,
        weights_key=case['weights_key'],
        init_cfg=dict(type='Pretrained', checkpoint=parity_path(f'{name}.pth')))
    model.init_weights()
    return model


def expected_outputs(name: str) -> dict:
    return torch.load(parity_path(f'{name}.expected.pth'), weights_only=True)


# Every (case, mode) the fixtures hold outputs for (the token-labeling case has eval only).
OUTPUT_CASES = [(name, mode) for name in sorted(CASES) for mode in ('eval', 'train')
                if f'{mode}_stage_outputs' in expected_outputs(name)]


def test_fixtures_cover_every_case_in_eval_and_most_in_train():
    assert {name for name, mode in OUTPUT_CASES if mode == 'eval'} == set(CASES)
    assert len([1 for _, mode in OUTPUT_CASES if mode == 'train']) >= 4


@pytest.mark.parametrize('name,mode', OUTPUT_CASES)
def test_stage_outputs_match_official(name, mode):
    expected = expected_outputs(name)
    key = f'{mode}_stage_outputs'
    # A fresh model per mode: a train-mode pass moves the BatchNorm running statistics.
    model = build_from_fixture(name).train(mode == 'train')
    with torch.no_grad():
        outputs = model(expected['input'])
    assert len(outputs) == 4
    for index, (actual, reference) in enumerate(zip(outputs, expected[key])):
        assert actual.shape == reference.shape, f'stage {index}'
        assert relative_error(actual, reference) <= 1e-4, f'stage {index} in {mode} mode'


def test_parity_detects_a_wrong_weight():
    """The comparison above is sensitive: one perturbed slot temperature breaks it."""
    expected = torch.load(parity_path('4g_like.expected.pth'), weights_only=True)
    model = build_from_fixture('4g_like').eval()
    with torch.no_grad():
        model.stages[1].blocks[0].slot_scale.mul_(1.5)
        outputs = model(expected['input'])
    assert relative_error(outputs[3], expected['eval_stage_outputs'][3]) > 1e-4


@pytest.fixture(scope='module')
def manifest():
    with open(parity_path('official_state_dict_manifest.json')) as f:
        return json.load(f)


@pytest.mark.parametrize('arch', PRESETS)
def test_preset_parameter_count_equals_official(arch, manifest):
    # The official count is the classification model: backbone, final BatchNorm, 1000-class head.
    model = GLNet(arch, out_indices=(3, ), out_norm_cfg=dict(type='BN'))
    head = model.embed_dims[-1] * 1000 + 1000
    count = sum(p.numel() for p in model.parameters()) + head
    assert count == manifest[f'glnet_{arch}']['num_params']


@pytest.mark.parametrize('arch', PRESETS)
def test_every_official_key_loads(arch, manifest, tmp_path):
    """A release-format file with every official key loads with nothing missing or unexpected."""
    shapes = manifest[f'glnet_{arch}']['state_dict']
    generator = torch.Generator().manual_seed(0)
    weights = {
        k: torch.randn(s, generator=generator) if s else torch.tensor(3)
        for k, s in shapes.items()
    }
    weights = {
        k: (v.long() if k.endswith('num_batches_tracked') else v.half())
        for k, v in weights.items()
    }
    key = 'model_ema' if arch == '16g' else 'model'
    path = tmp_path / f'glnet_{arch}.pth'
    torch.save({key: weights, 'epoch': 300}, path)

    model = GLNet(arch, out_indices=(3, ), out_norm_cfg=dict(type='BN'))
    report = load_pretrained_backbone(model, str(path), weights_key=model.weights_key)
    assert report['missing'] == [] and report['unexpected'] == []
    assert report['mismatched'] == [] and report['skipped'] == []
    own = model.state_dict()
    for official_key, value in weights.items():
        if official_key.startswith('head.'):
            continue
        mm_key = 'norm3.' + official_key[5:] if official_key.startswith('norm.') else official_key
        # fp16 release tensors are cast to the model's float32.
        assert own[mm_key].dtype == (torch.int64 if 'num_batches' in mm_key else torch.float32)
        assert torch.equal(own[mm_key], value.to(own[mm_key].dtype)), mm_key


def test_16g_preset_reads_model_ema_by_default():
    assert GLNet('16g', out_indices=(3, )).weights_key == 'model_ema'
    assert GLNet('4g', out_indices=(3, )).weights_key == 'model'


def test_16g_like_fixture_needs_model_ema():
    """The fixture's `model` and `model_ema` differ; only `model_ema` reproduces the outputs."""
    case = CASES['16g_like']
    expected = torch.load(parity_path('16g_like.expected.pth'), weights_only=True)
    model = GLNet(
        arch=case['official_kwargs'],
        out_norm_cfg=None,
        weights_key='model',
        init_cfg=dict(type='Pretrained', checkpoint=parity_path('16g_like.pth')))
    model.init_weights()
    with torch.no_grad():
        outputs = model.eval()(expected['input'])
    assert relative_error(outputs[3], expected['eval_stage_outputs'][3]) > 1e-3


def test_attention_uses_fused_sdpa(monkeypatch):
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, 'scaled_dot_product_attention', spy)
    model = build_from_fixture('stl_like').eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    # One call per block: slot attention in the 4 GLMix blocks, token attention in the last.
    assert len(calls) == sum(CASES['stl_like']['official_kwargs']['depth'])


def test_extract_backbone_state_maps_the_official_layout():
    checkpoint = read_checkpoint_tensors(parity_path('4g_like.pth'))
    state = extract_backbone_state(checkpoint, 'model')
    official = checkpoint['model']
    assert not any(k.startswith('head.') for k in state)
    assert torch.equal(state['norm3.running_mean'], official['norm.running_mean'])
    assert len(state) == len([k for k in official if not k.startswith('head.')])


def test_batchnorm_output_norm_is_not_loaded_into_a_layernorm(tmp_path):
    """A classifier's BN final norm (saved as backbone.norm3) is skipped by a LN2d backbone."""
    source = GLNet(
        arch=CASES['4g_like']['official_kwargs'], out_indices=(3, ), out_norm_cfg=dict(type='BN'))
    with torch.no_grad():
        source.norm3.weight.fill_(7.)
    path = tmp_path / 'classifier.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in source.state_dict().items()}}, path)
    target = GLNet(arch=CASES['4g_like']['official_kwargs'])  # LN2d output norms
    report = load_pretrained_backbone(target, str(path), prefix='backbone.')
    assert 'norm3.weight' in report['skipped'] and 'norm3.running_mean' in report['skipped']
    assert torch.equal(target.norm3.weight, torch.ones_like(target.norm3.weight))
    assert report['unexpected'] == []
    assert torch.equal(target.stages[2].blocks[1].mha_op.in_proj_weight,
                       source.stages[2].blocks[1].mha_op.in_proj_weight)
