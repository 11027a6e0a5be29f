"""mmglnet: GLNet (GLMix, NeurIPS 2024) backbones for the OpenMMLab 2.0 codebases.

Importing mmglnet registers ``mmglnet.GLNet`` in mmengine's model registry tree and makes
mmengine's checkpoint loading safe under torch >= 2.6 (see :mod:`mmglnet.checkpoint`).
"""
from .checkpoint import allow_mmengine_types, register_safe_local_loader
from .models import GLNet
from .registry import MODELS
from .version import __version__

allow_mmengine_types()
register_safe_local_loader()

__all__ = ['GLNet', 'MODELS', '__version__']
