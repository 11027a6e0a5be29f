"""Multi-head self-attention and the two plain attention blocks of GLNet.

The attention module keeps ``nn.MultiheadAttention``'s parameter names (``in_proj_weight``,
``in_proj_bias``, ``out_proj``) so official checkpoints load as they are, but computes with
:func:`torch.nn.functional.scaled_dot_product_attention`, which picks a fused kernel in training
and inference alike.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import (ConvFFN, LayerNorm, LayerNorm2d, ResidualDWConv, TokenFFN, make_drop_path,
                     make_layer_scale)


class MultiheadSelfAttention(nn.Module):
    """Self-attention over (N, L, C) tokens with fused QKV projection.

    Args:
        embed_dim (int): Token channels C.
        num_heads (int): Number of heads; must divide ``embed_dim``.
    """

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(
                f'embed_dim={embed_dim} is not divisible by num_heads={num_heads}; choose '
                'channels that are a multiple of the head dimension (head_dim).')
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as ``nn.MultiheadAttention`` plus the official trunc-normal linear."""
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.trunc_normal_(self.out_proj.weight, std=.02)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, channels = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(batch, length, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (N, heads, L, head_dim)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(batch, length, channels)
        return self.out_proj(out)

    def extra_repr(self) -> str:
        return f'embed_dim={self.embed_dim}, num_heads={self.num_heads}'


class TokenMHSABlock(nn.Module):
    """Pre-norm transformer block on (N, L, C) tokens (GLNet-STL's last stage, mode 'mha').

    Args:
        embed_dim (int): Channels.
        num_heads (int): Attention heads.
        mlp_ratio (float): FFN expansion. Defaults to 4.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        layerscale (float): Initial layer scale; <= 0 disables it. Defaults to -1.
    """

    def __init__(self,
                 embed_dim: int,
                 num_heads: int,
                 mlp_ratio: float = 4.,
                 drop_path: float = 0.,
                 layerscale: float = -1.) -> None:
        super().__init__()
        self.norm1 = LayerNorm(embed_dim, eps=1e-6)
        self.mha_op = MultiheadSelfAttention(embed_dim, num_heads)
        self.norm2 = LayerNorm(embed_dim, eps=1e-6)
        self.mlp = TokenFFN(embed_dim, mlp_ratio)
        self.drop_path = make_drop_path(drop_path)
        self.ls1 = make_layer_scale(embed_dim, layerscale, channels_first=False)
        self.ls2 = make_layer_scale(embed_dim, layerscale, channels_first=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.ls1(self.mha_op(self.norm1(x))))
        x = x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
        return x


class ChannelFirstMHSABlock(nn.Module):
    """Full self-attention block on an (N, C, H, W) grid (GLNet-4G/9G/16G, mode 'mha_nchw').

    ``x + pos_conv(x)``, then attention over all H*W tokens (LayerNorm over tokens) and a
    convolutional FFN (LayerNorm over channels). Computed in the channels-last memory layout;
    outputs are channels-last strided tensors.

    Args:
        embed_dim (int): Channels.
        num_heads (int): Attention heads.
        mlp_ratio (float): FFN expansion. Defaults to 4.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        cpe_ks (int): Kernel of the depth-wise conv position encoding; 0 disables it.
            Defaults to 0.
        mlp_dw (bool): Residual depth-wise conv inside the FFN. Defaults to False.
        layerscale (float): Initial layer scale; <= 0 disables it. Defaults to -1.
    """

    def __init__(self,
                 embed_dim: int,
                 num_heads: int,
                 mlp_ratio: float = 4.,
                 drop_path: float = 0.,
                 cpe_ks: int = 0,
                 mlp_dw: bool = False,
                 layerscale: float = -1.) -> None:
        super().__init__()
        # ``x + pos_conv(x)``; its weight and bias are the official ``pos_conv`` ones.
        self.pos_conv = ResidualDWConv(embed_dim, cpe_ks) if cpe_ks > 0 else None
        self.norm1 = LayerNorm(embed_dim, eps=1e-6)
        self.mha_op = MultiheadSelfAttention(embed_dim, num_heads)
        self.norm2 = LayerNorm2d(embed_dim)
        self.mlp = ConvFFN(embed_dim, mlp_ratio, with_dwconv=mlp_dw)
        self.drop_path = make_drop_path(drop_path)
        # The official block scales the attention branch in token layout and the FFN in NCHW.
        self.ls1 = make_layer_scale(embed_dim, layerscale, channels_first=False)
        self.ls2 = make_layer_scale(embed_dim, layerscale, channels_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In the channels-last layout the tokens below are a contiguous view of x: the
        # LayerNorms and the projections need no copies (a no-op after the first block).
        x = x.contiguous(memory_format=torch.channels_last)
        if self.pos_conv is not None:
            x = self.pos_conv(x)
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (N, L, C)
        tokens = tokens + self.drop_path(self.ls1(self.mha_op(self.norm1(tokens))))
        # A view, as unflatten would be; explicit sizes stay free in an exported graph.
        x = tokens.transpose(1, 2).reshape(batch, channels, height, width)
        x = x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
        return x
