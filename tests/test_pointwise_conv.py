"""The pointwise (1x1) convolutions of the FFNs and the GLMix local branch: a matrix product
with a fused bias on CUDA in 16-bit eager mode, the convolution elsewhere.

The product is chosen on CUDA only, so these tests add the CPU (and, where they compare with
float32 fixtures, float32) to what chooses it (``LINEAR_POINTWISE_CONV_DEVICES``,
``LINEAR_POINTWISE_CONV_DTYPES``) to run that path here.
"""
import pytest
import torch
import torch.nn.functional as F
from test_fast_path import (PARITY_RUNS, assert_same_gradients, fixture_model,
                            input_and_parameter_grads, parity_path, relative_error)
from test_slot_pooling import OperatorNames

from mmglnet.models import GLNet, layers
from mmglnet.models.layers import PointwiseConv2d, computes_pointwise_as_linear
from mmglnet.testing import set_impl

from conftest import TINY_ARCH


@pytest.fixture
def linear_on_cpu(monkeypatch):
    monkeypatch.setattr(layers, 'LINEAR_POINTWISE_CONV_DEVICES', frozenset({'cpu'}))


@pytest.fixture
def linear_on_cpu_in_any_dtype(linear_on_cpu, monkeypatch):
    monkeypatch.setattr(layers, 'LINEAR_POINTWISE_CONV_DTYPES',
                        (torch.float16, torch.bfloat16, torch.float32, torch.float64))


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def conv_ops(conv: PointwiseConv2d, x: torch.Tensor) -> set:
    with OperatorNames() as recorder:
        conv(x)
    return recorder.names


def test_cuda_only_by_default():
    assert layers.LINEAR_POINTWISE_CONV_DEVICES == frozenset({'cuda'})
    conv = PointwiseConv2d(4, 6)
    for x in (channels_last(torch.randn(2, 4, 5, 7)), torch.randn(2, 4, 5, 7)):
        names = conv_ops(conv, x)
        assert 'convolution' in names and 'addmm' not in names
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert 'addmm' not in conv_ops(conv, channels_last(torch.randn(2, 4, 5, 7)))


def test_chooses_the_product_for_channels_last_16_bit_eager_work_only(linear_on_cpu, monkeypatch):
    x = channels_last(torch.randn(2, 4, 5, 7))
    assert not computes_pointwise_as_linear(x)  # float32: cuDNN's TF32 convolutions stay
    assert computes_pointwise_as_linear(x.bfloat16())
    assert computes_pointwise_as_linear(x.half())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert computes_pointwise_as_linear(x)
        assert not computes_pointwise_as_linear(x.contiguous())  # would copy the input
        assert not computes_pointwise_as_linear(x[0])  # not a batch of feature maps
    # The operator the FLOP counter's JIT trace and the ONNX exporter see stays the convolution.
    conv = PointwiseConv2d(4, 6).bfloat16()
    graph = torch.jit.trace(conv, x.bfloat16()).inlined_graph
    assert 'aten::_convolution' in {node.kind() for node in graph.nodes()}
    monkeypatch.setattr(torch.onnx, 'is_in_onnx_export', lambda: True)
    assert not computes_pointwise_as_linear(x.bfloat16())


def test_compiled_graphs_keep_the_convolution(linear_on_cpu):
    """Inductor fuses a convolution's bias with its neighbours itself."""
    torch._dynamo.reset()
    conv = PointwiseConv2d(4, 6).bfloat16()
    seen = []

    def backend(graph_module, example_inputs):
        seen.extend(str(node.target) for node in graph_module.graph.nodes)
        return graph_module.forward

    x = channels_last(torch.randn(2, 4, 5, 7)).bfloat16()
    torch.testing.assert_close(torch.compile(conv, backend=backend, fullgraph=True)(x), conv(x))
    assert any('conv2d' in target for target in seen)
    assert not any('linear' in target for target in seen)


@pytest.mark.parametrize('shape', [(2, 4, 5, 7, 6), (1, 16, 8, 8, 48), (3, 48, 3, 2, 16)])
def test_product_equals_the_convolution_with_gradients(linear_on_cpu_in_any_dtype, shape):
    batch, channels, height, width, out_channels = shape
    torch.manual_seed(0)
    conv = PointwiseConv2d(channels, out_channels).double()
    x = channels_last(torch.randn(batch, channels, height, width, dtype=torch.float64))
    x_product, x_conv = x.clone().requires_grad_(), x.clone().requires_grad_()
    assert 'addmm' in conv_ops(conv, x) and 'convolution' not in conv_ops(conv, x)
    got = conv(x_product)
    expected = F.conv2d(x_conv, conv.weight, conv.bias)
    assert got.shape == expected.shape
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(expected)
    (got * weights).sum().backward()
    grads = {name: param.grad.clone() for name, param in conv.named_parameters()}
    conv.zero_grad()
    (expected * weights).sum().backward()
    torch.testing.assert_close(x_product.grad, x_conv.grad, rtol=1e-12, atol=1e-12)
    for name, param in conv.named_parameters():
        assert grads[name].shape == param.shape
        torch.testing.assert_close(grads[name], param.grad, rtol=1e-12, atol=1e-12)


def test_product_computes_in_autocasts_dtype(linear_on_cpu):
    torch.manual_seed(0)
    conv = PointwiseConv2d(8, 12)
    x = channels_last(torch.randn(2, 8, 6, 6))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        names = conv_ops(conv, x)
        got = conv(x)
        expected = F.conv2d(x, conv.weight, conv.bias)
    assert 'addmm' in names and 'convolution' not in names
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), rtol=2e-2, atol=2e-2)


def test_reference_path_keeps_the_convolution(linear_on_cpu):
    model = set_impl(GLNet(TINY_ARCH), 'reference')
    pointwise = [m for m in model.modules() if isinstance(m, PointwiseConv2d)]
    assert pointwise
    x = channels_last(torch.randn(1, pointwise[0].in_channels, 4, 4)).bfloat16()
    assert 'addmm' not in conv_ops(pointwise[0].bfloat16(), x)


def test_every_pointwise_convolution_of_the_blocks_chooses(linear_on_cpu_in_any_dtype):
    """The FFNs' and the GLMix local branches' 1x1 convolutions are all PointwiseConv2d: a
    GLNet's forward computes every one of them as a product."""
    model = GLNet(TINY_ARCH, out_indices=(0, 1, 2, 3)).eval()
    pointwise = [m for m in model.modules() if isinstance(m, PointwiseConv2d)]
    plain_1x1 = [
        m for m in model.modules() if isinstance(m, torch.nn.Conv2d)
        and not isinstance(m, PointwiseConv2d) and m.kernel_size == (1, 1)
    ]
    assert pointwise and not plain_1x1
    choices = []
    for conv in pointwise:
        conv.register_forward_pre_hook(
            lambda module, args: choices.append(computes_pointwise_as_linear(args[0])))
    with OperatorNames() as recorder:
        model(torch.randn(1, 3, 64, 64))
    assert len(choices) == len(pointwise) and all(choices)
    assert 'addmm' in recorder.names


@pytest.mark.parametrize('name,mode', PARITY_RUNS)
def test_product_reproduces_the_official_outputs(name, mode, linear_on_cpu_in_any_dtype):
    expected = torch.load(parity_path(f'{name}.expected.pth'), weights_only=True)
    model = fixture_model(name, 'fast').train(mode == 'train')
    with OperatorNames() as recorder, torch.no_grad():
        outputs = model(expected['input'])
    assert 'addmm' in recorder.names
    for index, (out, ref) in enumerate(zip(outputs, expected[f'{mode}_stage_outputs'])):
        assert relative_error(out, ref) <= 1e-4, f'stage {index}'


def test_product_trains_like_the_convolution(linear_on_cpu_in_any_dtype, monkeypatch):
    torch.manual_seed(0)
    model = GLNet(TINY_ARCH, drop_path_rate=0.).train()
    x = torch.randn(2, 3, 64, 96)
    with OperatorNames() as recorder:
        with_products = input_and_parameter_grads(model, x)
    assert 'addmm' in recorder.names
    monkeypatch.setattr(layers, 'LINEAR_POINTWISE_CONV_DEVICES', frozenset())
    assert_same_gradients(with_products, input_and_parameter_grads(model, x))
