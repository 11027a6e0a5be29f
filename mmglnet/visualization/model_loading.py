"""Build any model that contains a GLNet (from a config or a preset name) and load weights."""
import os.path as osp
import warnings
from importlib import import_module
from typing import Optional, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger

from mmglnet.checkpoint import (load_pretrained_backbone, model_state_from_checkpoint,
                                read_checkpoint_tensors)
from mmglnet.models import ARCH_SETTINGS, GLNet
from .slot_maps import find_glnet


def build_model(config_or_preset: Union[str, Config],
                cfg_options: Optional[dict] = None) -> nn.Module:
    """Build a model from a config (classification, detection, segmentation) or a preset.

    Args:
        config_or_preset (str | Config): A config file or object whose model contains a GLNet
            backbone, or a GLNet preset name (``'4g'``, ``'stl'``, ...) for the bare backbone.
        cfg_options (dict, optional): Overrides merged into the config. Defaults to None.

    Returns:
        nn.Module: The model (randomly initialised; nothing is loaded).
    """
    if isinstance(config_or_preset, str) and config_or_preset in ARCH_SETTINGS:
        return GLNet(arch=config_or_preset, out_norm_cfg=None)
    if isinstance(config_or_preset, str):
        if not osp.isfile(config_or_preset):
            raise FileNotFoundError(
                f'{config_or_preset!r} is neither a config file nor a GLNet preset; presets '
                f'are {sorted(ARCH_SETTINGS)}.')
        cfg = Config.fromfile(config_or_preset)
    elif isinstance(config_or_preset, Config):
        cfg = config_or_preset
    else:
        raise TypeError(f'Expected a config path, a Config or a preset name, got '
                        f'{type(config_or_preset).__name__}.')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'model' not in cfg:
        raise KeyError(f'The config {getattr(cfg, "filename", "")!r} has no `model` entry.')
    model_cfg = cfg.model.copy()
    # Runner.from_cfg adds a top-level data_preprocessor (mmpretrain configs) to the model.
    if cfg.get('data_preprocessor') is not None and isinstance(model_cfg, dict):
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    scope = cfg.get('default_scope', None)
    if scope is not None:
        from mmengine.registry import init_default_scope
        init_default_scope(scope)
        registry = import_module(f'{scope}.registry').MODELS
    else:
        from mmengine.registry import MODELS as registry
    return registry.build(model_cfg)


def load_weights(model: nn.Module, checkpoint: str) -> None:
    """Load an mm checkpoint into ``model``, or an official release file into its GLNet.

    Files are read with :func:`mmglnet.checkpoint.read_checkpoint_tensors` (tensors only,
    nothing executed). An mm checkpoint (``state_dict``) loads into the whole model, or into
    the GLNet's keys (``backbone.`` prefix) when the model is a bare GLNet; an official file
    (``model``/``model_ema``) loads into the GLNet, mapped by
    :func:`mmglnet.checkpoint.filter_official_checkpoint`. Raises if no weight matches or a
    tensor the slot maps depend on (stem, transitions, stages) is not loaded.

    Args:
        model (nn.Module): The model from :func:`build_model`.
        checkpoint (str): Local checkpoint file.
    """
    logger = MMLogger.get_current_instance()
    glnet = find_glnet(model)
    content = read_checkpoint_tensors(checkpoint)
    if model is glnet or not (isinstance(content, dict) and 'state_dict' in content):
        # Raises unless every stem, transition and stage tensor is loaded.
        load_pretrained_backbone(glnet, checkpoint, weights_key=glnet.weights_key)
        return
    state = model_state_from_checkpoint(content)
    own = model.state_dict()
    matched = {k: v.to(own[k].dtype) for k, v in state.items()
               if k in own and v.shape == own[k].shape}
    if not matched:
        raise RuntimeError(
            f'No weight of {checkpoint!r} matches the model ({type(model).__name__}): its keys '
            f'look like {sorted(state)[:3]}, the model\'s like {sorted(own)[:3]}. Was the '
            'checkpoint trained with this config?')
    model.load_state_dict(matched, strict=False)
    missing = sorted(set(own) - set(matched))
    prefix = next(name for name, module in model.named_modules() if module is glnet)
    _check_slot_weights_loaded(missing, prefix + '.', checkpoint)
    unexpected = sorted(set(state) - set(matched))
    logger.info(f'Loaded {len(matched)}/{len(own)} tensors from {checkpoint}.')
    for title, keys in (('missing', missing), ('unexpected or mismatched', unexpected)):
        if keys:
            more = f' ... and {len(keys) - 10} more' if len(keys) > 10 else ''
            logger.warning(f'{len(keys)} {title} key(s) loading {checkpoint}: '
                           f'{", ".join(keys[:10])}{more}')


def _check_slot_weights_loaded(missing, prefix: str, checkpoint: str) -> None:
    """Raise if a tensor the slot maps depend on (stem, transitions, stages) was not loaded."""
    needed = tuple(prefix + name for name in ('downsample_layers.', 'stages.'))
    absent = sorted(key for key in missing if key.startswith(needed))
    if absent:
        raise RuntimeError(
            f'{checkpoint!r} does not hold {len(absent)} GLNet tensor(s) the slot maps depend '
            f'on (e.g. {absent[:3]}), or holds them with other shapes: it was probably trained '
            'with another arch or config. Give the matching preset or config.')


def init_glnet_model(config_or_preset: Union[str, Config], checkpoint: Optional[str] = None,
                     device: Union[str, torch.device] = 'cpu',
                     cfg_options: Optional[dict] = None) -> nn.Module:
    """A model containing a GLNet, with weights, on ``device``, in eval mode.

    Args:
        config_or_preset (str | Config): See :func:`build_model`.
        checkpoint (str, optional): See :func:`load_weights`. Without one the weights are
            random and a warning says so. Defaults to None.
        device (str | torch.device): Device. Defaults to ``'cpu'``.
        cfg_options (dict, optional): Config overrides. Defaults to None.

    Returns:
        nn.Module: The model.
    """
    model = build_model(config_or_preset, cfg_options)
    find_glnet(model)
    if checkpoint is None:
        message = ('No checkpoint given: the GLNet has random weights, so its slot maps show '
                   'the random initialisation, not learned semantics.')
        warnings.warn(message)
    else:
        load_weights(model, checkpoint)
    return model.to(device).eval()
