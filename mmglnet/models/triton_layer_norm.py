"""LayerNorm over the last dimension as one Triton kernel, for inference on short rows.

torch's CUDA LayerNorm gives every row of the normalised dimension to a block of threads. Its
rows are GLNet's pixels and tokens, and their length is the channel count, 64 in GLNet-4G's
first stage: there that kernel moves about 230 GB/s on an H200 (451 us per 224², batch-128
float16 LayerNorm, reading and writing 51 MB each; docs/benchmark.md), and its 61 LayerNorms
are the largest kernel of the eager forward, 5.9 of 25.1 ms. The kernel here normalises a
tile of rows per program, so every program reads and writes a few KiB of contiguous memory,
and it reads the float32 weight and bias as they are, where the float16 path casts both first
(two kernels per LayerNorm, 128 per GLNet-4G forward).

Forward only: it serves inference (no gradient needed), where the eager forward runs kernel
by kernel; training keeps torch's kernels, and under :func:`torch.compile` inductor generates
the norm itself. :func:`mmglnet.models.layers.layer_norm` chooses it (see
:data:`mmglnet.models.layers.TRITON_LAYER_NORM_DEVICES`).

Computed in float32 like torch's kernel: the mean and the biased variance of each row (two
passes over the row in registers), ``(x - mean) / sqrt(var + eps) * weight + bias``, rounded
once to the output dtype (an input in float32 is normalised before it is rounded, where
the float16 path rounds it first). Results differ from torch's float16 path by at most a unit in the
last place, as that path rounds the weight and bias to float16 first.
"""
from typing import Optional, Tuple

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # torch's CPU-only builds come without Triton
    triton = None

# Longest row the kernel takes: a row and its float32 copy stay in registers.
MAX_CHANNELS = 8192
# Elements per program: rows of up to this many channels are tiled ROWS at a time.
TILE_ELEMENTS = 4096


def is_available() -> bool:
    """Whether Triton can be imported here."""
    return triton is not None


if triton is not None:

    @triton.jit
    def _layer_norm_rows_kernel(x_ptr, weight_ptr, bias_ptr, out_ptr, num_rows, eps,
                                CHANNELS: tl.constexpr, BLOCK_CHANNELS: tl.constexpr,
                                ROWS: tl.constexpr):
        rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        channels = tl.arange(0, BLOCK_CHANNELS)
        channel_mask = channels < CHANNELS
        mask = (rows < num_rows)[:, None] & channel_mask[None, :]
        offsets = rows[:, None].to(tl.int64) * CHANNELS + channels[None, :]
        x = tl.load(x_ptr + offsets, mask=mask, other=0.).to(tl.float32)
        mean = tl.sum(x, axis=1) / CHANNELS
        centred = tl.where(mask, x - mean[:, None], 0.)
        variance = tl.sum(centred * centred, axis=1) / CHANNELS
        inverse_std = 1. / tl.sqrt(variance + eps)
        weight = tl.load(weight_ptr + channels, mask=channel_mask, other=0.).to(tl.float32)
        bias = tl.load(bias_ptr + channels, mask=channel_mask, other=0.).to(tl.float32)
        out = centred * inverse_std[:, None] * weight[None, :] + bias[None, :]
        tl.store(out_ptr + offsets, out.to(out_ptr.dtype.element_ty), mask=mask)


def tile(channels: int) -> Tuple[int, int]:
    """The kernel's tile for rows of ``channels``: (``BLOCK_CHANNELS``, the next power of two,
    and ``ROWS``, the rows per program, :data:`TILE_ELEMENTS` elements in all)."""
    block_channels = 1 << (channels - 1).bit_length()
    return block_channels, max(1, TILE_ELEMENTS // block_channels)


def fits(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor]) -> bool:
    """Whether :func:`layer_norm_rows` takes ``x``: contiguous, a last dimension of at most
    :data:`MAX_CHANNELS`, a weight and a bias of that length, and nothing that needs a
    gradient where autograd records."""
    if triton is None or weight is None or bias is None or x.dim() == 0:
        return False
    channels = x.shape[-1]
    if not 0 < channels <= MAX_CHANNELS or weight.shape != (channels, ) or bias.shape != (
            channels, ) or not (x.is_contiguous() and weight.is_contiguous()
                                and bias.is_contiguous()):
        return False
    return not (torch.is_grad_enabled() and
                (x.requires_grad or weight.requires_grad or bias.requires_grad))


def layer_norm_rows(x: torch.Tensor,
                    weight: torch.Tensor,
                    bias: torch.Tensor,
                    eps: float,
                    dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """LayerNorm of ``x`` over its last dimension, by the Triton kernel.

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
            f'{MAX_CHANNELS}, a weight and a bias of that length, nothing that needs a '
            f'gradient, and Triton (available: {is_available()}); got shape {tuple(x.shape)}, '
            f'weight {tuple(weight.shape)}, bias {tuple(bias.shape)}, requires_grad '
            f'{x.requires_grad}. Use torch.nn.functional.layer_norm for the others.')
    channels = x.shape[-1]
    block_channels, rows_per_program = tile(channels)
    num_rows = x.numel() // channels
    out = torch.empty(x.shape, dtype=dtype or x.dtype, device=x.device)
    if num_rows:
        grid = (triton.cdiv(num_rows, rows_per_program), )
        _layer_norm_rows_kernel[grid](
            x,
            weight,
            bias,
            out,
            num_rows,
            eps,
            CHANNELS=channels,
            BLOCK_CHANNELS=block_channels,
            ROWS=rows_per_program)
    return out
