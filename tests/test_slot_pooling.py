"""The pooling of GLMix's initial slots: a mean over equal windows where the device runs it
faster than torch's adaptive pooling kernel (CUDA), torch's kernel elsewhere.

The mean is chosen on CUDA only, so these tests add the CPU to the devices that use it
(``GRID_MEAN_DEVICES``) to run that path here.
"""
import pytest
import torch
import torch.nn.functional as F
from test_fast_path import PARITY_RUNS, fixture_model, parity_path, relative_error
from torch.utils._python_dispatch import TorchDispatchMode

from mmglnet.models import GLNet, pooling
from mmglnet.models.pooling import grid_mean_pool2d, slot_pool2d

from conftest import TINY_ARCH


class OperatorNames(TorchDispatchMode):
    """Records the names of the ATen operators dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.fixture
def grid_mean_on_cpu(monkeypatch):
    monkeypatch.setattr(pooling, 'GRID_MEAN_DEVICES', frozenset({'cpu'}))


def pooling_ops(x: torch.Tensor, grid) -> set:
    with OperatorNames() as recorder:
        slot_pool2d(x, grid)
    return recorder.names


@pytest.mark.parametrize('size,grid', [((16, 16), (8, 8)), ((24, 40), (8, 8)), ((6, 4), (3, 2)),
                                       ((8, 8), (8, 8)), ((56, 56), (8, 8))])
@pytest.mark.parametrize('channels_last', [False, True])
def test_grid_mean_equals_adaptive_pooling_with_gradients(size, grid, channels_last):
    x = torch.randn(2, 5, *size, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x_mean, x_adaptive = x.clone().requires_grad_(), x.clone().requires_grad_()
    got, expected = grid_mean_pool2d(x_mean, grid), F.adaptive_avg_pool2d(x_adaptive, grid)
    assert got.shape == expected.shape == (2, 5, *grid)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(expected)
    (got * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(x_mean.grad, x_adaptive.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_grid_mean_keeps_the_input_dtype(dtype):
    x = torch.randn(2, 8, 32, 32)
    got = grid_mean_pool2d(x.to(dtype), 8)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), F.adaptive_avg_pool2d(x, 8), rtol=1e-2, atol=1e-2)


def test_grid_mean_rejects_uneven_windows():
    with pytest.raises(ValueError, match=r'\(8, 8\).*\(28, 28\).*adaptive_avg_pool2d'):
        grid_mean_pool2d(torch.randn(1, 2, 28, 28), 8)


def test_cpu_keeps_torch_adaptive_kernel():
    names = pooling_ops(torch.randn(1, 4, 16, 16), (8, 8))
    assert '_adaptive_avg_pool2d' in names and 'mean' not in names


def test_grid_mean_devices_take_the_mean_where_windows_are_equal(grid_mean_on_cpu, monkeypatch):
    x = torch.randn(1, 4, 16, 24)
    names = pooling_ops(x, (8, 8))
    assert 'mean' in names and '_adaptive_avg_pool2d' not in names
    torch.testing.assert_close(slot_pool2d(x, (8, 8)), F.adaptive_avg_pool2d(x, (8, 8)))
    # Uneven windows (bins of adaptive pooling that overlap) keep torch's kernel.
    names = pooling_ops(torch.randn(1, 4, 28, 28), (8, 8))
    assert '_adaptive_avg_pool2d' in names and 'mean' not in names
    # JIT traces (FLOP counting) see torch's operator on every device.
    graph = torch.jit.trace(lambda t: slot_pool2d(t, (8, 8)), x).inlined_graph
    assert 'aten::adaptive_avg_pool2d' in {node.kind() for node in graph.nodes()}
    # ONNX export writes the exportable form.
    monkeypatch.setattr(pooling, 'is_exporting', lambda: True)
    names = pooling_ops(x, (8, 8))
    assert 'mean' not in names and '_adaptive_avg_pool2d' not in names
    assert names & {'mm', 'bmm', 'matmul'}


@pytest.mark.parametrize('name,mode', PARITY_RUNS)
def test_grid_mean_pooling_reproduces_the_official_outputs(name, mode, grid_mean_on_cpu):
    expected = torch.load(parity_path(f'{name}.expected.pth'), weights_only=True)
    model = fixture_model(name, 'fast').train(mode == 'train')
    with torch.no_grad():
        outputs = model(expected['input'])
    for index, (out, ref) in enumerate(zip(outputs, expected[f'{mode}_stage_outputs'])):
        assert relative_error(out, ref) <= 1e-4, f'stage {index}'


def test_grid_mean_pooling_trains_like_torch_pooling(grid_mean_on_cpu, monkeypatch):
    torch.manual_seed(0)
    model = GLNet(TINY_ARCH, drop_path_rate=0.).train()
    x = torch.randn(2, 3, 64, 128)  # every slot grid divides its stage's size

    def input_and_grads():
        inputs = x.clone().requires_grad_()
        model.zero_grad()
        with OperatorNames() as recorder:
            outs = model(inputs)
            sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return recorder.names, inputs.grad, grads

    names, input_grad, grads = input_and_grads()
    assert '_adaptive_avg_pool2d' not in names
    monkeypatch.setattr(pooling, 'GRID_MEAN_DEVICES', frozenset())
    names, expected_input_grad, expected_grads = input_and_grads()
    assert '_adaptive_avg_pool2d' in names
    assert relative_error(input_grad, expected_input_grad) < 1e-5
    scale = max(grad.abs().max() for grad in expected_grads.values())
    for name, grad in grads.items():
        assert (grad - expected_grads[name]).abs().max() <= 1e-5 * scale, name


@pytest.mark.parametrize('dynamic', [False, True])
def test_grid_mean_choice_compiles_in_one_graph(grid_mean_on_cpu, dynamic):
    """Under torch.compile (compile_blocks on CUDA) the choice is traced, not a graph break."""
    torch._dynamo.reset()
    pool = torch.compile(
        lambda t: slot_pool2d(t, (8, 8)), fullgraph=True, dynamic=dynamic, backend='aot_eager')
    for size in ((16, 24), (32, 32), (28, 28)):
        x = torch.randn(2, 4, *size).contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(pool(x), F.adaptive_avg_pool2d(x, (8, 8)))
