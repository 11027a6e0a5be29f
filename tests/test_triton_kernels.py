"""mmglnet's Triton kernels, the LayerNorm (``mmglnet.models.triton_layer_norm``), the bias
gradients (``mmglnet.models.triton_bias_grad``) and the FFN's bias with its GELU
(``mmglnet.models.triton_bias_gelu``): when they are chosen, how they compile for a GPU, and,
in a process of their own under Triton's interpreter, the checks that run them
(``tests/triton_interpreted.py``).

They are chosen on the devices of ``TRITON_LAYER_NORM_DEVICES``, ``TRITON_BIAS_GRAD_DEVICES``
and ``TRITON_BIAS_GELU_DEVICES``, empty by default (experiments until a GPU measures them);
these tests add the CPU.
"""
import os
import os.path as osp
import re
import subprocess
import sys
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from mmglnet.models import GLNet, layers
from mmglnet.models.layers import (ConvFFN, DepthwiseConv2d, PointwiseConv2d, ResidualDWConv,
                                   triton_bias_grad_dtype, uses_triton_bias_gelu,
                                   uses_triton_layer_norm)
from mmglnet.models.weight_casts import cast_only_parameters

from conftest import TINY_ARCH

INTERPRETED_CHECKS = osp.join(osp.dirname(osp.abspath(__file__)), 'triton_interpreted.py')


@pytest.fixture
def on_cpu(monkeypatch):
    monkeypatch.setattr(layers, 'TRITON_LAYER_NORM_DEVICES', frozenset({'cpu'}))


@pytest.fixture
def kernel_calls(on_cpu, monkeypatch):
    """Records every call of the kernels' launcher, which would fail here: Triton cannot
    launch on CPU tensors outside its interpreter."""
    from mmglnet.models import triton_layer_norm
    calls = []
    monkeypatch.setattr(triton_layer_norm, 'fitted_layer_norm_rows',
                        lambda x, *_, **__: calls.append(x))
    return calls


def test_kernels_under_the_triton_interpreter():
    env = dict(os.environ, TRITON_INTERPRET='1')
    run = subprocess.run([
        sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-o', 'addopts=',
        INTERPRETED_CHECKS
    ],
                         env=env,
                         capture_output=True,
                         text=True,
                         timeout=600)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ''
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    # Every check ran: none skipped or deselected.
    assert re.fullmatch(r'\d+ passed in [\d.]+s( \(.*\))?', summary), summary
    assert int(summary.split()[0]) >= 45, summary


def ptx_for_hopper(kernel, signature: dict, constants: dict) -> str:
    """``kernel`` compiled ahead of time for sm_90 (H100, H200) down to a cubin, with the
    argument types of ``signature`` and the ``constants``, and its pointers 16-byte aligned
    as Triton specialises them for tensors that are: its PTX."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    # In the order of the kernel's parameters, which Triton's signature follows.
    names = kernel.arg_names
    signature = dict(signature, **{name: 'constexpr' for name in constants})
    signature = {name: signature[name] for name in names}
    aligned = {
        (i, ): [['tt.divisibility', 16]]
        for i, name in enumerate(names) if name.endswith('_ptr')
    }
    source = ASTSource(fn=kernel, signature=signature, constexprs=constants, attrs=aligned)
    compiled = triton.compile(source, target=GPUTarget('cuda', 90, 32))
    assert compiled.asm['cubin'] and '.target sm_90' in compiled.asm['ptx']
    return compiled.asm['ptx']


@pytest.mark.parametrize('dtype, channels', [('fp16', 64), ('bf16', 96)])
def test_layer_norm_kernels_compile_for_hopper_without_a_gpu(dtype, channels):
    """The kernels as the launcher would launch them: what the interpreter cannot show
    (Triton's type checks and lowering for the GPU), and that every thread reads and writes
    the 16-bit rows 16 bytes at a time."""
    from mmglnet.models import triton_layer_norm
    block_channels, rows = triton_layer_norm.tile(channels)
    sizes = dict(CHANNELS=channels, BLOCK_CHANNELS=block_channels, ROWS=rows)
    forward = dict(
        x_ptr=f'*{dtype}',
        weight_ptr='*fp32',
        bias_ptr='*fp32',
        out_ptr=f'*{dtype}',
        num_rows='i32',
        eps='fp32')
    # Inference passes the output for the statistics, which it does not write.
    inference = dict(forward, mean_ptr=f'*{dtype}', inverse_std_ptr=f'*{dtype}')
    training = dict(forward, mean_ptr='*fp32', inverse_std_ptr='*fp32')
    backward = dict(
        grad_out_ptr=f'*{dtype}',
        x_ptr=f'*{dtype}',
        weight_ptr='*fp32',
        mean_ptr='*fp32',
        inverse_std_ptr='*fp32',
        grad_x_ptr=f'*{dtype}',
        partial_sums_ptr='*fp32',
        num_rows='i32')
    for kernel, signature, constants in (
        (triton_layer_norm._layer_norm_rows_kernel, inference, dict(SAVE_STATISTICS=False)),
        (triton_layer_norm._layer_norm_rows_kernel, training, dict(SAVE_STATISTICS=True)),
        (triton_layer_norm._layer_norm_rows_backward_kernel, backward, {}),
    ):
        ptx = ptx_for_hopper(kernel, signature, dict(sizes, **constants))
        vector = 'ld.global.v4.b32' in ptx and 'st.global.v4.b32' in ptx
        scalar = 'ld.global.b16' in ptx or 'st.global.b16' in ptx
        assert vector and not scalar, f'{kernel.fn.__name__}: 16-bit elements one at a time'


@pytest.mark.parametrize('dtype, channels', [('fp16', 64), ('bf16', 96), ('fp16', 512)])
def test_column_sums_kernel_compiles_for_hopper_without_a_gpu(dtype, channels):
    """The bias gradients' kernel reads the 16-bit rows 16 bytes at a time too."""
    from mmglnet.models import triton_bias_grad
    block_channels, rows = triton_bias_grad.tile(channels)
    signature = dict(
        rows_ptr=f'*{dtype}', partial_sums_ptr='*fp32', num_rows='i32', tiles_per_program='i32')
    ptx = ptx_for_hopper(triton_bias_grad._column_sums_kernel, signature,
                         dict(CHANNELS=channels, BLOCK_CHANNELS=block_channels, ROWS=rows))
    assert 'ld.global.v4.b32' in ptx and 'ld.global.b16' not in ptx


def test_off_by_default():
    assert layers.TRITON_LAYER_NORM_DEVICES == frozenset()
    assert layers.TRITON_LAYER_NORM_TRAINING_DEVICES == frozenset()
    x = torch.randn(2, 8, 16)
    assert not uses_triton_layer_norm(x.half(), torch.float16,
                                      (16, ), torch.ones(16), torch.zeros(16))


def test_training_devices_choose_it_where_gradients_are_recorded_only(monkeypatch):
    """The training-only set: a GLNet training forward takes the kernels, its inference
    (no gradients, where the batched weight casts then keep the norms' casts) does not."""
    from mmglnet.models import triton_layer_norm
    monkeypatch.setattr(layers, 'TRITON_LAYER_NORM_TRAINING_DEVICES', frozenset({'cpu'}))
    calls = []

    def recording(x, weight, bias, eps, dtype):
        calls.append(torch.is_grad_enabled())
        return F.layer_norm(x.to(dtype), x.shape[-1:], weight.to(dtype), bias.to(dtype), eps)

    monkeypatch.setattr(triton_layer_norm, 'fitted_layer_norm_rows', recording)
    x = torch.randn(2, 8, 16)
    weight, bias = torch.ones(16), torch.zeros(16)
    assert uses_triton_layer_norm(x.half(), torch.float16, (16, ), weight, bias)
    assert not uses_triton_layer_norm(x, torch.float32, (16, ), weight, bias)
    with torch.no_grad():
        assert not uses_triton_layer_norm(x.half(), torch.float16, (16, ), weight, bias)
    model = GLNet(arch=dict(TINY_ARCH), out_indices=(3, ))
    image = torch.randn(1, 3, 64, 64)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        model.train()(image)
        trained = len(calls)
        with torch.no_grad():
            model.eval()(image)
    assert trained > 0 and calls == [True] * trained
    # Where the kernels read the norms' float32 weights in training, inference still batches
    # the norms' casts with the others.
    norms = [m for m in model.modules() if type(m) in (layers.LayerNorm, layers.LayerNorm2d)]
    with torch.no_grad():
        listed = {id(p) for p in cast_only_parameters(model, image.device, torch.bfloat16)}
    assert norms and all(id(norm.weight) in listed for norm in norms)


def test_chosen_for_16_bit_inference_over_the_last_dimension_only(on_cpu):
    weight, bias = torch.ones(16), torch.zeros(16)
    x = torch.randn(2, 8, 16)

    def chosen(x, dtype=torch.float16, shape=(16, ), weight=weight):
        return uses_triton_layer_norm(x, dtype, shape, weight, bias)

    assert chosen(x.half()) and chosen(x, torch.bfloat16)
    assert not chosen(x, torch.float32)
    assert not chosen(x.transpose(1, 2).contiguous().transpose(1, 2))  # rows not contiguous
    assert not chosen(torch.randn(2, 4, 4), shape=(4, 4))  # over two dimensions
    assert not chosen(x.half(), weight=None)
    assert not chosen(x.half(), weight=weight.half())  # the bias stays float32
    assert chosen(x.half().requires_grad_())  # training too: the kernels have a backward


def test_not_traced_or_compiled(on_cpu, kernel_calls):
    model = GLNet(arch=dict(TINY_ARCH), out_indices=(3, )).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.float16):
        torch.jit.trace(model, x, check_trace=False)
        torch.compile(model, backend='eager', fullgraph=True)(x)
    assert kernel_calls == []


@pytest.fixture
def taps(monkeypatch):
    """The CPU among the devices that choose the Triton bias gradients, and every tap of a
    layer's output recorded (the tap itself is the identity in the forward)."""
    from mmglnet.models import triton_bias_grad
    monkeypatch.setattr(layers, 'TRITON_BIAS_GRAD_DEVICES', frozenset({'cpu'}))
    calls = []
    monkeypatch.setattr(triton_bias_grad, 'tap_bias_gradient',
                        lambda out, bias, channel_dim: calls.append((bias, channel_dim)) or out)
    return calls


def test_bias_gradients_off_by_default():
    assert layers.TRITON_BIAS_GRAD_DEVICES == frozenset()
    bias = torch.zeros(8, requires_grad=True)
    assert triton_bias_grad_dtype(torch.randn(2, 8).half(), bias) is None


def test_bias_gradients_chosen_for_16_bit_training_only(taps):
    bias = torch.zeros(8, requires_grad=True)
    x = torch.randn(2, 8, 4, 4)
    assert triton_bias_grad_dtype(x.half(), bias) == torch.float16
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert triton_bias_grad_dtype(x, bias) == torch.bfloat16
    assert triton_bias_grad_dtype(x, bias) is None  # float32
    assert triton_bias_grad_dtype(x.half(), bias.detach()) is None  # a frozen bias
    assert triton_bias_grad_dtype(x.half(), None) is None
    with torch.no_grad():
        assert triton_bias_grad_dtype(x.half(), bias) is None


def test_every_biased_convolution_of_a_training_forward_is_tapped(taps):
    torch.manual_seed(0)
    model = GLNet(arch=dict(TINY_ARCH), out_indices=(3, ))
    convs = [
        m for m in model.modules()
        if isinstance(m, (PointwiseConv2d, ResidualDWConv, DepthwiseConv2d)) and m.bias is not None
    ]
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        model(x)
        assert len(taps) == len(convs) > 0
        assert {id(bias) for bias, _ in taps} == {id(m.bias) for m in convs}
        # Each layer added its bias detached, in its dtype, and taps the float32 one.
        assert all(bias.dtype == torch.float32 and bias.requires_grad for bias, _ in taps)
        taps.clear()
        with torch.no_grad():
            model(x)
        assert taps == []


def test_bias_gradients_not_traced_or_compiled(taps):
    model = GLNet(arch=dict(TINY_ARCH), out_indices=(3, ))
    x = torch.randn(1, 3, 64, 64)
    with torch.autocast('cpu', dtype=torch.float16):
        torch.jit.trace(model, x, check_trace=False)
        torch.compile(model, backend='eager', fullgraph=True)(x)
    assert taps == []


@pytest.mark.parametrize('dtype, bias_dtype, channels',
                         [('fp16', 'fp32', 192), ('bf16', 'fp32', 96), ('fp16', 'fp16', 768)])
def test_bias_gelu_kernel_compiles_for_hopper_without_a_gpu(dtype, bias_dtype, channels):
    """The FFN's bias-GELU kernel reads and writes the 16-bit rows 16 bytes at a time, and
    rounds to 16 bits to nearest, as torch does (Triton's interpreter truncates to bfloat16)."""
    from mmglnet.models import triton_bias_gelu
    block_channels, rows = triton_bias_gelu.tile(channels)
    signature = dict(
        x_ptr=f'*{dtype}', bias_ptr=f'*{bias_dtype}', out_ptr=f'*{dtype}', num_rows='i32')
    ptx = ptx_for_hopper(triton_bias_gelu._bias_gelu_kernel, signature,
                         dict(CHANNELS=channels, BLOCK_CHANNELS=block_channels, ROWS=rows))
    assert 'ld.global.v4.b32' in ptx and 'st.global.v4.b32' in ptx
    assert 'st.global.b16' not in ptx
    down = set(re.findall(r'cvt\.[a-z0-9.]+\.f32\b', ptx)) - {'cvt.f32.f32'}
    assert down and all(c.startswith('cvt.rn.') for c in down), down


@pytest.fixture
def bias_gelu_calls(monkeypatch):
    """The CPU among the devices that choose the bias-GELU kernel, and its launches recorded
    (the GELU of the sum computed by torch in its place: Triton cannot launch here)."""
    from mmglnet.models import triton_bias_gelu
    monkeypatch.setattr(layers, 'TRITON_BIAS_GELU_DEVICES', frozenset({'cpu'}))
    calls = []

    def recorded(x, bias):
        calls.append((x.shape, bias.dtype))
        return x.copy_(torch.nn.functional.gelu(x + bias.to(x.dtype).view(1, -1, 1, 1)))

    monkeypatch.setattr(triton_bias_gelu, 'fitted_bias_gelu_', recorded)
    return calls


def test_bias_gelu_off_by_default():
    assert layers.TRITON_BIAS_GELU_DEVICES == frozenset()
    conv = ResidualDWConv(8)
    with torch.no_grad():
        assert not uses_triton_bias_gelu(torch.randn(1, 8, 4, 4).half(), conv)


def test_bias_gelu_chosen_for_16_bit_forwards_without_a_gradient(bias_gelu_calls):
    conv = ResidualDWConv(8)
    x = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        assert uses_triton_bias_gelu(x.half(), conv)
        assert not uses_triton_bias_gelu(x, conv)  # float32
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert uses_triton_bias_gelu(x, conv)
    assert not uses_triton_bias_gelu(x.half(), conv)  # the weights take a gradient
    conv.requires_grad_(False)
    assert uses_triton_bias_gelu(x.half(), conv)  # frozen, and an input without one
    assert not uses_triton_bias_gelu(x.half().requires_grad_(), conv)


def test_ffn_with_the_kernel_is_the_ffn(bias_gelu_calls):
    """The FFN hands the kernel its depth-wise convolution's output without the bias, and the
    bias: with the kernel's arithmetic done by torch, the output is the FFN's own (bfloat16
    on the CPU, where the convolution adds its bias before rounding: within its rounding).
    An FFN it cannot take (a feature map not channels-last) adds the bias by torch; one
    without the residual depth-wise convolution, with forward hooks on the convolution or
    the GELU, or switched to the reference path, keeps its forward."""
    torch.manual_seed(0)
    ffn = ConvFFN(16, 3, with_dwconv=True).eval().to(torch.bfloat16)
    x = torch.randn(2, 16, 6, 6).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        with mock.patch.object(layers, 'TRITON_BIAS_GELU_DEVICES', frozenset()):
            want = ffn(x)
        assert bias_gelu_calls == []
        torch.testing.assert_close(ffn(x), want, rtol=1e-2, atol=1e-2)
        assert bias_gelu_calls == [((2, 48, 6, 6), torch.bfloat16)]
        torch.testing.assert_close(ffn(x.contiguous()), want, rtol=1e-2, atol=1e-2)
        assert len(bias_gelu_calls) == 1
        ConvFFN(16, 3, with_dwconv=False).eval().to(torch.bfloat16)(x)
        # A module with a hook is called, and its hook runs.
        seen = []
        for module in (ffn[1], ffn[2]):
            handle = module.register_forward_hook(lambda *_: seen.append(1))
            assert torch.equal(ffn(x), want) and len(seen) == 1
            handle.remove()
            seen.clear()
        ffn[1].__class__ = type('Subclass', (ResidualDWConv, ), {})
        assert torch.equal(ffn(x), want)
    assert len(bias_gelu_calls) == 1


def test_bias_gelu_not_traced_or_compiled(bias_gelu_calls):
    model = GLNet(arch=dict(TINY_ARCH), out_indices=(3, )).eval()
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.float16):
        torch.jit.trace(model, x, check_trace=False)
        torch.compile(model, backend='eager', fullgraph=True)(x)
        assert bias_gelu_calls == []
        model(x)
    assert len(bias_gelu_calls) == sum(
        isinstance(m, ConvFFN) and type(m[1]) is ResidualDWConv for m in model.modules()) > 0
