"""Adaptive average pooling that exports to ONNX at any input size.

:func:`torch.nn.functional.adaptive_avg_pool2d` splits a length ``L`` into ``n`` bins, bin ``i``
covering ``[floor(i * L / n), ceil((i + 1) * L / n))``. torch's TorchScript-based ONNX exporter
writes it only where ``n`` divides ``L`` (it becomes a fixed-kernel ``AveragePool``), and a
graph traced at one size would keep that size's kernels. :func:`adaptive_avg_pool2d` computes
the same bins as two products with averaging matrices built from the runtime size (``Range``,
integer division and comparisons in the graph), so an exported graph pools correctly at every
input size. In eager mode it is ``F.adaptive_avg_pool2d`` itself.

:func:`slot_pool2d`, which pools GLMix's initial slots, also picks the faster of torch's kernel
and a plain mean over equal windows (:func:`grid_mean_pool2d`) for the device.
"""
from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F


def _pair(output_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(output_size, int):
        return output_size, output_size
    rows, cols = output_size
    return rows, cols


def is_exporting() -> bool:
    """Whether the forward is being exported to ONNX.

    Plain JIT tracing (mmengine's FLOP counter) keeps torch's kernel, and so its count.
    """
    return torch.onnx.is_in_onnx_export()


def averaging_matrix(length: Union[int, torch.Tensor], bins: int,
                     device: torch.device) -> torch.Tensor:
    """The (bins, L) matrix whose product with a length-``L`` vector gives its adaptive means.

    Row ``i`` is ``1 / (end_i - start_i)`` on ``[start_i, end_i)`` and 0 elsewhere, with
    ``start_i = floor(i * L / bins)`` and ``end_i = ceil((i + 1) * L / bins)``: the bins of
    :func:`torch.nn.functional.adaptive_avg_pool2d`.

    Args:
        length (int): ``L``; while exporting, a size read from the input, so that the
            exported graph computes the matrix from the runtime size.
        bins (int): Number of output bins.
        device (torch.device): Device of the matrix.

    Returns:
        Tensor: float32 (bins, L) averaging weights.
    """
    positions = torch.arange(length, device=device).unsqueeze(0)  # (1, L)
    index = torch.arange(bins, device=device).unsqueeze(1)  # (bins, 1)
    # Non-negative integers: floor division is exact, and ceil(a / b) = (a + b - 1) // b.
    start = torch.div(index * length, bins, rounding_mode='floor')
    end = torch.div((index + 1) * length + bins - 1, bins, rounding_mode='floor')
    inside = (positions >= start) & (positions < end)
    return inside.float() / (end - start).float()


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


# Devices on which :func:`slot_pool2d` averages equal windows as a reduction over a reshaped
# view. On an H100, torch's channels-last adaptive pooling kernel read GLNet-4G's stage-1
# features at about 78 GB/s (430 us for 16x64x128x128 half floats in the training profile,
# docs/benchmarks/h100_train_fp16_profile.txt); CUDA's reduction kernels split the windows
# over many more threads. On the CPU it is the other way round: the adaptive kernel,
# vectorised over channels, is 3 to 13 times as fast as the strided reduction.
GRID_MEAN_DEVICES = frozenset({'cuda'})


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
                         f'the input size ({height}, {width}); use adaptive_avg_pool2d.')
    windows = x.reshape(batch, channels, rows, height // rows, cols, width // cols)
    return windows.mean((3, 5))


def slot_pool2d(x: torch.Tensor, output_size: Union[int, Sequence[int]]) -> torch.Tensor:
    """Adaptive average pooling by the fastest kernel for ``x``'s device.

    :func:`grid_mean_pool2d` on the devices of :data:`GRID_MEAN_DEVICES` where the output
    size divides the input size (in eager mode and under :func:`torch.compile`); otherwise
    :func:`adaptive_avg_pool2d`: torch's kernel, kept for JIT traces (mmengine's FLOP
    counter sees the same operator on every device), and its exportable form while exporting
    to ONNX.

    Args:
        x (Tensor): Input (N, C, H, W).
        output_size (int | tuple[int, int]): Output (rows, cols).

    Returns:
        Tensor: (N, C, rows, cols).
    """
    rows, cols = _pair(output_size)
    height, width = x.shape[-2:]
    if (x.device.type in GRID_MEAN_DEVICES and x.dim() == 4 and height % rows == 0
            and width % cols == 0 and not torch.jit.is_tracing() and not is_exporting()):
        return grid_mean_pool2d(x, (rows, cols))
    return adaptive_avg_pool2d(x, output_size)


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
