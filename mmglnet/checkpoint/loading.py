"""Loading weights into a GLNet backbone or a whole model; wrong weights are refused.

A backbone loads only if every tensor of its stem, transitions and stages is in the file with
the right shape, and the file holds no stem, transition or stage tensor the backbone lacks. The
output norms (``norm0``..``norm3``) that dense-prediction configs add are excepted: no release
file holds them, so they keep their initialisation and are not reported as missing. A
deliberate partial load needs ``allow_partial=True`` (``init_cfg=dict(type='Pretrained',
checkpoint=..., allow_partial=True)``).

When the weights do not fit, :class:`CheckpointMismatchError` says how many tensors matched,
names a few that did not and, when the file's shapes are those of a preset, which one.
"""
import functools
import re
from typing import Any, Dict, Iterable, Optional

import torch
import torch.nn as nn
from mmengine.logging import MMLogger

from .official import (BODY_PREFIXES, OFFICIAL_WEIGHT_ENTRIES, describe_backbone,
                       filter_official_checkpoint, strip_prefix, tensor_items)
from .safe_load import read_checkpoint_tensors

OUTPUT_NORM = re.compile(r'^norm[0-3]\.')
BACKBONE_PREFIX = 'backbone.'
_EXAMPLES = 3


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's weights do not fit the model they are loaded into."""


def _short(keys: Iterable[str], limit: int = _EXAMPLES) -> str:
    keys = list(keys)
    more = f' ... and {len(keys) - limit} more' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def _is_counter(key: str) -> bool:
    return key.endswith('num_batches_tracked')


def is_body_key(key: str) -> bool:
    """Whether a GLNet key belongs to the stem, a transition or a stage (not a batch counter).

    BatchNorm batch counters carry no weight and older files may lack them.
    """
    return key.startswith(BODY_PREFIXES) and not _is_counter(key)


def extract_backbone_state(checkpoint: Any,
                           weights_key: Optional[str] = 'model',
                           prefix: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """The backbone's tensors from an official release file or an mm checkpoint.

    Args:
        checkpoint: What :func:`mmglnet.checkpoint.read_checkpoint_tensors` returned.
        weights_key (str, optional): Entry of an official file that holds the weights; None
            chooses as the official evaluation does. Defaults to ``'model'``.
        prefix (str, optional): For mm checkpoints, the prefix of the backbone's keys in
            ``state_dict`` (``'backbone.'``). Defaults to None.

    Returns:
        dict: Backbone keys (the official ``norm.*`` final norm renamed ``norm3.*``).
    """
    if not isinstance(checkpoint, dict):
        raise ValueError(f'A checkpoint must hold a dict, got {type(checkpoint).__name__}.')
    top_keys = sorted(str(k) for k in checkpoint)
    if prefix:
        source = tensor_items(checkpoint.get('state_dict', checkpoint))
        state = strip_prefix(strip_prefix(source, 'module.') or source, prefix)
        if not state:
            raise ValueError(
                f'No key of the checkpoint starts with prefix={prefix!r} (top-level keys: '
                f'{top_keys}). For an official release file, drop prefix from init_cfg.')
        return state
    official = [k for k in OFFICIAL_WEIGHT_ENTRIES if k in checkpoint]
    if 'state_dict' in checkpoint and not official:
        source = tensor_items(checkpoint['state_dict'])
        return strip_prefix(source, BACKBONE_PREFIX) or source
    if not official:  # a bare official state dict
        return dict(filter_official_checkpoint(checkpoint)[0])
    if weights_key not in checkpoint and weights_key is not None:
        raise KeyError(
            f'weights_key={weights_key!r} is not in the checkpoint; it holds {top_keys}. '
            f'Set the backbone argument weights_key to one of {official}.')
    return dict(filter_official_checkpoint(checkpoint, weights_key)[0])


@functools.lru_cache(maxsize=None)
def preset_body_shapes(arch: str) -> Dict[str, tuple]:
    """Key -> shape of a preset's stem, transitions and stages (built on the meta device)."""
    from mmglnet.models.glnet import GLNet
    with torch.device('meta'):
        model = GLNet(arch, out_norm_cfg=None)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if is_body_key(k)}


def guess_arch(state: Dict[str, torch.Tensor]) -> str:
    """A sentence saying which arch backbone tensors look like.

    Args:
        state (dict): GLNet keys to tensors (official keys work too).

    Returns:
        str: ``"The file looks like the '4g' preset (arch='4g')"``, or its depths and widths
        when no preset has exactly its stem, transition and stage shapes.
    """
    from mmglnet.models.glnet import ARCH_SETTINGS
    body = {k: tuple(v.shape) for k, v in state.items() if is_body_key(k)}
    if body:
        for arch in ARCH_SETTINGS:
            if preset_body_shapes(arch) == body:
                return f"The file looks like the {arch!r} preset (arch={arch!r})"
    described = describe_backbone(state)
    if not any(described['depths']):
        return 'The file holds no GLNet stage'
    return (f"The file's backbone has depths {described['depths']} and widths "
            f"{described['embed_dims']}, which is no preset (a custom arch)")


def _arch_of(backbone: nn.Module) -> str:
    settings = getattr(backbone, 'arch_settings', None)
    name = getattr(backbone, 'arch_name', '?')
    if settings is None:
        return f'arch {name!r}'
    return (f"arch {name!r}: depths {list(settings['depth'])}, widths "
            f"{list(settings['embed_dim'])}")


def _mismatch(key: str, saved: torch.Tensor, own: torch.Tensor) -> str:
    return f'{key}: file {tuple(saved.shape)} vs model {tuple(own.shape)}'


def load_pretrained_backbone(backbone: nn.Module,
                             path: str,
                             prefix: Optional[str] = None,
                             weights_key: Optional[str] = 'model',
                             allow_partial: bool = False) -> Dict[str, list]:
    """Load an official release file or an mm checkpoint into a GLNet backbone.

    The file is read with :func:`mmglnet.checkpoint.read_checkpoint_tensors` (nothing in it
    is executed) and an official file mapped with
    :func:`mmglnet.checkpoint.filter_official_checkpoint`. Tensors are cast to the model's
    dtypes. The official final BatchNorm (``norm.*``) is loaded into ``norm3`` only when that
    output norm is a BatchNorm; output norms the file does not hold keep their initialisation
    (expected: no release file has them).

    Args:
        backbone (nn.Module): The GLNet.
        path (str): Local checkpoint file.
        prefix (str, optional): Prefix of the backbone's keys in an mm checkpoint
            (``'backbone.'``); None for an official release file. Defaults to None.
        weights_key (str, optional): Entry of an official file that holds the weights; None
            chooses as the official evaluation does. Defaults to ``'model'``.
        allow_partial (bool): Load the matching tensors even if some of the stem, transitions
            and stages are missing, have another shape or the file holds extra ones (logged
            as warnings). Defaults to False: such a file raises.

    Returns:
        dict: ``loaded``, ``missing`` (not counting output norms), ``unexpected``,
        ``mismatched``, ``skipped`` (saved output norms this backbone has no place for) and
        ``initialized`` (output norms the file does not hold) key lists.

    Raises:
        CheckpointMismatchError: When the weights do not fit and ``allow_partial`` is False.
    """
    logger = MMLogger.get_current_instance()
    checkpoint = read_checkpoint_tensors(path)
    state = extract_backbone_state(checkpoint, weights_key, prefix)
    if prefix:
        what = f'prefix {prefix!r}'
    elif any(k in checkpoint for k in OFFICIAL_WEIGHT_ENTRIES):
        what = f'weights {weights_key!r}'
    else:
        what = 'state_dict' if 'state_dict' in checkpoint else 'bare state dict'
    own = backbone.state_dict()
    # A saved output norm (the official final BatchNorm, or a classifier's) that this backbone
    # has no place for, or that does not fit a LayerNorm output norm: skipped, not unexpected.
    skipped = []
    for index in range(backbone.num_stages):
        norm = getattr(backbone, f'norm{index}', None)
        saved = sorted(k for k in state if k.startswith(f'norm{index}.'))
        saved_as_bn = f'norm{index}.running_mean' in state
        if saved and (norm is None or
                      (saved_as_bn and not isinstance(norm, nn.modules.batchnorm._BatchNorm))):
            skipped += saved
    for key in skipped:
        state.pop(key)
    mismatched = sorted(
        _mismatch(k, v, own[k]) for k, v in state.items() if k in own and v.shape != own[k].shape)
    loadable = {
        k: v.to(own[k].dtype) if v.is_floating_point() else v
        for k, v in state.items() if k in own and v.shape == own[k].shape
    }
    not_loaded = sorted(set(own) - set(loadable))
    initialized = [k for k in not_loaded if OUTPUT_NORM.match(k)]
    missing = [k for k in not_loaded if not OUTPUT_NORM.match(k)]
    unexpected = sorted(set(state) - set(own))

    required = [k for k in own if is_body_key(k)]
    matched = [k for k in required if k in loadable]
    absent = [k for k in required if k not in state]
    body_mismatched = [m for m in mismatched if is_body_key(m.split(':')[0])]
    extra = [k for k in unexpected if is_body_key(k)]
    if not loadable or ((absent or body_mismatched or extra) and not allow_partial):
        problems = []
        if absent:
            problems.append(f'{len(absent)} not in the file (e.g. {_short(absent)})')
        if body_mismatched:
            problems.append(f'{len(body_mismatched)} with another shape (e.g. '
                            f'{_short(body_mismatched)})')
        if extra:
            problems.append(f'and the file holds {len(extra)} stem/stage tensor(s) this '
                            f'backbone lacks (e.g. {_short(extra)})')
        raise CheckpointMismatchError(
            f'Refusing to load {path!r} ({what}) into the GLNet backbone ({_arch_of(backbone)}): '
            f'only {len(matched)} of its {len(required)} stem, transition and stage tensors '
            f'are in the file with the right shape; {"; ".join(problems)}. '
            f'{guess_arch(state)}. Use the arch the file was '
            'trained with (and prefix="backbone." for an mm checkpoint), or, to load only the '
            'matching tensors on purpose, add allow_partial=True to the init_cfg: '
            "init_cfg=dict(type='Pretrained', checkpoint=..., allow_partial=True).")
    backbone.load_state_dict(loadable, strict=False)
    logger.info(f'Loaded {len(loadable)}/{len(own)} GLNet backbone tensors from {path} ({what}).')
    for title, keys in (('missing', missing), ('unexpected', unexpected), ('mismatched',
                                                                           mismatched)):
        if keys:
            logger.warning(f'{len(keys)} {title} key(s) loading {path} (allow_partial=True): '
                           f'{_short(keys, 20)}')
    if initialized:
        norms = sorted({k.split('.')[0] for k in initialized})
        logger.info(f'Output norms {", ".join(norms)} keep their initialisation: the file '
                    'holds none (expected for a classification release).')
    if skipped:
        logger.info(f'Skipped {_short(skipped, 20)}: a saved output norm (the classifier\'s '
                    'final norm) this backbone has no BatchNorm output norm for.')
    return dict(
        loaded=sorted(loadable),
        missing=missing,
        unexpected=unexpected,
        mismatched=mismatched,
        skipped=skipped,
        initialized=initialized)


def model_state_from_checkpoint(checkpoint: Any) -> Dict[str, torch.Tensor]:
    """The model weights of a loaded mm checkpoint, as mmengine's Runner loads them.

    ``state_dict`` when there is one (else the file's top level), ``module.`` prefixes removed.
    """
    if not isinstance(checkpoint, dict):
        return {}
    source = checkpoint.get('state_dict', checkpoint)
    return {re.sub(r'^module\.', '', k): v for k, v in tensor_items(source).items()}


def check_checkpoint_fits_model(model: nn.Module, checkpoint: Any, name: str) -> dict:
    """Raise unless a checkpoint holds every weight of ``model`` with its shape, and no other.

    mmengine's Runner loads ``load_from`` non-strictly and only logs what it skipped; tools that
    report results of a loaded model (``tools/test.py``) call this first.

    Args:
        model (nn.Module): The built model (a wrapper such as DDP, and a test-time
            augmentation model, is unwrapped).
        checkpoint (dict): The loaded checkpoint.
        name (str): The file, for messages.

    Returns:
        dict: ``matched``, ``missing``, ``unexpected`` and ``mismatched`` key lists.

    Raises:
        CheckpointMismatchError: Naming how many weights matched and a few that did not.
    """
    from mmengine.model import BaseTTAModel, is_model_wrapper

    # As mmengine loads them: into the model inside a wrapper and a test-time augmentation.
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    own = model.state_dict()
    state = model_state_from_checkpoint(checkpoint)
    matched = sorted(k for k, v in state.items() if k in own and v.shape == own[k].shape)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        _mismatch(k, v, own[k]) for k, v in state.items() if k in own and v.shape != own[k].shape)
    report = dict(matched=matched, missing=missing, unexpected=unexpected, mismatched=mismatched)
    if not (missing or unexpected or mismatched):
        return report
    problems = []
    if missing:
        problems.append(f'{len(missing)} of the model\'s are not in the file (e.g. '
                        f'{_short(missing)})')
    if mismatched:
        problems.append(f'{len(mismatched)} have another shape (e.g. {_short(mismatched)})')
    if unexpected:
        problems.append(f'the file holds {len(unexpected)} the model lacks (e.g. '
                        f'{_short(unexpected)})')
    hint = ''
    if isinstance(checkpoint, dict) and 'state_dict' not in checkpoint and any(
            k in checkpoint for k in OFFICIAL_WEIGHT_ENTRIES):
        hint = (' The file looks like an official GLNet release file: convert it with '
                'tools/model_converters/glnet2mm.py first.')
    raise CheckpointMismatchError(
        f'Checkpoint {name!r} does not fit the model ({type(model).__name__}): '
        f'{len(matched)} of the model\'s {len(own)} weights are in the file with the right '
        f'shape; {"; ".join(problems)}. Its results would be those of partly untrained '
        f'weights. Give the checkpoint trained with this config.{hint}')
