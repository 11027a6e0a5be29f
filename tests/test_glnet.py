"""The GLNet backbone's user-facing behaviour: arguments, outputs, freezing, errors, registry."""
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn
from mmengine.registry import MODELS as ROOT_MODELS

import mmglnet  # noqa: F401  (registers mmglnet.GLNet)
from mmglnet.models import GLNet
from mmglnet.models.glmix import GLMixBlock

from conftest import REPO_ROOT, TINY_ARCH

STRIDES = (4, 8, 16, 32)


def stage_sizes(height, width, overlapped):
    """Spatial sizes of the four stages, from the conv arithmetic of the stem/transitions."""
    sizes = []
    for index in range(4):
        if overlapped:  # 3x3 stride-2 pad-1 convs: ceil division; the stem has two of them
            for _ in range(2 if index == 0 else 1):
                height, width = (height + 1) // 2, (width + 1) // 2
        else:  # 4x4 stride 4, then 2x2 stride 2: floor division
            factor = 4 if index == 0 else 2
            height, width = height // factor, width // factor
        sizes.append((height, width))
    return sizes


def test_builds_from_root_registry_without_scope():
    model = ROOT_MODELS.build(dict(type='mmglnet.GLNet', arch=TINY_ARCH))
    assert isinstance(model, GLNet)


@pytest.mark.parametrize('scope,registry', [
    ('mmdet', 'mmdet.registry'),
    ('mmseg', 'mmseg.registry'),
    ('mmpretrain', 'mmpretrain.registry'),
])
def test_builds_from_codebase_scope_with_custom_imports(tmp_path, scope, registry):
    """A fresh interpreter that only reads a config imports mmglnet through custom_imports."""
    config = tmp_path / 'backbone.py'
    config.write_text(
        textwrap.dedent(f"""
        default_scope = '{scope}'
        custom_imports = dict(imports=['mmglnet'], allow_failed_imports=False)
        backbone = dict(type='mmglnet.GLNet', arch={TINY_ARCH!r}, out_indices=(1, 3))
    """))
    script = textwrap.dedent(f"""
        import sys
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        assert 'mmglnet' not in sys.modules
        cfg = Config.fromfile({str(config)!r})
        init_default_scope(cfg.default_scope)
        from {registry} import MODELS
        model = MODELS.build(cfg.backbone)
        print(type(model).__module__, type(model).__name__, model.out_indices)
    """)
    result = subprocess.run([sys.executable, '-c', script],
                            capture_output=True,
                            text=True,
                            cwd=REPO_ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'mmglnet.models.glnet GLNet (1, 3)' in result.stdout


@pytest.mark.parametrize('arch', ['tiny', 'tiny_stl'])
@pytest.mark.parametrize('size', [(64, 64), (70, 90), (97, 33)])
def test_output_shapes_at_strides(arch, size, tiny_arch, tiny_stl_arch):
    arch_dict = tiny_arch if arch == 'tiny' else tiny_stl_arch
    overlapped = arch_dict.get('downsample_style') == 'ovlp'
    model = GLNet(arch=arch_dict).eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, *size))
    assert isinstance(outputs, tuple) and len(outputs) == 4
    for output, dim, expected in zip(outputs, arch_dict['embed_dim'],
                                     stage_sizes(*size, overlapped)):
        assert tuple(output.shape) == (2, dim, *expected)


def test_out_indices_select_and_accept_negative(tiny_arch):
    model = GLNet(arch=tiny_arch, out_indices=(-1, 1)).eval()
    assert model.out_indices == (3, 1)
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 64))
    # Outputs come in stage order, one per requested index.
    assert [o.shape[1] for o in outputs] == [64, 128]
    assert hasattr(model, 'norm1') and hasattr(model, 'norm3') and not hasattr(model, 'norm0')


def test_out_norm_cfg(tiny_arch):
    torch.manual_seed(0)
    raw = GLNet(arch=tiny_arch, out_norm_cfg=None).eval()
    normed = GLNet(arch=tiny_arch).eval()
    normed.load_state_dict(raw.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        raw_out, normed_out = raw(x), normed(x)
    for index, (a, b) in enumerate(zip(raw_out, normed_out)):
        expected = nn.functional.layer_norm(a.permute(0, 2, 3, 1), a.shape[1:2], eps=1e-6)
        torch.testing.assert_close(b, expected.permute(0, 3, 1, 2), msg=f'stage {index}')
    bn = GLNet(arch=tiny_arch, out_indices=(3, ), out_norm_cfg=dict(type='BN'))
    assert isinstance(bn.norm3, nn.BatchNorm2d)


@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 4])
def test_frozen_stages(tiny_arch, frozen_stages):
    model = GLNet(arch=tiny_arch, frozen_stages=frozen_stages)
    model.train()
    frozen = []
    if frozen_stages >= 0:
        frozen.append(model.downsample_layers[0])
    for i in range(max(frozen_stages, 0)):
        frozen += [model.downsample_layers[i], model.stages[i], getattr(model, f'norm{i}')]
    frozen_ids = {id(p) for m in frozen for p in m.parameters()}
    for module in frozen:
        assert not module.training
    for param in model.parameters():
        assert param.requires_grad == (id(param) not in frozen_ids)
    # Frozen parts get no gradient from a training step; the rest does.
    outputs = model(torch.randn(2, 3, 64, 64))
    if frozen_stages == 4:
        assert not any(o.requires_grad for o in outputs)
        return
    sum(o.sum() for o in outputs).backward()
    for param in model.parameters():
        if id(param) in frozen_ids:
            assert param.grad is None
    if frozen_stages < 4:
        assert model.stages[3].blocks[0].mlp[0].weight.grad is not None
    # train() again must not unfreeze.
    model.train()
    for module in frozen:
        assert not module.training


def test_norm_eval_keeps_batchnorm_statistics(tiny_arch):
    model = GLNet(arch=tiny_arch, norm_eval=True).train()
    stem_bn = model.downsample_layers[0][2]
    before = stem_bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(before, stem_bn.running_mean)
    assert model.stages[0].training  # only BatchNorm layers are put in eval mode
    moving = GLNet(arch=tiny_arch, norm_eval=False).train()
    moving(torch.randn(2, 3, 64, 64))
    assert not torch.equal(before, moving.downsample_layers[0][2].running_mean)


def test_with_cp_gives_same_outputs_and_gradients(tiny_arch):
    torch.manual_seed(0)
    plain = GLNet(arch=tiny_arch).train()
    checkpointed = GLNet(arch=tiny_arch, with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for model in (plain, checkpointed):
        outputs = model(x)
        sum((o**2).mean() for o in outputs).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)


def test_with_cp_checkpoints_each_block(tiny_arch, monkeypatch):
    import torch.utils.checkpoint as cp
    calls = []
    original = cp.checkpoint
    monkeypatch.setattr(cp, 'checkpoint', lambda *a, **k: calls.append(1) or original(*a, **k))
    model = GLNet(arch=tiny_arch, with_cp=True).train()
    model(torch.randn(1, 3, 64, 64))
    assert len(calls) == sum(tiny_arch['depth'])
    calls.clear()
    with torch.no_grad():  # no grad: nothing to save memory for
        model(torch.randn(1, 3, 64, 64))
    assert calls == []


def test_drop_path_rates_increase_linearly(tiny_arch):
    model = GLNet(arch=tiny_arch, drop_path_rate=0.3)
    rates = [getattr(b.drop_path, 'drop_prob', 0.) for s in model.stages for b in s.blocks]
    assert rates[0] == 0. and rates[-1] == pytest.approx(0.3)
    assert all(b > a for a, b in zip(rates, rates[1:]))
    # In training the branches are dropped per sample: outputs become random.
    model.train()
    x = torch.randn(4, 3, 64, 64)
    torch.manual_seed(1)
    first = model(x)[3]
    torch.manual_seed(2)
    assert not torch.allclose(first, model(x)[3])


def test_save_load_round_trip_strict(tiny_arch, tmp_path):
    model = GLNet(arch=tiny_arch).eval()
    path = tmp_path / 'glnet.pth'
    torch.save(model.state_dict(), path)
    other = GLNet(arch=tiny_arch).eval()
    other.load_state_dict(torch.load(path, weights_only=True), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), other(x)):
            assert torch.equal(a, b)


def test_rectangular_slot_grid(tiny_arch):
    arch = dict(tiny_arch, num_slots=[4, 6])
    model = GLNet(arch=arch).eval()
    block = model.stages[0].blocks[0]
    assert block.num_slots == 24
    x = torch.randn(1, 32, 16, 20)
    assert block.dispatch_weights(x).shape == (1, 24, 16, 20)
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 80))


def test_param_slots_accept_any_count():
    block = GLMixBlock(32, 1, num_slots=10, slot_init='param')
    assert block.init_slots.shape == (1, 10, 32)


# ----------------------------------------------------------------------------------------------
# Bad input: clear errors that name the value and the choices.
# ----------------------------------------------------------------------------------------------
def test_unknown_arch_name():
    with pytest.raises(ValueError, match=r"'5g'.*'16g'.*'4g'.*'9g'.*'stl'"):
        GLNet(arch='5g')


def test_unknown_arch_key(tiny_arch):
    with pytest.raises(ValueError, match=r"\['depths'\].*valid keys.*'depth'"):
        GLNet(arch=dict(tiny_arch, depths=[1, 1, 1, 1]))
    with pytest.raises(ValueError, match='drop_path_rate.*arguments of GLNet'):
        GLNet(arch=dict(tiny_arch, drop_path_rate=0.1))


def test_bad_arch_values(tiny_arch):
    with pytest.raises(ValueError, match=r"'glmx'.*'glmix', 'mha', 'mha_nchw'"):
        GLNet(arch=dict(tiny_arch, mixing_modes=['glmx', 'glmix', 'glmix', 'mha']))
    with pytest.raises(ValueError, match='depth.*4 values'):
        GLNet(arch=dict(tiny_arch, depth=[1, 1, 1]))
    with pytest.raises(ValueError, match="downsample_style='overlap'.*'non_ovlp', 'ovlp'"):
        GLNet(arch=dict(tiny_arch, downsample_style='overlap'))


@pytest.mark.parametrize('out_indices', [(4, ), (0, -5), (1, 1)])
def test_out_indices_out_of_range(tiny_arch, out_indices):
    with pytest.raises(ValueError, match=r'out_indices=.*'):
        GLNet(arch=tiny_arch, out_indices=out_indices)


@pytest.mark.parametrize('frozen_stages', [-2, 5])
def test_frozen_stages_out_of_range(tiny_arch, frozen_stages):
    with pytest.raises(ValueError, match=f'frozen_stages={frozen_stages}.*-1 freezes nothing'):
        GLNet(arch=tiny_arch, frozen_stages=frozen_stages)


def test_slot_count_pooling_cannot_give(tiny_arch):
    with pytest.raises(ValueError, match=r'num_slots=60.*square number.*\(rows, cols\)'):
        GLNet(arch=dict(tiny_arch, num_slots=60))


def test_wrong_input_channels(tiny_arch):
    model = GLNet(arch=tiny_arch)
    with pytest.raises(ValueError, match='1 channels.*in_channels=3.*in_channels=1'):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r'\(N, C, H, W\).*\(3, 64, 64\)'):
        model(torch.randn(3, 64, 64))


def test_input_too_small_for_the_stem(tiny_stl_arch):
    model = GLNet(arch=tiny_stl_arch)
    with pytest.raises(ValueError, match=r'\(64, 28\) is too small.*at least 32'):
        model(torch.randn(1, 3, 64, 28))
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, 32, 32))  # the smallest size that works


def test_unknown_out_norm_type(tiny_arch):
    with pytest.raises(ValueError, match=r"'LayerNorm'.*'LN2d'"):
        GLNet(arch=tiny_arch, out_norm_cfg=dict(type='LayerNorm'))


def test_package_core_imports_no_codebase():
    script = ('import sys, mmglnet; '
              "bad = [m for m in ('mmdet', 'mmseg', 'mmpretrain', 'mmcv') if m in sys.modules]; "
              'print(bad)')
    result = subprocess.run([sys.executable, '-c', script],
                            capture_output=True,
                            text=True,
                            cwd=osp.dirname(REPO_ROOT),
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == '[]'


def test_outputs_are_nchw_contiguous(tiny_arch):
    """Consumers that read raw NCHW memory (mmcv's RoIAlign) need contiguous features."""
    model = GLNet(arch=tiny_arch).eval()
    raw = GLNet(arch=tiny_arch, out_norm_cfg=None).eval()
    with torch.no_grad():
        for outputs in (model(torch.randn(1, 3, 64, 64)), raw(torch.randn(1, 3, 64, 64))):
            assert all(o.is_contiguous() for o in outputs)
