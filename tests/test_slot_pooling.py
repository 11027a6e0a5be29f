"""The pooling of GLMix's initial slots: where the device runs them faster than torch's
adaptive pooling kernel (CUDA), a mean over equal windows and products with averaging matrices
over uneven ones; torch's kernel elsewhere.

These forms are chosen on CUDA only, so these tests add the CPU to the devices that use them
(``FAST_SLOT_POOLING_DEVICES``) to run that path here.
"""
import pytest
import torch
import torch.nn.functional as F
from test_fast_path import (PARITY_RUNS, assert_same_gradients, fixture_model,
                            input_and_parameter_grads, parity_path, relative_error)
from torch.utils._python_dispatch import TorchDispatchMode

from mmglnet.models import GLNet, pooling
from mmglnet.models.pooling import averaging_product_pool2d, grid_mean_pool2d, slot_pool2d

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
def fast_pooling_on_cpu(monkeypatch):
    monkeypatch.setattr(pooling, 'FAST_SLOT_POOLING_DEVICES', frozenset({'cpu'}))


@pytest.fixture(params=['mean where even', 'products everywhere'])
def fast_pooling_forms(request, fast_pooling_on_cpu, monkeypatch):
    """The CUDA choice, and the averaging products for equal windows too."""
    if request.param == 'products everywhere':
        monkeypatch.setattr(pooling, 'grid_mean_pool2d', averaging_product_pool2d)
    return request.param


def pooling_ops(x: torch.Tensor, grid) -> set:
    with OperatorNames() as recorder:
        slot_pool2d(x, grid)
    return recorder.names


def assert_pools_like_adaptive_pooling(pool, x: torch.Tensor, grid) -> torch.Tensor:
    """``pool(x, grid)`` equals torch's adaptive pooling, values and float64 gradients."""
    x_pool, x_adaptive = x.clone().requires_grad_(), x.clone().requires_grad_()
    got, expected = pool(x_pool, grid), F.adaptive_avg_pool2d(x_adaptive, grid)
    assert got.shape == expected.shape == (*x.shape[:2], *grid)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(expected)
    (got * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(x_pool.grad, x_adaptive.grad, rtol=1e-12, atol=1e-12)
    return got


def float64_input(size, channels_last: bool) -> torch.Tensor:
    x = torch.randn(2, 5, *size, dtype=torch.float64)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize('size,grid', [((16, 16), (8, 8)), ((24, 40), (8, 8)), ((6, 4), (3, 2)),
                                       ((8, 8), (8, 8)), ((56, 56), (8, 8))])
@pytest.mark.parametrize('channels_last', [False, True])
def test_grid_mean_equals_adaptive_pooling_with_gradients(size, grid, channels_last):
    assert_pools_like_adaptive_pooling(grid_mean_pool2d, float64_input(size, channels_last), grid)


# Uneven windows (28 -> 8 and 14 -> 8 are GLNet's stages 2 and 3 at 224²; 5 -> 8 repeats
# pixels in overlapping bins), rectangular grids, equal windows.
@pytest.mark.parametrize('size,grid', [((28, 28), (8, 8)), ((14, 14), (8, 8)), ((5, 7), (8, 8)),
                                       ((33, 50), (8, 6)), ((16, 24), (8, 8)), ((9, 9), (1, 1))])
@pytest.mark.parametrize('channels_last', [False, True])
def test_averaging_products_equal_adaptive_pooling_with_gradients(size, grid, channels_last):
    x = float64_input(size, channels_last)
    got = assert_pools_like_adaptive_pooling(averaging_product_pool2d, x, grid)
    if channels_last:
        # Pooled in its own layout: the output is channels-last too, so that the slots'
        # (N, S, C) view needs no copy.
        assert got.is_contiguous(memory_format=torch.channels_last)


def test_averaging_matrices_are_built_once_and_serve_training_after_inference():
    x = torch.randn(2, 4, 21, 30).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():  # builds the (8, 21) and (8, 30) matrices first
        averaging_product_pool2d(x, 8)
    with OperatorNames() as recorder:
        x_grad = x.clone().requires_grad_()
        pooled = averaging_product_pool2d(x_grad, 8)
        pooled.sum().backward()  # would fail on a matrix made under inference mode
    assert 'arange' not in recorder.names  # the cached matrices were used
    torch.testing.assert_close(pooled, F.adaptive_avg_pool2d(x, 8))
    torch.testing.assert_close(x_grad.grad.sum(), torch.tensor(2 * 4 * 64.))


def product_pooling_ops(x: torch.Tensor) -> set:
    with OperatorNames() as recorder:
        torch.testing.assert_close(averaging_product_pool2d(x, 8), F.adaptive_avg_pool2d(x, 8))
    return recorder.names


def test_cuda_graph_capture_uses_cached_matrices_and_caches_none_of_its_own(monkeypatch):
    monkeypatch.setattr(pooling, '_AVERAGING_MATRICES', {})
    x = torch.randn(1, 4, 21, 30).contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(pooling, 'capturing_cuda_graph', lambda t: True)
    # Made in the graph: in a real capture, their values would exist in replays only.
    assert 'arange' in product_pooling_ops(x) and not pooling._AVERAGING_MATRICES
    monkeypatch.setattr(pooling, 'capturing_cuda_graph', lambda t: False)
    assert 'arange' in product_pooling_ops(x) and len(pooling._AVERAGING_MATRICES) == 2
    monkeypatch.setattr(pooling, 'capturing_cuda_graph', lambda t: True)
    assert 'arange' not in product_pooling_ops(x)  # the warm-up's matrices, cached


def test_matrix_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(pooling, '_AVERAGING_MATRICES', {})
    monkeypatch.setattr(pooling, 'MAX_CACHED_MATRICES', 3)
    for size in ((10, 11), (12, 13), (14, 15)):
        product_pooling_ops(torch.randn(1, 2, *size))
        assert 0 < len(pooling._AVERAGING_MATRICES) <= 3
    # Full at the fourth matrix (13): the cache started again from it.
    cpu = torch.device('cpu')
    assert set(pooling._AVERAGING_MATRICES) == {(length, 8, torch.float32, cpu)
                                                for length in (13, 14, 15)}


@pytest.mark.parametrize('input_dtype', [torch.float32, torch.bfloat16])
def test_averaging_products_keep_the_input_dtype_under_autocast(input_dtype):
    """Like torch's kernel, no cast of the input: an autocast region does not change the
    dtype the products run in."""
    x = torch.randn(2, 8, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = averaging_product_pool2d(x.to(input_dtype), 8)
    assert got.dtype == input_dtype
    tolerance = 1e-6 if input_dtype == torch.float32 else 2e-2
    torch.testing.assert_close(
        got.float(), F.adaptive_avg_pool2d(x, 8), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_grid_mean_keeps_the_input_dtype(dtype):
    x = torch.randn(2, 8, 32, 32)
    got = grid_mean_pool2d(x.to(dtype), 8)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), F.adaptive_avg_pool2d(x, 8), rtol=1e-2, atol=1e-2)


def test_grid_mean_rejects_uneven_windows():
    with pytest.raises(ValueError, match=r'\(8, 8\).*\(28, 28\).*use averaging_product_pool2d'):
        grid_mean_pool2d(torch.randn(1, 2, 28, 28), 8)


def test_cpu_keeps_torch_adaptive_kernel():
    for size in ((16, 16), (28, 28)):
        names = pooling_ops(torch.randn(1, 4, *size), (8, 8))
        assert '_adaptive_avg_pool2d' in names and not names & {'mean', 'bmm', 'mm'}


def test_fast_pooling_devices_choose_by_window_shape(fast_pooling_on_cpu, monkeypatch):
    x = torch.randn(1, 4, 16, 24).contiguous(memory_format=torch.channels_last)
    names = pooling_ops(x, (8, 8))
    assert 'mean' in names and not names & {'_adaptive_avg_pool2d', 'bmm'}
    torch.testing.assert_close(slot_pool2d(x, (8, 8)), F.adaptive_avg_pool2d(x, (8, 8)))
    # Uneven windows (bins of adaptive pooling that overlap): the averaging products.
    uneven = torch.randn(1, 4, 28, 28).contiguous(memory_format=torch.channels_last)
    names = pooling_ops(uneven, (8, 8))
    assert 'bmm' in names and not names & {'_adaptive_avg_pool2d', 'mean'}
    torch.testing.assert_close(slot_pool2d(uneven, 8), F.adaptive_avg_pool2d(uneven, 8))
    # JIT traces (FLOP counting) see torch's operator on every device.
    for t in (x, uneven):
        graph = torch.jit.trace(lambda t: slot_pool2d(t, (8, 8)), t).inlined_graph
        assert 'aten::adaptive_avg_pool2d' in {node.kind() for node in graph.nodes()}
    # ONNX export writes the exportable form, its matrices built from the traced sizes.
    monkeypatch.setattr(pooling, 'is_exporting', lambda: True)
    names = pooling_ops(x, (8, 8))
    assert 'mean' not in names and '_adaptive_avg_pool2d' not in names
    assert names & {'mm', 'bmm', 'matmul'} and 'arange' in names


@pytest.mark.parametrize('name,mode', PARITY_RUNS)
def test_fast_pooling_reproduces_the_official_outputs(name, mode, fast_pooling_forms):
    expected = torch.load(parity_path(f'{name}.expected.pth'), weights_only=True)
    model = fixture_model(name, 'fast').train(mode == 'train')
    with torch.no_grad():
        outputs = model(expected['input'])
    for index, (out, ref) in enumerate(zip(outputs, expected[f'{mode}_stage_outputs'])):
        assert relative_error(out, ref) <= 1e-4, f'stage {index}'


# 64x128: every slot grid divides its stage's size (16x32, 8x16, 4x8); 72x100 (18x25, 9x13,
# 5x7) divides none.
@pytest.mark.parametrize('size', [(64, 128), (72, 100)])
def test_fast_pooling_trains_like_torch_pooling(size, fast_pooling_forms, monkeypatch):
    torch.manual_seed(0)
    model = GLNet(TINY_ARCH, drop_path_rate=0.).train()
    x = torch.randn(2, 3, *size)
    with OperatorNames() as recorder:
        fast = input_and_parameter_grads(model, x)
    assert '_adaptive_avg_pool2d' not in recorder.names
    monkeypatch.setattr(pooling, 'FAST_SLOT_POOLING_DEVICES', frozenset())
    with OperatorNames() as recorder:
        with_torch_kernel = input_and_parameter_grads(model, x)
    assert '_adaptive_avg_pool2d' in recorder.names
    assert_same_gradients(fast, with_torch_kernel)


@pytest.mark.parametrize('dynamic', [False, True])
def test_fast_pooling_choice_compiles_in_one_graph(fast_pooling_on_cpu, dynamic):
    """Under torch.compile (compile_blocks on CUDA) the choice is traced, not a graph break;
    the averaging matrices are built in the graph, for every traced size."""
    torch._dynamo.reset()
    pool = torch.compile(
        lambda t: slot_pool2d(t, (8, 8)), fullgraph=True, dynamic=dynamic, backend='aot_eager')
    for size in ((16, 24), (32, 32), (28, 28), (14, 20), (30, 22)):
        x = torch.randn(2, 4, *size).contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(pool(x), F.adaptive_avg_pool2d(x, (8, 8)))
