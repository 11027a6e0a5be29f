"""Official GLNet release files to mm checkpoints: key mapping and preset detection.

An official file (``glnet_4g.pth``...) holds the classifier's weights under ``model`` (and often
``model_ema``, ``optimizer``, ``args``...). The mm checkpoint written from it holds one
``state_dict`` laid out like the mmpretrain ``ImageClassifier`` of
``configs/classification/``:

=======================  ====================================================================
official key             mm key
=======================  ====================================================================
``downsample_layers.*``  ``backbone.downsample_layers.*`` (likewise ``stages.*``)
``norm.*``               ``backbone.norm3.*`` (the final BatchNorm: the backbone's output norm
                         with ``out_indices=(3, )``, ``out_norm_cfg=dict(type='BN')``)
``head.*``               ``head.fc.*`` (mmpretrain's ``LinearClsHead`` and
                         ``mmglnet.TokenLabelingClsHead``)
``tklb_aux_head.*``      ``head.aux_fc.*`` (``mmglnet.TokenLabelingClsHead``)
=======================  ====================================================================

The key mapping of the backbone is :func:`mmglnet.checkpoint.filter_official_checkpoint`, the one
place that reads the official layout; this module adds the heads and preset detection. The
functions here take what :func:`mmglnet.checkpoint.read_checkpoint_tensors` returned (tensors and
containers only) and never read files themselves.
"""
import functools
from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

import torch

from mmglnet.checkpoint.official import (OFFICIAL_WEIGHT_ENTRIES, choose_weights_key,
                                         describe_backbone, filter_official_checkpoint)
from mmglnet.models.glnet import ARCH_SETTINGS, GLNet, resolve_arch

__all__ = [
    'OFFICIAL_WEIGHT_ENTRIES', 'OFFICIAL_HEAD_KEYS', 'BACKBONE_PREFIX', 'choose_weights_key',
    'describe_backbone', 'preset_backbone_shapes', 'detect_preset', 'convert_official_checkpoint',
    'classification_config_name'
]

# Official classifier prefixes and where they go in the mm checkpoint.
OFFICIAL_HEAD_KEYS = OrderedDict([('head.', 'head.fc.'), ('tklb_aux_head.', 'head.aux_fc.')])
BACKBONE_PREFIX = 'backbone.'


def _is_buffer_counter(key: str) -> bool:
    return key.endswith('num_batches_tracked')


@functools.lru_cache(maxsize=None)
def preset_backbone_shapes(arch: str) -> Dict[str, Tuple[int, ...]]:
    """Key -> shape of the classification backbone of a preset.

    The backbone is ``GLNet(arch, out_indices=(3, ), out_norm_cfg=dict(type='BN'))``: its keys are
    the official ones with the final ``norm.*`` named ``norm3.*``. BatchNorm batch counters are
    left out (they carry no weight and older files may lack them). Built once per process.

    Args:
        arch (str): A preset name of :data:`mmglnet.models.glnet.ARCH_SETTINGS`.

    Returns:
        dict: Key to shape tuple.
    """
    with torch.device('meta'):
        model = GLNet(arch, out_indices=(3, ), out_norm_cfg=dict(type='BN'))
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not _is_buffer_counter(k)}


def detect_preset(backbone_state: Dict[str, torch.Tensor]) -> Optional[str]:
    """The preset whose backbone has exactly these keys and shapes, or None (a custom arch).

    Only presets with the same depths and widths are built for the full comparison.

    Args:
        backbone_state (dict): Backbone tensors, as :func:`extract_backbone_state` returns them.

    Returns:
        str | None: A key of :data:`ARCH_SETTINGS`, or None when no preset matches.
    """
    described = describe_backbone(backbone_state)
    shapes = {k: tuple(v.shape) for k, v in backbone_state.items() if not _is_buffer_counter(k)}
    for arch in ARCH_SETTINGS:
        settings = resolve_arch(arch)
        if (list(settings['depth']) != described['depths']
                or list(settings['embed_dim']) != described['embed_dims']):
            continue
        if preset_backbone_shapes(arch) == shapes:
            return arch
    return None


def convert_official_checkpoint(
        checkpoint: Any,
        weights_key: Optional[str] = None) -> Tuple['OrderedDict[str, torch.Tensor]', dict]:
    """Map an official GLNet checkpoint to the mm classifier layout.

    Args:
        checkpoint: What :func:`mmglnet.checkpoint.read_checkpoint_tensors` returned.
        weights_key (str, optional): Entry holding the weights; None chooses it as
            :func:`mmglnet.checkpoint.choose_weights_key` says (what the official evaluation
            reads). Defaults to None.

    Returns:
        tuple: The mm ``state_dict`` (``backbone.*``, ``head.fc.*``, ``head.aux_fc.*``) and a
        report: ``weights_key``, ``key_reason``, ``arch`` (preset name or ``'custom'``),
        ``token_labeling``, ``num_classes``, ``depths``, ``embed_dims``, ``num_backbone``,
        ``num_head`` (tensor counts) and ``ignored_entries`` (top-level entries not converted).
    """
    backbone, filtered = filter_official_checkpoint(checkpoint, weights_key)
    preset = detect_preset(backbone)
    shape = describe_backbone(backbone)
    state = OrderedDict((BACKBONE_PREFIX + k, v) for k, v in backbone.items())
    heads = {}
    for official, mm in OFFICIAL_HEAD_KEYS.items():
        for k, v in filtered['classifier'].items():
            if k.startswith(official):
                heads[mm + k[len(official):]] = v
    last_dim = shape['embed_dims'][-1]
    num_classes = None
    for prefix in OFFICIAL_HEAD_KEYS.values():
        weight = heads.get(prefix + 'weight')
        if weight is None:
            continue
        if weight.dim() != 2 or (last_dim is not None and weight.shape[1] != last_dim):
            raise ValueError(f'{prefix}weight has shape {tuple(weight.shape)}; a classifier on the '
                             f'{last_dim}-channel last stage has shape (num_classes, {last_dim}).')
        if num_classes is not None and weight.shape[0] != num_classes:
            raise ValueError(
                f'The token-labeling head predicts {weight.shape[0]} classes, the main head '
                f'{num_classes}: the file is inconsistent.')
        num_classes = int(weight.shape[0])
    token_labeling = 'head.aux_fc.weight' in heads
    if token_labeling and 'head.fc.weight' not in heads:
        raise ValueError('The file has a token-labeling head (tklb_aux_head) but no head.')
    state.update(heads)
    report = dict(
        weights_key=filtered['weights_key'],
        key_reason=filtered['key_reason'],
        arch=preset or 'custom',
        token_labeling=token_labeling,
        num_classes=num_classes,
        depths=shape['depths'],
        embed_dims=shape['embed_dims'],
        num_backbone=len(backbone),
        num_head=len(heads),
        ignored_entries=filtered['ignored_entries'])
    return state, report


def classification_config_name(arch: str, token_labeling: bool) -> Optional[str]:
    """File name of the classification config for a preset (None for a custom arch)."""
    if arch not in ARCH_SETTINGS:
        return None
    return f"glnet{arch.replace('_', '-')}{'-tklb' if token_labeling else ''}_in1k.py"
