"""LayerNorm over the last dimension as Triton kernels, for short rows.

torch's CUDA LayerNorm gives every row of the normalised dimension to a block of threads. Its
rows are GLNet's pixels and tokens, and their length is the channel count, 64 in GLNet-4G's
first stage: there that kernel moves about 230 GB/s on an H200 (451 us per 224², batch-128
float16 LayerNorm, reading and writing 51 MB each; docs/benchmark.md), and its 61 LayerNorms
are the largest kernel of the eager forward, 5.9 of 25.1 ms; in an H100 training step its
forward and backward kernels took 10.5 of 66.5 ms. The kernels here take a tile of rows per
program (:mod:`mmglnet.models.triton_rows`), so every program reads and writes a few KiB of
contiguous memory, and they read the float32 weight and bias as they are, where the float16
path casts both first (two kernels per LayerNorm, 128 per GLNet-4G forward, and two more for
their gradients).

Eager mode only: under :func:`torch.compile` inductor generates the norm itself.
:func:`mmglnet.models.layers.layer_norm` chooses them (see
:data:`mmglnet.models.layers.TRITON_LAYER_NORM_DEVICES`).

Computed in float32 like torch's kernels: the mean and the biased variance of each row (two
passes over the row in registers), ``(x - mean) / sqrt(var + eps) * weight + bias``, rounded
once to the output dtype (an input in float32 is normalised before it is rounded, where the
float16 path rounds it first). The backward gives the input's gradient in its dtype and the
weight's and bias's in float32, summed over the rows in float32 (per program, then over the
programs). Results differ from torch's float16 path by about a unit in the last place, as
that path rounds the weight and bias to float16 first.
"""
from typing import Optional, Tuple

import torch

from .triton_rows import is_available, tile, triton

# Longest row the kernels take: a row and its float32 copy stay in registers.
MAX_CHANNELS = 8192

if triton is not None:
    import triton.language as tl

    from .triton_rows import row_tile

    @triton.jit
    def _layer_norm_rows_kernel(x_ptr, weight_ptr, bias_ptr, out_ptr, mean_ptr, inverse_std_ptr,
                                num_rows, eps, CHANNELS: tl.constexpr, BLOCK_CHANNELS: tl.constexpr,
                                ROWS: tl.constexpr, SAVE_STATISTICS: tl.constexpr):
        rows, channels, row_mask, channel_mask, mask, offsets = row_tile(
            tl.program_id(0), num_rows, CHANNELS, BLOCK_CHANNELS, ROWS)
        x = tl.load(x_ptr + offsets, mask=mask, other=0.).to(tl.float32)
        mean = tl.sum(x, axis=1) / CHANNELS
        centred = tl.where(mask, x - mean[:, None], 0.)
        variance = tl.sum(centred * centred, axis=1) / CHANNELS
        inverse_std = 1. / tl.sqrt(variance + eps)
        weight = tl.load(weight_ptr + channels, mask=channel_mask, other=0.).to(tl.float32)
        bias = tl.load(bias_ptr + channels, mask=channel_mask, other=0.).to(tl.float32)
        out = centred * inverse_std[:, None] * weight[None, :] + bias[None, :]
        tl.store(out_ptr + offsets, out.to(out_ptr.dtype.element_ty), mask=mask)
        if SAVE_STATISTICS:
            tl.store(mean_ptr + rows, mean, mask=row_mask)
            tl.store(inverse_std_ptr + rows, inverse_std, mask=row_mask)

    @triton.jit
    def _layer_norm_rows_backward_kernel(grad_out_ptr, x_ptr, weight_ptr, mean_ptr, inverse_std_ptr,
                                         grad_x_ptr, partial_sums_ptr, num_rows,
                                         CHANNELS: tl.constexpr, BLOCK_CHANNELS: tl.constexpr,
                                         ROWS: tl.constexpr):
        program = tl.program_id(0)
        rows, channels, row_mask, channel_mask, mask, offsets = row_tile(
            program, num_rows, CHANNELS, BLOCK_CHANNELS, ROWS)
        x = tl.load(x_ptr + offsets, mask=mask, other=0.).to(tl.float32)
        grad_out = tl.load(grad_out_ptr + offsets, mask=mask, other=0.).to(tl.float32)
        mean = tl.load(mean_ptr + rows, mask=row_mask, other=0.)
        inverse_std = tl.load(inverse_std_ptr + rows, mask=row_mask, other=0.)
        weight = tl.load(weight_ptr + channels, mask=channel_mask, other=0.).to(tl.float32)
        normed = tl.where(mask, (x - mean[:, None]) * inverse_std[:, None], 0.)
        grad_normed = grad_out * weight[None, :]
        # d/dx of (x - mean) * inverse_std: the row means of the two projections come off.
        mean_grad = tl.sum(grad_normed, axis=1) / CHANNELS
        mean_grad_normed = tl.sum(grad_normed * normed, axis=1) / CHANNELS
        grad_x = (grad_normed - mean_grad[:, None] -
                  normed * mean_grad_normed[:, None]) * inverse_std[:, None]
        tl.store(grad_x_ptr + offsets, grad_x.to(grad_x_ptr.dtype.element_ty), mask=mask)
        # This program's rows' share of the weight's and the bias's gradients.
        sums = partial_sums_ptr + program.to(tl.int64) * 2 * BLOCK_CHANNELS + channels
        tl.store(sums, tl.sum(grad_out * normed, axis=0))
        tl.store(sums + BLOCK_CHANNELS, tl.sum(grad_out, axis=0))


def fits(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor]) -> bool:
    """Whether :func:`layer_norm_rows` takes ``x``: Triton is there, ``x`` is contiguous with a
    last dimension of at most :data:`MAX_CHANNELS`, and the weight and bias are contiguous
    vectors of that length and of one dtype."""
    if triton is None or weight is None or bias is None or x.dim() == 0:
        return False
    channels = x.shape[-1]
    return (0 < channels <= MAX_CHANNELS and weight.shape == (channels, )
            and bias.shape == (channels, ) and weight.dtype == bias.dtype and x.is_contiguous()
            and weight.is_contiguous() and bias.is_contiguous())


def _launch_sizes(x: torch.Tensor) -> Tuple[int, int, int, int]:
    """(channels, ``BLOCK_CHANNELS``, rows per program, rows) of the kernels on ``x``."""
    channels = x.shape[-1]
    return (channels, ) + tile(channels) + (x.numel() // channels, )


def _normalise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
               dtype: torch.dtype, save_statistics: bool) -> tuple:
    """Launches the forward kernel: the output, and the rows' means and inverse standard
    deviations (float32) where ``save_statistics``, else None for both."""
    channels, block_channels, rows_per_program, num_rows = _launch_sizes(x)
    out = torch.empty(x.shape, dtype=dtype, device=x.device)
    mean = inverse_std = None
    if save_statistics:
        mean = torch.empty(num_rows, dtype=torch.float32, device=x.device)
        inverse_std = torch.empty(num_rows, dtype=torch.float32, device=x.device)
    if num_rows:
        _layer_norm_rows_kernel[(triton.cdiv(num_rows, rows_per_program), )](
            x,
            weight,
            bias,
            out,
            mean if save_statistics else out,  # not written without SAVE_STATISTICS
            inverse_std if save_statistics else out,
            num_rows,
            eps,
            CHANNELS=channels,
            BLOCK_CHANNELS=block_channels,
            ROWS=rows_per_program,
            SAVE_STATISTICS=save_statistics)
    return out, mean, inverse_std


class _LayerNormRows(torch.autograd.Function):
    """The kernels as an autograd function, for a forward whose gradient will be asked for."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                dtype: torch.dtype) -> torch.Tensor:
        out, mean, inverse_std = _normalise(x, weight, bias, eps, dtype, save_statistics=True)
        ctx.save_for_backward(x, weight, mean, inverse_std)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        x, weight, mean, inverse_std = ctx.saved_tensors
        channels, block_channels, rows_per_program, num_rows = _launch_sizes(x)
        programs = triton.cdiv(num_rows, rows_per_program)
        grad_x = torch.empty_like(x)
        partial_sums = torch.empty(
            programs, 2, block_channels, dtype=torch.float32, device=x.device)
        if num_rows:
            _layer_norm_rows_backward_kernel[(programs, )](
                grad_out.contiguous(),
                x,
                weight,
                mean,
                inverse_std,
                grad_x,
                partial_sums,
                num_rows,
                CHANNELS=channels,
                BLOCK_CHANNELS=block_channels,
                ROWS=rows_per_program)
        sums = partial_sums.sum(0)[:, :channels]
        grad_weight = sums[0].to(weight.dtype) if ctx.needs_input_grad[1] else None
        grad_bias = sums[1].to(weight.dtype) if ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias, None, None


def layer_norm_rows(x: torch.Tensor,
                    weight: torch.Tensor,
                    bias: torch.Tensor,
                    eps: float,
                    dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """LayerNorm of ``x`` over its last dimension, by the Triton kernels (differentiable).

    Args:
        x (Tensor): Contiguous input (..., C), float16, bfloat16 or float32 (read as float32).
        weight (Tensor): (C, ) scale, in any floating dtype (read as float32).
        bias (Tensor): (C, ) shift, likewise.
        eps (float): Added to the variance.
        dtype (torch.dtype, optional): The output's dtype; None keeps ``x``'s. Defaults to
            None.

    Returns:
        Tensor: The normalised ``x``, contiguous, of ``x``'s shape.
    """
    if not fits(x, weight, bias):
        raise ValueError(
            f'layer_norm_rows takes a contiguous input with a last dimension of 1 to '
            f'{MAX_CHANNELS}, a contiguous weight and bias of that length and of one dtype, '
            f'and Triton (available: {is_available()}); got shape {tuple(x.shape)} '
            f'(contiguous: {x.is_contiguous()}), weight {tuple(weight.shape)} {weight.dtype}, '
            f'bias {tuple(bias.shape)} {bias.dtype}. Use torch.nn.functional.layer_norm for '
            'the others.')
    return fitted_layer_norm_rows(x, weight, bias, eps, dtype)


def fitted_layer_norm_rows(x: torch.Tensor,
                           weight: torch.Tensor,
                           bias: torch.Tensor,
                           eps: float,
                           dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """:func:`layer_norm_rows` for arguments that :func:`fits` has accepted already
    (:func:`mmglnet.models.layers.layer_norm` checks them when it chooses the kernels): the
    same, without checking them again on every call."""
    dtype = dtype or x.dtype
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or bias.requires_grad):
        return _LayerNormRows.apply(x, weight, bias, eps, dtype)
    # No graph to record (inference): no statistics to keep, no autograd function to run.
    return _normalise(x, weight, bias, eps, dtype, save_statistics=False)[0]
