"""tools/analysis_tools/benchmark.py and the page rendered from its committed runs."""
import ctypes
import json
import logging
import os
import os.path as osp
import shlex
import signal
import subprocess
import sys
import time
import types
from types import SimpleNamespace

import pytest
import torch

from mmglnet.models import GLNet, pooling
from mmglnet.testing import get_impl, set_impl

from conftest import REPO_ROOT, TINY_ARCH, load_tool


@pytest.fixture(scope='module')
def benchmark():
    return load_tool('benchmark')


@pytest.fixture(scope='module')
def renderer():
    return load_tool('render_benchmark_docs')


def test_model_names_build_the_right_path(benchmark):
    fast = benchmark.MODEL_BUILDERS['glnet_stl'](224)
    reference = benchmark.MODEL_BUILDERS['glnet_stl_reference'](224)
    assert isinstance(fast, GLNet) and fast.out_indices == (3, )
    assert get_impl(fast) == 'fast' and get_impl(reference) == 'reference'
    eager_run = SimpleNamespace(compile=False, cuda_graphs=False)
    graphs = dict(mode='reduce-overhead')
    for suffix, blocks, backbone in (
        ('_compile_blocks', {}, None),
        ('_compile_blocks_cudagraphs', graphs, None),
        ('_compile_backbone', None, {}),
        ('_compile_backbone_cudagraphs', None, graphs),
        ('_compile_backbone_autotune', None, dict(mode='max-autotune-no-cudagraphs')),
        ('_compile_backbone_cpp_wrapper', None, dict(options={'cpp_wrapper': True})),
    ):
        compiled = benchmark.MODEL_BUILDERS[f'glnet_stl{suffix}'](224)
        for cfg, expected in ((compiled.compile_cfg, blocks), (compiled.backbone_compile_cfg,
                                                               backbone)):
            assert cfg == (None if expected is None else dict(dynamic=False, **expected))
        assert compiled.compile_eval  # also compiled in eval mode (inference, latency)
        # Not compiled again by --compile, and left out of --count-ops.
        assert benchmark.compile_model(f'glnet_stl{suffix}', compiled, eager_run) is compiled
        assert not benchmark.dispatches_operators(f'glnet_stl{suffix}', eager_run)
    assert fast.compile_cfg is None and fast.backbone_compile_cfg is None
    assert not fast.compile_eval
    assert benchmark.dispatches_operators('glnet_stl', eager_run)


def test_torch_pooling_variant_switches_the_fast_pooling_off_in_its_forward_only(
        benchmark, monkeypatch):
    wrapped = benchmark.MODEL_BUILDERS['glnet_stl_torch_pooling'](224)
    assert isinstance(wrapped, benchmark.WithDevices) and get_impl(wrapped.model) == 'fast'
    # The CPU stands in for CUDA, where the fast path does not call torch's kernel.
    monkeypatch.setattr(pooling, 'FAST_SLOT_POOLING_DEVICES', frozenset({'cpu'}))
    torch_kernel_calls = []
    adaptive_avg_pool2d = pooling.adaptive_avg_pool2d
    monkeypatch.setattr(pooling, 'adaptive_avg_pool2d',
                        lambda *a: torch_kernel_calls.append(1) or adaptive_avg_pool2d(*a))
    model = GLNet(TINY_ARCH, out_indices=(3, )).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        fast = model(x)
        assert not torch_kernel_calls
        with_torch_kernel = benchmark.torch_slot_pooling(model)(x)
    assert len(torch_kernel_calls) == 3  # one GLMix block in each of stages 1-3
    assert pooling.FAST_SLOT_POOLING_DEVICES == {'cpu'}
    torch.testing.assert_close(with_torch_kernel, fast)
    with pytest.raises(ValueError, match="5 channels"):  # restored after a failure too
        benchmark.torch_slot_pooling(model)(torch.randn(1, 5, 64, 64))
    assert pooling.FAST_SLOT_POOLING_DEVICES == {'cpu'}


def test_conv_pointwise_variant_switches_the_products_off_in_its_forward_only(
        benchmark, monkeypatch):
    from mmglnet.models import layers
    wrapped = benchmark.MODEL_BUILDERS['glnet_stl_conv_pointwise'](224)
    assert isinstance(wrapped, benchmark.WithDevices) and get_impl(wrapped.model) == 'fast'
    # The CPU in float32 stands in for CUDA in float16, where the fast path computes products.
    monkeypatch.setattr(layers, 'LINEAR_POINTWISE_CONV_DEVICES', frozenset({'cpu'}))
    monkeypatch.setattr(layers, 'LINEAR_POINTWISE_CONV_DTYPES', (torch.float32, ))
    model = GLNet(TINY_ARCH, out_indices=(3, )).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad(), benchmark.OperatorCounter() as fast_ops:
        fast = model(x)
    with torch.no_grad(), benchmark.OperatorCounter() as conv_ops:
        with_convolutions = benchmark.conv_pointwise(model)(x)
    # Each pointwise convolution is a product in one and a convolution in the other (the
    # attention's projections are products in both).
    moved = fast_ops.counts['addmm'] - conv_ops.counts['addmm']
    assert moved > 0 and conv_ops.counts['convolution'] - fast_ops.counts['convolution'] == moved
    assert layers.LINEAR_POINTWISE_CONV_DEVICES == {'cpu'}  # restored after the forward
    torch.testing.assert_close(with_convolutions, fast, rtol=1e-5, atol=1e-5)


def test_check_joins_the_same_parameter_of_every_block(benchmark):
    results = {
        'output 0': torch.ones(2),
        'stages.0.blocks.1.slot_scale': torch.tensor(1.),
        'stages.2.blocks.10.slot_scale': torch.tensor(2.),
        'downsample_layers.0.4.bias': torch.zeros(3),
        'norm3.weight': torch.ones(1),
    }
    kinds = benchmark.by_kind(results)
    assert list(kinds) == [
        'output 0', 'stages.*.blocks.*.slot_scale', 'downsample_layers.*.*.bias', 'norm3.weight'
    ]
    assert kinds['stages.*.blocks.*.slot_scale'].tolist() == [1., 2.]


def test_triton_bias_grad_variant_is_checked_against_the_model(benchmark):
    wrapped = benchmark.MODEL_BUILDERS['glnet_stl_triton_bias_grad'](224)
    assert isinstance(wrapped, benchmark.CheckedWithDevices) and get_impl(wrapped.model) == 'fast'
    assert (wrapped.attribute, wrapped.devices) == ('TRITON_BIAS_GRAD_DEVICES', {'cuda'})
    assert wrapped.factor == 3 and not wrapped.checked


def test_autocast_casts_variant_switches_the_batched_casts_off(benchmark):
    """GLNet batches its weight casts by default; the variant measures autocast's own."""
    assert benchmark.MODEL_BUILDERS['glnet_4g'](224).weight_casts is not None
    model = benchmark.MODEL_BUILDERS['glnet_4g_autocast_casts'](224)
    assert model.weight_casts is None and get_impl(model) == 'fast'


def test_triton_inference_variant_checks_both_kernels(benchmark):
    """The chain of both Triton inference experiments: each wrapper checks its own kernel."""
    wrapped = benchmark.MODEL_BUILDERS['glnet_4g_triton_layernorm_bias_gelu'](224)
    for attribute in ['TRITON_BIAS_GELU_DEVICES', 'TRITON_LAYER_NORM_DEVICES']:
        assert isinstance(wrapped, benchmark.CheckedWithDevices)
        assert (wrapped.attribute, wrapped.devices) == (attribute, {'cuda'})
        wrapped = wrapped.model
    assert wrapped.weight_casts is not None and get_impl(wrapped) == 'fast'


def test_triton_bias_gelu_variant_is_checked_against_the_model(benchmark):
    wrapped = benchmark.MODEL_BUILDERS['glnet_4g_triton_bias_gelu'](224)
    assert isinstance(wrapped, benchmark.CheckedWithDevices) and get_impl(wrapped.model) == 'fast'
    assert (wrapped.attribute, wrapped.devices) == ('TRITON_BIAS_GELU_DEVICES', {'cuda'})
    assert wrapped.model.weight_casts is not None and not wrapped.checked


def test_a_checked_variant_wrapping_another_checks_each_against_the_plain_model(
        benchmark, monkeypatch):
    """Two choices of the GLNet code, each checked, the inner one only acting under autocast
    (as the Triton kernels are chosen in 16 bits only): each is checked in the forward's own
    precision against the model without either, and each one's error is caught."""
    choice = types.ModuleType('fake_choices')
    choice.INNER, choice.OUTER = frozenset(), frozenset()
    monkeypatch.setitem(sys.modules, 'fake_choices', choice)

    class Chosen(torch.nn.Module):

        def __init__(self, inner: float, outer: float) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.full((3, ), 2.))
            self.inner, self.outer = inner, outer

        def forward(self, x):
            out = x * self.weight  # float32 under autocast: the model computes exactly
            if 'cpu' in choice.INNER and torch.is_autocast_enabled('cpu'):
                out = out * self.inner
            if 'cpu' in choice.OUTER:
                out = out * self.outer
            return out

    def nested(inner=1., outer=1.):
        checked_inner = benchmark.CheckedWithDevices(
            Chosen(inner, outer), 'fake_choices', 'INNER', frozenset({'cpu'}))
        return benchmark.CheckedWithDevices(checked_inner, 'fake_choices', 'OUTER',
                                            frozenset({'cpu'}))

    x = torch.randn(2, 3) + 5
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        close = nested(1.0002, 1.0002)
        torch.testing.assert_close(close(x), x * 2 * 1.0002 * 1.0002)
        assert close.checked and close.model.checked
        with pytest.raises(RuntimeError, match=r"INNER=\{'cpu'\} is [\d.e-]+ from the float32"):
            nested(inner=1.01)(x)
        with pytest.raises(RuntimeError, match=r"OUTER=\{'cpu'\} is [\d.e-]+ from the float32"):
            nested(outer=1.01)(x)
    assert choice.INNER == choice.OUTER == frozenset()


def test_triton_layernorm_variant_is_checked_against_the_model_on_its_first_forward(
        benchmark, monkeypatch):
    wrapped = benchmark.MODEL_BUILDERS['glnet_stl_triton_layernorm'](224)
    assert isinstance(wrapped, benchmark.CheckedWithDevices) and get_impl(wrapped.model) == 'fast'
    assert (wrapped.attribute, wrapped.devices) == ('TRITON_LAYER_NORM_DEVICES', {'cuda'})
    # A choice of the GLNet code that, while it is on, scales the output, or the gradient of
    # the model's weight only (by a term that is zero forwards). The model computes exactly
    # here (float32 on the CPU), so only the floor allows a difference: 1e-3 of the norm.
    choice = types.ModuleType('fake_choice')
    choice.DEVICES = frozenset()
    monkeypatch.setitem(sys.modules, 'fake_choice', choice)
    calls = []

    class Chosen(torch.nn.Module):

        def __init__(self, factor: float, grad_factor: float) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.full((3, ), 2.))
            self.factor, self.grad_factor = factor, grad_factor

        def forward(self, x):
            calls.append(1)
            if 'cpu' not in choice.DEVICES:
                return x * self.weight
            weight = self.weight + (self.grad_factor - 1) * (self.weight - self.weight.detach())
            return x * weight * self.factor

    def checked(factor=1., grad_factor=1.):
        return benchmark.CheckedWithDevices(
            Chosen(factor, grad_factor), 'fake_choice', 'DEVICES', frozenset({'cpu'}))

    x = torch.randn(2, 3) + 5
    close = checked(1.0002, 1.0005)
    close(x).sum().backward()
    torch.testing.assert_close(close.model.weight.grad, x.sum(0) * 1.0002 * 1.0005)
    close(x)
    # The first forward four times (exact, the model's own, the choice's, the step), then once.
    assert len(calls) == 5
    assert choice.DEVICES == frozenset()
    with torch.no_grad():  # inference: the outputs are checked
        with pytest.raises(
                RuntimeError, match=r"DEVICES=\{'cpu'\} is [\d.e-]+ from the float32 output 0"):
            checked(factor=1.01)(x)
        checked(grad_factor=2.)(x)  # no gradients to check
    far = checked(grad_factor=1.01)
    with pytest.raises(RuntimeError, match=r'from the float32 weight \(norm [\d.]+\), the model '):
        far(x)
    assert not far.checked and far.model.weight.grad is None


def precast_twin(benchmark, name: str):
    """The model ``name``'s twin is built from (GLNet's: with autocast's own casts) and the
    twin, with the same weights, channels-last, in eval mode."""
    plain = benchmark.MODEL_BUILDERS[benchmark.PRECAST_SOURCES[name]](64)
    precast = benchmark.MODEL_BUILDERS[name + '_precast'](64)
    precast.model.load_state_dict(plain.state_dict())
    for model in (plain, precast):
        model.to(memory_format=torch.channels_last)
        model.eval()  # not chained: mmdet's Swin returns None
    return plain, precast


def casts_per_forward(benchmark, model, x) -> int:
    """Casts one forward dispatches in a fresh bfloat16 autocast context, as a benchmark step."""
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        model(x)  # builds what the model keeps between forwards (pooling matrices)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        with benchmark.OperatorCounter() as ops:
            model(x)
    return ops.counts['_to_copy']


@pytest.mark.parametrize('name, cuda_choices', [('glnet_4g', False), ('glnet_stl', True),
                                                ('glnet_stl_reference', False),
                                                ('swin_t_mmdet', False)])
def test_precast_twin_gives_the_same_outputs_without_the_weight_casts(benchmark, monkeypatch, name,
                                                                      cuda_choices):
    from mmglnet.models import layers
    if cuda_choices:  # the CPU stands in for CUDA: products of views of the pointwise weights
        monkeypatch.setattr(layers, 'LINEAR_POINTWISE_CONV_DEVICES', frozenset({'cpu'}))
        monkeypatch.setattr(pooling, 'FAST_SLOT_POOLING_DEVICES', frozenset({'cpu'}))
    plain, precast = precast_twin(benchmark, name)
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    casts_before = casts_per_forward(benchmark, plain, x)
    outputs = []
    for _ in range(2):  # the first forward casts the weights, the second finds them cast
        with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
            outputs.append(benchmark.as_tuple(precast(x)))
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        expected = benchmark.as_tuple(plain(x))
    for output in outputs:
        assert all(torch.equal(a, b) for a, b in zip(output, expected))
    params = dict(precast.model.named_parameters())
    assert precast.cast_dtype == torch.bfloat16 and precast.precast_names
    assert {params[n].dtype for n in precast.precast_names} == {torch.bfloat16}
    # Each of them was cast once per forward, and is no more.
    assert casts_before - casts_per_forward(benchmark, precast, x) == len(precast.precast_names)
    with pytest.raises(RuntimeError, match='which this forward runs without'):
        with torch.no_grad():
            precast(x)
    # Parameters read in their own dtype keep it: BatchNorm's, the slot temperatures, the
    # position encodings' kernels (the identity is added to them in float32).
    modules = dict(precast.model.named_modules())
    kept = [n for n, p in params.items() if p.dtype == torch.float32]
    assert kept and set(kept).isdisjoint(precast.precast_names)
    for module_name, module in modules.items():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            assert f'{module_name}.weight' in kept
    if name.startswith('glnet'):
        assert any(n.endswith('slot_scale') for n in kept)
    if name == 'glnet_4g':
        assert any(n.endswith('pos_conv.weight') for n in kept)
        assert any(n.endswith('pos_conv.bias') for n in precast.precast_names)


@pytest.mark.parametrize('kind, message', [('slot_scale', 'changed the outputs'),
                                           ('bn', 'expected scalar type')])
def test_precast_twin_restores_the_weights_when_a_cast_changes_or_breaks_the_forward(
        benchmark, monkeypatch, kind, message):
    _, precast = precast_twin(benchmark, 'glnet_stl')
    # Both read in float32: a cast temperature rounds the logits, a cast BatchNorm weight
    # fails the BatchNorm.
    wrong = next(n for n, m in precast.model.named_modules()
                 if isinstance(m, torch.nn.BatchNorm2d)) + '.weight' if kind == 'bn' else next(
                     n for n, _ in precast.model.named_parameters() if n.endswith('slot_scale'))
    params = dict(precast.model.named_parameters())
    with torch.no_grad():
        params[wrong].uniform_(0.5, 2.0)  # values that bfloat16 rounds
    kept = params[wrong].detach().clone()
    monkeypatch.setattr(benchmark.PrecastWeights, 'parameters_only_cast_to',
                        lambda self, x, dtype: [wrong])
    with pytest.raises(RuntimeError, match=message):
        with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
            precast(torch.randn(2, 3, 64, 64))
    assert torch.equal(params[wrong], kept)
    assert precast.cast_dtype is None and not precast.precast_names


def test_precast_twin_runs_float32_as_it_is_and_refuses_training(benchmark):
    plain, precast = precast_twin(benchmark, 'glnet_stl')
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(precast(x)[0], plain(x)[0])
    assert precast.cast_dtype is None
    assert {p.dtype for p in precast.parameters()} == {torch.float32}
    with pytest.raises(RuntimeError, match='inference and latency only'):
        precast.train()(x)
    for extra in (['--modes', 'train'], ['--modes', 'infer', '--compile']):
        with pytest.raises(SystemExit):
            benchmark.parse_args(
                ['--models', 'glnet_4g_precast', 'swin_t', '--device', 'cpu', *extra])
    benchmark.parse_args([
        '--models', 'glnet_4g_precast', 'swin_t_precast', '--device', 'cpu', '--modes', 'infer',
        'latency'
    ])


def test_shifted_dw_conv_variant_compiles_the_backbone_with_shifts_in_its_forward_only(benchmark):
    from mmglnet.models import layers
    for graphs in ('', '_cudagraphs'):
        name = f'glnet_stl_compile_backbone{graphs}_shift_dwconv'
        wrapped = benchmark.MODEL_BUILDERS[name](224)
        assert isinstance(wrapped, benchmark.WithDevices) and get_impl(wrapped.model) == 'fast'
        assert wrapped.model.backbone_compile_cfg == benchmark.own_compilation(name)[1]
        assert benchmark.own_compilation(name) == benchmark.own_compilation(
            name[:-len('_shift_dwconv')])
    seen = []

    class Probe(torch.nn.Module):

        def forward(self, x):
            seen.append(layers.SHIFTED_DW_CONV_DEVICES)
            return x

    benchmark.shifted_dw_convs(Probe())(torch.zeros(1))
    assert seen == [frozenset({'cuda', 'cpu'})]
    assert layers.SHIFTED_DW_CONV_DEVICES == frozenset()  # the library's default, restored


def test_bad_arguments_are_rejected_with_the_choices(benchmark, capsys):
    with pytest.raises(SystemExit):
        benchmark.parse_args(['--models', 'glnet_4x', '--device', 'cpu'])
    assert 'glnet_4g_reference' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        benchmark.parse_args(['--models', 'glnet_4g', '--device', 'cpu', '--cuda-graphs'])
    assert 'needs --device cuda' in capsys.readouterr().err


def test_a_glnet_compiling_itself_in_another_mode_than_compile_is_refused(benchmark, capsys):
    """Models are compared in one mode: a GLNet that compiles itself in torch's default mode
    beside peers compiled with max-autotune is refused, naming the variant to use."""
    with pytest.raises(SystemExit):
        benchmark.parse_args([
            '--models', 'glnet_4g_compile_backbone', 'swin_t', '--device', 'cpu', '--compile',
            '--compile-mode', 'max-autotune-no-cudagraphs'
        ])
    err = capsys.readouterr().err
    assert "glnet_4g_compile_backbone compiles itself with mode='default'" in err
    assert "['glnet_4g_compile_backbone_autotune']" in err
    with pytest.raises(SystemExit):
        benchmark.parse_args([
            '--models', 'glnet_stl_compile_blocks_cudagraphs', 'swin_t', '--device', 'cpu',
            '--compile'
        ])
    assert "mode='reduce-overhead'" in capsys.readouterr().err
    for models, flags in ((['glnet_4g_compile_backbone_autotune',
                            'swin_t'], ['--compile-mode', 'max-autotune-no-cudagraphs']),
                          (['glnet_4g_compile_backbone', 'glnet_4g_compile_blocks',
                            'swin_t'], []), (['glnet_4g_compile_backbone_autotune', 'swin_t'], [])):
        # The last: without --compile the peers run eagerly, a comparison of its own.
        compile_flag = ['--compile'] if flags else []
        args = benchmark.parse_args(['--models', *models, '--device', 'cpu', *compile_flag, *flags])
        assert args.models == models


def test_training_with_cpp_wrapper_is_refused_where_torch_cannot_build_its_backward(
        benchmark, capsys, monkeypatch):
    from torch.torch_version import TorchVersion

    from mmglnet.models import compilation
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(compilation, 'cuda_toolkit_home', lambda: '/pretended/cuda')
    monkeypatch.setattr(torch, '__version__', TorchVersion('2.11.0+cu130'))
    own = ['--models', 'swin_t', 'glnet_4g_compile_backbone_cpp_wrapper']
    every = ['--models', 'swin_t', 'glnet_4g', '--compile', '--compile-options', 'cpp_wrapper=True']
    for command, named in ((own, "['glnet_4g_compile_backbone_cpp_wrapper']"),
                           (every, "['swin_t', 'glnet_4g']")):
        with pytest.raises(SystemExit):
            benchmark.parse_args([*command, '--device', 'cuda', '--modes', 'train'])
        err = capsys.readouterr().err
        assert f"{named} would train with inductor's C++ wrapper" in err
        assert 'torch 2.11.0+cu130 cannot build on cuda' in err
        # Inference and latency build no backward; the CPU does not need the fix.
        assert benchmark.parse_args([*command, '--device', 'cuda', '--modes', 'infer', 'latency'])
        assert benchmark.parse_args([*command, '--device', 'cpu', '--modes', 'train'])
    monkeypatch.setattr(torch, '__version__', TorchVersion('2.13.0+cu130'))
    assert benchmark.parse_args([*own, '--device', 'cuda', '--modes', 'train'])


def test_a_glnet_compiling_itself_with_other_inductor_options_than_compile_is_refused(
        benchmark, capsys):
    """Inductor's options are part of the mode: a GLNet with the C++ wrapper beside peers
    compiled without it, or the reverse, is refused, naming the options that match."""
    wrapped = ['--models', 'glnet_4g_compile_backbone_cpp_wrapper', 'swin_t', '--device', 'cpu']
    with pytest.raises(SystemExit):
        benchmark.parse_args([*wrapped, '--compile'])
    err = capsys.readouterr().err
    assert "compiles itself with options={'cpp_wrapper': True}" in err
    assert 'with options={}' in err and 'Give --compile-options cpp_wrapper=True' in err
    with pytest.raises(SystemExit):
        benchmark.parse_args([
            '--models', 'glnet_4g_compile_backbone', 'swin_t', '--device', 'cpu', '--compile',
            '--compile-options', 'cpp_wrapper=True'
        ])
    assert "with options={'cpp_wrapper': True}" in capsys.readouterr().err
    args = benchmark.parse_args([*wrapped, '--compile', '--compile-options', 'cpp_wrapper=True'])
    assert args.compile_options == {'cpp_wrapper': True}
    # Without --compile the peers run eagerly: the latency comparison against eager peers.
    assert benchmark.parse_args(wrapped).compile_options is None


def test_compile_options_without_compile_or_beside_a_mode_are_refused(benchmark, capsys,
                                                                      monkeypatch):
    """torch.compile takes a mode or options, not both, and options without --compile would
    compile nothing: both are refused before any model is built."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    base = ['--models', 'swin_t', '--compile-options', 'cpp_wrapper=True']
    for flags, expected in (([], 'add --compile'), (['--compile', '--compile-mode', 'max-autotune'],
                                                    "cannot go with mode 'max-autotune'"),
                            (['--compile', '--cuda-graphs', '--device',
                              'cuda'], "cannot go with mode 'reduce-overhead'")):
        with pytest.raises(SystemExit):
            benchmark.parse_args([*base, *flags])
        assert expected in capsys.readouterr().err, flags


def test_compile_options_reach_torch_compile_for_the_models_the_tool_compiles(
        benchmark, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, 'compile', lambda model, **kwargs: calls.append(kwargs) or model)
    model = torch.nn.Identity()
    args = benchmark.parse_args([
        '--models', 'glnet_4g_compile_backbone_cpp_wrapper', 'swin_t', '--device', 'cpu',
        '--compile', '--compile-options', 'cpp_wrapper=True'
    ])
    assert benchmark.compile_model('swin_t', model, args) is model
    assert calls == [dict(options={'cpp_wrapper': True})]
    # A GLNet that compiles itself is not compiled again.
    assert benchmark.compile_model('glnet_4g_compile_backbone_cpp_wrapper', model, args) is model
    assert len(calls) == 1
    args = benchmark.parse_args(
        ['--models', 'swin_t', '--device', 'cpu', '--compile', '--compile-mode', 'max-autotune'])
    benchmark.compile_model('swin_t', model, args)
    assert calls[-1] == dict(mode='max-autotune')


def test_cpp_wrapper_on_cuda_without_cuda_toolkit_is_refused_before_compiling(
        benchmark, capsys, monkeypatch):
    """Inductor's C++ wrapper on CUDA is built against CUDA's toolkit: without one the
    compile would fail after minutes, so the tool refuses the model at once, saying what to
    set; with a toolkit, and on the CPU (no toolkit needed), it runs."""
    from mmglnet.models import compilation
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    wrapped = [
        '--models', 'convnext_t', 'glnet_4g_compile_backbone_cpp_wrapper', '--modes', 'latency'
    ]
    monkeypatch.setattr(compilation, 'cuda_toolkit_home', lambda: None)
    with pytest.raises(SystemExit):
        benchmark.parse_args([*wrapped, '--device', 'cuda'])
    err = capsys.readouterr().err
    assert 'glnet_4g_compile_backbone_cpp_wrapper: GLNet compiled with' in err
    assert "uses inductor's C++ wrapper" in err
    assert 'set CUDA_HOME' in err
    assert benchmark.parse_args([*wrapped, '--device', 'cpu']).device == 'cpu'
    assert benchmark.parse_args(['--models', 'glnet_4g_compile_backbone', '--device',
                                 'cuda']).device == 'cuda'
    # Every model compiled with the wrapper by --compile-options: refused likewise.
    compiled = ['--models', 'swin_t', '--compile', '--compile-options', 'cpp_wrapper=True']
    with pytest.raises(SystemExit):
        benchmark.parse_args([*compiled, '--device', 'cuda'])
    err = capsys.readouterr().err
    assert "--compile-options {'cpp_wrapper': True}:" in err and 'set CUDA_HOME' in err
    assert benchmark.parse_args([*compiled, '--device', 'cpu']).compile_options
    monkeypatch.setattr(compilation, 'cuda_toolkit_home', lambda: '/opt/cuda')
    assert benchmark.parse_args([*wrapped, '--device', 'cuda']).models[1].endswith('_cpp_wrapper')
    assert benchmark.parse_args([*compiled, '--device', 'cuda']).compile_options


def test_cuda_graph_training_captures_eager_models_only(benchmark, capsys, monkeypatch):
    """--cuda-graphs without --compile captures every model's eager training step; a GLNet
    that compiles itself is refused there, pointing to torch.compile's CUDA graphs."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    graphed = ['--device', 'cuda', '--modes', 'train', '--cuda-graphs']
    args = benchmark.parse_args(['--models', 'glnet_4g', 'glnet_4g_reference', 'swin_t', *graphed])
    assert args.cuda_graphs and not args.compile and args.modes == ['train']
    with pytest.raises(SystemExit):
        benchmark.parse_args(['--models', 'glnet_4g', 'glnet_4g_compile_backbone', *graphed])
    err = capsys.readouterr().err
    assert "['glnet_4g_compile_backbone'] compile themselves" in err
    assert '--compile --cuda-graphs with the *_cudagraphs variants' in err
    # Inference and latency still capture a self-compiling model's forward (compile_blocks
    # replayed as one CUDA graph is one of the measured runs).
    benchmark.parse_args([
        '--models', 'glnet_4g_compile_blocks', 'swin_t', '--device', 'cuda', '--modes', 'latency',
        '--cuda-graphs'
    ])


def test_cuda_graph_training_step_replays_the_captured_passes(benchmark, monkeypatch):
    """The training step of a --cuda-graphs run calls what make_graphed_callables returned
    for the model and its input, captured under autocast without its weight cache, and
    trains the model's parameters with AdamW outside the graphs (here on the CPU, with a
    stand-in for the capture, which needs CUDA)."""
    captures, replays = [], []

    def make_graphed_callables(model, sample_args, num_warmup_iters, allow_unused_input):
        captures.append(
            dict(
                inputs=sample_args,
                warmup=num_warmup_iters,
                allow_unused=allow_unused_input,
                autocast=torch.is_autocast_enabled('cpu'),
                cache=torch.is_autocast_cache_enabled()))

        def replay(x):
            replays.append(x)
            return model(x)

        return replay

    monkeypatch.setattr(torch.cuda, 'make_graphed_callables', make_graphed_callables)
    use_tiny_models(benchmark, monkeypatch)
    runner = tiny_train_runner(benchmark, compile=False, cuda_graphs=True, fused_optimizer=False)
    (capture, ) = captures
    assert capture['autocast'] and not capture['cache']
    assert capture['allow_unused'] and capture['warmup'] == 3
    (x, ) = capture['inputs']
    assert x.shape == (2, 3, 64, 64) and x.is_contiguous(memory_format=torch.channels_last)
    before = [p.detach().clone() for p in runner.model.parameters()]
    runner.step()
    assert len(replays) == 1 and replays[0] is x
    after = list(runner.model.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after))


def test_models_the_tool_compiles_with_cuda_graphs_mark_every_training_step(benchmark, monkeypatch):
    """A model the tool compiles for CUDA graphs starts every training step with
    ``cudagraph_mark_step_begin``, before its forward: once anything in the process has marked
    a step (GLNet's options do), torch's CUDA-graph trees start a new step only on a mark, and
    an unmarked model (Swin-T after GLNet on the H100 and H200) ran every step as a warm-up,
    without its graphs. Without CUDA graphs nothing is marked. (On the CPU, with torch.compile
    replaced by the model itself.)"""
    use_tiny_models(benchmark, monkeypatch)
    events = []
    monkeypatch.setattr(torch.compiler, 'cudagraph_mark_step_begin', lambda: events.append('mark'))
    monkeypatch.setattr(torch, 'compile', lambda model, **kwargs: model)

    def steps_of(compile_mode, cuda_graphs):
        events.clear()
        runner = tiny_train_runner(
            benchmark,
            compile=True,
            compile_mode=compile_mode,
            cuda_graphs=cuda_graphs,
            fused_optimizer=True)
        runner.model.register_forward_pre_hook(lambda *_: events.append('forward'))
        runner.step()
        runner.step()
        return list(events)

    assert steps_of(None, True) == ['mark', 'forward', 'mark', 'forward']
    assert steps_of('reduce-overhead', False) == ['mark', 'forward', 'mark', 'forward']
    assert steps_of(None, False) == ['forward', 'forward']
    assert steps_of('max-autotune-no-cudagraphs', False) == ['forward', 'forward']


def test_every_reproduction_recipe_passes_the_tools_checks(benchmark, renderer, monkeypatch):
    """The benchmark page's commands are accepted as written (a GPU pretended where they
    need one)."""
    from mmglnet.models import compilation
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(compilation, 'cuda_toolkit_home', lambda: '/pretended/cuda')
    prefix = 'python tools/analysis_tools/benchmark.py '
    for title, command in renderer.REPRODUCE:
        assert command.startswith(prefix), title
        args = benchmark.parse_args(shlex.split(command[len(prefix):]))
        assert args.device == ('cpu' if title.startswith('CPU') else 'cuda'), title


def tiny_train_runner(benchmark, **settings):
    """The tool's bfloat16 training step of ``glnet_tiny`` (2 images of 64², channels-last, on
    the CPU) with the command-line ``settings`` given (``compile``, ``cuda_graphs``, ...)."""
    settings.setdefault('compile_options', None)
    args = SimpleNamespace(device='cpu', channels_last=True, warmup=1, **settings)
    return benchmark.train_runner('glnet_tiny', 2, 64, 'bf16', args)


def use_tiny_models(benchmark, monkeypatch, **extra) -> None:
    """Adds ``glnet_tiny`` (fast path), ``glnet_tiny_reference`` and ``extra`` builders to the
    tool's models for one test."""
    builders = dict(benchmark.MODEL_BUILDERS)
    builders['glnet_tiny'] = lambda size: GLNet(TINY_ARCH, out_indices=(3, ))
    builders['glnet_tiny_reference'] = lambda size: set_impl(
        GLNet(TINY_ARCH, out_indices=(3, )), 'reference')
    builders.update(extra)
    monkeypatch.setattr(benchmark, 'MODEL_BUILDERS', builders)


def test_one_command_measures_all_models_in_all_modes(benchmark, renderer, tmp_path, monkeypatch):
    use_tiny_models(benchmark, monkeypatch)
    out = tmp_path / 'run.json'
    record = benchmark.main([
        '--models', 'glnet_tiny', 'glnet_tiny_reference', '--device', 'cpu', '--modes', 'infer',
        'train', 'latency', '--batch-size', '2', '--infer-size', '64', '--train-batch-size', '2',
        '--train-size', '64', '--latency-sizes', '64', '96', '--warmup', '1', '--iters', '1',
        '--repeats', '2', '--baseline', 'glnet_tiny_reference', '--count-ops', '--fused-optimizer',
        '--out',
        str(out)
    ])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved['command'].startswith('python tools/analysis_tools/benchmark.py --models')
    assert saved['git']['commit'] and saved['environment']['torch']
    assert saved['environment']['device'] and saved['settings']['repeats'] == 2
    assert saved['settings']['fused_optimizer'] is True
    cases = {(r['mode'], r['size'], r['model']) for r in saved['results']}
    for model in ('glnet_tiny', 'glnet_tiny_reference'):
        assert {('infer', 64, model), ('train', 64, model), ('latency', 64, model),
                ('latency', 96, model)} <= cases
    for row in saved['results']:
        assert len(row['samples_ms']) == 2 and row['images_per_s'] > 0
        assert row['aten_ops_per_step'] > 0  # eager models: every row is counted
        assert ('optimizer_aten_ops' in row) == (row['mode'] == 'train')

    page = renderer.render(renderer.load_runs(str(out)))
    assert 'python tools/analysis_tools/benchmark.py --models glnet_tiny' in page
    assert saved['git']['commit'] in page
    assert '**batch-1 latency, fp32, 96², batch 1**' in page
    assert '| glnet_tiny_reference |' in page and '1.00×' in page
    assert 'not measured yet' in page  # no GLNet-4G run in this file


class SendsSigterm(torch.nn.Module):
    """Sends this process SIGTERM on its first forward, as ``timeout`` does at its limit."""

    def forward(self, x):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts the sleep
        raise AssertionError('SIGTERM did not stop the run')


class OnFirstForward(torch.nn.Module):
    """An identity that calls ``action()`` in its first forward only (the warm-up's)."""

    def __init__(self, action):
        super().__init__()
        self.action = action

    def forward(self, x):
        if self.action is not None:
            action, self.action = self.action, None
            action()
        return x


def reset_sigterm_through_libc():
    """SIGTERM's disposition set back to the default through libc, as a library may, behind
    Python's back."""
    libc = ctypes.CDLL(None)
    libc.signal.restype = ctypes.c_void_p
    libc.signal(signal.SIGTERM, ctypes.c_void_p(0))  # SIG_DFL


class RecordsSigterm(torch.nn.Module):
    """Records at every forward whether SIGTERM has lost its handler."""

    def __init__(self, benchmark, seen):
        super().__init__()
        self.benchmark, self.seen = benchmark, seen

    def forward(self, x):
        self.seen.append(self.benchmark.sigterm_handler_lost())
        return x


def test_a_sigterm_handler_reset_by_a_library_is_put_back(benchmark, tmp_path, monkeypatch, capsys):
    """A library that resets SIGTERM's handler through libc leaves a run that its time limit
    kills with no results: the tool finds it after the model's warm-up, says so and puts its
    handlers back before the next model runs."""
    seen = []
    use_tiny_models(
        benchmark,
        monkeypatch,
        resets=lambda size: OnFirstForward(reset_sigterm_through_libc),
        records=lambda size: RecordsSigterm(benchmark, seen))
    handler = signal.getsignal(signal.SIGTERM)
    benchmark.main([
        '--models', 'resets', 'records', '--device', 'cpu', '--modes', 'infer', '--batch-size', '1',
        '--infer-size', '64', '--warmup', '1', '--iters', '1', '--repeats', '1', '--out',
        str(tmp_path / 'run.json')
    ])
    assert "resets: SIGTERM's handler was reset during its build and warm-up" in (
        capsys.readouterr().out)
    assert seen and not any(seen)  # in place again for the next model
    assert signal.getsignal(signal.SIGTERM) is handler  # the tool's handler is removed


def stalled_warm_up():
    """Six seconds: a warm-up that has not ended by a limit."""
    time.sleep(6)


def test_stacks_are_dumped_when_the_run_outlasts_the_time_given(benchmark, tmp_path, monkeypatch,
                                                                capfd):
    """``--dump-stacks-after`` writes every thread's stack to standard error from a watchdog
    thread, with no signal, while the run is still going; a run that ends first writes
    none (the watchdog is cancelled)."""
    use_tiny_models(benchmark, monkeypatch, stalls=lambda size: OnFirstForward(stalled_warm_up))
    base = [
        '--device', 'cpu', '--modes', 'infer', '--batch-size', '1', '--infer-size', '64',
        '--warmup', '1', '--iters', '1', '--repeats', '1', '--out',
        str(tmp_path / 'run.json')
    ]
    # Three seconds: the tool's start and the model's build come first.
    benchmark.main(['--models', 'stalls', *base, '--dump-stacks-after', '3'])
    err = capfd.readouterr().err
    assert 'Timeout (0:00:03)!' in err
    assert 'in stalled_warm_up' in err  # where the stalled thread stood
    benchmark.main(['--models', 'glnet_tiny', *base, '--dump-stacks-after', '1.5'])
    time.sleep(2)
    assert 'Timeout' not in capfd.readouterr().err
    with pytest.raises(SystemExit):
        benchmark.parse_args(['--models', 'glnet_4g', '--dump-stacks-after', '0'])
    assert '--dump-stacks-after 0.0 must be a positive number' in capfd.readouterr().err


def test_a_failing_profile_or_count_keeps_the_timings(benchmark, tmp_path, monkeypatch, capsys):
    """Profiles and operator counts come after the timings; their failure (a profiler that
    does not support a mode) leaves the figures and the other models' profiles alone."""
    use_tiny_models(benchmark, monkeypatch)
    profile_step, count_step_ops = benchmark.profile_step, benchmark.count_step_ops

    def fails_for_fast(original):

        def run(runner, *args):
            if runner.name == 'glnet_tiny':
                raise RuntimeError('not supported here')
            return original(runner, *args)

        return run

    monkeypatch.setattr(benchmark, 'profile_step', fails_for_fast(profile_step))
    monkeypatch.setattr(benchmark, 'count_step_ops', fails_for_fast(count_step_ops))
    record = benchmark.main([
        '--models', 'glnet_tiny', 'glnet_tiny_reference', '--device', 'cpu', '--modes', 'train',
        '--train-batch-size', '1', '--train-size', '64', '--warmup', '1', '--iters', '1',
        '--repeats', '1', '--profile', '--count-ops', '--out',
        str(tmp_path / 'run.json')
    ])
    rows = {row['model']: row for row in record['results']}
    assert rows['glnet_tiny']['images_per_s'] > 0 and 'aten_ops_per_step' not in rows['glnet_tiny']
    assert rows['glnet_tiny_reference']['aten_ops_per_step'] > 0
    assert record.get('profile_file') and 'cut_short' not in record
    output = capsys.readouterr().out
    assert 'glnet_tiny: no profile (RuntimeError: not supported here)' in output
    assert 'glnet_tiny: no operator count (RuntimeError: not supported here)' in output


def test_a_run_stopped_by_sigterm_keeps_what_it_measured(benchmark, renderer, tmp_path,
                                                         monkeypatch):
    use_tiny_models(benchmark, monkeypatch, stops_the_run=lambda size: SendsSigterm())
    out = tmp_path / 'run.json'
    handler = signal.getsignal(signal.SIGTERM)
    record = benchmark.main([
        '--models', 'glnet_tiny', 'stops_the_run', 'glnet_tiny_reference', '--device', 'cpu',
        '--modes', 'infer', 'latency', '--batch-size', '1', '--infer-size', '64', '--latency-sizes',
        '64', '--warmup', '1', '--iters', '1', '--repeats', '3', '--out',
        str(out)
    ])
    assert signal.getsignal(signal.SIGTERM) is handler  # the tool's handler is removed
    saved = json.loads(out.read_text())
    assert saved == record
    # The model warmed up before the signal has its first repeat; nothing else ran.
    assert [(row['model'], len(row['samples_ms']))
            for row in saved['results']] == [('glnet_tiny', 1)]
    cut = saved['cut_short']
    assert cut.startswith('stopped by SIGTERM during the warm-up of stops_the_run')
    assert 'not measured there: stops_the_run, glnet_tiny_reference' in cut
    assert cut.endswith('cases not run: latency fp32 64px batch 1')
    page = renderer.render(renderer.load_runs(str(out)))
    assert f'- **cut short**: {cut}' in page and '| glnet_tiny |' in page


def test_a_run_stopped_between_two_cases_keeps_the_finished_one(benchmark, tmp_path, monkeypatch):
    use_tiny_models(benchmark, monkeypatch)
    save_record = benchmark.save_record

    def saves_then_gets_sigterm(record, out):  # the signal lands after the first case's save
        saved = save_record(record, out)
        if 'cut_short' not in record:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts the sleep
        return saved

    monkeypatch.setattr(benchmark, 'save_record', saves_then_gets_sigterm)
    out = tmp_path / 'run.json'
    record = benchmark.main([
        '--models', 'glnet_tiny', '--device', 'cpu', '--modes', 'infer', 'latency', '--batch-size',
        '1', '--infer-size', '64', '--latency-sizes', '64', '96', '--warmup', '1', '--iters', '1',
        '--repeats', '1', '--out',
        str(out)
    ])
    saved = json.loads(out.read_text())
    assert saved == record
    assert [(row['mode'], row['model']) for row in saved['results']] == [('infer', 'glnet_tiny')]
    assert saved['cut_short'] == ('stopped by SIGTERM between cases; cases not run: latency '
                                  'fp32 64px batch 1, latency fp32 96px batch 1')


def test_the_command_line_tool_exits_3_with_its_results_when_told_to_stop(tmp_path):
    out = tmp_path / 'run.json'
    tool = osp.join(REPO_ROOT, 'tools', 'analysis_tools', 'benchmark.py')
    process = subprocess.Popen([
        sys.executable, tool, '--models', 'glnet_stl', '--device', 'cpu', '--modes', 'infer',
        '--batch-size', '1', '--infer-size', '64', '--warmup', '1', '--iters', '100000',
        '--repeats', '1', '--threads', '1', '--out',
        str(out)
    ],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT,
                               text=True)
    try:
        for line in process.stdout:  # the handler is in place once a case starts
            if line.startswith('[infer fp32 64px batch 1]'):
                break
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=120)[0]
    finally:
        process.kill()
    assert process.returncode == 3, output
    saved = json.loads(out.read_text())
    assert saved['cut_short'].startswith('stopped by SIGTERM during the ')
    assert 'cut short: stopped by SIGTERM' in output


def test_a_finished_run_told_to_stop_while_shutting_down_exits_with_its_status(tmp_path):
    """The suite's time limit can fall while torch shuts down after the JSON is written
    (inductor's compile workers); the run is complete, so it must not exit 143 as failed. A
    slow exit hook stands in for that shutdown."""
    out = tmp_path / 'run.json'
    tool = osp.join(REPO_ROOT, 'tools', 'analysis_tools', 'benchmark.py')
    launcher = ('import atexit, runpy, sys, time; atexit.register(time.sleep, 60); '
                f'sys.argv = [{tool!r}] + sys.argv[1:]; '
                f'runpy.run_path({tool!r}, run_name="__main__")')
    process = subprocess.Popen([
        sys.executable, '-c', launcher, '--models', 'glnet_stl', '--device', 'cpu', '--modes',
        'latency', '--latency-sizes', '64', '--warmup', '1', '--iters', '1', '--repeats', '1',
        '--threads', '1', '--out',
        str(out)
    ],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT,
                               text=True)
    try:
        for line in process.stdout:
            if line.startswith('results written to'):
                break
        time.sleep(1)  # into the exit hook
        started = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    finally:
        process.kill()
    assert process.returncode == 0, output
    assert time.perf_counter() - started < 30
    assert 'cut_short' not in json.loads(out.read_text())


def synthetic_run(file: str, settings: dict, rows: list) -> dict:
    """A run as the page reads it: CUDA, the given settings, rows of (model, mode, size, ms)."""
    results = [
        dict(
            model=model,
            mode=mode,
            precision='fp16',
            size=size,
            batch=dict(infer=128, train=16, latency=1)[mode],
            ms=ms,
            images_per_s=dict(infer=128, train=16, latency=1)[mode] * 1e3 / ms)
        for model, mode, size, ms in rows
    ]
    return dict(
        file=file,
        environment=dict(cuda='13.0'),
        settings=dict(dict(compile=False, cuda_graphs=False), **settings),
        results=results)


def with_run_details(run: dict) -> dict:
    """``run`` of :func:`synthetic_run` with what a run's section on the page shows besides its
    rows (command, commit, device, settings, samples), as the tool writes them."""
    run.update(
        command='python tools/analysis_tools/benchmark.py',
        git=dict(commit='abc'),
        date='today',
        note='',
        baseline='swin_t',
        environment=dict(cuda='13.0', cudnn=9, device='H100', torch='2.11', packages={}),
        settings=dict(run['settings'], channels_last=True, warmup=5, iters=10, repeats=3))
    for row in run['results']:
        row['samples_ms'] = [row['ms']]
    return run


def test_targets_take_each_glnet_variant_only_in_its_own_mode(renderer):
    """A GLNet that replays CUDA graphs by its own option counts against eager peers only
    where the target says so, never as 'without CUDA graphs'; every model compiled with CUDA
    graphs counts for that row only."""
    eager = synthetic_run('eager.json', {}, [
        ('glnet_4g_compile_backbone_cudagraphs', 'latency', 1792, 15.0),
        ('glnet_4g_compile_backbone', 'latency', 1792, 25.0),
        ('convnext_t', 'latency', 1792, 10.0),
        ('glnet_4g_compile_backbone_cudagraphs', 'train', 512, 40.0),
        ('glnet_4g_reference', 'train', 512, 160.0),
        ('swin_t', 'train', 512, 64.0),
    ])
    graphs = synthetic_run('graphs.json', dict(compile=True, cuda_graphs=True), [
        ('glnet_4g_compile_backbone_cudagraphs', 'train', 512, 40.0),
        ('swin_t', 'train', 512, 32.0),
    ])
    rows = renderer.target_rows([eager, graphs])

    def cells(title_start):
        return [[cell.strip() for cell in line.split('|')[1:-1]] for line in rows
                if line.startswith(f'| {title_start}')]

    latency = cells('GLNet-4G batch-1 latency 1792², without CUDA graphs')
    assert [(c[1], c[3])
            for c in latency] == [('glnet_4g_compile_backbone', '2.50× the time (25.0 vs 10.0 ms)')]
    # Inductor's C++ wrapper is a compile option without CUDA graphs: it counts there.
    wrapped = synthetic_run('wrapped.json', {}, [
        ('convnext_t', 'latency', 1792, 10.0),
        ('glnet_4g_compile_backbone_cpp_wrapper', 'latency', 1792, 18.0),
    ])
    latency = [[cell.strip() for cell in line.split('|')[1:-1]]
               for line in renderer.target_rows([wrapped])
               if line.startswith('| GLNet-4G batch-1 latency 1792², without CUDA graphs')]
    assert [(c[1], c[3], c[5]) for c in latency] == [('glnet_4g_compile_backbone_cpp_wrapper',
                                                      '1.80× the time (18.0 vs 10.0 ms)', 'met')]
    assert cells('GLNet-4G batch-1 latency 1792², CUDA graphs')[0][3] == 'not measured yet'
    against_eager = cells('GLNet-4G fp16 training step 512², batch 16, compiled by its own')
    assert [(c[1], c[2][:12], c[5]) for c in against_eager
            ] == [('glnet_4g_compile_backbone_cudagraphs', '[eager.json]', 'met')]
    assert against_eager[0][3] == '1.60× (400.0 vs 250.0 img/s)'
    with_graphs = cells('GLNet-4G fp16 training step 512², batch 16, compiled with CUDA graphs')
    assert [(c[2][:13], c[3], c[5])
            for c in with_graphs] == [('[graphs.json]', '0.80× (400.0 vs 500.0 img/s)', 'met')]
    reference = cells('GLNet-4G fp16 training step 512², batch 16, against the reference')
    assert [(c[1], c[3][:5])
            for c in reference] == [('glnet_4g_compile_backbone_cudagraphs', '4.00×')]
    assert cells('GLNet-4G fp16 training step 512², batch 16, eager')[0][3] == 'not measured yet'

    autotuned = synthetic_run('autotune.json',
                              dict(compile=True, compile_mode='max-autotune-no-cudagraphs'), [
                                  ('swin_t', 'infer', 224, 10.0),
                                  ('glnet_4g_compile_backbone_autotune', 'infer', 224, 12.5),
                              ])
    rows = renderer.target_rows([autotuned])
    compiled = cells('GLNet-4G fp16 inference 224², batch 128, compiled')
    assert [(c[1], c[3], c[5]) for c in compiled] == [('glnet_4g_compile_backbone_autotune',
                                                       '0.80× (10240.0 vs 12800.0 img/s)', 'met')]


def test_a_run_compiled_with_inductor_options_counts_in_its_mode_and_says_so(renderer):
    """Every model compiled with the C++ wrapper (GLNet by its own option, the peers by
    --compile-options) is a compiled run: it counts for the compiled inference row, and its
    section names the options."""
    run = synthetic_run('wrapped.json', dict(compile=True, compile_options={'cpp_wrapper': True}),
                        [('swin_t', 'infer', 224, 10.0),
                         ('glnet_4g_compile_backbone_cpp_wrapper', 'infer', 224, 16.0)])
    compiled = [[cell.strip() for cell in line.split('|')[1:-1]]
                for line in renderer.target_rows([run])
                if line.startswith('| GLNet-4G fp16 inference 224², batch 128, compiled')]
    assert [(c[1], c[3], c[5]) for c in compiled] == [
        ('glnet_4g_compile_backbone_cpp_wrapper', '0.62× (8000.0 vs 12800.0 img/s)', '**missed**')
    ]
    with_run_details(run)
    section = '\n'.join(renderer.run_section(run))
    assert '- mode: compile, channels_last, compile options cpp_wrapper=True;' in section


def test_models_meant_to_replay_cuda_graphs_are_told_apart(benchmark):
    eager_run = SimpleNamespace(
        compile=False, cuda_graphs=False, compile_mode=None, compile_options=None)
    graphs_run = SimpleNamespace(
        compile=True, cuda_graphs=True, compile_mode=None, compile_options=None)
    autotune_run = SimpleNamespace(
        compile=True, cuda_graphs=False, compile_mode='max-autotune', compile_options=None)
    compiled_run = SimpleNamespace(
        compile=True, cuda_graphs=False, compile_mode=None, compile_options=None)
    wrapped_run = SimpleNamespace(
        compile=True, cuda_graphs=False, compile_mode=None, compile_options={'cpp_wrapper': True})
    graph_options_run = SimpleNamespace(
        compile=True,
        cuda_graphs=False,
        compile_mode=None,
        compile_options={'triton.cudagraphs': True})
    replays = benchmark.replays_compiled_cuda_graphs
    for run in (eager_run, graphs_run, compiled_run):
        assert replays('glnet_4g_compile_backbone_cudagraphs', run)
        assert replays('glnet_4g_compile_blocks_cudagraphs', run)
        assert not replays('glnet_4g_compile_backbone', run)
        assert not replays('glnet_4g_compile_blocks', run)
    assert replays('swin_t', graphs_run) and replays('glnet_4g', autotune_run)
    assert not replays('swin_t', eager_run) and not replays('swin_t', compiled_run)
    assert replays('swin_t', graph_options_run) and not replays('swin_t', wrapped_run)


class TinyLinear(torch.nn.Linear):

    def __init__(self):
        super().__init__(4, 4)

    def forward(self, x):
        return super().forward(x.mean((2, 3), keepdim=True).expand(-1, -1, 1, 4))


def test_cuda_graph_skips_are_recorded_with_their_reasons(benchmark, renderer, tmp_path,
                                                          monkeypatch):
    """torch.compile falls back from CUDA graphs with a warning (on a GPU) or silently (on the
    CPU, as here): the row of a model meant to replay them says how many graphs did not, and
    the page does not count that figure as a CUDA-graph one."""
    with benchmark.CudaGraphSkips() as skips:
        logging.getLogger('torch._inductor.cudagraph_utils.__cudagraphs').warning(
            'skipping cudagraphs due to mutated inputs (2 instances)')
        logging.getLogger('torch._inductor').warning('an unrelated warning')
    assert skips.reasons == ['skipping cudagraphs due to mutated inputs (2 instances)']
    logging.getLogger('torch._inductor').warning('skipping cudagraphs after the context')
    assert len(skips.reasons) == 1

    use_tiny_models(benchmark, monkeypatch, tiny_linear=lambda size: TinyLinear())
    out = tmp_path / 'run.json'
    record = benchmark.main([
        '--models', 'tiny_linear', '--device', 'cpu', '--modes', 'infer', '--batch-size', '1',
        '--infer-size', '8', '--warmup', '2', '--iters', '1', '--repeats', '1', '--compile',
        '--compile-mode', 'reduce-overhead', '--out',
        str(out)
    ])
    row = record['results'][0]
    assert row['cudagraph_skips'] >= 1 and row['images_per_s'] > 0  # CPU tensors: no graphs
    plain = benchmark.main([
        '--models', 'tiny_linear', '--device', 'cpu', '--modes', 'infer', '--batch-size', '1',
        '--infer-size', '8', '--warmup', '1', '--iters', '1', '--repeats', '1', '--compile',
        '--out',
        str(tmp_path / 'plain.json')
    ])
    assert 'cudagraph_skips' not in plain['results'][0]

    run = synthetic_run('graphs.json', dict(compile=True, cuda_graphs=True), [
        ('glnet_4g_compile_backbone_cudagraphs', 'train', 512, 40.0),
        ('swin_t', 'train', 512, 32.0),
    ])
    run['results'][0].update(
        cudagraph_skips=2,
        cudagraph_skip_reasons=['skipping cudagraphs due to mutated inputs (2 instances)'])
    with_run_details(run)
    with_graphs = [
        line for line in renderer.target_rows([run])
        if line.startswith('| GLNet-4G fp16 training step 512², batch 16, compiled with CUDA')
    ]
    assert len(with_graphs) == 1 and with_graphs[0].split('|')[-2].strip() == (
        'not valid: glnet_4g_compile_backbone_cudagraphs ran graphs without CUDA graphs')
    section = '\n'.join(renderer.run_section(run))
    assert ('- **glnet_4g_compile_backbone_cudagraphs (training step, fp16, 512², batch 16) ran '
            '2 compiled graph(s) without CUDA graphs**: skipping cudagraphs due to mutated '
            'inputs (2 instances)') in section
    assert '| compiled graphs run without CUDA graphs |' in section


class RecompilingLinear(TinyLinear):
    """Changes a Python attribute dynamo guards on at every call: compiled, every call after
    the first compiles a new graph (up to dynamo's recompile limit)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return super().forward(x) * self.calls


def test_graphs_compiled_while_timed_are_counted_and_void_the_figure(benchmark, renderer, tmp_path,
                                                                     monkeypatch):
    """A model still compiling when it is timed (a recompilation, a graph not met in the
    warm-up) has the count in its row, and its figure does not count towards a target."""
    torch._dynamo.reset()
    use_tiny_models(
        benchmark,
        monkeypatch,
        tiny_linear=lambda size: TinyLinear(),
        recompiling=lambda size: RecompilingLinear())
    record = benchmark.main([
        '--models', 'tiny_linear', 'recompiling', '--device', 'cpu', '--modes', 'infer',
        '--batch-size', '1', '--infer-size', '8', '--warmup', '2', '--iters', '2', '--repeats', '1',
        '--compile', '--out',
        str(tmp_path / 'run.json')
    ])
    compiled = {row['model']: row['graphs_compiled_while_timed'] for row in record['results']}
    assert compiled['tiny_linear'] == 0 and compiled['recompiling'] >= 1

    run = synthetic_run('compiled.json', dict(compile=True), [
        ('glnet_4g_compile_backbone', 'infer', 224, 12.0),
        ('swin_t', 'infer', 224, 10.0),
    ])
    run['results'][0]['graphs_compiled_while_timed'] = 0
    run['results'][1]['graphs_compiled_while_timed'] = 3
    row = next(
        line for line in renderer.target_rows([run])
        if line.startswith('| GLNet-4G fp16 inference 224², batch 128, compiled |'))
    assert row.split('|')[-2].strip() == 'not valid: graphs compiled while timed by swin_t (3)'


def test_figures_in_doubt_are_shown_but_not_counted(renderer, monkeypatch):
    run = synthetic_run('graphs.json', dict(compile=True, cuda_graphs=True), [
        ('glnet_4g_compile_backbone_cudagraphs', 'train', 512, 40.0),
        ('swin_t', 'train', 512, 200.0),
    ])
    monkeypatch.setattr(renderer, 'IN_DOUBT', {('graphs.json', 'swin_t'): 'still recording'})
    row = next(line for line in renderer.target_rows([run]) if 'compiled with CUDA graphs' in line)
    assert row.split('|')[-2].strip() == 'in doubt: swin_t: still recording'
    monkeypatch.setattr(renderer, 'IN_DOUBT', {})
    row = next(line for line in renderer.target_rows([run]) if 'compiled with CUDA graphs' in line)
    assert row.split('|')[-2].strip() == 'met'


def test_a_graph_replay_that_allocated_while_timed_is_not_counted(renderer):
    """A model meant to replay CUDA graphs whose timed steps allocated most of its step
    memory was not replaying them: its figure is of another mode and counts for no target.
    Runs from before ``timed_alloc_mib`` was recorded are judged by their step memory less
    their graphs' pools."""
    run = synthetic_run('graphs.json', dict(compile=True, cuda_graphs=True), [
        ('glnet_4g_compile_backbone_cudagraphs', 'train', 512, 58.0),
        ('swin_t', 'train', 512, 193.0),
    ])
    glnet_row, swin_row = run['results']
    glnet_row.update(step_mem_mib=9637., graph_pool_mib=9636., cudagraph_skips=0)
    swin_row.update(step_mem_mib=5141.)

    def status():
        row = next(
            line for line in renderer.target_rows([run]) if 'compiled with CUDA graphs' in line)
        return row.split('|')[-2].strip()

    assert status() == ('not valid: allocated while timed, so not replaying CUDA graphs: '
                        'swin_t (5141 MiB)')
    swin_row.update(timed_alloc_mib=3.)  # recorded: the replay allocated next to nothing
    assert status() == 'met'
    swin_row.update(timed_alloc_mib=600., step_mem_mib=5141.)  # a minor part of its memory
    assert status() == 'met'
    swin_row.update(timed_alloc_mib=400., step_mem_mib=400.)  # under the threshold
    assert status() == 'met'


def test_every_figure_in_doubt_names_a_committed_run(renderer):
    committed = {
        osp.basename(run['file']): run
        for run in renderer.load_runs(osp.join(REPO_ROOT, 'docs', 'benchmarks', '*.json'))
    }
    for file, model in renderer.IN_DOUBT:
        assert any(row['model'] == model for row in committed[file]['results']), (file, model)


def test_graph_memory_counts_the_pools_and_each_gradient_once(benchmark, monkeypatch):
    """A runner replaying CUDA graphs allocates nothing while timed; its peak is what its
    graphs' pools grew by, plus the timed allocations, plus parameters, gradients and AdamW
    state, with the gradients the backward graph wrote into its pool counted once."""
    model = torch.nn.Linear(64, 64)
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    in_pool = model.weight.grad
    pool = [dict(address=in_pool.data_ptr(), total_size=1 << 20, segment_pool_id=(1, 0))]
    assert benchmark.bytes_inside([model.weight.grad, model.bias.grad, None], pool) == 64 * 64 * 4
    assert benchmark.segments_bytes(pool) == 1 << 20

    allocated = iter([5 << 20])  # memory_allocated() when the timing starts
    monkeypatch.setattr(benchmark, 'graph_pool_segments', lambda: pool)
    for name, value in dict(
            synchronize=lambda: None,
            reset_peak_memory_stats=lambda: None,
            memory_allocated=lambda: next(allocated),
            max_memory_allocated=lambda: (5 << 20) + 1000).items():
        monkeypatch.setattr(torch.cuda, name, value)
    static = 4 * benchmark.tensor_bytes(model.parameters())
    runner = benchmark.Runner('graphed', lambda: None, model, static)
    runner.graph_pool_bytes = 1 << 20
    result = benchmark.measure(runner, 2, SimpleNamespace(device='cuda'), False)
    step = 1000 + (1 << 20) - 64 * 64 * 4
    assert result['step_mem_mib'] == step / 2**20
    assert result['peak_mem_mib'] == (step + static) / 2**20


def test_committed_benchmark_page_is_generated_from_the_committed_runs(renderer):
    assert renderer.main([
        '--check'
    ]) == 0, ('docs/benchmark.md differs from docs/benchmarks/*.json: regenerate it with '
              'python tools/analysis_tools/render_benchmark_docs.py')


def test_operator_count_leaves_out_views_and_keeps_the_optimizer_apart(benchmark):
    layer = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, foreach=False)
    x = torch.randn(2, 4)

    def step():
        optimizer.zero_grad()
        layer(x).view(6).transpose(0, 0).sum().backward()
        optimizer.step()

    runner = benchmark.Runner('linear', step, layer, 0)
    counter = benchmark.count_step_ops(runner)
    assert counter.counts['addmm'] == 1 and counter.counts['sum'] >= 1
    assert not set(counter.counts) & benchmark.VIEW_OPS
    # SGD without foreach updates each of the two parameters with its own operator.
    assert counter.optimizer_counts['add_'] == 2 and 'add_' not in counter.counts
    # The global optimizer hooks that told the optimizer apart are removed on exit.
    from torch.optim.optimizer import _global_optimizer_pre_hooks as hooks
    before = len(hooks)
    benchmark.count_step_ops(runner)
    assert len(hooks) == before


def test_device_work_counts_device_events_only(benchmark):
    cuda, cpu = torch.autograd.DeviceType.CUDA, torch.autograd.DeviceType.CPU

    def event(device_type, microseconds, annotation=False):
        return SimpleNamespace(
            device_type=device_type,
            time_range=SimpleNamespace(elapsed_us=lambda: microseconds),
            is_user_annotation=annotation)

    # The annotation's range on the device (a compiled graph's call) spans the two kernels.
    events = [
        event(cpu, 900),
        event(cuda, 1750, annotation=True),
        event(cuda, 250),
        event(cuda, 1500),
        event(cpu, 10)
    ]
    assert benchmark.device_work(events) == dict(device_ops=2, device_busy_ms=1.75)
    assert benchmark.device_work([event(cpu, 5)]) == {}
