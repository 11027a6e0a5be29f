"""Building models that contain a GLNet, and loading their weights.

Every tool builds its model here: :func:`build_model` (a config file, a Config, a preset name
or an arch dict; as mmengine's Runner builds it) and :func:`init_model` (built, weights loaded
through :mod:`mmglnet.checkpoint`, on a device, in eval mode).
"""
from .model import backbone_config, build_model, init_model, load_checkpoint, register_codebase

__all__ = ['backbone_config', 'build_model', 'init_model', 'load_checkpoint', 'register_codebase']
