"""FLOP counting: the attention-product handle, broadcast products, and get_flops.py."""
import importlib.util
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer

from mmglnet import GLNet
from mmglnet.analysis import count_flops
from mmglnet.apis import build_model
from mmglnet.models import MultiheadSelfAttention

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO_ROOT, 'tools', 'analysis_tools', 'get_flops.py')


def mmengine_flops(model, inputs):
    """mmengine's counter with its default handles only."""
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer.total()


class Attention(nn.Module):

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def test_sdpa_handle_counts_both_attention_products():
    batch, length, channels, heads = 2, 10, 64, 2
    attn = MultiheadSelfAttention(channels, heads).eval()
    x = torch.randn(batch, length, channels)
    flops, params = count_flops(attn, x)

    head_dim = channels // heads
    projections = batch * length * channels * (3 * channels + channels)  # qkv and out
    products = 2 * batch * heads * length * length * head_dim  # q @ k^T and attn @ v
    assert flops == projections + products
    assert params == 4 * channels * channels + 4 * channels
    # mmengine alone skips the operator: the handle adds exactly the products.
    assert mmengine_flops(attn, (x, )) == projections


def test_sdpa_handle_with_different_lengths_and_value_width():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    flops, _ = count_flops(Attention(), (q, k, v))
    assert flops == 2 * 3 * 5 * 7 * 8 + 2 * 3 * 5 * 7 * 4


class BroadcastProducts(nn.Module):

    def forward(self, slots, pixels, bias):
        logits = slots @ pixels  # (1, S, C) @ (N, C, L): the slot batch is broadcast
        return torch.baddbmm(bias, logits, pixels.transpose(1, 2))  # (N, S, L) @ (N, L, C)


def test_matmul_broadcast_and_baddbmm():
    n, s, c, length = 3, 4, 6, 5
    slots, pixels = torch.randn(1, s, c), torch.randn(n, c, length)
    bias = torch.randn(n, s, c)
    flops, _ = count_flops(BroadcastProducts(), (slots, pixels, bias))
    assert flops == n * s * c * length + n * s * length * c


def test_backbone_count_has_every_attention_product(tiny_arch):
    """With minus without the handle equals the products of every attention in the arch."""
    model = GLNet(tiny_arch, out_norm_cfg=None).eval()
    x = torch.randn(1, 3, 64, 64)
    with_products, _ = count_flops(model, x)
    without, _ = count_flops(model, x, handles={'aten::scaled_dot_product_attention': None})
    expected = 0
    slots = tiny_arch.get('num_slots', 64)  # the official default is 64
    for stage, (depth, dim, mode) in enumerate(
            zip(tiny_arch['depth'], tiny_arch['embed_dim'], tiny_arch['mixing_modes'])):
        tokens = (64 // 2**(stage + 2))**2
        for block in range(depth):
            glmix = mode == 'glmix' or (mode == 'glmix.mha_nchw' and block % 2 == 0)
            length = slots if glmix else tokens  # the slots, or every pixel
            expected += 2 * length * length * dim
    assert with_products - without == expected


def test_glnet_4g_classifier_at_224_matches_the_published_figure():
    """GLNet-4G with its BatchNorm and linear head: 4.51G at 224x224 (paper 4.5G)."""

    class Classifier(nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = GLNet('4g', out_indices=(3, ), out_norm_cfg=None)
            self.norm = nn.BatchNorm2d(512)
            self.head = nn.Linear(512, 1000)

        def forward(self, x):
            return self.head(self.norm(self.backbone(x)[0]).mean((2, 3)))

    flops, params = count_flops(Classifier().eval(), torch.randn(1, 3, 224, 224))
    assert params == 27_001_593  # the official GLNet-4G
    assert round(flops / 1e9, 2) == 4.51


def write_tiny_config(tmp_path, base, arch, extra):
    path = tmp_path / 'tiny.py'
    arch = dict(arch, _delete_=True)  # a dict replacing the base config's preset name
    path.write_text(f"_base_ = {osp.join(REPO_ROOT, 'configs', base)!r}\n"
                    f'model = dict(backbone=dict(arch={arch!r}, init_cfg=None), {extra})\n')
    return str(path)


def parse_report(text):
    params = re.search(r'^Params: (\d+\.\d\d) M$', text, re.M)
    flops = re.search(r'^FLOPs: (\d+\.\d\d) G$', text, re.M)
    shape = re.search(r'^Input shape: \((.*)\)$', text, re.M)
    assert params and flops and shape, text
    return float(params.group(1)), float(flops.group(1)), shape.group(1)


def test_get_flops_tool_prints_params_and_flops(tmp_path, tiny_arch):
    dims = tiny_arch['embed_dim']
    cfg = write_tiny_config(
        tmp_path, 'segmentation/upernet_glnet4g_160k.py', tiny_arch,
        f'decode_head=dict(in_channels={dims}, channels=32), '
        f'auxiliary_head=dict(in_channels={dims[2]}, channels=16)')
    out = subprocess.run([sys.executable, TOOL, cfg, '--shape', '256', '320'],
                         capture_output=True,
                         text=True,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    params, flops, shape = parse_report(out.stdout)
    assert shape == '1, 3, 256, 320'

    model = build_model(cfg).eval()
    assert params == round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    # The inference forward: backbone and decode head, no auxiliary head; at least the
    # backbone's own count, plus the head.
    backbone_flops, _ = count_flops(model.backbone, torch.randn(1, 3, 256, 320))
    head_flops, _ = count_flops(model.decode_head, (model.backbone(torch.randn(1, 3, 256, 320)), ))
    assert flops == round((backbone_flops + head_flops) / 1e9, 2)


def test_get_flops_on_a_detector_with_one_size(tmp_path, tiny_arch, capsys):
    dims = tiny_arch['embed_dim']
    cfg = write_tiny_config(tmp_path, 'detection/retinanet_glnet4g_fpn_1x_coco.py', tiny_arch,
                            f'neck=dict(in_channels={dims[1:]})')
    spec = importlib.util.spec_from_file_location('get_flops', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main([cfg, '--shape', '320'])
    params, flops, shape = parse_report(capsys.readouterr().out)
    assert shape == '1, 3, 320, 320'
    model = build_model(cfg)
    assert params == round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    assert flops > 0

    with pytest.raises(SystemExit):
        tool.main([cfg, '--shape', '1', '2', '3'])
