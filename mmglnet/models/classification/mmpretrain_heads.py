"""mmpretrain heads for GLNet classifiers.

Importing this module imports ``mmpretrain.models`` (and with it torchvision). Configs reach it
through the ``mmglnet.TokenLabelingClsHead`` builder of :mod:`.token_labeling`, which says what
to install where that import fails.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn

from .token_labeling import require_mmpretrain_models, token_labeling_logits

require_mmpretrain_models()
from mmpretrain.models.heads import ClsHead  # noqa: E402


class TokenLabelingClsHead(ClsHead):
    """Classification head of the token-labeling GLNet releases (``glnet_*_tklb``).

    Scores are ``fc(mean of tokens) + aux_weight * max over tokens of aux_fc(tokens)``, computed
    from the spatial last-stage feature after the final BatchNorm, exactly as the official model
    evaluates. Use it without a pooling neck (``neck=None``) and with the backbone's BatchNorm
    output norm (``out_indices=(3, ), out_norm_cfg=dict(type='BN')``).

    ``loss`` applies the classification loss to these scores with image-level labels; the
    official dense token-label training (MixToken and per-token targets) is not reproduced.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Channels of the last-stage feature.
        aux_weight (float): Weight of the token classifier's best score. Defaults to 0.5.
        init_cfg (dict, optional): Initialisation; None means
            ``dict(type='Normal', layer='Linear', std=0.01)`` (as ``LinearClsHead``).
            Defaults to None.
        **kwargs: ``loss``, ``topk``, ``cal_acc`` of mmpretrain's ``ClsHead``.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 aux_weight: float = 0.5,
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        if init_cfg is None:
            init_cfg = dict(type='Normal', layer='Linear', std=0.01)
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(f'num_classes={num_classes} must be a positive integer.')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.aux_weight = aux_weight
        self.fc = nn.Linear(in_channels, num_classes)
        self.aux_fc = nn.Linear(in_channels, num_classes)

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """The last-stage (N, C, H, W) feature map."""
        return feats[-1]

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """(N, num_classes) scores from the backbone's (or neck's) outputs."""
        return token_labeling_logits(self.pre_logits(feats), self.fc, self.aux_fc, self.aux_weight)
