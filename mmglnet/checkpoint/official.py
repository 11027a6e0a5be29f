"""The official GLNet checkpoint layout, mapped to GLNet's keys in one pure function.

An official release file (github.com/rayleizhu/GLMix: ``glnet_4g.pth``...) holds the
classifier's weights under ``model`` (and often ``model_ema``, ``optimizer``, ``args``...).
:func:`filter_official_checkpoint` turns it, or a bare official state dict, into the state dict
of :class:`mmglnet.GLNet`, in the spirit of timm's ``checkpoint_filter_fn``:

* unwrap: choose the entry the official evaluation reads (``model``, ``model_ema`` for the 16G
  preset; see :data:`OFFICIAL_WEIGHTS_KEYS`) or the one asked for;
* strip a ``module.`` prefix (weights saved from a DistributedDataParallel wrapper);
* rename the final BatchNorm ``norm.*`` to ``norm3.*`` (GLNet's output norm of the last stage);
* drop the classifier heads (``head.*``, ``tklb_aux_head.*``) and report what was dropped.

Nothing here reads files or builds models: give it what
:func:`mmglnet.checkpoint.read_checkpoint_tensors` returned.
"""
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import torch

# Entries of an official file that can hold the classifier's weights, in order of preference.
OFFICIAL_WEIGHT_ENTRIES = ('model', 'model_ema')
# Which entry the official evaluation reads, per preset (``'model'`` for the others).
OFFICIAL_WEIGHTS_KEYS = {'16g': 'model_ema'}
# The official classifier heads: not part of the backbone.
OFFICIAL_CLASSIFIER_PREFIXES = ('head.', 'tklb_aux_head.')
# The official final BatchNorm and its name in GLNet.
OFFICIAL_FINAL_NORM = 'norm.'
GLNET_FINAL_NORM = 'norm3.'
# Stem, transitions and stages: the keys every use of a backbone needs.
BODY_PREFIXES = ('downsample_layers.', 'stages.')
WRAPPER_PREFIX = 'module.'


def tensor_items(mapping: Any) -> Dict[str, torch.Tensor]:
    """The ``str -> tensor`` items of a mapping (an empty dict for anything else)."""
    if not isinstance(mapping, dict):
        return {}
    return {k: v for k, v in mapping.items() if isinstance(k, str) and torch.is_tensor(v)}


def strip_prefix(state: Dict[str, Any], prefix: str) -> Dict[str, Any]:
    """The items whose key starts with ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def describe_backbone(backbone_state: Dict[str, torch.Tensor]) -> dict:
    """Depths and widths read from backbone tensors (official or GLNet keys).

    Args:
        backbone_state (dict): Key to tensor (or anything with ``shape``).

    Returns:
        dict: ``depths`` (blocks per stage) and ``embed_dims`` (channels per stage, from the
        first block's ``norm1``; None for a stage without blocks).
    """
    from mmglnet.models.glnet import NUM_STAGES
    depths, dims = [], []
    for i in range(NUM_STAGES):
        prefix = f'stages.{i}.blocks.'
        blocks = {k[len(prefix):].split('.')[0] for k in backbone_state if k.startswith(prefix)}
        depths.append(len(blocks))
        norm = backbone_state.get(f'{prefix}0.norm1.weight')
        dims.append(int(norm.shape[0]) if norm is not None else None)
    return dict(depths=depths, embed_dims=dims)


def presets_with_shape(backbone_state: Dict[str, torch.Tensor]) -> List[str]:
    """The presets whose depths and widths these tensors have (several for stl/stl_paramslot).

    Args:
        backbone_state (dict): Backbone tensors, official or GLNet keys.

    Returns:
        list[str]: Keys of :data:`mmglnet.models.glnet.ARCH_SETTINGS`, possibly empty.
    """
    from mmglnet.models.glnet import ARCH_SETTINGS
    described = describe_backbone(backbone_state)
    return [
        arch for arch, settings in ARCH_SETTINGS.items()
        if list(settings['depth']) == described['depths']
        and list(settings['embed_dim']) == described['embed_dims']
    ]


def weights_entries(checkpoint: Any) -> List[str]:
    """Top-level entries of a checkpoint that hold a dict with tensors, official ones first."""
    if not isinstance(checkpoint, dict):
        return []
    holding = [k for k, v in checkpoint.items() if isinstance(k, str) and tensor_items(v)]
    official = [k for k in OFFICIAL_WEIGHT_ENTRIES if k in holding]
    return official + sorted(k for k in holding if k not in official)


def _unwrap(weights: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    if weights and all(k.startswith(WRAPPER_PREFIX) for k in weights):
        return strip_prefix(weights, WRAPPER_PREFIX), WRAPPER_PREFIX
    return weights, None


def choose_weights_key(checkpoint: Any,
                       weights_key: Optional[str] = None,
                       arch: Optional[str] = None) -> Tuple[str, str]:
    """Which entry of an official file holds the weights to use, and why.

    Args:
        checkpoint (dict): An official release file's content.
        weights_key (str, optional): The entry to use; it must hold a dict of tensors.
            Defaults to None: the entry the official evaluation reads.
        arch (str, optional): The preset the weights are for, when known; None recognises
            the 16G preset from the depths and widths of the ``model`` weights. Defaults to
            None.

    Returns:
        tuple[str, str]: The entry and a sentence saying why it was chosen.
    """
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f'An official GLNet file holds a dict, this one a {type(checkpoint).__name__}.')
    top_keys = sorted(str(k) for k in checkpoint)
    holding = weights_entries(checkpoint)
    if weights_key is not None:
        if weights_key not in holding:
            raise KeyError(
                f'weights_key={weights_key!r} does not name a dict of weights in this file; '
                f'its top-level entries are {top_keys} and those holding tensors {holding}. '
                f'Choose one of {holding} (the official evaluation uses "model", "model_ema" '
                'for glnet_16g).')
        return weights_key, 'asked for'
    entries = [k for k in OFFICIAL_WEIGHT_ENTRIES if k in holding]
    if not entries:
        if 'state_dict' in checkpoint:
            raise ValueError(
                "This file has a 'state_dict' entry and no 'model'/'model_ema': it is already "
                'an mm checkpoint. Use it as it is (load_from, tools/test.py, or init_cfg '
                "with prefix='backbone.').")
        raise KeyError(
            f'No official weights found: the file has no {list(OFFICIAL_WEIGHT_ENTRIES)} dict '
            f'of tensors (top-level entries: {top_keys}). Name the entry that holds the '
            'weights (weights_key / --key).')
    if arch is None:
        candidates = presets_with_shape(_unwrap(tensor_items(checkpoint[entries[0]]))[0])
        arch = candidates[0] if candidates else None
        known = f'the {arch} preset' if arch else None
    else:
        known = f'the {arch} preset' if isinstance(arch, str) else None
    wanted = OFFICIAL_WEIGHTS_KEYS.get(arch, 'model') if isinstance(arch, str) else 'model'
    if wanted in entries:
        why = (f'the official evaluation of {known} reads it'
               if known and wanted != 'model' else 'the official evaluation reads it')
        others = [k for k in entries if k != wanted]
        if others:
            why += f'; the file also holds {others}'
        return wanted, why
    return entries[0], (f'the official evaluation reads {wanted!r}, which this file lacks; '
                        f'using {entries[0]!r}')


def filter_official_checkpoint(
        checkpoint: Any,
        weights_key: Optional[str] = None,
        arch: Optional[str] = None) -> Tuple['OrderedDict[str, torch.Tensor]', dict]:
    """Map an official GLNet release file (or its state dict) to GLNet's backbone keys.

    A pure function: it neither reads files nor changes its input (the tensors are shared).

    Args:
        checkpoint (dict): A whole release file (with ``model``/``model_ema``...) or a bare
            official state dict (``downsample_layers.*``, ``stages.*``...).
        weights_key (str, optional): Entry of a release file to use. Defaults to None: the
            one the official evaluation reads (see :func:`choose_weights_key`).
        arch (str, optional): Preset the weights are for, when known (chooses the entry the
            official evaluation of that preset reads). Defaults to None.

    Returns:
        tuple: The backbone state dict (GLNet keys: ``downsample_layers.*``, ``stages.*``,
        ``norm3.*``) and a report: ``weights_key`` (None for a bare state dict),
        ``key_reason``, ``stripped_prefix`` (``'module.'`` or None), ``renamed``
        (official -> GLNet key), ``dropped`` (official keys left out: the classifier heads and
        non-tensor items), ``classifier`` (the dropped head tensors, official keys) and
        ``ignored_entries`` (top-level entries of the file not used).

    Raises:
        ValueError: For an mm checkpoint (``state_dict``) or weights that are not a GLNet.
        KeyError: When ``weights_key`` holds no weights, or no entry does.
    """
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f'An official GLNet checkpoint is a dict, this one is a {type(checkpoint).__name__}.')
    tensors = tensor_items(checkpoint)
    bare = weights_key is None and any(
        k.startswith(BODY_PREFIXES) or k.startswith(WRAPPER_PREFIX + BODY_PREFIXES[0])
        for k in tensors)
    if bare:
        key, reason, raw = None, 'a bare state dict', checkpoint
    else:
        key, reason = choose_weights_key(checkpoint, weights_key, arch)
        raw = checkpoint[key]
    weights, stripped = _unwrap(tensor_items(raw))
    dropped = sorted(str(k) for k in raw if not (isinstance(k, str) and torch.is_tensor(raw[k])))
    state, renamed, classifier = OrderedDict(), {}, OrderedDict()
    for name, value in weights.items():
        if name.startswith(OFFICIAL_CLASSIFIER_PREFIXES):
            classifier[name] = value
            dropped.append(name)
        elif name.startswith(OFFICIAL_FINAL_NORM):
            new = GLNET_FINAL_NORM + name[len(OFFICIAL_FINAL_NORM):]
            renamed[name] = new
            state[new] = value
        else:
            state[name] = value
    if not any(k.startswith(BODY_PREFIXES[0]) for k in state):
        where = f'under {key!r}' if key else 'in this state dict'
        raise ValueError(
            f"The weights {where} have no 'downsample_layers.*' key: they are not an official "
            f'GLNet model (first keys: {sorted(weights)[:5]}).')
    report = dict(
        weights_key=key,
        key_reason=reason,
        stripped_prefix=stripped,
        renamed=renamed,
        dropped=dropped,
        classifier=classifier,
        ignored_entries=[] if bare else sorted(str(k) for k in checkpoint if k != key))
    return state, report
