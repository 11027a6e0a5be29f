"""ONNX export: the exportable slot pooling; exported graphs against PyTorch at untraced sizes."""
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from mmglnet.models import GLNet
from mmglnet.models.pooling import (ExportableAdaptiveAvgPool2d, adaptive_avg_pool2d,
                                    averaging_matrix, make_pooling_exportable,
                                    matmul_adaptive_avg_pool2d)

from tool_runs import MASK_RCNN, REPO_ROOT, RETINANET, UPERNET, run_tool

# Traced at 224x224; checked at sizes that no stride (32) or slot grid (8) divides.
TRACED = (224, 224)
UNTRACED = [(200, 264), (168, 312)]


@pytest.mark.parametrize('length,bins', [(7, 8), (8, 8), (13, 8), (56, 8), (3, 6), (25, 3)])
def test_averaging_matrix_has_adaptive_pooling_bins(length, bins):
    matrix = averaging_matrix(length, bins, torch.device('cpu'))
    for i in range(bins):
        start, end = math.floor(i * length / bins), math.ceil((i + 1) * length / bins)
        expected = torch.zeros(length)
        expected[start:end] = 1 / (end - start)
        assert torch.equal(matrix[i], expected), (length, bins, i)


@pytest.mark.parametrize('size', [(56, 56), (25, 33), (7, 5), (3, 3), (17, 64)])
@pytest.mark.parametrize('grid', [(8, 8), (8, 12), (6, 6)])
def test_matmul_pooling_equals_torch(size, grid):
    x = torch.randn(2, 5, *size)
    expected = F.adaptive_avg_pool2d(x, grid)
    got = matmul_adaptive_avg_pool2d(x, grid)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    channels_last = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(
        matmul_adaptive_avg_pool2d(channels_last, grid), expected, rtol=1e-5, atol=1e-6)


def test_eager_pooling_is_torch_kernel():
    x = torch.randn(1, 3, 25, 33)
    assert torch.equal(adaptive_avg_pool2d(x, 8), F.adaptive_avg_pool2d(x, 8))
    pool = make_pooling_exportable(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(3)))[0]
    assert type(pool) is ExportableAdaptiveAvgPool2d
    assert torch.equal(pool(x), F.adaptive_avg_pool2d(x, 3))


@pytest.mark.parametrize('size', UNTRACED)
def test_glnet_export_path_equals_eager(size, tiny_arch, monkeypatch):
    """GLNet with the pooling it is exported with gives its eager outputs (odd sizes,
    square and rectangular slot grids)."""
    from mmglnet.models import pooling
    for num_slots in (16, (4, 6)):
        torch.manual_seed(0)
        model = GLNet(arch=dict(tiny_arch, num_slots=num_slots), out_norm_cfg=None).eval()
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected = model(x)
            monkeypatch.setattr(pooling, 'is_exporting', lambda: True)
            got = model(x)
            monkeypatch.undo()
        for out, ref in zip(got, expected):
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_jit_trace_keeps_torch_pooling():
    """FLOP counting traces with the JIT: the pooling it sees stays torch's operator."""
    pool = make_pooling_exportable(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(8)))
    graph = torch.jit.trace(pool, torch.randn(1, 2, 25, 33)).inlined_graph
    kinds = {node.kind() for node in graph.nodes()}
    assert 'aten::adaptive_avg_pool2d' in kinds and 'aten::matmul' not in kinds


def _export_and_check(model, tmp_path, shape, check_shapes):
    from mmglnet.deployment import export_and_check
    path = str(tmp_path / 'model.onnx')
    record, comparisons = export_and_check(
        model, path, shape=shape, dynamic=True, check_shapes=check_shapes)
    assert [c['shape'] for c in comparisons] == [tuple(shape)] + [tuple(s) for s in check_shapes]
    return record, comparisons


def test_export_tiny_backbone_dynamic(tiny_arch, tmp_path):
    torch.manual_seed(0)
    model = GLNet(arch=tiny_arch, out_norm_cfg=None)
    record, comparisons = _export_and_check(model, tmp_path, TRACED, UNTRACED)
    assert record['wrapper'].kind == 'backbone'
    assert record['output_names'] == ['stage0', 'stage1', 'stage2', 'stage3']
    for result in comparisons:
        assert result['relative'] < 1e-5, result


def test_export_tiny_stl_backbone_batch(tiny_stl_arch, tmp_path):
    """Token-layout attention (STL) and a rectangular slot grid; batch 2 in ONNX Runtime."""
    from mmglnet.deployment import compare_with_onnxruntime
    torch.manual_seed(0)
    model = GLNet(arch=dict(tiny_stl_arch, num_slots=(4, 6)), out_norm_cfg=None)
    record, _ = _export_and_check(model, tmp_path, TRACED, UNTRACED[:1])
    [result] = compare_with_onnxruntime(
        record['wrapper'], str(tmp_path / 'model.onnx'), [UNTRACED[1]], batch_size=2)
    assert result['relative'] < 1e-5, result


def test_tool_exports_4g_preset_at_untraced_sizes(tmp_path):
    """The full GLNet-4G backbone through the tool: ONNX Runtime matches PyTorch at two sizes
    it was not traced at."""
    out = tmp_path / 'glnet_4g.onnx'
    args = [
        'tools/deployment/pytorch2onnx.py', '4g', '--out',
        str(out), '--shape', *map(str, TRACED), '--dynamic'
    ]
    for height, width in UNTRACED:
        args += ['--check-shape', str(height), str(width)]
    result = run_tool(args, timeout=600)
    assert osp.getsize(out) > 100e6  # 27M float32 parameters
    lines = [line for line in result.stdout.splitlines() if 'ONNX Runtime vs PyTorch' in line]
    sizes = [f'{h}x{w}' for h, w in [TRACED] + UNTRACED]
    assert len(lines) == 3 and all(f' at {s}:' in line for s, line in zip(sizes, lines)), \
        result.stdout
    assert all(line.endswith('OK') for line in lines), result.stdout
    for line in lines:
        relative = float(line.split('relative ')[1].split(')')[0])
        assert relative < 1e-5, line


def _build(config):
    from mmglnet.apis import build_model
    torch.manual_seed(0)
    return build_model(osp.join(REPO_ROOT, config))


def test_export_demo_upernet_logits(tmp_path):
    """The whole segmentor, pyramid pooling included (pool scales 1, 2, 3, 6 over maps that
    none of them divides at 136x104)."""
    model = _build(UPERNET)
    record, comparisons = _export_and_check(model, tmp_path, (128, 128), [(136, 104), (96, 160)])
    assert record['wrapper'].kind == 'segmentor'
    with torch.no_grad():
        logits = record['wrapper'](torch.randn(1, 3, 96, 160))
    assert len(logits) == 1 and logits[0].shape == (1, 4, 24, 40)
    for result in comparisons:
        assert result['relative'] < 1e-5, result


@pytest.mark.parametrize('config,kind', [(RETINANET, 'detector'),
                                         (MASK_RCNN, 'two-stage detector')])
def test_export_demo_detectors_raw_outputs(config, kind, tmp_path):
    model = _build(config)
    record, comparisons = _export_and_check(model, tmp_path, (128, 128), [(96, 160)])
    assert record['wrapper'].kind == kind
    # Classification and box outputs for each of the FPN's 5 levels.
    assert len(record['output_names']) == 10
    for result in comparisons:
        assert result['relative'] < 1e-5, result


def test_tool_exports_a_config_with_its_checkpoint(tmp_path):
    """Config and mm checkpoint through the tool: the file holds the checkpoint's weights."""
    import onnxruntime as ort

    from mmglnet.deployment import ExportWrapper
    model = _build(UPERNET).eval()
    with torch.no_grad():
        for param in model.parameters():  # weights no fresh build would have
            param.add_(torch.randn_like(param) * 0.1)
    checkpoint = tmp_path / 'upernet.pth'
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    out = tmp_path / 'upernet.onnx'
    result = run_tool([
        'tools/deployment/pytorch2onnx.py', UPERNET,
        str(checkpoint), '--out',
        str(out), '--shape', '128', '128', '--dynamic'
    ])
    assert 'Exported segmentor' in result.stdout and 'at 104x168:' in result.stdout
    x = torch.randn(1, 3, 112, 144)
    with torch.no_grad():
        [expected] = ExportWrapper(model)(x)
    [got] = ort.InferenceSession(str(out)).run(None, {'input': x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-4)


def test_export_classifier_scores(tiny_arch, tmp_path):
    """A classification config (mmpretrain, token-labeling head) exports its class scores."""
    from mmglnet.apis import build_model
    torch.manual_seed(0)
    model = build_model(
        osp.join(REPO_ROOT, 'configs/classification/glnet4g-tklb_in1k.py'), {
            'model.backbone.arch': dict(tiny_arch, _delete_=True),
            'model.head.in_channels': 128
        })
    record, comparisons = _export_and_check(model, tmp_path, (96, 96), [(72, 120)])
    assert record['wrapper'].kind == 'classifier' and record['output_names'] == ['output0']
    with torch.no_grad():
        [scores] = record['wrapper'](torch.randn(2, 3, 72, 120))
    assert scores.shape == (2, 1000)
    for result in comparisons:
        assert result['relative'] < 1e-5, result
