"""Small layers shared by the GLMix and attention blocks.

Parameter names and shapes follow the official GLNet release so that its checkpoints load
without renaming (https://arxiv.org/abs/2411.14429).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of an (N, C, H, W) tensor.

    Args:
        num_channels (int): Number of channels C.
        eps (float): Added to the variance. Defaults to 1e-6.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ResidualDWConv(nn.Conv2d):
    """Depth-wise convolution with an identity shortcut: ``x + dwconv(x)``.

    Args:
        channels (int): Number of channels.
        kernel_size (int): Kernel size. Defaults to 3.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


class LayerScale(nn.Module):
    """Per-channel learnable scaling, as in CaiT.

    Args:
        channels (int): Number of channels.
        init_value (float): Initial value of every scale.
        channels_first (bool): If True, scales an (N, C, H, W) tensor (parameter of shape
            (1, C, 1, 1)); otherwise a channels-last tensor (parameter of shape (C,)).
    """

    def __init__(self, channels: int, init_value: float, channels_first: bool) -> None:
        super().__init__()
        shape = (1, channels, 1, 1) if channels_first else (channels, )
        self.gamma = nn.Parameter(torch.full(shape, float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * x


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample during training.

    mmcv has the same brick, but mmglnet's core depends on torch and mmengine only.

    Args:
        drop_prob (float): Probability of dropping a sample's branch. Defaults to 0.
    """

    def __init__(self, drop_prob: float = 0.) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0. or not self.training:
            return x
        keep_prob = 1 - self.drop_prob
        mask_shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
        mask = x.new_empty(mask_shape).bernoulli_(keep_prob)
        return x * mask / keep_prob

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


def make_layer_scale(channels: int, init_value: float, channels_first: bool) -> nn.Module:
    """A :class:`LayerScale` if ``init_value > 0``, else an identity (layer scale off)."""
    if init_value > 0:
        return LayerScale(channels, init_value, channels_first)
    return nn.Identity()


def make_drop_path(drop_prob: float) -> nn.Module:
    """A :class:`DropPath` if ``drop_prob > 0``, else an identity."""
    return DropPath(drop_prob) if drop_prob > 0 else nn.Identity()


class ConvFFN(nn.Sequential):
    """Feed-forward network on an (N, C, H, W) grid.

    ``1x1 conv -> [residual 3x3 depth-wise conv] -> GELU -> 1x1 conv``. Indices 0..3 match the
    official ``mlp.{0,1,3}`` keys (index 1 is an identity without the depth-wise conv).

    Args:
        channels (int): Input and output channels.
        mlp_ratio (float): Hidden channels = ``int(mlp_ratio * channels)``.
        with_dwconv (bool): Add the residual depth-wise conv. Defaults to False.
    """

    def __init__(self, channels: int, mlp_ratio: float, with_dwconv: bool = False) -> None:
        hidden = int(mlp_ratio * channels)
        super().__init__(
            nn.Conv2d(channels, hidden, kernel_size=1),
            ResidualDWConv(hidden, 3) if with_dwconv else nn.Identity(),
            nn.GELU(),
            nn.Conv2d(hidden, channels, kernel_size=1),
        )


class TokenFFN(nn.Sequential):
    """Feed-forward network on (N, L, C) tokens: ``Linear -> GELU -> Linear``.

    Args:
        channels (int): Input and output channels.
        mlp_ratio (float): Hidden channels = ``int(mlp_ratio * channels)``.
    """

    def __init__(self, channels: int, mlp_ratio: float) -> None:
        hidden = int(mlp_ratio * channels)
        super().__init__(
            nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))


NORM_TYPES = ('LN2d', 'LN', 'BN', 'BN2d', 'SyncBN', 'GN')


def build_channel_norm(cfg: dict, channels: int) -> nn.Module:
    """Build a norm layer for (N, C, H, W) features from an mm-style config.

    Args:
        cfg (dict): ``type`` is one of ``'LN2d'`` / ``'LN'`` (LayerNorm over channels),
            ``'BN'`` / ``'BN2d'``, ``'SyncBN'``, ``'GN'`` (needs ``num_groups``); other keys go
            to the layer (``eps``, ``momentum``...). ``requires_grad=False`` freezes it.
        channels (int): Number of channels.

    Returns:
        nn.Module: The norm layer.
    """
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'A norm config must be a dict with a "type" key, got {cfg!r}.')
    cfg = dict(cfg)
    norm_type = cfg.pop('type')
    requires_grad = cfg.pop('requires_grad', True)
    if norm_type in ('LN2d', 'LN'):
        layer = LayerNorm2d(channels, **cfg)
    elif norm_type in ('BN', 'BN2d'):
        layer = nn.BatchNorm2d(channels, **cfg)
    elif norm_type == 'SyncBN':
        layer = nn.SyncBatchNorm(channels, **cfg)
    elif norm_type == 'GN':
        if 'num_groups' not in cfg:
            raise ValueError(f'GN needs num_groups, got {cfg!r}.')
        layer = nn.GroupNorm(num_channels=channels, **cfg)
    else:
        raise ValueError(f'Unknown norm type {norm_type!r}; choose one of {NORM_TYPES}.')
    for param in layer.parameters():
        param.requires_grad = requires_grad
    return layer
