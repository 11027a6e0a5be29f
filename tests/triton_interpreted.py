"""Checks of mmglnet's Triton kernels that run them: under Triton's interpreter only.

Triton decides at import whether its functions (``tl.sum`` among them) are interpreted, so
these run in a process started with ``TRITON_INTERPRET=1``:
``test_triton_kernels.test_kernels_under_the_triton_interpreter`` starts it
(``TRITON_INTERPRET=1 python -m pytest tests/triton_interpreted.py`` by hand). The interpreter
runs the kernels with NumPy on CPU tensors; the CPU is added to the devices that choose them
(``TRITON_LAYER_NORM_DEVICES``, ``TRITON_BIAS_GRAD_DEVICES``, ``TRITON_BIAS_GELU_DEVICES``).
"""
import math
import os
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from mmglnet.models import GLNet, layers, triton_bias_gelu, triton_bias_grad, triton_layer_norm
from mmglnet.models.layers import ConvFFN, LayerNorm, LayerNorm2d, ResidualDWConv

from conftest import TINY_ARCH, load_tool

if os.environ.get('TRITON_INTERPRET') != '1':
    raise RuntimeError('tests/triton_interpreted.py runs the Triton kernels on the CPU and needs '
                       'TRITON_INTERPRET=1 from the start of the process: run it through '
                       'tests/test_triton_kernels.py, or as TRITON_INTERPRET=1 python -m '
                       'pytest tests/triton_interpreted.py')


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the launches of the kernel (through ``fitted_layer_norm_rows``, which
    ``layers.layer_norm`` calls), with the CPU among the devices that choose it."""
    monkeypatch.setattr(layers, 'TRITON_LAYER_NORM_DEVICES', frozenset({'cpu'}))
    calls = []
    plain = triton_layer_norm.fitted_layer_norm_rows

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return plain(*args, **kwargs)

    monkeypatch.setattr(triton_layer_norm, 'fitted_layer_norm_rows', counted)
    return calls


def training_gradients(model: torch.nn.Module, x: torch.Tensor) -> dict:
    """Every parameter's gradient, and the input's (``'input'``), of a fixed projection of
    ``model(x)``'s outputs."""
    model.zero_grad()
    x.grad = None
    outs = model(x)
    sum((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum() for out in outs).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    grads['input'] = x.grad.clone()
    return grads


def assert_gradients_close(got: dict, expected: dict, tolerance: float) -> None:
    """Every gradient within ``tolerance`` relative to itself, or to a hundredth of the largest
    where a gradient is rounding noise (a convolution's bias before a BatchNorm in training
    mode has none)."""
    assert got.keys() == expected.keys()
    largest = max(grad.abs().max() for grad in expected.values())
    for name, grad in expected.items():
        error = (got[name] - grad).abs().max() / max(grad.abs().max(), largest / 100)
        assert error <= tolerance, (name, error.item())


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    'shape',
    [
        (2, 5, 7, 64),  # 70 rows: a partial tile
        (3, 96),  # channels not a power of two
        (1, 4, 4, 256),
        (2, 3, 768),
        (5, 1),
    ])
def test_kernel_rounds_the_float32_layer_norm(dtype, shape):
    torch.manual_seed(0)
    channels = shape[-1]
    x = (torch.randn(shape) * 3 + 1).to(dtype)
    weight, bias = torch.randn(channels), torch.randn(channels)
    out = triton_layer_norm.layer_norm_rows(x, weight, bias, 1e-6)
    assert out.dtype == dtype and out.shape == x.shape and out.is_contiguous()
    exact = F.layer_norm(x.float(), (channels, ), weight, bias, 1e-6)
    # Within one unit in the last place of the float32 result.
    torch.testing.assert_close(out.float(), exact, rtol=torch.finfo(dtype).eps, atol=1e-5)


def test_kernel_normalises_float32_input_before_rounding():
    torch.manual_seed(0)
    x = torch.randn(3, 9, 64) * 5
    weight, bias = torch.randn(64), torch.randn(64)
    out = triton_layer_norm.layer_norm_rows(x, weight, bias, 1e-6, dtype=torch.float16)
    assert out.dtype == torch.float16
    exact = F.layer_norm(x, (64, ), weight, bias, 1e-6)
    torch.testing.assert_close(out.float(), exact, rtol=torch.finfo(torch.float16).eps, atol=1e-5)


def test_kernel_refuses_what_it_cannot_take():
    weight, bias = torch.ones(8), torch.zeros(8)
    transposed = torch.randn(8, 4).t()  # not contiguous
    with pytest.raises(ValueError, match=r'shape \(4, 8\)'):
        triton_layer_norm.layer_norm_rows(transposed, weight, bias, 1e-6)
    with pytest.raises(ValueError, match='weight'):
        triton_layer_norm.layer_norm_rows(torch.randn(4, 6), weight, bias, 1e-6)
    with pytest.raises(ValueError, match='torch.float32, bias .8,. torch.float16'):
        triton_layer_norm.layer_norm_rows(torch.randn(4, 8), weight, bias.half(), 1e-6)


@pytest.mark.parametrize('dtype, tolerance', [(torch.float32, 1e-6), (torch.float16, 1e-3)])
@pytest.mark.parametrize('shape', [(2, 5, 7, 64), (3, 96), (70, 768)])
def test_kernel_gradients_are_the_layer_norms(dtype, tolerance, shape):
    torch.manual_seed(0)
    channels = shape[-1]
    x = (torch.randn(shape) * 3 + 1).to(dtype).requires_grad_()
    weight = torch.randn(channels, requires_grad=True)
    bias = torch.randn(channels, requires_grad=True)
    grad_out = torch.randn(shape).to(dtype)
    triton_layer_norm.layer_norm_rows(x, weight, bias, 1e-6).backward(grad_out)
    assert x.grad.dtype == dtype and weight.grad.dtype == bias.grad.dtype == torch.float32
    exact = [t.detach().float().requires_grad_() for t in (x, weight, bias)]
    F.layer_norm(exact[0], (channels, ), exact[1], exact[2], 1e-6).backward(grad_out.float())
    for got, want in zip((x.grad, weight.grad, bias.grad), (t.grad for t in exact)):
        error = (got.float() - want).abs().max() / want.abs().max()
        assert error <= tolerance, (got.dtype, error)


def test_kernel_keeps_statistics_only_for_a_gradient(monkeypatch):
    saved = []
    normalise = triton_layer_norm._normalise
    monkeypatch.setattr(
        triton_layer_norm, '_normalise',
        lambda *args, save_statistics: saved.append(save_statistics) or normalise(
            *args, save_statistics=save_statistics))
    weight, bias = torch.ones(8, requires_grad=True), torch.zeros(8, requires_grad=True)
    x = torch.randn(4, 8)
    with torch.no_grad():
        out = triton_layer_norm.layer_norm_rows(x, weight, bias, 1e-6)
    assert out.grad_fn is None and saved == [False]
    with torch.inference_mode():
        triton_layer_norm.layer_norm_rows(x, weight, bias, 1e-6)
    out = triton_layer_norm.layer_norm_rows(x, weight.detach(), bias.detach(), 1e-6)
    assert out.grad_fn is None and saved == [False, False, False]
    out = triton_layer_norm.layer_norm_rows(x, weight, bias, 1e-6)
    assert saved[-1] is True
    assert len(out.grad_fn.saved_tensors) == 4  # the input, the weight and the statistics


def test_layer_norms_keep_their_outputs(kernel_calls):
    torch.manual_seed(0)
    norm, norm2d = LayerNorm(32, eps=1e-6), LayerNorm2d(32)
    for module in (norm, norm2d):
        torch.nn.init.normal_(module.weight)
        torch.nn.init.normal_(module.bias)
    tokens = torch.randn(2, 20, 32)
    grid = torch.randn(2, 32, 5, 4).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.float16):
        out, out2d = norm(tokens), norm2d(grid)
    assert len(kernel_calls) == 2
    assert out.dtype == out2d.dtype == torch.float16
    # The 2d output keeps the channels-last strides of torch's path.
    assert out2d.shape == grid.shape and out2d.is_contiguous(memory_format=torch.channels_last)
    channels_last_rows = (out2d.permute(0, 2, 3, 1), norm2d, grid.permute(0, 2, 3, 1))
    for got, module, x in ((out, norm, tokens), channels_last_rows):
        exact = F.layer_norm(x, (32, ), module.weight, module.bias, 1e-6)
        torch.testing.assert_close(
            got.float(), exact, rtol=torch.finfo(torch.float16).eps, atol=1e-5)


def test_glnet_inference_runs_every_layer_norm_through_the_kernel(kernel_calls, monkeypatch):
    torch.manual_seed(0)
    model = GLNet(arch=dict(TINY_ARCH), out_indices=(0, 1, 2, 3)).eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.inference_mode(), torch.autocast('cpu', dtype=torch.float16):
            return model(x)

    outs = forward()
    assert len(kernel_calls) == len(norms) > 0
    monkeypatch.setattr(layers, 'TRITON_LAYER_NORM_DEVICES', frozenset())
    expected = forward()
    assert len(kernel_calls) == len(norms)  # torch's kernels now
    for out, reference in zip(outs, expected):
        # float16 through the whole network: the two paths round the norms differently.
        scale = reference.float().abs().max()
        assert (out.float() - reference.float()).abs().max() <= 0.02 * scale


def test_glnet_training_step_gradients_match_torchs_kernels(kernel_calls, monkeypatch):
    # In float32, where both paths agree to rounding (the kernels are chosen in 16-bit only).
    monkeypatch.setattr(layers, 'TRITON_LAYER_NORM_DTYPES', (torch.float32, ))
    torch.manual_seed(0)
    model = GLNet(arch=dict(TINY_ARCH), out_indices=(1, 3), drop_path_rate=0.)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    with_kernels = training_gradients(model, x)
    assert len(kernel_calls) == len(norms) > 0
    monkeypatch.setattr(layers, 'TRITON_LAYER_NORM_DEVICES', frozenset())
    assert_gradients_close(with_kernels, training_gradients(model, x), 1e-4)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_benchmark_variant_passes_its_check_in_a_training_step(kernel_calls, monkeypatch, dtype):
    """The benchmark's check of the variant (outputs and every parameter's gradient against
    torch's kernels) on a 16-bit training step, with the kernels really chosen (the CPU
    standing in for CUDA): it passes where the kernels are right."""
    benchmark = load_tool('benchmark')
    # Off by default, as on the device: the variant switches the CPU on in its forward.
    monkeypatch.setattr(layers, 'TRITON_LAYER_NORM_DEVICES', frozenset())
    torch.manual_seed(0)
    model = GLNet(arch=dict(TINY_ARCH), out_indices=(3, ))
    checked = benchmark.CheckedWithDevices(model, 'mmglnet.models.layers',
                                           'TRITON_LAYER_NORM_DEVICES', frozenset({'cpu'}))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast('cpu', dtype=dtype):
        loss = checked(x)[0].float().mean()
    loss.backward()
    assert checked.checked
    # Its first forward ran twice with the kernels: for the check and for the step.
    assert len(kernel_calls) == 2 * len(norms)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize(
    'shape, max_programs',
    [
        ((2, 5, 7, 64), 1024),  # 70 rows: a partial tile
        ((3, 96), 1024),  # channels not a power of two
        ((70, 768), 1024),
        ((5, 1), 1024),
        ((1000, 64), 3),  # runs of 6 tiles per program, the last one past the rows
    ])
def test_column_sums_are_the_sums_in_float32(monkeypatch, dtype, shape, max_programs):
    monkeypatch.setattr(triton_bias_grad, 'MAX_PROGRAMS', max_programs)
    torch.manual_seed(0)
    rows = (torch.randn(shape) * 3 + 1).to(dtype)
    sums = triton_bias_grad.column_sums(rows)
    assert sums.dtype == torch.float32 and sums.shape == shape[-1:]
    flat = rows.double().reshape(-1, shape[-1])
    # float32 accumulation: within a few float32 roundings of the sum of the magnitudes.
    tolerance = 1e-6 * flat.abs().sum(0)
    assert ((sums.double() - flat.sum(0)).abs() <= tolerance).all()


def test_column_sums_refuse_what_they_cannot_take():
    with pytest.raises(ValueError, match=r'shape \(4, 8\) \(contiguous: False\)'):
        triton_bias_grad.column_sums(torch.randn(8, 4).t())
    with pytest.raises(ValueError, match='8192'):
        triton_bias_grad.column_sums(torch.randn(2, 8193))
    assert (triton_bias_grad.column_sums(torch.randn(0, 8)) == 0).all()


def test_channel_sums_take_the_kernel_where_channels_are_innermost(monkeypatch):
    sums = []
    kernel = triton_bias_grad._sum_columns  # the launcher, which channel_sums calls
    monkeypatch.setattr(triton_bias_grad, '_sum_columns',
                        lambda rows: sums.append(rows.shape) or kernel(rows))
    torch.manual_seed(0)
    grid = torch.randn(2, 16, 5, 3)
    for x, channel_dim, kernel_used in ((grid.contiguous(memory_format=torch.channels_last), 1,
                                         True), (grid, 1, False), (torch.randn(4, 6,
                                                                               16), -1, True)):
        sums.clear()
        got = triton_bias_grad.channel_sums(x.half(), channel_dim)
        dims = [dim for dim in range(x.dim()) if dim != channel_dim % x.dim()]
        torch.testing.assert_close(got, x.half().double().sum(dims).float(), rtol=1e-5, atol=1e-4)
        assert bool(sums) == kernel_used


@pytest.fixture
def bias_taps(monkeypatch):
    """The CPU among the devices that choose the Triton bias gradients, and every backward
    that summed a bias's gradient recorded."""
    monkeypatch.setattr(layers, 'TRITON_BIAS_GRAD_DEVICES', frozenset({'cpu'}))
    calls = []
    plain = triton_bias_grad.channel_sums
    monkeypatch.setattr(triton_bias_grad, 'channel_sums',
                        lambda x, dim: calls.append(x.shape) or plain(x, dim))
    return calls


@pytest.mark.parametrize('pointwise_as_linear', [False, True])
def test_glnet_training_step_bias_gradients_match_torchs(bias_taps, monkeypatch,
                                                         pointwise_as_linear):
    # In float32, where both paths agree to rounding (the kernel is chosen in 16-bit only).
    monkeypatch.setattr(layers, 'TRITON_BIAS_GRAD_DTYPES', (torch.float32, ))
    if pointwise_as_linear:  # as on CUDA: biases added along the last dimension of tokens
        monkeypatch.setattr(layers, 'LINEAR_POINTWISE_CONV_DEVICES', frozenset({'cpu'}))
        monkeypatch.setattr(layers, 'LINEAR_POINTWISE_CONV_DTYPES', (torch.float32, ))
    torch.manual_seed(0)
    model = GLNet(arch=dict(TINY_ARCH), out_indices=(1, 3), drop_path_rate=0.)
    biased = [
        m for m in model.modules()
        if isinstance(m, (layers.PointwiseConv2d, layers.ResidualDWConv, layers.DepthwiseConv2d))
    ]
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last).requires_grad_()
    with_kernel = training_gradients(model, x)
    # Every biased convolution's backward summed its bias's gradient, once.
    assert len(bias_taps) == len(biased) > 0
    monkeypatch.setattr(layers, 'TRITON_BIAS_GRAD_DEVICES', frozenset())
    expected = training_gradients(model, x)
    assert len(bias_taps) == len(biased)  # torch's backward now
    assert_gradients_close(with_kernel, expected, 1e-5)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_benchmark_bias_gradient_variant_passes_its_check(bias_taps, monkeypatch, dtype):
    """The benchmark's check of the variant (outputs and every parameter's gradient against
    torch's backward) on a 16-bit training step, with the kernel really chosen."""
    benchmark = load_tool('benchmark')
    monkeypatch.setattr(layers, 'TRITON_BIAS_GRAD_DEVICES', frozenset())
    # The pointwise convolutions as matrix products, as on CUDA.
    monkeypatch.setattr(layers, 'LINEAR_POINTWISE_CONV_DEVICES', frozenset({'cpu'}))
    torch.manual_seed(0)
    model = GLNet(arch=dict(TINY_ARCH), out_indices=(3, ))
    checked = benchmark.CheckedWithDevices(model, 'mmglnet.models.layers',
                                           'TRITON_BIAS_GRAD_DEVICES', frozenset({'cpu'}))
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast('cpu', dtype=dtype):
        loss = checked(x)[0].float().mean()
    loss.backward()
    assert checked.checked and bias_taps
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    'shape',
    [
        (2, 96, 5, 7),  # 70 rows: a partial tile; channels not a power of two
        (1, 64, 8, 8),
        (2, 768, 3, 3),
        (3, 1, 4, 4),
    ])
def test_bias_gelu_kernel_is_the_gelu_of_the_rounded_sum(dtype, shape):
    torch.manual_seed(0)
    x = (torch.randn(shape) * 3).to(dtype).contiguous(memory_format=torch.channels_last)
    # float32, rounded to x's dtype first as autocast casts it. The interpreter truncates
    # to bfloat16 where a GPU rounds to nearest (test_triton_kernels reads the GPU's
    # conversions): a bfloat16 bias then has nothing to round.
    bias = torch.randn(shape[1]) if dtype == torch.float16 else torch.randn(shape[1]).to(dtype)
    rounded_sum = (x.float() + bias.to(dtype).float().view(1, -1, 1, 1)).to(dtype).double()
    exact = rounded_sum * 0.5 * (1 + torch.special.erf(rounded_sum / math.sqrt(2)))
    out = triton_bias_gelu.bias_gelu_(x, bias)
    assert out is x and out.dtype == dtype
    # Within a unit in the last place in float16; the float32 formula's own error shows where
    # 1 + erf cancels (absolute, the tail towards -inf). In bfloat16 the interpreter's
    # truncations may lose a unit of the output, and one of the sum, which the GELU's slope
    # (at most 1.13) carries over.
    eps = torch.finfo(dtype).eps
    allowed = eps * exact.abs() + 1e-6
    if dtype == torch.bfloat16:
        allowed += 1.13 * eps * rounded_sum.abs()
    error = (out.double() - exact).abs()
    assert (error <= allowed).all(), (error - allowed).max().item()


def test_bias_gelu_kernel_reads_a_bias_in_any_dtype():
    torch.manual_seed(0)
    x = (torch.randn(2, 32, 4, 4) * 2).half().contiguous(memory_format=torch.channels_last)
    bias = torch.randn(32)
    from_float32 = triton_bias_gelu.bias_gelu_(x.clone(), bias)
    # A float16 copy of the bias (batch_weight_casts hands the layer one) rounds the same.
    assert torch.equal(triton_bias_gelu.bias_gelu_(x.clone(), bias.half()), from_float32)
    assert not torch.equal(triton_bias_gelu.bias_gelu_(x.clone(), bias + 0.01), from_float32)


@pytest.fixture
def bias_gelu_calls(monkeypatch):
    """Records the launches of the bias-GELU kernel, with the CPU among the devices that
    choose it."""
    monkeypatch.setattr(layers, 'TRITON_BIAS_GELU_DEVICES', frozenset({'cpu'}))
    calls = []
    plain = triton_bias_gelu.fitted_bias_gelu_

    def counted(x, bias):
        calls.append((x.shape, bias.dtype))
        return plain(x, bias)

    monkeypatch.setattr(triton_bias_gelu, 'fitted_bias_gelu_', counted)
    return calls


def ffns_with_dwconv(model: torch.nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, ConvFFN) and type(m[1]) is ResidualDWConv]


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('batch_weight_casts', [False, True])
def test_glnet_inference_adds_every_ffn_bias_with_its_gelu(bias_gelu_calls, monkeypatch, dtype,
                                                           batch_weight_casts):
    """GLNet's inference with the kernel passes the benchmark's check of the variant (outputs
    against torch's, both measured against float32), every FFN's bias going through it, also
    with the weights cast in one batch (a 16-bit copy of the bias)."""
    benchmark = load_tool('benchmark')
    # Off by default, as on the device: the variant switches the CPU on in its forward.
    monkeypatch.setattr(layers, 'TRITON_BIAS_GELU_DEVICES', frozenset())
    torch.manual_seed(0)
    model = GLNet(
        arch=dict(TINY_ARCH), out_indices=(3, ), batch_weight_casts=batch_weight_casts).eval()
    checked = benchmark.CheckedWithDevices(model, 'mmglnet.models.layers',
                                           'TRITON_BIAS_GELU_DEVICES', frozenset({'cpu'}))
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast('cpu', dtype=dtype):
        checked(x)
    assert checked.checked
    ffns = ffns_with_dwconv(model)
    # Its first forward ran twice with the kernel: for the check and for the figure.
    assert len(bias_gelu_calls) == 2 * len(ffns) > 0
    bias_dtype = dtype if batch_weight_casts else torch.float32
    assert {bias for _, bias in bias_gelu_calls} == {bias_dtype}


def test_glnet_with_the_kernel_keeps_torchs_outputs_in_float16(bias_gelu_calls):
    """The kernel rounds as torch's addition and GELU do: in float16 on the CPU, where the
    convolution adds its bias in float32 before rounding (cuDNN rounds first, as the kernel
    does), GLNet's outputs stay within float16's rounding of torch's."""
    torch.manual_seed(0)
    model = GLNet(arch=dict(TINY_ARCH), out_indices=(0, 3)).eval()
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.float16):
        with_kernel = model(x)
        with mock.patch.object(layers, 'TRITON_BIAS_GELU_DEVICES', frozenset()):
            plain = model(x)
    assert len(bias_gelu_calls) == len(ffns_with_dwconv(model))
    for got, want in zip(with_kernel, plain):
        # A few float16 units of the largest output (1.1e-3 when written).
        error = (got.float() - want.float()).abs().max() / want.float().abs().max()
        assert error <= 4e-3, error.item()


def test_forwards_recording_a_gradient_keep_torchs_addition(bias_gelu_calls):
    model = GLNet(arch=dict(TINY_ARCH), out_indices=(3, ))
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        model(x)[0].float().sum().backward()
        assert bias_gelu_calls == []
        # Frozen layers record none: the kernel serves them.
        model.requires_grad_(False)
        model(x)
    assert len(bias_gelu_calls) == len(ffns_with_dwconv(model))


def test_every_inference_experiment_together_passes_the_benchmarks_checks(
        bias_gelu_calls, kernel_calls, monkeypatch):
    """The benchmark's ``*_batched_casts_triton_layernorm_bias_gelu`` as it wraps GLNet (the
    bias-GELU variant around the LayerNorm's, the weights cast in one batch), with the CPU
    standing in for CUDA: each kernel passes its check, and both run in the forward."""
    benchmark = load_tool('benchmark')
    monkeypatch.setattr(layers, 'TRITON_BIAS_GELU_DEVICES', frozenset())
    monkeypatch.setattr(layers, 'TRITON_LAYER_NORM_DEVICES', frozenset())
    torch.manual_seed(0)
    model = GLNet(arch=dict(TINY_ARCH), out_indices=(3, ), batch_weight_casts=True).eval()
    wrapped = benchmark.triton_inference_kernels(model, frozenset({'cpu'}))
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        wrapped(x)
        calls = len(bias_gelu_calls), len(kernel_calls)
        wrapped(x)
    assert wrapped.checked and wrapped.model.checked
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    # A plain forward runs each kernel once per layer.
    assert (len(bias_gelu_calls) - calls[0],
            len(kernel_calls) - calls[1]) == (len(ffns_with_dwconv(model)), len(norms))
