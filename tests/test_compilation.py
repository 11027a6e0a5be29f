"""GLNet under torch.compile: whole-backbone graphs, ``compile_backbone`` and ``compile_blocks``.

Compiled with dynamo's ``eager``/``aot_eager`` backends (tracing and autograd as in real
compilation, without generating kernels) so that the checks stay quick on the CPU.
"""
import copy

import pytest
import torch
import torch.nn.functional as F

from mmglnet.models import GLNet, compilation, glnet, layers
from mmglnet.models.compilation import replays_cuda_graphs, resolve_compile_cfg

from conftest import TINY_ARCH, TINY_STL_ARCH

ARCHS = dict(g_series=TINY_ARCH, stl=TINY_STL_ARCH)


class CountingBackend:
    """A dynamo backend that runs the captured graphs eagerly and counts graphs and runs."""

    def __init__(self) -> None:
        self.graphs = 0
        self.runs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1

        def run(*args):
            self.runs += 1
            return graph_module(*args)

        return run


def num_blocks(model: GLNet) -> int:
    return sum(len(stage.blocks) for stage in model.stages)


@pytest.mark.parametrize('arch_name', sorted(ARCHS))
@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
@pytest.mark.parametrize('training', [True, False])
def test_backbone_compiles_without_graph_breaks(arch_name, precision, training):
    """fullgraph=True fails on any graph break: eager-mode detours (autocast queries, export
    checks) must stay out of traced code, or a compiled model runs as many small graphs."""
    torch.manual_seed(0)
    model = GLNet(arch=dict(ARCHS[arch_name]), drop_path_rate=0.).train(training)
    x = torch.randn(2, 3, 64, 64)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend='eager', fullgraph=True)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=precision == 'bf16'):
        outputs = compiled(x)
        expected = model(x)
    for out, ref in zip(outputs, expected):
        torch.testing.assert_close(out, ref)


@pytest.mark.parametrize('arch_name', sorted(ARCHS))
def test_compile_blocks_runs_every_block_compiled(arch_name):
    """Every block goes through a compiled graph, in training and in eval mode, with drop path
    rates that differ per block; no block falls back to eager at dynamo's recompile limit, and
    graphs are shared by the blocks of a stage (a per-block constant would multiply them)."""
    arch = dict(ARCHS[arch_name], depth=[1, 1, 6, 1])
    backend = CountingBackend()
    model = GLNet(
        arch=arch,
        drop_path_rate=0.2,
        compile_blocks=dict(backend=backend, dynamic=False),
        compile_eval=True)
    blocks = num_blocks(model)
    # What a graph is specialised to: stage (shape), block class, drop path or not.
    kinds = {(index, type(block), type(block.drop_path))
             for index, stage in enumerate(model.stages)
             for block in stage.blocks}
    x = torch.randn(2, 3, 64, 64)
    torch._dynamo.reset()
    for training in (True, False, True):
        backend.runs = 0
        model.train(training)
        model(x)
        assert backend.runs == blocks, (training, backend.runs, blocks)
    assert backend.graphs <= 2 * len(kinds) < blocks + 2, (backend.graphs, kinds)


@pytest.mark.parametrize('option', ['compile_blocks', 'compile_backbone'])
@pytest.mark.parametrize('with_cp', [False, True])
def test_compiled_backbone_matches_eager_with_gradients(option, with_cp):
    """Also under gradient checkpointing, which runs the compiled blocks again in backward
    (inside the backbone's graph with ``compile_backbone``); with drop path drawn the same."""
    torch.manual_seed(0)
    eager = GLNet(arch=dict(TINY_ARCH), drop_path_rate=0.3).double()
    compiled = GLNet(
        arch=dict(TINY_ARCH),
        drop_path_rate=0.3,
        with_cp=with_cp,
        **{
            option: dict(backend='aot_eager')
        }).double()
    compiled.load_state_dict(eager.state_dict())
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    torch._dynamo.reset()
    outputs = {}
    for model in (eager, compiled):
        model.zero_grad()
        torch.manual_seed(1)
        outputs[model] = model(x)
        sum((out * out).sum() for out in outputs[model]).backward()
    for out, ref in zip(outputs[compiled], outputs[eager]):
        torch.testing.assert_close(out, ref)
    eager_params = dict(eager.named_parameters())
    for name, param in compiled.named_parameters():
        torch.testing.assert_close(param.grad, eager_params[name].grad, msg=name)


def test_compile_backbone_runs_the_backbone_as_one_graph():
    """One compiled call per forward, one graph per training flag (recompiled for a new input
    size with dynamic=False), no block compiled on its own, and the input still checked."""
    backend = CountingBackend()
    model = GLNet(
        arch=dict(TINY_ARCH, depth=[1, 1, 6, 1]),
        drop_path_rate=0.2,
        compile_backbone=dict(backend=backend, dynamic=False),
        compile_eval=True)
    assert all(stage.compile_cfg is None for stage in model.stages)
    torch._dynamo.reset()
    for training in (True, False, True):
        backend.runs = 0
        model.train(training)
        model(torch.randn(2, 3, 64, 64))
        assert backend.runs == 1, (training, backend.runs)
    assert backend.graphs == 2
    model(torch.randn(1, 3, 96, 64))
    assert backend.graphs == 3
    with pytest.raises(ValueError, match='in_channels=3'):
        model(torch.randn(1, 4, 64, 64))


@pytest.mark.parametrize('option', ['compile_blocks', 'compile_backbone'])
def test_eval_mode_runs_eagerly_unless_compile_eval(option):
    """By default only training forwards run compiled: validation at a new image size each
    time compiles nothing (it would compile the graphs again for every size). With
    compile_blocks, the blocks of frozen stages, in eval mode while training, run eagerly."""
    backend = CountingBackend()
    model = GLNet(
        arch=dict(TINY_ARCH), frozen_stages=2, **{option: dict(backend=backend, dynamic=False)})
    torch._dynamo.reset()
    model.train()
    model(torch.randn(2, 3, 64, 64))
    trained_blocks = sum(len(stage.blocks) for stage in model.stages[2:])
    assert backend.runs == (trained_blocks if option == 'compile_blocks' else 1)
    graphs = backend.graphs
    model.eval()
    backend.runs = 0
    with torch.no_grad():
        for size in (64, 96, 128):
            model(torch.randn(1, 3, size, 64))
    assert backend.runs == 0 and backend.graphs == graphs
    with pytest.raises(TypeError, match="compile_eval='yes' must be True or False"):
        GLNet(arch=dict(TINY_ARCH), compile_eval='yes', **{option: True})


@pytest.mark.parametrize('option', ['compile_blocks', 'compile_backbone'])
def test_compiling_leaves_state_and_copies_alone(option):
    """The option stores nothing in the model: same state dict keys, and a deep copy (as EMA
    makes) computes with its own weights through the shared compiled function."""
    torch.manual_seed(0)
    plain = GLNet(arch=dict(TINY_ARCH))
    model = GLNet(arch=dict(TINY_ARCH), compile_eval=True, **{option: dict(backend='eager')}).eval()
    assert list(model.state_dict()) == list(plain.state_dict())
    x = torch.randn(1, 3, 64, 64)
    torch._dynamo.reset()
    with torch.no_grad():
        before = model(x)[-1]
        twin = copy.deepcopy(model)
        for param in twin.parameters():
            param.mul_(0.5)
        assert not torch.allclose(twin(x)[-1], before)
        torch.testing.assert_close(model(x)[-1], before)


@pytest.mark.parametrize('option', ['compile_blocks', 'compile_backbone'])
def test_compiled_glnet_runs_eagerly_while_tracing(option):
    """JIT tracing (mmengine's FLOP counter) sees the plain modules."""
    backend = CountingBackend()
    model = GLNet(arch=dict(TINY_ARCH), compile_eval=True, **{option: dict(backend=backend)}).eval()
    x = torch.randn(1, 3, 64, 64)
    torch._dynamo.reset()
    with torch.no_grad():
        model(x)
        assert backend.runs > 0
        backend.runs = 0
        traced = torch.jit.trace(model, x, check_trace=False)
        assert backend.runs == 0
        torch.testing.assert_close(traced(x)[-1], model(x)[-1])


@pytest.mark.parametrize('option', ['compile_blocks', 'compile_backbone'])
@pytest.mark.parametrize('value, error, words', [
    (dict(mode='default', dynamics=False), ValueError, "unknown key(s) ['dynamics']"),
    ('max-autotune', TypeError, 'must be a bool or a dict'),
])
def test_compile_options_bad_values(option, value, error, words):
    with pytest.raises(error) as info:
        GLNet(arch=dict(TINY_ARCH), **{option: value})
    assert f'{option}={value!r}' in str(info.value) and words in str(info.value)


def test_compile_blocks_and_compile_backbone_exclude_each_other():
    with pytest.raises(ValueError) as info:
        GLNet(arch=dict(TINY_ARCH), compile_blocks=True, compile_backbone=dict(dynamic=False))
    message = str(info.value)
    assert 'compile_blocks=True' in message and "compile_backbone={'dynamic': False}" in message
    assert 'choose one' in message


@pytest.mark.parametrize('cfg, replays', [
    (None, False),
    ({}, False),
    (dict(dynamic=False), False),
    (dict(mode='reduce-overhead', dynamic=False), True),
    (dict(mode='max-autotune'), True),
    (dict(mode='max-autotune-no-cudagraphs'), False),
    (dict(options={'triton.cudagraphs': True}), True),
    (dict(mode='max-autotune', options={'triton.cudagraphs': False}), False),
])
def test_which_compile_modes_replay_cuda_graphs(cfg, replays):
    assert replays_cuda_graphs(cfg) is replays


def test_cuda_graph_blocks_mark_one_step_per_backbone_forward(monkeypatch):
    """With blocks replayed as CUDA graphs, every backbone forward tells torch's CUDA-graph
    trees that a new step begins, once and before its first block (so that one block's
    output is not overwritten before the next block reads it); otherwise never. The CPU stands
    in for CUDA, and the blocks run eagerly in place of the compiled ones."""
    events = []
    monkeypatch.setattr(torch.compiler, 'cudagraph_mark_step_begin', lambda: events.append('step'))
    monkeypatch.setattr(glnet, 'compiled_run_block',
                        lambda cfg: lambda block, x: events.append('block') or block(x))
    x = torch.randn(1, 3, 64, 64)
    graphed = GLNet(
        arch=dict(TINY_ARCH), compile_blocks=dict(mode='reduce-overhead'),
        compile_eval=True).eval()
    with torch.no_grad():
        graphed(x)  # on a device without CUDA graphs: no step marked
        assert events == ['block'] * num_blocks(graphed)
        monkeypatch.setattr(compilation, 'CUDA_GRAPH_DEVICES', frozenset({'cpu'}))
        events.clear()
        graphed(x)
        graphed(x)
        assert events == (['step'] + ['block'] * num_blocks(graphed)) * 2
        events.clear()
        GLNet(arch=dict(TINY_ARCH), compile_blocks=dict(dynamic=False), compile_eval=True).eval()(x)
        assert events == ['block'] * num_blocks(graphed)
        events.clear()
        # Eval mode without compile_eval: eager blocks, no step marked.
        GLNet(arch=dict(TINY_ARCH), compile_blocks=dict(mode='reduce-overhead')).eval()(x)
        assert events == []
        events.clear()
        torch.jit.trace(graphed, x, check_trace=False)  # blocks run eagerly while tracing
        assert events == []


def test_cuda_graph_backbone_marks_one_step_per_forward(monkeypatch):
    """With the whole backbone replayed as CUDA graphs, every forward marks a new step before
    its compiled call; with another mode, never."""
    events = []
    monkeypatch.setattr(torch.compiler, 'cudagraph_mark_step_begin', lambda: events.append('step'))
    monkeypatch.setattr(
        glnet, 'compiled_run_backbone',
        lambda cfg: lambda backbone, x: events.append('backbone') or backbone.forward_features(x))
    monkeypatch.setattr(compilation, 'CUDA_GRAPH_DEVICES', frozenset({'cpu'}))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        graphed = GLNet(arch=dict(TINY_ARCH), compile_backbone=dict(mode='reduce-overhead'))
        graphed.train()(x)
        assert events == ['step', 'backbone']
        events.clear()
        graphed.eval()(x)  # eval mode without compile_eval: eager, no step marked
        assert events == []
        GLNet(
            arch=dict(TINY_ARCH), compile_backbone=dict(mode='reduce-overhead'),
            compile_eval=True).eval()(
                x)
        assert events == ['step', 'backbone']
        events.clear()
        GLNet(arch=dict(TINY_ARCH), compile_backbone=dict(dynamic=False)).train()(x)
        assert events == ['backbone']


@pytest.mark.parametrize('option', ['compile_blocks', 'compile_backbone'])
def test_cuda_graphs_refuse_to_accumulate_gradients(monkeypatch, option):
    """A training forward replaying CUDA graphs that finds the gradients of an earlier
    backward (the second micro-batch of an accumulation) is refused before it runs: the next
    backward graph would overwrite them. Steps whose gradients were set to None, eval mode,
    no_grad and modes without CUDA graphs run. The CPU stands in for CUDA, eager code for
    the compiled."""
    monkeypatch.setattr(glnet, 'compiled_run_block', lambda cfg: lambda block, x: block(x))
    monkeypatch.setattr(glnet, 'compiled_run_backbone',
                        lambda cfg: lambda backbone, x: backbone.forward_features(x))
    monkeypatch.setattr(torch.compiler, 'cudagraph_mark_step_begin', lambda: None)
    monkeypatch.setattr(compilation, 'CUDA_GRAPH_DEVICES', frozenset({'cpu'}))
    x = torch.randn(1, 3, 64, 64)
    model = GLNet(arch=dict(TINY_ARCH), **{option: dict(mode='reduce-overhead')}).train()
    sum(out.sum() for out in model(x)).backward()  # the first micro-batch
    with pytest.raises(RuntimeError, match='cannot accumulate gradients.*accumulative_counts=1'):
        model(x)
    with torch.no_grad():
        model(x)
    model.eval()(x)
    model.train().zero_grad(set_to_none=True)
    model(x)
    # Without CUDA graphs gradients accumulate.
    plain = GLNet(arch=dict(TINY_ARCH), **{option: dict(dynamic=False)}).train()
    for _ in range(2):
        sum(out.sum() for out in plain(x)).backward()


def test_cuda_toolkit_is_found_only_with_its_headers(tmp_path, monkeypatch):
    from torch.utils import cpp_extension
    monkeypatch.setattr(cpp_extension, 'CUDA_HOME', str(tmp_path))
    assert compilation.cuda_toolkit_home() is None  # a folder above a launcher script of nvcc
    (tmp_path / 'include').mkdir()
    (tmp_path / 'include' / 'cuda.h').write_text('')
    assert compilation.cuda_toolkit_home() == str(tmp_path)
    monkeypatch.setattr(cpp_extension, 'CUDA_HOME', None)
    assert compilation.cuda_toolkit_home() is None


def eager_compiles(monkeypatch) -> list:
    """GLNet's compiled blocks and backbone replaced by their eager code for one test; returns
    the list that the keywords of every compile asked for go to."""
    compiled = []
    monkeypatch.setattr(glnet, 'compiled_run_block',
                        lambda cfg: compiled.append(cfg) or (lambda block, x: block(x)))
    monkeypatch.setattr(
        glnet, 'compiled_run_backbone',
        lambda cfg: compiled.append(cfg) or (lambda backbone, x: backbone.forward_features(x)))
    return compiled


@pytest.mark.parametrize('option', ['compile_blocks', 'compile_backbone'])
def test_cpp_wrapper_without_cuda_toolkit_is_refused_before_compiling(monkeypatch, option):
    """Inductor's C++ wrapper on CUDA is built against CUDA's toolkit: without one, GLNet's
    forward refuses it before anything is compiled, naming CUDA_HOME. With a toolkit, and
    without the wrapper, it runs. The CPU stands in for CUDA, eager code for the compiled."""
    compiled = eager_compiles(monkeypatch)
    monkeypatch.setattr(compilation, 'CUDA_TOOLKIT_DEVICES', frozenset({'cpu'}))
    monkeypatch.setattr(compilation, 'cuda_toolkit_home', lambda: None)
    x = torch.randn(1, 3, 64, 64)
    wrapped = dict(dynamic=False, options={'cpp_wrapper': True})
    model = GLNet(arch=dict(TINY_ARCH), **{option: wrapped}).train()
    with pytest.raises(RuntimeError, match=r"C\+\+ wrapper.*set CUDA_HOME"):
        model(x)
    assert compiled == []
    GLNet(arch=dict(TINY_ARCH), **{option: dict(dynamic=False)}).train()(x)
    monkeypatch.setattr(compilation, 'cuda_toolkit_home', lambda: '/opt/cuda')
    model(x)
    assert wrapped in compiled


@pytest.mark.parametrize('option', ['compile_blocks', 'compile_backbone'])
def test_training_with_cpp_wrapper_is_refused_where_torch_cannot_build_its_backward(
        monkeypatch, option):
    """Before torch 2.13, the C++ wrapper asked for through torch.compile's options fails on
    CUDA when the backward graph compiles (pytorch/pytorch#178845): a training forward is
    refused before anything is compiled, naming the fix; inference, and a torch with the fix,
    run. The CPU stands in for CUDA, eager code for the compiled."""
    from torch.torch_version import TorchVersion
    compiled = eager_compiles(monkeypatch)
    monkeypatch.setattr(compilation, 'CPP_WRAPPER_BACKWARD_BUG_DEVICES', frozenset({'cpu'}))
    monkeypatch.setattr(torch, '__version__', TorchVersion('2.12.1+cu130'))
    x = torch.randn(1, 3, 64, 64)
    wrapped = dict(dynamic=False, options={'cpp_wrapper': True})
    model = GLNet(arch=dict(TINY_ARCH), compile_eval=True, **{option: wrapped}).train()
    with pytest.raises(RuntimeError) as error:
        model(x)
    assert "would train with inductor's C++ wrapper" in str(error.value)
    assert 'torch 2.12.1+cu130 cannot build' in str(error.value)
    assert 'pytorch/pytorch#178845, fixed in torch 2.13' in str(error.value)
    assert compiled == []
    with torch.no_grad():
        model(x)  # a training-mode forward without gradients (validation-style)
    model.eval()(x)  # inference with compile_eval
    assert compiled and all(cfg == wrapped for cfg in compiled)
    GLNet(arch=dict(TINY_ARCH), **{option: dict(dynamic=False)}).train()(x)
    monkeypatch.setattr(torch, '__version__', TorchVersion('2.13.0+cu130'))
    model.train()(x)
    assert compiled[-1] == wrapped


def test_resolve_compile_cfg():
    assert resolve_compile_cfg(False) is None
    assert resolve_compile_cfg(None) is None
    assert resolve_compile_cfg(True) == {}
    assert resolve_compile_cfg(dict(dynamic=False)) == dict(dynamic=False)
    with pytest.raises(TypeError, match='compile_backbone=1 must be'):
        resolve_compile_cfg(1, 'compile_backbone')


@pytest.mark.parametrize('option', ['compile_blocks', 'compile_backbone'])
def test_a_torch_too_old_to_compile_glnet_is_refused_when_the_model_is_built(
        option, tiny_arch, monkeypatch):
    from torch.torch_version import TorchVersion
    monkeypatch.setattr(torch, '__version__', TorchVersion('2.4.1+cu121'))
    with pytest.raises(RuntimeError) as error:
        GLNet(tiny_arch, **{option: True})
    assert str(error.value).startswith(f'{option}=True needs torch >= 2.5; this torch is 2.4.1')
    assert f'Set {option}=False' in str(error.value)
    GLNet(tiny_arch)  # eager GLNet is built
    monkeypatch.setattr(torch, '__version__', TorchVersion('2.5.1+cu124'))
    GLNet(tiny_arch, **{option: True})


@pytest.mark.parametrize('size', [3, 5])
@pytest.mark.parametrize('channels_last', [False, True])
def test_depthwise_conv_by_shifts_is_the_convolution(size, channels_last):
    """The shifted products compute torch's zero-padded depth-wise convolution, gradients
    included, in the input's memory format."""
    torch.manual_seed(0)
    x = torch.randn(2, 6, 9, 7, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    weight = torch.randn(6, 1, size, size, dtype=torch.float64)
    bias = torch.randn(6, dtype=torch.float64)
    for with_bias in (True, False):
        inputs = [t.clone().requires_grad_() for t in (x, weight, bias)]
        expected = F.conv2d(
            inputs[0], inputs[1], inputs[2] if with_bias else None, padding=size // 2, groups=6)
        ours = [t.clone().requires_grad_() for t in (x, weight, bias)]
        out = layers.depthwise_conv_by_shifts(ours[0], ours[1], ours[2] if with_bias else None)
        torch.testing.assert_close(out, expected)
        assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
        grad = torch.randn_like(expected)
        expected.backward(grad)
        out.backward(grad)
        for mine, reference in zip(ours, inputs):
            if reference.grad is not None:
                torch.testing.assert_close(mine.grad, reference.grad)


def test_depthwise_conv_by_shifts_computes_in_autocast_dtype():
    x = torch.randn(1, 4, 8, 8)
    weight, bias = torch.randn(4, 1, 3, 3), torch.randn(4)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        expected = F.conv2d(x, weight, bias, padding=1, groups=4)
        out = layers.depthwise_conv_by_shifts(x, weight, bias)
    assert out.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected, rtol=2e-2, atol=2e-2)


def depthwise_convolutions(graph_module) -> int:
    """Grouped convolutions in a dynamo graph (``groups`` by keyword or 7th argument)."""

    def groups(node) -> int:
        return node.kwargs.get('groups', node.args[6] if len(node.args) > 6 else 1)

    return sum(1 for node in graph_module.graph.nodes
               if node.target in (torch.conv2d, F.conv2d) and groups(node) > 1)


def test_compiled_backbone_computes_residual_dw_convs_by_shifts_where_asked(monkeypatch):
    """On the devices of SHIFTED_DW_CONV_DEVICES, the compiled backbone has no residual
    depth-wise convolution left (the position encodings' and the FFN's), and computes what
    eager mode does, gradients included; eager mode keeps the convolutions."""
    graphs = []

    def recording_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    torch.manual_seed(0)
    eager = GLNet(arch=dict(TINY_ARCH), drop_path_rate=0.).double()
    residual = sum(isinstance(m, layers.ResidualDWConv) for m in eager.modules())
    assert residual > 0
    results = {}
    for devices in (frozenset(), frozenset({'cpu'})):
        monkeypatch.setattr(layers, 'SHIFTED_DW_CONV_DEVICES', devices)
        compiled = GLNet(
            arch=dict(TINY_ARCH),
            drop_path_rate=0.,
            compile_backbone=dict(backend=recording_backend)).double()
        compiled.load_state_dict(eager.state_dict())
        torch._dynamo.reset()
        graphs.clear()
        x = torch.randn(
            2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        outputs = compiled(x)
        sum((out * out).sum() for out in outputs).backward()
        assert len(graphs) == 1
        results[devices] = (depthwise_convolutions(graphs[0]), outputs, {
            n: p.grad
            for n, p in compiled.named_parameters()
        })
    plain, shifted = results[frozenset()], results[frozenset({'cpu'})]
    assert plain[0] - shifted[0] == residual
    for out, ref in zip(shifted[1], plain[1]):
        torch.testing.assert_close(out, ref)
    for name, grad in shifted[2].items():
        torch.testing.assert_close(grad, plain[2][name], msg=name)
