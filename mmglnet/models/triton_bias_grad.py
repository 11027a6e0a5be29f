"""The gradients of GLNet's convolution biases as Triton column sums.

A bias's gradient is the sum of the output's gradient over every pixel: in the channels-last
layout, the column sums of a (pixels, channels) matrix with short rows (64 to 512 channels
in GLNet-4G). torch sums them with its generic reduction (the ``sum`` over (0, 2, 3) of
``convolution_backward``, the ``sum(0)`` of a linear layer's), which moved 350 to 800 GB/s on
GLNet-4G's shapes on an H100: in the eager 512², batch-16 float16 training step its 269
reductions took 8.8 ms of GPU work (docs/benchmark.md), reading about 4 GB of gradients, and
one more kernel cast each float16 sum to the float32 bias. Here each program sums a run of
tiles of rows (:mod:`mmglnet.models.triton_rows`) in float32 registers and writes one partial
row; torch sums the partial rows, at most :data:`MAX_PROGRAMS` of them, into the float32
gradient. The order of the additions is fixed by the sizes: the sums are deterministic.

The layer adds a detached copy of its bias in its own dtype, so that torch's backward leaves
the bias out, and passes its output through :func:`tap_bias_gradient`, whose backward gives
the bias its gradient from the output's. Eager mode only: under :func:`torch.compile`
inductor generates the reductions itself. :func:`mmglnet.models.layers.with_bias` chooses it
(see :data:`mmglnet.models.layers.TRITON_BIAS_GRAD_DEVICES`).
"""
import torch

from .triton_rows import is_available, tile, triton

# Widest row the kernel takes.
MAX_CHANNELS = 8192
# Most programs, and so partial rows, of one sum: each program takes a run of tiles. About
# eight per streaming multiprocessor of an H100 (132), so that enough loads are in flight;
# GLNet-4G's stage-1 gradients at 512², batch 16 (4096 tiles) then take runs of four.
MAX_PROGRAMS = 1024

if triton is not None:
    import triton.language as tl

    from .triton_rows import row_tile

    @triton.jit
    def _column_sums_kernel(rows_ptr, partial_sums_ptr, num_rows, tiles_per_program,
                            CHANNELS: tl.constexpr, BLOCK_CHANNELS: tl.constexpr,
                            ROWS: tl.constexpr):
        program = tl.program_id(0)
        sums = tl.zeros((ROWS, BLOCK_CHANNELS), dtype=tl.float32)
        for step in range(0, tiles_per_program):
            rows, channels, row_mask, channel_mask, mask, offsets = row_tile(
                program * tiles_per_program + step, num_rows, CHANNELS, BLOCK_CHANNELS, ROWS)
            sums += tl.load(rows_ptr + offsets, mask=mask, other=0.).to(tl.float32)
        channels = tl.arange(0, BLOCK_CHANNELS)
        tl.store(partial_sums_ptr + program.to(tl.int64) * BLOCK_CHANNELS + channels,
                 tl.sum(sums, axis=0))


def fits(rows: torch.Tensor) -> bool:
    """Whether :func:`column_sums` takes ``rows``: Triton is there and ``rows`` is contiguous,
    with a last dimension of 1 to :data:`MAX_CHANNELS`."""
    return (is_available() and rows.dim() > 0 and 0 < rows.shape[-1] <= MAX_CHANNELS
            and rows.is_contiguous())


def column_sums(rows: torch.Tensor) -> torch.Tensor:
    """Sums of a contiguous (..., C) tensor over every dimension but the last, in float32.

    Args:
        rows (Tensor): The rows, which :func:`fits`; float16, bfloat16 or float32.

    Returns:
        Tensor: (C, ) float32 sums.
    """
    if not fits(rows):
        raise ValueError(f'column_sums takes a contiguous tensor with a last dimension of 1 to '
                         f'{MAX_CHANNELS}, and Triton (available: {is_available()}); got shape '
                         f'{tuple(rows.shape)} (contiguous: {rows.is_contiguous()}). Use '
                         'torch.sum for the others.')
    return _sum_columns(rows)


def _sum_columns(rows: torch.Tensor) -> torch.Tensor:
    """:func:`column_sums` of ``rows`` that :func:`fits` has accepted already."""
    channels = rows.shape[-1]
    num_rows = rows.numel() // channels
    if num_rows == 0:
        return rows.new_zeros(channels, dtype=torch.float32)
    block_channels, rows_per_tile = tile(channels)
    tiles = triton.cdiv(num_rows, rows_per_tile)
    tiles_per_program = triton.cdiv(tiles, MAX_PROGRAMS)
    programs = triton.cdiv(tiles, tiles_per_program)
    partial_sums = torch.empty(programs, block_channels, dtype=torch.float32, device=rows.device)
    _column_sums_kernel[(programs, )](
        rows,
        partial_sums,
        num_rows,
        tiles_per_program,
        CHANNELS=channels,
        BLOCK_CHANNELS=block_channels,
        ROWS=rows_per_tile)
    return partial_sums.sum(0)[:channels]


def channel_sums(x: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """Sums of ``x`` over every dimension but ``channel_dim``, in float32: by
    :func:`column_sums` where the channels are the innermost dimension in memory (a
    channels-last feature map, tokens), by ``torch.sum`` otherwise."""
    rows = x.movedim(channel_dim, -1)
    if fits(rows):
        return _sum_columns(rows)
    channel_dim %= x.dim()
    return x.sum([dim for dim in range(x.dim()) if dim != channel_dim], dtype=torch.float32)


class _BiasGradient(torch.autograd.Function):
    """The identity on a layer's output, whose backward gives the layer's bias (which the
    layer added detached) its gradient."""

    @staticmethod
    def forward(ctx, out: torch.Tensor, bias: torch.Tensor, channel_dim: int) -> torch.Tensor:
        ctx.channel_dim = channel_dim
        ctx.bias_dtype = bias.dtype
        return out.view_as(out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        grad_bias = None
        if ctx.needs_input_grad[1]:
            grad_bias = channel_sums(grad_out, ctx.channel_dim).to(ctx.bias_dtype)
        return grad_out, grad_bias, None


def tap_bias_gradient(out: torch.Tensor, bias: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """``out`` (a view of it), whose backward gives ``bias`` the sums of ``out``'s gradient
    over every dimension but ``channel_dim`` (:func:`channel_sums`).

    For a layer that added ``bias``, detached, along ``channel_dim`` of ``out``: the gradient
    ``bias`` gets is then the one the layer would have given it. The view may not be modified
    in place (torch refuses it).

    Args:
        out (Tensor): The layer's output.
        bias (Tensor): The bias, (C, ), with C the size of ``out``'s ``channel_dim``.
        channel_dim (int): The dimension of ``out`` the bias was added along.

    Returns:
        Tensor: ``out``, unchanged.
    """
    if bias.shape != (out.shape[channel_dim], ):
        raise ValueError(f'tap_bias_gradient: a bias of shape {tuple(bias.shape)} for an output '
                         f'of shape {tuple(out.shape)} along dimension {channel_dim}; the bias '
                         'must have one element per channel.')
    return _BiasGradient.apply(out, bias, channel_dim)
