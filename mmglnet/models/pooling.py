"""Adaptive average pooling that exports to ONNX at any input size.

:func:`torch.nn.functional.adaptive_avg_pool2d` splits a length ``L`` into ``n`` bins, bin ``i``
covering ``[floor(i * L / n), ceil((i + 1) * L / n))``. torch's TorchScript-based ONNX exporter
writes it only where ``n`` divides ``L`` (it becomes a fixed-kernel ``AveragePool``), and a
graph traced at one size would keep that size's kernels. :func:`adaptive_avg_pool2d` computes
the same bins as two products with averaging matrices built from the runtime size (``Range``,
integer division and comparisons in the graph), so an exported graph pools correctly at every
input size. In eager mode it is ``F.adaptive_avg_pool2d`` itself.

:func:`slot_pool2d`, which pools GLMix's initial slots, avoids torch's kernel where it is slow
(CUDA): it takes a plain mean over equal windows (:func:`grid_mean_pool2d`), and two products
with averaging matrices (:func:`averaging_product_pool2d`) where the windows are uneven.
"""
from typing import Dict, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import eager_autocast_dtype, is_compiling, is_exporting


def _pair(output_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(output_size, int):
        return output_size, output_size
    rows, cols = output_size
    return rows, cols


def averaging_matrix(length: Union[int, torch.Tensor],
                     bins: int,
                     device: torch.device,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The (bins, L) matrix whose product with a length-``L`` vector gives its adaptive means.

    Row ``i`` is ``1 / (end_i - start_i)`` on ``[start_i, end_i)`` and 0 elsewhere, with
    ``start_i = floor(i * L / bins)`` and ``end_i = ceil((i + 1) * L / bins)``: the bins of
    :func:`torch.nn.functional.adaptive_avg_pool2d`.

    Args:
        length (int): ``L``; while exporting, a size read from the input, so that the
            exported graph computes the matrix from the runtime size.
        bins (int): Number of output bins.
        device (torch.device): Device of the matrix.
        dtype (torch.dtype): Its dtype; each weight is ``1 / size`` rounded once to it.
            Defaults to torch.float32.

    Returns:
        Tensor: (bins, L) averaging weights.
    """
    positions = torch.arange(length, device=device).unsqueeze(0)  # (1, L)
    index = torch.arange(bins, device=device).unsqueeze(1)  # (bins, 1)
    # Non-negative integers: floor division is exact, and ceil(a / b) = (a + b - 1) // b.
    start = torch.div(index * length, bins, rounding_mode='floor')
    end = torch.div((index + 1) * length + bins - 1, bins, rounding_mode='floor')
    inside = (positions >= start) & (positions < end)
    return inside.to(dtype) / (end - start).to(dtype)


def matmul_adaptive_avg_pool2d(x: torch.Tensor, output_size: Union[int,
                                                                   Sequence[int]]) -> torch.Tensor:
    """Adaptive average pooling of ``x`` (N, C, H, W) as ``A_h @ x @ A_w^T``.

    The bins are those of :func:`torch.nn.functional.adaptive_avg_pool2d`; the values equal
    its values up to float rounding (the sums are taken in another order).

    Args:
        x (Tensor): Input (N, C, H, W).
        output_size (int | tuple[int, int]): Output (rows, cols).

    Returns:
        Tensor: (N, C, rows, cols), in ``x``'s dtype.
    """
    rows, cols = _pair(output_size)
    pool_h = averaging_matrix(x.shape[2], rows, x.device).to(x.dtype)  # (rows, H)
    pool_w = averaging_matrix(x.shape[3], cols, x.device).to(x.dtype)  # (cols, W)
    return torch.matmul(torch.matmul(pool_h, x), pool_w.transpose(0, 1))


def adaptive_avg_pool2d(x: torch.Tensor, output_size: Union[int, Sequence[int]]) -> torch.Tensor:
    """:func:`torch.nn.functional.adaptive_avg_pool2d`, exportable at any input size.

    Eager calls (and JIT traces) run torch's kernel; while exporting to ONNX the pooling is
    written as :func:`matmul_adaptive_avg_pool2d`, whose graph holds for every input size.

    Args:
        x (Tensor): Input (N, C, H, W).
        output_size (int | tuple[int, int]): Output (rows, cols).

    Returns:
        Tensor: (N, C, rows, cols).
    """
    if is_exporting():
        return matmul_adaptive_avg_pool2d(x, output_size)
    return F.adaptive_avg_pool2d(x, output_size)


# Devices on which :func:`slot_pool2d` does not run torch's adaptive pooling kernel. On an
# H100, torch's channels-last kernel read GLNet-4G's stage-1 features at about 78 GB/s (430 us
# for 16x64x128x128 half floats in the training profile,
# docs/benchmarks/h100_train_fp16_profile.txt), where CUDA's reductions and matrix products
# stream them at memory speed: for an 8x8 output that kernel runs N * ceil(C / 128) thread
# blocks, each walking its windows pixel by pixel, so at batch 1 one block reads a whole map.
# On the CPU it is the other way round: the adaptive kernel, vectorised over channels, is 3 to
# 13 times as fast as the strided reduction and 1.7 to 3 times as fast as the products.
FAST_SLOT_POOLING_DEVICES = frozenset({'cuda'})


def grid_mean_pool2d(x: torch.Tensor, output_size: Union[int, Sequence[int]]) -> torch.Tensor:
    """Average pooling of ``x`` (N, C, H, W) over a grid of equal windows, as a mean.

    The windows are those of :func:`torch.nn.functional.adaptive_avg_pool2d` where the
    output size divides the input size: ``x`` is viewed as (N, C, rows, H / rows, cols,
    W / cols) (no copy, in either memory layout) and averaged over the window dimensions.
    The values equal the adaptive pooling's up to float rounding.

    Args:
        x (Tensor): Input (N, C, H, W); ``rows`` must divide H and ``cols`` W.
        output_size (int | tuple[int, int]): Output (rows, cols).

    Returns:
        Tensor: (N, C, rows, cols), in ``x``'s dtype.
    """
    rows, cols = _pair(output_size)
    batch, channels, height, width = x.shape
    if height % rows or width % cols:
        raise ValueError(f'grid_mean_pool2d needs the output size ({rows}, {cols}) to divide '
                         f'the input size ({height}, {width}); use averaging_product_pool2d.')
    windows = x.reshape(batch, channels, rows, height // rows, cols, width // cols)
    return windows.mean((3, 5))


# Averaging matrices by (length, bins, dtype, device), made once in eager mode. A GLNet at
# one input size needs a few; the bound only matters for many input sizes (multi-scale
# detection), where the cache starts again when full.
_AVERAGING_MATRICES: Dict[Tuple[int, int, torch.dtype, torch.device], torch.Tensor] = {}
MAX_CACHED_MATRICES = 1024


def capturing_cuda_graph(x: torch.Tensor) -> bool:
    """Whether ``x``'s CUDA stream is being captured into a CUDA graph."""
    return x.is_cuda and torch.cuda.is_current_stream_capturing()


def _averaging_weights(length: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """:func:`averaging_matrix` in ``like``'s dtype and device, made once per size in eager
    mode. While compiling or tracing it is made in the graph (a cached tensor would be a
    constant of one graph); while capturing a CUDA graph, a matrix not cached yet is made in
    the graph and not cached (its values exist only in the graph's replays)."""
    if is_compiling() or torch.jit.is_tracing():
        return averaging_matrix(length, bins, like.device, like.dtype)
    key = (length, bins, like.dtype, like.device)
    matrix = _AVERAGING_MATRICES.get(key)
    if matrix is not None:
        return matrix
    if capturing_cuda_graph(like):
        return averaging_matrix(length, bins, like.device, like.dtype)
    # A normal tensor even when first made under inference mode: a training forward saves
    # it for backward.
    with torch.inference_mode(False), torch.no_grad():
        matrix = averaging_matrix(length, bins, like.device, like.dtype)
    if len(_AVERAGING_MATRICES) >= MAX_CACHED_MATRICES:
        _AVERAGING_MATRICES.clear()
    _AVERAGING_MATRICES[key] = matrix
    return matrix


def averaging_product_pool2d(x: torch.Tensor, output_size: Union[int,
                                                                 Sequence[int]]) -> torch.Tensor:
    """Adaptive average pooling of ``x`` (N, C, H, W) as two products with averaging matrices.

    Any windows, uneven (overlapping) ones included: the bins are those of
    :func:`torch.nn.functional.adaptive_avg_pool2d`, and the values equal its values up to
    float rounding. A channels-last ``x`` is pooled as the contiguous (N, H, W, C) array it
    is, first over W as a batch of (cols, W) x (W, C) products, then over H as (rows, H) x
    (H, cols * C) products, with no copy of ``x``; its output is channels-last strided.
    Otherwise it is ``A_h @ x @ A_w^T``. The products run in ``x``'s dtype, also under
    autocast, as torch's kernel does (no cast of ``x``).

    Args:
        x (Tensor): Input (N, C, H, W).
        output_size (int | tuple[int, int]): Output (rows, cols).

    Returns:
        Tensor: (N, C, rows, cols), in ``x``'s dtype.
    """
    rows, cols = _pair(output_size)
    height, width = x.shape[-2:]
    pool_h = _averaging_weights(height, rows, x)  # (rows, H)
    pool_w = _averaging_weights(width, cols, x)  # (cols, W)
    if eager_autocast_dtype(x.device.type) is None:
        return _averaging_products(x, pool_h, pool_w)
    with torch.autocast(x.device.type, enabled=False):
        return _averaging_products(x, pool_h, pool_w)


def _averaging_products(x: torch.Tensor, pool_h: torch.Tensor,
                        pool_w: torch.Tensor) -> torch.Tensor:
    if not x.is_contiguous(memory_format=torch.channels_last):
        return torch.matmul(torch.matmul(pool_h, x), pool_w.transpose(0, 1))
    batch, channels, height, width = x.shape
    rows, cols = pool_h.shape[0], pool_w.shape[0]
    pixels = x.permute(0, 2, 3, 1).reshape(batch * height, width, channels)  # a view
    over_width = torch.matmul(pool_w, pixels)  # (N * H, cols, C)
    pooled = torch.matmul(pool_h, over_width.reshape(batch, height, cols * channels))
    return pooled.reshape(batch, rows, cols, channels).permute(0, 3, 1, 2)


def slot_pool2d(x: torch.Tensor, output_size: Union[int, Sequence[int]]) -> torch.Tensor:
    """Adaptive average pooling by the fastest kernel for ``x``'s device.

    On the devices of :data:`FAST_SLOT_POOLING_DEVICES` (in eager mode and under
    :func:`torch.compile`): :func:`grid_mean_pool2d` where the output size divides the input
    size, :func:`averaging_product_pool2d` where it does not. Elsewhere
    :func:`adaptive_avg_pool2d`: torch's kernel, kept for JIT traces (mmengine's FLOP counter
    sees the same operator on every device), and its exportable form while exporting to ONNX.

    Args:
        x (Tensor): Input (N, C, H, W).
        output_size (int | tuple[int, int]): Output (rows, cols).

    Returns:
        Tensor: (N, C, rows, cols).
    """
    if (x.device.type not in FAST_SLOT_POOLING_DEVICES or x.dim() != 4 or torch.jit.is_tracing()
            or is_exporting()):
        return adaptive_avg_pool2d(x, output_size)
    rows, cols = _pair(output_size)
    height, width = x.shape[-2:]
    if height % rows == 0 and width % cols == 0:
        return grid_mean_pool2d(x, (rows, cols))
    return averaging_product_pool2d(x, (rows, cols))


class ExportableAdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` that exports at any input size (see
    :func:`adaptive_avg_pool2d`); it has no state, so a module's class can be swapped."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or any(size is None for size in _pair(self.output_size)):
            return super().forward(x)
        return adaptive_avg_pool2d(x, self.output_size)


def make_pooling_exportable(model: nn.Module) -> nn.Module:
    """Swap every ``nn.AdaptiveAvgPool2d`` in ``model`` (e.g. in a decode head's pyramid
    pooling) for :class:`ExportableAdaptiveAvgPool2d`, in place.

    Args:
        model (nn.Module): Any model.

    Returns:
        nn.Module: ``model``.
    """
    for module in model.modules():
        if type(module) is nn.AdaptiveAvgPool2d:
            module.__class__ = ExportableAdaptiveAvgPool2d
    return model
