"""The reference implementation of the GLNet blocks, to check the fast one against.

The literal forward passes that first reproduced the official model on the parity fixtures.
The production modules (:class:`~mmglnet.models.GLMixBlock`, the attention blocks, the layer
norms, the residual depth-wise and the pointwise convolutions) compute the same results with
fewer memory passes and layout changes, and do not depend on this module. The reference
classes subclass them, add no parameters or buffers and only override how the forward pass is
computed, so a model switches path in place (:func:`set_impl`) and keeps its state dict. The
tests compare both paths; the benchmark tool times the reference path as the stand-in for the
official code.

Example:
    >>> from mmglnet.models import GLNet
    >>> from mmglnet.testing import set_impl
    >>> model = set_impl(GLNet(arch='4g'), 'reference')
"""
from typing import Dict, Type

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmglnet.models import ChannelFirstMHSABlock, GLMixBlock
from mmglnet.models.layers import (DepthwiseConv2d, LayerNorm, LayerNorm2d, PointwiseConv2d,
                                   ResidualDWConv)

IMPLS = ('fast', 'reference')


class ReferenceLayerNorm(LayerNorm):
    """:class:`LayerNorm` computed by ``nn.LayerNorm`` (float32 under CUDA autocast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class ReferenceLayerNorm2d(LayerNorm2d):
    """:class:`LayerNorm2d` computed by ``F.layer_norm`` (float32 under CUDA autocast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ReferenceResidualDWConv(ResidualDWConv):
    """:class:`ResidualDWConv` computed as ``x + dwconv(x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + nn.Conv2d.forward(self, x)


class ReferenceDepthwiseConv2d(DepthwiseConv2d):
    """:class:`DepthwiseConv2d` computed by ``nn.Conv2d`` on every device."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.Conv2d.forward(self, x)


class ReferencePointwiseConv2d(PointwiseConv2d):
    """:class:`PointwiseConv2d` computed by the convolution on every device."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.Conv2d.forward(self, x)


class ReferenceGLMixBlock(GLMixBlock):
    """:class:`GLMixBlock` computed literally: torch's adaptive pooling on every device,
    normalised pixels and slots, transposed logits for the dispatching softmax, position
    encoding and mixing sums as separate additions."""

    def initial_slots(self, x: torch.Tensor) -> torch.Tensor:
        """Learned slots, or the input pooled by torch's adaptive average pooling."""
        if self.slot_init == 'param':
            return self.init_slots
        return F.adaptive_avg_pool2d(x, self.pool_size).flatten(2).transpose(1, 2)

    def slot_logits(self, pixels: torch.Tensor, init_slots: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of the normalised slots and pixel tokens, times the temperature."""
        tokens = F.normalize(pixels.transpose(1, 2), dim=-1)  # (N, L, C)
        slots = F.normalize(init_slots, dim=-1)
        return slots @ (self.slot_scale * tokens).transpose(1, 2)

    def global_mixing(self, x: torch.Tensor, init_slots: torch.Tensor) -> torch.Tensor:
        """Cluster normed pixels ``x`` (N, C, H, W) into slots, mix them, dispatch back."""
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (N, L, C)
        logits = self.slot_logits(x.flatten(2), init_slots)  # (N, S, L)
        slots = logits.softmax(dim=-1) @ tokens  # clustering: softmax over pixels
        slots = self.relation_mha(slots)
        out = logits.transpose(1, 2).softmax(dim=-1) @ slots  # dispatching: over slots
        return out.transpose(1, 2).reshape(batch, channels, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        init_slots = self.initial_slots(x)
        if self.pos_conv is not None:
            x = self.pos_conv(x)  # a ReferenceResidualDWConv: x + dwconv(x)
        normed = self.norm1(x)
        mixed = self.global_mixing(normed, init_slots)
        mixed = mixed + self.feature_conv(normed)
        x = x + self.drop_path(self.ls1(mixed))
        x = x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
        return x


class ReferenceChannelFirstMHSABlock(ChannelFirstMHSABlock):
    """:class:`ChannelFirstMHSABlock` computed in the input's memory layout, with the
    position encoding as a separate addition."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pos_conv is not None:
            x = self.pos_conv(x)  # a ReferenceResidualDWConv: x + dwconv(x)
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + self.drop_path(self.ls1(self.mha_op(self.norm1(tokens))))
        x = tokens.transpose(1, 2).reshape(batch, channels, height, width)
        x = x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
        return x


# Fast class -> reference class. Every reference class is a subclass of its fast class that
# adds no state, so swapping the class of a module keeps its parameters, buffers and hooks.
REFERENCE_CLASSES: Dict[Type[nn.Module], Type[nn.Module]] = {
    GLMixBlock: ReferenceGLMixBlock,
    ChannelFirstMHSABlock: ReferenceChannelFirstMHSABlock,
    ResidualDWConv: ReferenceResidualDWConv,
    DepthwiseConv2d: ReferenceDepthwiseConv2d,
    PointwiseConv2d: ReferencePointwiseConv2d,
    LayerNorm: ReferenceLayerNorm,
    LayerNorm2d: ReferenceLayerNorm2d,
}


def set_impl(model: nn.Module, impl: str) -> nn.Module:
    """Switch every GLNet block of ``model`` to the fast or the reference forward pass.

    The switch is made in place and keeps parameters, buffers, hooks and the state dict;
    only how the forward pass is computed changes. Both paths give the same results up to
    float rounding.

    Args:
        model (nn.Module): A GLNet, a model holding one, or a single block.
        impl (str): ``'fast'`` (the default implementation) or ``'reference'`` (the
            straightforward one that first reproduced the official model).

    Returns:
        nn.Module: ``model`` itself.
    """
    if impl not in IMPLS:
        raise ValueError(f'impl={impl!r} is not one of {IMPLS}.')
    if impl == 'reference':
        table = REFERENCE_CLASSES
    else:
        table = {ref: fast for fast, ref in REFERENCE_CLASSES.items()}
    for module in model.modules():
        new_class = table.get(type(module))
        if new_class is not None:
            module.__class__ = new_class
    return model


def get_impl(model: nn.Module) -> str:
    """``'reference'`` if any block of ``model`` uses the reference path, else ``'fast'``."""
    reference_classes = set(REFERENCE_CLASSES.values())
    if any(type(module) in reference_classes for module in model.modules()):
        return 'reference'
    return 'fast'
