"""Classification with mmpretrain: what mmpretrain lacks for the GLNet releases.

Importing this package does not import ``mmpretrain.models`` or torchvision; it registers
``mmglnet.TokenLabelingClsHead``, whose mmpretrain class is built on first use.
"""
from .token_labeling import (build_token_labeling_head, require_mmpretrain_models,
                             token_labeling_logits)

__all__ = ['build_token_labeling_head', 'require_mmpretrain_models', 'token_labeling_logits']
