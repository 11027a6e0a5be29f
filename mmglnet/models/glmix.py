"""The GLMix block: global mixing on soft-clustered semantic slots plus local convolution.

Paper: "Revisiting the Integration of Convolution and Attention for Vision Backbone"
(NeurIPS 2024, https://arxiv.org/abs/2411.14429).

One similarity matrix between slots and pixels (cosine similarity times a learned temperature)
serves both directions: a softmax over pixels *clusters* pixels into slots, a softmax over slots
*dispatches* the slots, after self-attention among them, back to the pixels.

The block computes in the channels-last memory layout, where a feature map is also a
contiguous (N, H*W, C) token matrix: the LayerNorm over channels, the slot-pixel products and
the convolutions then need no copies. Its outputs are channels-last strided tensors with the
same values. :mod:`mmglnet.testing.reference` keeps the literal implementation, to check this
one against.
"""
import math
from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn

from .attention import MultiheadSelfAttention
from .config_errors import GLNetConfigError
from .layers import (ConvFFN, DepthwiseConv2d, LayerNorm2d, PointwiseConv2d, ResidualDWConv,
                     eager_autocast_dtype, make_drop_path, make_layer_scale)
from .pooling import slot_pool2d

SLOT_INITS = ('ada_avgpool', 'param')
# The eps of F.normalize. Where the logits are float16, the norms are clamped at float16's
# smallest normal number so that their inverses stay finite (< 2**14); the logits stay
# within [-|slot_scale|, |slot_scale|] either way.
NORM_EPS = 1e-12


def slot_grid_size(num_slots: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """The (rows, cols) pooling grid that gives ``num_slots`` initial slots.

    Args:
        num_slots (int | tuple[int, int]): A square number (64 gives 8x8) or a rectangular
            grid ``(rows, cols)``.

    Returns:
        tuple[int, int]: The pooling grid.
    """
    if isinstance(num_slots, int):
        side = math.isqrt(num_slots) if num_slots > 0 else 0
        if num_slots <= 0 or side * side != num_slots:
            raise GLNetConfigError(
                f'num_slots={num_slots} cannot come from adaptive average pooling: with '
                "slot_init='ada_avgpool' it must be a square number (16, 49, 64, 100, ...) or "
                "a (rows, cols) grid such as (8, 12); slot_init='param' accepts any positive "
                'count.')
        return side, side
    grid = tuple(num_slots)
    if len(grid) != 2 or not all(isinstance(v, int) and v > 0 for v in grid):
        raise GLNetConfigError(
            f'num_slots={num_slots!r} is not a valid slot grid: give a square int such as 64 '
            'or two positive ints (rows, cols).')
    return grid


def inverse_norm(x: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """``1 / max(||x||, eps)`` over ``dim`` (kept), accumulated in float32 (float64 for a
    float64 ``x``), in ``dtype``.

    The eps is that of :func:`torch.nn.functional.normalize` (1e-12), or float16's smallest
    normal number when ``dtype`` is float16, so that the inverse is finite in ``dtype``.

    A float16/bfloat16 ``x`` whose own dtype is asked for (the pixels under autocast) is normed
    in that dtype, the kernels accumulating in float32: its backward then stays in 16 bits,
    where the norm of a float32 copy would write three float32 tensors of ``x``'s size and
    cast the gradient back (1.9 GB per GLNet-4G training step at 512², batch 16).
    """
    eps = torch.finfo(torch.float16).tiny if dtype == torch.float16 else NORM_EPS
    if x.dtype == dtype and dtype in (torch.float16, torch.bfloat16):
        # CUDA's autocast (not the CPU's) runs a norm without a dtype and ``reciprocal`` in
        # float32: the explicit dtype and the in-place reciprocal keep the 16 bits, as the
        # (N, S, L) logits that this factor multiplies.
        norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=dtype)
        return norm.clamp_min(eps).reciprocal_()
    accumulate = torch.promote_types(x.dtype, torch.float32)
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=accumulate)
    return norm.clamp_min(eps).reciprocal().to(dtype)


def softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax in ``x``'s dtype, also where autocast would run it in float32 (CUDA).

    The kernels accumulate in float32 whatever the dtype, and the slot logits lie within
    +-|slot_scale|, so a float16 softmax is safe here; it saves casting the (N, S, L) logits
    up and the weights back down for the products that follow. Autocast runs a softmax given
    a dtype in that dtype, so no autocast-free region (a few microseconds of host time per
    call) is needed. Under :func:`torch.compile` it is the plain softmax (see
    :func:`~mmglnet.models.layers.eager_autocast_dtype`).
    """
    if eager_autocast_dtype(x.device.type) is None:
        return x.softmax(dim)
    return x.softmax(dim, dtype=x.dtype)


def slot_count(num_slots: Union[int, Sequence[int]]) -> int:
    """Total number of slots for an int count or a (rows, cols) grid."""
    if isinstance(num_slots, int):
        return num_slots
    rows, cols = num_slots
    return rows * cols


class GLMixBlock(nn.Module):
    """GLMix block on an (N, C, H, W) grid.

    ``x = x + pos_conv(x)``; ``x = x + global(norm1(x)) + local(norm1(x))``;
    ``x = x + ffn(norm2(x))``, with layer scale and drop path on both residual branches.
    Initial slots are pooled from the block input, before the position encoding and the norm.
    The block computes in the channels-last memory layout (it converts its input once, the
    first block of a network only); its output is channels-last strided.

    Args:
        embed_dim (int): Channels C.
        num_heads (int): Heads of the self-attention among slots.
        num_slots (int | tuple[int, int]): Number of slots, or the pooling grid. Defaults to 64.
        slot_init (str): ``'ada_avgpool'`` (pool the input) or ``'param'`` (learned slots).
            Defaults to ``'ada_avgpool'``.
        local_dw_ks (int): Kernel of the local depth-wise conv; 0 replaces the local branch by
            the identity, as the official code does. Defaults to 5.
        mlp_ratio (float): FFN expansion. Defaults to 4.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        cpe_ks (int): Kernel of the conv position encoding; 0 disables it. Defaults to 0.
        mlp_dw (bool): Residual depth-wise conv in the FFN. Defaults to False.
        layerscale (float): Initial layer scale; <= 0 disables it. Defaults to -1.
    """

    def __init__(self,
                 embed_dim: int,
                 num_heads: int,
                 num_slots: Union[int, Sequence[int]] = 64,
                 slot_init: str = 'ada_avgpool',
                 local_dw_ks: int = 5,
                 mlp_ratio: float = 4.,
                 drop_path: float = 0.,
                 cpe_ks: int = 0,
                 mlp_dw: bool = False,
                 layerscale: float = -1.) -> None:
        super().__init__()
        if slot_init not in SLOT_INITS:
            raise GLNetConfigError(f'slot_init={slot_init!r} is not one of {SLOT_INITS}.')
        self.embed_dim = embed_dim
        self.slot_init = slot_init
        self.num_slots = slot_count(num_slots)
        # Temperature of the cosine similarity, learned; initialised to C^-0.5.
        self.slot_scale = nn.Parameter(torch.tensor(embed_dim**-0.5))
        # ``x + pos_conv(x)``; its weight and bias are the official ``pos_conv`` ones.
        self.pos_conv = ResidualDWConv(embed_dim, cpe_ks) if cpe_ks > 0 else None
        if slot_init == 'param':
            if self.num_slots <= 0:
                raise GLNetConfigError(f'num_slots={num_slots} must be positive.')
            self.init_slots = nn.Parameter(torch.empty(1, self.num_slots, embed_dim))
            nn.init.normal_(self.init_slots, std=.02)
            self.pool_size = None
        else:
            self.pool_size = slot_grid_size(num_slots)

        self.norm1 = LayerNorm2d(embed_dim)
        self.relation_mha = MultiheadSelfAttention(embed_dim, num_heads)
        self.feature_conv = nn.Sequential(
            PointwiseConv2d(embed_dim, embed_dim),
            DepthwiseConv2d(embed_dim, local_dw_ks),
            PointwiseConv2d(embed_dim, embed_dim),
        ) if local_dw_ks > 0 else nn.Identity()  # the official adds the normed input at 0
        self.norm2 = LayerNorm2d(embed_dim)
        self.mlp = ConvFFN(embed_dim, mlp_ratio, with_dwconv=mlp_dw)
        self.drop_path = make_drop_path(drop_path)
        self.ls1 = make_layer_scale(embed_dim, layerscale, channels_first=True)
        self.ls2 = make_layer_scale(embed_dim, layerscale, channels_first=True)

    def initial_slots(self, x: torch.Tensor) -> torch.Tensor:
        """Initial slots (N or 1, S, C) for the block input ``x`` (N, C, H, W)."""
        if self.slot_init == 'param':
            return self.init_slots
        # The fastest kernel for the device, or an exportable form during ONNX export.
        pooled = slot_pool2d(x, self.pool_size)
        return pooled.flatten(2).transpose(1, 2)

    def slot_logits(self, pixels: torch.Tensor, init_slots: torch.Tensor) -> torch.Tensor:
        """``slot_scale`` x cosine similarity (N, S, L) of slots and ``pixels`` (N, C, L).

        The temperature and the slot norms are folded into the (small) slot matrix and the
        pixel norms applied to the (N, S, L) product, so the pixels are read once by the
        norm and once by the product and never rewritten normalised.
        """
        slot_weights = self.slot_scale * inverse_norm(
            init_slots, -1, torch.promote_types(init_slots.dtype, torch.float32))
        slots = (init_slots * slot_weights).to(init_slots.dtype)
        logits = torch.matmul(slots, pixels)  # (N, S, L)
        return logits * inverse_norm(pixels, 1, logits.dtype)

    def _mix(self, normed: torch.Tensor, init_slots: torch.Tensor,
             local: torch.Tensor) -> torch.Tensor:
        """Global mixing of ``normed`` (N, C, H, W), plus ``local`` (same shape).

        Both softmaxes read the same (N, S, L) logits; no transposed copy is made in the
        channels-last layout, where the pixels are a contiguous (N, L, C) matrix and the
        output, with ``local`` added by the product itself, comes out channels-last.
        """
        batch, channels, height, width = normed.shape
        pixels = normed.flatten(2)  # (N, C, L): a view in either memory layout
        logits = self.slot_logits(pixels, init_slots)  # (N, S, L)
        # Clustering: softmax over pixels.
        slots = torch.matmul(softmax(logits, -1), pixels.transpose(1, 2))  # (N, S, C)
        slots = self.relation_mha(slots)
        # Dispatching: softmax over slots, of the same logits.
        weights = softmax(logits, 1).transpose(1, 2)  # (N, L, S), a view
        out = torch.baddbmm(local.flatten(2).transpose(1, 2), weights, slots)
        # A view (reshape splits L without copying); explicit sizes keep an exported graph
        # free of the traced height and width (unflatten's would be constants).
        return out.transpose(1, 2).reshape(batch, channels, height, width)

    def _position_encoding(self, x: torch.Tensor) -> torch.Tensor:
        """``x + pos_conv(x)``; ``x`` if there is no position conv."""
        return x if self.pos_conv is None else self.pos_conv(x)

    @torch.no_grad()
    def dispatch_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Soft assignment of every pixel to the slots, for the block input ``x``.

        Recomputes, outside the normal forward, the dispatching weights this block uses:
        the softmax over slots of the slot-pixel logits.

        Args:
            x (Tensor): The block's input, (N, C, H, W).

        Returns:
            Tensor: (N, S, H, W) weights that sum to 1 over the S slots at every pixel.
        """
        height, width = x.shape[2:]
        init_slots = self.initial_slots(x)
        pixels = self.norm1(self._position_encoding(x)).flatten(2)
        logits = self.slot_logits(pixels, init_slots)
        return logits.softmax(dim=1).unflatten(2, (height, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A no-op after the first block: convolutions keep the layout.
        x = x.contiguous(memory_format=torch.channels_last)
        init_slots = self.initial_slots(x)
        x = self._position_encoding(x)
        normed = self.norm1(x)
        mixed = self._mix(normed, init_slots, self.feature_conv(normed))
        x = x + self.drop_path(self.ls1(mixed))
        x = x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
        return x

    def extra_repr(self) -> str:
        return f'embed_dim={self.embed_dim}, slot_init={self.slot_init}, ' \
               f'num_slots={self.num_slots}'
