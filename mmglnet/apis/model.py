"""Building a model that contains a GLNet, and loading its weights: the one way in.

:func:`build_model` builds what mmengine's Runner builds from a config (the config's
``default_scope`` picks mmdet's, mmseg's or mmpretrain's registry; a top-level
``data_preprocessor`` completes the model's), or a bare GLNet backbone from a preset name or an
arch dict. :func:`init_model` adds weights, read by the loader of :mod:`mmglnet.checkpoint`, and
returns the model ready for inference on a device.
"""
import copy
import importlib
import os.path as osp
import warnings
from typing import Optional, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger

from mmglnet.checkpoint import (OFFICIAL_WEIGHT_ENTRIES, check_checkpoint_fits_model,
                                load_pretrained_backbone, model_state_from_checkpoint,
                                read_checkpoint_tensors)
from mmglnet.models import ARCH_SETTINGS, GLNet
from mmglnet.utils.input_files import load_config

# default_scope -> (module with register_all_modules, pip package)
CODEBASES = {
    'mmdet': ('mmdet.utils', 'mmdet'),
    'mmseg': ('mmseg.utils', 'mmsegmentation'),
    'mmpretrain': ('mmpretrain.utils', 'mmpretrain'),
}


def register_codebase(cfg: Config) -> Optional[str]:
    """Register the modules of the codebase named by the config's ``default_scope``.

    Imports only that codebase (``mmdet``, ``mmseg`` or ``mmpretrain``) and makes its scope the
    default one, as mmengine's Runner does. Other scopes (or none) are left to mmengine.

    Args:
        cfg (Config): The config.

    Returns:
        str | None: The scope.

    Raises:
        ImportError: When the codebase of the scope is not installed; the message names the
            package to install.
    """
    scope = cfg.get('default_scope')
    if scope in CODEBASES:
        module_name, package = CODEBASES[scope]
        try:
            module = importlib.import_module(module_name)
            module.register_all_modules(init_default_scope=False)
        except ImportError as error:
            raise ImportError(
                f"The config's default_scope is {scope!r}: {package} and what it imports must "
                f'be installed, but importing it failed ({error}). Install what is missing '
                '(pip install -e .[det_seg] or .[cls], and torchvision for mmpretrain; see the '
                'README, "Installation").') from error
    if scope is not None:
        from mmengine.registry import init_default_scope
        init_default_scope(scope)
    return scope


def backbone_config(arch: Union[str, dict]) -> Config:
    """The config of a bare GLNet backbone: raw stage outputs, as the official model's.

    Args:
        arch (str | dict): A preset name (``'stl'``, ``'stl_paramslot'``, ``'4g'``, ``'9g'``,
            ``'16g'``) or a dict of the official constructor keywords.

    Returns:
        Config: ``model=dict(type='mmglnet.GLNet', arch=arch, out_norm_cfg=None)``.
    """
    return Config(
        dict(model=dict(type='mmglnet.GLNet', arch=copy.deepcopy(arch), out_norm_cfg=None)))


def _to_config(config_or_preset: Union[str, dict, Config]) -> Config:
    if isinstance(config_or_preset, Config):
        return copy.deepcopy(config_or_preset)
    if isinstance(config_or_preset, dict) or (isinstance(config_or_preset, str)
                                              and config_or_preset in ARCH_SETTINGS):
        return backbone_config(config_or_preset)
    if isinstance(config_or_preset, str):
        if not osp.isfile(config_or_preset):
            raise FileNotFoundError(
                f'{config_or_preset!r} is neither a config file nor a GLNet preset; give the '
                f'path of a config (e.g. one of configs/*/*.py) or one of the presets '
                f'{sorted(ARCH_SETTINGS)}.')
        return load_config(config_or_preset)
    raise TypeError(
        f'Expected a config file, an mmengine Config, a GLNet preset name or an arch dict, got '
        f'{type(config_or_preset).__name__}.')


def build_model(config_or_preset: Union[str, dict, Config],
                cfg_options: Optional[dict] = None) -> nn.Module:
    """Build the model of a config, or a bare GLNet, as mmengine's Runner builds it.

    The config's ``default_scope`` (``'mmdet'``, ``'mmseg'``, ``'mmpretrain'``) picks the
    registry (see :func:`register_codebase`), and a top-level ``data_preprocessor`` (as
    mmpretrain's configs have) completes the model's own, as in ``Runner.from_cfg``. Nothing is
    loaded and ``init_weights`` is not called: the weights are those the constructors give,
    and ``init_cfg`` files (pretrained backbones) need not exist. The model is returned in
    training mode, as the Runner has it.

    A preset name or an arch dict stands for the config of :func:`backbone_config`: the bare
    backbone with its raw stage outputs (``out_norm_cfg=None``), as the official model has them.

    Examples:
        >>> from mmglnet.apis import build_model
        >>> segmentor = build_model('configs/segmentation/upernet_glnet4g_160k.py')
        >>> backbone = build_model('4g')
        >>> last_stage = build_model('4g', cfg_options={'model.out_indices': (3, )})

    Args:
        config_or_preset (str | dict | Config): A config file or a loaded config whose
            ``model`` is a detector, segmentor, classifier or backbone; a GLNet preset name
            (``'stl'``, ``'stl_paramslot'``, ``'4g'``, ``'9g'``, ``'16g'``); or an arch dict
            (the official constructor keywords) for the bare backbone. A given Config is
            copied, never changed.
        cfg_options (dict, optional): Settings merged into the config as with
            ``--cfg-options`` (``{'model.backbone.arch': '9g'}``; for a preset or arch dict,
            ``{'model.out_indices': (3, )}``). Defaults to None.

    Returns:
        nn.Module: The model, randomly initialised, in training mode.

    Raises:
        FileNotFoundError: When a string is neither a config file nor a preset.
        KeyError: When the config has no ``model``.
    """
    cfg = _to_config(config_or_preset)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('model') is None:
        raise KeyError(f'The config {cfg.filename or ""!r} has no `model`; give a config '
                       'that defines one (a detection, segmentation or classification config).')
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None and isinstance(model_cfg, dict):
        model_cfg.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    register_codebase(cfg)
    # mmengine's root registry: the default scope (set above) picks the codebase's child
    # registry, and 'mmglnet.' names resolve from any scope, as in the Runner.
    from mmengine.registry import MODELS
    return MODELS.build(model_cfg)


def _glnets(model: nn.Module) -> list:
    return [module for module in model.modules() if isinstance(module, GLNet)]


def load_checkpoint(model: nn.Module, checkpoint: str, allow_partial: bool = False) -> dict:
    """Load a checkpoint into a model built by :func:`build_model`, refusing wrong weights.

    The file is read with :func:`mmglnet.checkpoint.read_checkpoint_tensors` (tensors only;
    nothing in it is executed). An mm checkpoint (``state_dict``) must fit the whole model
    (:func:`mmglnet.checkpoint.check_checkpoint_fits_model`): every weight, with its shape,
    and no other. An official release file (``model``/``model_ema``) loads into the model's
    GLNet (:func:`mmglnet.checkpoint.load_pretrained_backbone`, with the backbone's
    ``weights_key``); the rest of a whole model keeps its initialisation, and a warning says
    so. A bare GLNet takes either kind.

    Args:
        model (nn.Module): The model.
        checkpoint (str): A local checkpoint file.
        allow_partial (bool): Load the matching weights even when some are missing, have
            another shape or the file holds others (each listed in a warning). Defaults to
            False: such a file raises.

    Returns:
        dict: Key lists: ``loaded``, ``missing`` (weights of the model not in the file),
        ``unexpected`` (in the file, not in the model) and ``mismatched`` (another shape).

    Raises:
        CheckpointMismatchError: When the weights do not fit and ``allow_partial`` is False.
        ValueError: When the model contains no GLNet and the file is an official release.
    """
    logger = MMLogger.get_current_instance()
    content = read_checkpoint_tensors(checkpoint)
    official = isinstance(content, dict) and 'state_dict' not in content and any(
        key in content for key in OFFICIAL_WEIGHT_ENTRIES)
    glnets = _glnets(model)
    if isinstance(model, GLNet) or (official and glnets):
        backbone = model if isinstance(model, GLNet) else glnets[0]
        report = load_pretrained_backbone(
            backbone, checkpoint, weights_key=backbone.weights_key, allow_partial=allow_partial)
        if backbone is not model:
            prefix = next(name for name, module in model.named_modules() if module is backbone)
            logger.warning(
                f'{checkpoint} is an official GLNet release file: it initialised the backbone '
                f'({prefix}) only; the other parts of {type(model).__name__} keep their '
                'random initialisation. For a whole model, give a checkpoint of this config.')
        return {key: report[key] for key in ('loaded', 'missing', 'unexpected', 'mismatched')}
    if official:
        raise ValueError(
            f'{checkpoint} is an official GLNet release file, but the model '
            f'({type(model).__name__}) contains no GLNet to load it into. Give a config whose '
            "backbone is type='mmglnet.GLNet', or a preset such as '4g'.")
    if not allow_partial:
        check_checkpoint_fits_model(model, content, checkpoint)  # raises naming what differs
    state = model_state_from_checkpoint(content)
    own = model.state_dict()
    loadable = {
        k: v.to(own[k].dtype) if v.is_floating_point() else v
        for k, v in state.items() if k in own and v.shape == own[k].shape
    }
    model.load_state_dict(loadable, strict=False)
    report = dict(
        loaded=sorted(loadable),
        missing=sorted(set(own) - set(state)),
        unexpected=sorted(set(state) - set(own)),
        mismatched=sorted(k for k in state if k in own and k not in loadable))
    logger.info(f'Loaded {len(loadable)}/{len(own)} weights from {checkpoint}.')
    for title in ('missing', 'unexpected', 'mismatched'):
        keys = report[title]
        if keys:
            more = f' ... and {len(keys) - 10} more' if len(keys) > 10 else ''
            logger.warning(f'{len(keys)} {title} key(s) loading {checkpoint} '
                           f'(allow_partial=True): {", ".join(keys[:10])}{more}')
    return report


def init_model(config_or_preset: Union[str, dict, Config],
               checkpoint: Optional[str] = None,
               device: Union[str, torch.device] = 'cpu',
               cfg_options: Optional[dict] = None,
               allow_partial: bool = False) -> nn.Module:
    """A model for inference: built, with weights, on ``device``, in eval mode.

    Like mmdet's ``init_detector`` and mmseg's ``init_model``: the model of
    :func:`build_model`, the checkpoint loaded by :func:`load_checkpoint`, SyncBN layers
    turned into BatchNorm (one process), then moved to ``device`` and put in eval mode.

    Examples:
        >>> from mmglnet.apis import init_model
        >>> backbone = init_model('4g', 'checkpoints/glnet_4g.pth')   # official release file
        >>> segmentor = init_model('configs/segmentation/upernet_glnet4g_160k.py',
        ...                        'work_dirs/upernet_glnet4g_160k/iter_160000.pth')

    Args:
        config_or_preset (str | dict | Config): See :func:`build_model`.
        checkpoint (str, optional): An mm checkpoint of the model, or an official GLNet
            release file (it loads into the GLNet). Without one the weights are random and a
            warning says so. Defaults to None.
        device (str | torch.device): The device. Defaults to ``'cpu'``.
        cfg_options (dict, optional): Config overrides, see :func:`build_model`. Defaults to
            None.
        allow_partial (bool): See :func:`load_checkpoint`. Defaults to False.

    Returns:
        nn.Module: The model.
    """
    from mmengine.model import revert_sync_batchnorm
    model = build_model(config_or_preset, cfg_options)
    if checkpoint is None:
        warnings.warn('No checkpoint given: the model has random weights (its outputs and slot '
                      'maps show the random initialisation, not learned features).')
    else:
        load_checkpoint(model, checkpoint, allow_partial=allow_partial)
    model = revert_sync_batchnorm(model)
    return model.to(device).eval()
