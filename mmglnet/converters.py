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

The functions here take what :func:`mmglnet.checkpoint.read_checkpoint_tensors` returned (tensors
and containers only) and never read files themselves.
"""
import functools
from collections import OrderedDict
from typing import Any, Dict, Optional, Sequence, Tuple

import torch

from mmglnet.checkpoint import extract_backbone_state
from mmglnet.models.glnet import ARCH_SETTINGS, OFFICIAL_WEIGHTS_KEYS, GLNet, resolve_arch

# Entries of an official file that can hold the classifier's weights, in order of preference.
OFFICIAL_WEIGHT_ENTRIES = ('model', 'model_ema')
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
    with torch.no_grad():
        model = GLNet(arch, out_indices=(3, ), out_norm_cfg=dict(type='BN'))
    return {
        k: tuple(v.shape)
        for k, v in model.state_dict().items() if not _is_buffer_counter(k)
    }


def describe_backbone(backbone_state: Dict[str, torch.Tensor]) -> dict:
    """Depths and widths read from backbone tensors.

    Returns:
        dict: ``depths`` (blocks per stage) and ``embed_dims`` (channels per stage, from the
        first block's ``norm1``; None for a stage without blocks).
    """
    depths, dims = [], []
    for i in range(4):
        prefix = f'stages.{i}.blocks.'
        blocks = {k[len(prefix):].split('.')[0] for k in backbone_state if k.startswith(prefix)}
        depths.append(len(blocks))
        norm = backbone_state.get(f'{prefix}0.norm1.weight')
        dims.append(int(norm.shape[0]) if norm is not None else None)
    return dict(depths=depths, embed_dims=dims)


def detect_preset(backbone_state: Dict[str, torch.Tensor]) -> Optional[str]:
    """The preset whose backbone has exactly these keys and shapes, or None (a custom arch).

    Only presets with the same depths and widths are built for the full comparison.

    Args:
        backbone_state (dict): Backbone tensors, as :func:`extract_backbone_state` returns them.

    Returns:
        str | None: A key of :data:`ARCH_SETTINGS`, or None when no preset matches.
    """
    described = describe_backbone(backbone_state)
    shapes = {
        k: tuple(v.shape)
        for k, v in backbone_state.items() if not _is_buffer_counter(k)
    }
    for arch in ARCH_SETTINGS:
        settings = resolve_arch(arch)
        if (list(settings['depth']) != described['depths']
                or list(settings['embed_dim']) != described['embed_dims']):
            continue
        if preset_backbone_shapes(arch) == shapes:
            return arch
    return None


def _weight_entries(checkpoint: dict) -> Sequence[str]:
    return [
        k for k in OFFICIAL_WEIGHT_ENTRIES
        if isinstance(checkpoint.get(k), dict) and any(
            torch.is_tensor(v) for v in checkpoint[k].values())
    ]


def _raw_weights(checkpoint: dict, key: str) -> Dict[str, torch.Tensor]:
    weights = {
        k: v
        for k, v in checkpoint[key].items() if isinstance(k, str) and torch.is_tensor(v)
    }
    if weights and all(k.startswith('module.') for k in weights):
        weights = {k[len('module.'):]: v for k, v in weights.items()}
    return weights


def choose_weights_key(checkpoint: Any, weights_key: Optional[str] = None) -> Tuple[str, str]:
    """Which entry of an official file to convert, and why.

    Without ``weights_key``: the entry the official evaluation reads, ``'model'``, except
    ``'model_ema'`` when the weights under ``'model'`` are the 16G preset.

    Args:
        checkpoint: What :func:`mmglnet.checkpoint.read_checkpoint_tensors` returned.
        weights_key (str, optional): Entry to use. Defaults to None (choose as above).

    Returns:
        tuple[str, str]: The key and a sentence saying why it was chosen.
    """
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f'An official GLNet file holds a dict, this one a {type(checkpoint).__name__}.')
    top_keys = sorted(str(k) for k in checkpoint)
    entries = _weight_entries(checkpoint)
    if weights_key is not None:
        if not (isinstance(checkpoint.get(weights_key), dict)
                and _raw_weights(checkpoint, weights_key)):
            holding = [k for k in top_keys if isinstance(checkpoint[k], dict)
                       and any(torch.is_tensor(v) for v in checkpoint[k].values())]
            raise KeyError(
                f'--key {weights_key!r} does not name a dict of weights in this file; its '
                f'top-level entries are {top_keys} and those holding tensors {holding}. Pass '
                f'one of {holding} (the official evaluation uses "model", "model_ema" for '
                'glnet_16g).')
        return weights_key, 'given with --key'
    if not entries:
        if 'state_dict' in checkpoint:
            raise ValueError(
                "This file has a 'state_dict' entry and no 'model'/'model_ema': it is already "
                'an mm checkpoint. Use it as it is (load_from, tools/test.py, or init_cfg '
                "with prefix='backbone.').")
        raise KeyError(
            f'No official weights found: the file has no {list(OFFICIAL_WEIGHT_ENTRIES)} dict '
            f'of tensors (top-level entries: {top_keys}). Name the entry that holds the '
            'weights with --key.')
    first = entries[0]
    preset = detect_preset(extract_backbone_state(checkpoint, first))
    wanted = OFFICIAL_WEIGHTS_KEYS.get(preset, 'model')
    if wanted in entries:
        why = (f'the official evaluation of the {preset} preset reads it'
               if preset else 'the official evaluation reads it')
        others = [k for k in entries if k != wanted]
        if others:
            why += f'; the file also holds {others}, selected with --key'
        return wanted, why
    return first, (f'the official evaluation reads {wanted!r}, which this file lacks; using '
                   f'{first!r}')


def convert_official_checkpoint(checkpoint: Any,
                                weights_key: Optional[str] = None
                                ) -> Tuple['OrderedDict[str, torch.Tensor]', dict]:
    """Map an official GLNet checkpoint to the mm classifier layout.

    Args:
        checkpoint: What :func:`mmglnet.checkpoint.read_checkpoint_tensors` returned.
        weights_key (str, optional): Entry holding the weights; None chooses it as
            :func:`choose_weights_key` says. Defaults to None.

    Returns:
        tuple: The mm ``state_dict`` (``backbone.*``, ``head.fc.*``, ``head.aux_fc.*``) and a
        report: ``weights_key``, ``key_reason``, ``arch`` (preset name or ``'custom'``),
        ``token_labeling``, ``num_classes``, ``depths``, ``embed_dims``, ``num_backbone``,
        ``num_head`` (tensor counts) and ``ignored_entries`` (top-level entries not converted).
    """
    key, reason = choose_weights_key(checkpoint, weights_key)
    raw = _raw_weights(checkpoint, key)
    backbone = extract_backbone_state(checkpoint, key)
    preset = detect_preset(backbone)
    shape = describe_backbone(backbone)
    if not any(k.startswith('downsample_layers.') for k in backbone):
        raise ValueError(
            f"The weights under {key!r} have no 'downsample_layers.*' key: they are not an "
            f'official GLNet model (first keys: {sorted(raw)[:5]}).')

    state = OrderedDict((BACKBONE_PREFIX + k, v) for k, v in backbone.items())
    heads = {}
    for official, mm in OFFICIAL_HEAD_KEYS.items():
        for k, v in raw.items():
            if k.startswith(official):
                heads[mm + k[len(official):]] = v
    last_dim = shape['embed_dims'][-1]
    num_classes = None
    for prefix in OFFICIAL_HEAD_KEYS.values():
        weight = heads.get(prefix + 'weight')
        if weight is None:
            continue
        if weight.dim() != 2 or (last_dim is not None and weight.shape[1] != last_dim):
            raise ValueError(
                f'{prefix}weight has shape {tuple(weight.shape)}; a classifier on the '
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
        weights_key=key,
        key_reason=reason,
        arch=preset or 'custom',
        token_labeling=token_labeling,
        num_classes=num_classes,
        depths=shape['depths'],
        embed_dims=shape['embed_dims'],
        num_backbone=len(backbone),
        num_head=len(heads),
        ignored_entries=sorted(str(k) for k in checkpoint if k != key))
    return state, report


def classification_config_name(arch: str, token_labeling: bool) -> Optional[str]:
    """File name of the classification config for a preset (None for a custom arch)."""
    if arch not in ARCH_SETTINGS:
        return None
    return f"glnet{arch.replace('_', '-')}{'-tklb' if token_labeling else ''}_in1k.py"
