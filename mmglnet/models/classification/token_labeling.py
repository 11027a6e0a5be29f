"""Token-labeling evaluation output of the official ``glnet_4g_tklb`` / ``glnet_9g_tklb``.

The token-labeling releases add a linear ``tklb_aux_head`` applied to every token of the last
stage after the final BatchNorm; they evaluate as

    ``head(mean of tokens) + 0.5 * max over tokens of tklb_aux_head(tokens)``.

This module holds that computation in plain torch and registers ``mmglnet.TokenLabelingClsHead``
for mmpretrain configs. mmpretrain's models import torchvision, so importing this module does not
import them: the mmpretrain head class is only built when a config asks for it.
"""
from typing import Callable

import torch

from mmglnet.registry import MODELS

CLS_INSTALL_HINT = 'pip install -e .[cls]'


def _torchvision_hint() -> str:
    """The torchvision release paired with the installed torch (torch 2.x -> torchvision 0.x+15)."""
    version = torch.__version__.split('+')[0].split('.')
    if len(version) >= 2 and version[0] == '2' and version[1].isdigit():
        return f'torchvision==0.{int(version[1]) + 15}.*'
    return 'torchvision==<the release paired with your torch>'


def require_mmpretrain_models():
    """Import ``mmpretrain.models``, or explain what is missing.

    Returns:
        module: ``mmpretrain.models``.

    Raises:
        ImportError: mmpretrain or one of its dependencies (usually torchvision) cannot be
            imported; the message says what to install.
    """
    try:
        import mmpretrain.models
    except ImportError as error:
        raise ImportError(
            "mmglnet's classification (mmpretrain configs, TokenLabelingClsHead) needs "
            f"mmpretrain's models, which failed to import: {error}. mmpretrain's models need "
            f'torchvision matching your torch {torch.__version__}: install it with pip install '
            f'"{_torchvision_hint()}" (see https://pytorch.org/get-started/previous-versions/) '
            f'or {CLS_INSTALL_HINT}. Detection and segmentation do not need it.') from error
    return mmpretrain.models


def token_labeling_logits(feats: torch.Tensor,
                          fc: Callable[[torch.Tensor], torch.Tensor],
                          aux_fc: Callable[[torch.Tensor], torch.Tensor],
                          aux_weight: float = 0.5) -> torch.Tensor:
    """Class scores of a token-labeling GLNet from its normalised last-stage feature map.

    Args:
        feats (torch.Tensor): (N, C, H, W) last-stage features after the final BatchNorm.
        fc (callable): The main classifier (``nn.Linear(C, num_classes)``), applied to the
            mean of the tokens.
        aux_fc (callable): The token classifier (``nn.Linear(C, num_classes)``), applied to
            every token.
        aux_weight (float): Weight of the best token's scores. Defaults to 0.5 (official).

    Returns:
        torch.Tensor: (N, num_classes) scores.
    """
    if not torch.is_tensor(feats) or feats.dim() != 4:
        shape = tuple(feats.shape) if torch.is_tensor(feats) else type(feats).__name__
        raise ValueError(
            f'Token-labeling scores need the (N, C, H, W) last-stage feature map, got {shape}. '
            'Remove the pooling neck (neck=None) in front of TokenLabelingClsHead.')
    tokens = feats.flatten(2).transpose(1, 2)
    return fc(tokens.mean(dim=1)) + aux_weight * aux_fc(tokens).amax(dim=1)


@MODELS.register_module(name='TokenLabelingClsHead')
def build_token_labeling_head(**kwargs):
    """Build :class:`~mmglnet.models.classification.mmpretrain_heads.TokenLabelingClsHead`.

    Registered as ``mmglnet.TokenLabelingClsHead``; imports mmpretrain's models on first use
    and raises a clear :class:`ImportError` where they cannot be imported.
    """
    require_mmpretrain_models()
    from .mmpretrain_heads import TokenLabelingClsHead
    return TokenLabelingClsHead(**kwargs)
