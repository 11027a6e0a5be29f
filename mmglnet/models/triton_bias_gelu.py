"""The bias of the FFN's depth-wise convolution added with its GELU, as one Triton kernel.

On CUDA torch runs a convolution through cuDNN without its bias and adds the bias afterwards
(``output.add_(bias)`` in ``at::native::_convolution``), on a channels-last output a
broadcast that torch's element-wise kernels do not vectorise. In GLNet's convolutional FFN
(``1x1 conv -> x + dwconv(x) -> GELU -> 1x1 conv``) that addition and the GELU that follows
are two passes over the FFN's hidden features, its largest tensors: on an H200 at 224²,
batch 128, float16, the addition took 52 us per call on GLNet-4G's stage-3 hidden features
and the GELU, reading and writing the same bytes, 25 (docs/benchmark.md, "cuDNN's
convolutions add their bias in a kernel of their own"). The kernel here reads the
convolution's output once, adds the bias and applies the GELU in registers, and writes the
result in place: one pass where there were two, and one kernel launch where there were two.

For forwards that record no gradient (inference, frozen layers): the result is written over
the convolution's output, which nothing else holds. Eager mode only: under
:func:`torch.compile` inductor fuses the addition and the GELU itself.
:class:`mmglnet.models.layers.ConvFFN` chooses it (see
:data:`mmglnet.models.layers.TRITON_BIAS_GELU_DEVICES`) and calls :func:`fitted_bias_gelu_`.

Rounded as torch rounds under autocast: the bias to the output's dtype, their sum to it,
then the exact GELU (``x / 2 * (1 + erf(x / sqrt(2)))``) computed in float32 and rounded
once. On CUDA that is torch's own arithmetic, step by step.
"""
import torch

from .triton_rows import is_available, tile, triton

# Widest row (channels of a pixel) the kernel takes.
MAX_CHANNELS = 8192

if triton is not None:
    import triton.language as tl

    from .triton_rows import row_tile

    @triton.jit
    def _bias_gelu_kernel(x_ptr, bias_ptr, out_ptr, num_rows, CHANNELS: tl.constexpr,
                          BLOCK_CHANNELS: tl.constexpr, ROWS: tl.constexpr):
        rows, channels, row_mask, channel_mask, mask, offsets = row_tile(
            tl.program_id(0), num_rows, CHANNELS, BLOCK_CHANNELS, ROWS)
        out_dtype = out_ptr.dtype.element_ty
        x = tl.load(x_ptr + offsets, mask=mask, other=0.).to(tl.float32)
        bias = tl.load(bias_ptr + channels, mask=channel_mask, other=0.)
        bias = bias.to(out_dtype).to(tl.float32)
        # The sum rounded to the output's dtype, as torch's addition writes it.
        x = (x + bias[None, :]).to(out_dtype).to(tl.float32)
        out = x * 0.5 * (1. + tl.math.erf(x * 0.7071067811865476))
        tl.store(out_ptr + offsets, out.to(out_dtype), mask=mask)


def fits(x: torch.Tensor, bias: torch.Tensor) -> bool:
    """Whether :func:`bias_gelu_` takes ``x``: Triton is there, ``x`` is an (N, C, H, W)
    channels-last float16/bfloat16 feature map with at most :data:`MAX_CHANNELS` channels,
    and ``bias`` a contiguous (C, ) vector."""
    if triton is None or x.dim() != 4 or x.dtype not in (torch.float16, torch.bfloat16):
        return False
    channels = x.shape[1]
    return (0 < channels <= MAX_CHANNELS and bias.shape == (channels, ) and bias.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last))


def bias_gelu_(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``GELU(x + bias)`` along the channels of ``x``, written over ``x``.

    Not differentiable: for a forward that records no gradient.

    Args:
        x (Tensor): (N, C, H, W) channels-last feature map, float16 or bfloat16, that
            :func:`fits`; overwritten.
        bias (Tensor): (C, ) bias, in any floating dtype (rounded to ``x``'s first, as
            autocast casts it).

    Returns:
        Tensor: ``x``, holding the result.
    """
    if not fits(x, bias):
        raise ValueError(
            f'bias_gelu_ takes an (N, C, H, W) channels-last float16/bfloat16 tensor with 1 to '
            f'{MAX_CHANNELS} channels and a contiguous bias of C elements, and Triton '
            f'(available: {is_available()}); got shape {tuple(x.shape)} {x.dtype} (channels-'
            f'last: {x.is_contiguous(memory_format=torch.channels_last)}), bias '
            f'{tuple(bias.shape)}. Use torch.nn.functional.gelu(x + bias) for the others.')
    if torch.is_grad_enabled() and (x.requires_grad or bias.requires_grad):
        raise RuntimeError('bias_gelu_ records no gradient: call it under torch.no_grad(), or '
                           'with tensors that do not require one.')
    return fitted_bias_gelu_(x, bias)


def fitted_bias_gelu_(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """:func:`bias_gelu_` for arguments already checked (:class:`~mmglnet.models.layers.ConvFFN`
    checks them when it chooses the kernel): the same, without checking them again on every
    call."""
    channels = x.shape[1]
    num_rows = x.numel() // channels
    if num_rows:
        block_channels, rows_per_program = tile(channels)
        _bias_gelu_kernel[(triton.cdiv(num_rows, rows_per_program), )](
            x,
            bias,
            x,
            num_rows,
            CHANNELS=channels,
            BLOCK_CHANNELS=block_channels,
            ROWS=rows_per_program)
    return x
