"""The GLMix block: global mixing on soft-clustered semantic slots plus local convolution.

Paper: "Revisiting the Integration of Convolution and Attention for Vision Backbone"
(NeurIPS 2024, https://arxiv.org/abs/2411.14429).

One similarity matrix between slots and pixels (cosine similarity times a learned temperature)
serves both directions: a softmax over pixels *clusters* pixels into slots, a softmax over slots
*dispatches* the slots, after self-attention among them, back to the pixels.
"""
import math
from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import MultiheadSelfAttention
from .layers import ConvFFN, LayerNorm2d, make_drop_path, make_layer_scale

SLOT_INITS = ('ada_avgpool', 'param')


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
            raise ValueError(
                f'num_slots={num_slots} cannot come from adaptive average pooling: with '
                "slot_init='ada_avgpool' it must be a square number (16, 49, 64, 100, ...) or "
                "a (rows, cols) grid such as (8, 12); slot_init='param' accepts any positive "
                'count.')
        return side, side
    grid = tuple(num_slots)
    if len(grid) != 2 or not all(isinstance(v, int) and v > 0 for v in grid):
        raise ValueError(
            f'num_slots={num_slots!r} is not a valid slot grid: give a square int such as 64 '
            'or two positive ints (rows, cols).')
    return grid


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

    def __init__(self, embed_dim: int, num_heads: int,
                 num_slots: Union[int, Sequence[int]] = 64, slot_init: str = 'ada_avgpool',
                 local_dw_ks: int = 5, mlp_ratio: float = 4., drop_path: float = 0.,
                 cpe_ks: int = 0, mlp_dw: bool = False, layerscale: float = -1.) -> None:
        super().__init__()
        if slot_init not in SLOT_INITS:
            raise ValueError(f'slot_init={slot_init!r} is not one of {SLOT_INITS}.')
        self.embed_dim = embed_dim
        self.slot_init = slot_init
        self.num_slots = slot_count(num_slots)
        # Temperature of the cosine similarity, learned; initialised to C^-0.5.
        self.slot_scale = nn.Parameter(torch.tensor(embed_dim**-0.5))
        self.pos_conv = nn.Conv2d(
            embed_dim, embed_dim, cpe_ks, padding=cpe_ks // 2,
            groups=embed_dim) if cpe_ks > 0 else None
        if slot_init == 'param':
            if self.num_slots <= 0:
                raise ValueError(f'num_slots={num_slots} must be positive.')
            self.init_slots = nn.Parameter(torch.empty(1, self.num_slots, embed_dim))
            nn.init.normal_(self.init_slots, std=.02)
            self.pool_size = None
        else:
            self.pool_size = slot_grid_size(num_slots)

        self.norm1 = LayerNorm2d(embed_dim)
        self.relation_mha = MultiheadSelfAttention(embed_dim, num_heads)
        self.feature_conv = nn.Sequential(
            nn.Conv2d(embed_dim, embed_dim, 1),
            nn.Conv2d(embed_dim, embed_dim, local_dw_ks, padding=local_dw_ks // 2,
                      groups=embed_dim),
            nn.Conv2d(embed_dim, embed_dim, 1),
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
        pooled = F.adaptive_avg_pool2d(x, self.pool_size)
        return pooled.flatten(2).transpose(1, 2)

    def slot_logits(self, tokens: torch.Tensor, init_slots: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarity (N, S, L) of slots (N, S, C) and pixel tokens (N, L, C)."""
        pixels = F.normalize(tokens, dim=-1)
        slots = F.normalize(init_slots, dim=-1)
        return slots @ (self.slot_scale * pixels).transpose(1, 2)

    def global_mixing(self, x: torch.Tensor, init_slots: torch.Tensor) -> torch.Tensor:
        """Cluster normed pixels ``x`` (N, C, H, W) into slots, mix them, dispatch back."""
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (N, L, C)
        logits = self.slot_logits(tokens, init_slots)  # (N, S, L)
        slots = logits.softmax(dim=-1) @ tokens  # clustering: softmax over pixels
        slots = self.relation_mha(slots)
        out = logits.transpose(1, 2).softmax(dim=-1) @ slots  # dispatching: over slots
        return out.transpose(1, 2).reshape(batch, channels, height, width)

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
        batch, _, height, width = x.shape
        init_slots = self.initial_slots(x)
        if self.pos_conv is not None:
            x = x + self.pos_conv(x)
        tokens = self.norm1(x).flatten(2).transpose(1, 2)
        logits = self.slot_logits(tokens, init_slots.expand(batch, -1, -1))
        return logits.softmax(dim=1).reshape(batch, -1, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        init_slots = self.initial_slots(x)
        if self.pos_conv is not None:
            x = x + self.pos_conv(x)
        normed = self.norm1(x)
        mixed = self.global_mixing(normed, init_slots)
        mixed = mixed + self.feature_conv(normed)
        x = x + self.drop_path(self.ls1(mixed))
        x = x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
        return x

    def extra_repr(self) -> str:
        return f'embed_dim={self.embed_dim}, slot_init={self.slot_init}, ' \
               f'num_slots={self.num_slots}'
