"""Checks of the files a config names, run before a Runner is built.

A missing dataset folder, annotation file or pretrained-weights file otherwise surfaces as a
stack trace from deep inside a data loader or an ``init_weights`` call, minutes into a job.
These checks find it at once and say which path is missing, which config key named it, and
what to do: where to download the data, which folder layout the codebase expects.

Only local paths are checked: URLs and ``scheme://`` paths (``open-mmlab://``, ``s3://``,
``torchvision://``), and datasets read through a non-local ``backend_args``, are left to the
codebases.
"""
import os
import os.path as osp
import re
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

DATASET_HELP = {
    'CocoDataset':
    ('mmdetection reads COCO 2017 as data/coco/annotations/instances_train2017.json, '
     'data/coco/annotations/instances_val2017.json, data/coco/train2017/*.jpg and '
     'data/coco/val2017/*.jpg. Download the 2017 train/val images and annotations from '
     'https://cocodataset.org/#download and unzip them there, or link an existing copy: '
     'ln -s /path/to/coco data/coco.'),
    'ADE20KDataset':
    ('mmsegmentation reads ADE20K as data/ade/ADEChallengeData2016/images/{training,'
     'validation}/*.jpg and data/ade/ADEChallengeData2016/annotations/{training,validation}'
     '/*.png. Download http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip'
     ' and unzip it in data/ade/, or link an existing copy: ln -s /path/to/ade data/ade.'),
    'ImageNet':
    ('mmpretrain reads ImageNet-1k as data/imagenet/train/, data/imagenet/val/ and the '
     'lists data/imagenet/meta/{train,val}.txt. Download it from https://image-net.org/ and '
     'arrange it so (see mmpretrain\'s "Prepare Dataset" guide).'),
}
# Official GLNet release files (github.com/rayleizhu/GLMix, README model card).
GLNET_RELEASE_FILES = ('glnet_stl.pth', 'glnet_stl_paramslot.pth', 'glnet_4g.pth', 'glnet_9g.pth',
                       'glnet_16g.pth', 'glnet_4g_tklb.pth', 'glnet_9g_tklb.pth')
DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


class ConfigPathError(FileNotFoundError):
    """A file or folder that a config names does not exist or cannot be used.

    The message names the path, the config key that holds it and what to do. Checkpoint files
    that exist but are empty, truncated or not torch checkpoints raise it too.
    """


def _check_format(path: str, key: Optional[str] = None) -> None:
    """Raise :class:`ConfigPathError` if an existing checkpoint is empty, truncated or foreign."""
    from mmglnet.checkpoint import CheckpointFileError, check_checkpoint_format
    try:
        check_checkpoint_format(path)
    except CheckpointFileError as error:
        where = f' ({key})' if key else ''
        raise ConfigPathError(f'{error}{where}') from error


def _is_remote(path: str) -> bool:
    return '://' in path


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    return cfg.get(key, default) if hasattr(cfg, 'get') else default


def _where(path: str) -> str:
    if osp.isabs(path):
        return repr(path)
    return f'{path!r} (relative to the current directory {os.getcwd()!r})'


def iter_dataset_cfgs(dataset: Any, key: str) -> Iterator[Tuple[str, dict]]:
    """Yield ``(config key, dataset dict)`` for a dataset and the datasets it wraps.

    Wrappers (``ConcatDataset``, ``RepeatDataset``, ``ClassBalancedDataset``,
    ``MultiImageMixDataset``) hold their datasets under ``dataset`` or ``datasets``.
    """
    if not hasattr(dataset, 'get'):
        return
    if _get(dataset, 'dataset') is not None:
        yield from iter_dataset_cfgs(dataset['dataset'], key + '.dataset')
    elif _get(dataset, 'datasets') is not None:
        for i, child in enumerate(dataset['datasets']):
            yield from iter_dataset_cfgs(child, f'{key}.datasets[{i}]')
    else:
        yield key, dataset


def type_name(node: Any) -> str:
    """The registered name that a config dict's ``type`` gives, without its scope
    (``'mmdet.FPN'`` gives ``'FPN'``); ``''`` where it has none."""
    return str(_get(node, 'type', '')).split('.')[-1]


def config_dicts(cfg: Any, key: str = '') -> Iterator[Tuple[str, dict]]:
    """Yield ``(config key, dict)`` for ``cfg`` and every dict inside it (dicts, lists).

    Args:
        cfg (dict | list): A config or a part of one, e.g. ``cfg.model``.
        key (str): The key of ``cfg`` itself, which the keys yielded extend (``'model'``
            gives ``'model.neck'``, ``'model.roi_head.bbox_head[0]'``). Defaults to ``''``.
    """
    if isinstance(cfg, dict):
        yield key, cfg
        for name, value in cfg.items():
            yield from config_dicts(value, f'{key}.{name}' if key else str(name))
    elif isinstance(cfg, (list, tuple)):
        for index, value in enumerate(cfg):
            yield from config_dicts(value, f'{key}[{index}]')


def config_has(cfg: Any, predicate: Callable[[dict], bool]) -> bool:
    """Whether ``predicate`` holds for ``cfg`` or for a dict anywhere inside it (dicts, lists).

    Args:
        cfg (dict | list): A config or a part of one, e.g. ``cfg.model``.
        predicate (Callable[[dict], bool]): Asked of each dict.
    """
    return any(predicate(node) for _, node in config_dicts(cfg))


# mmengine's messages for a type no registry holds and for an argument a class does not take.
_UNKNOWN_TYPE = re.compile(r'^(?P<name>\S+) is not in the (?P<registry>\S+) registry')
_UNKNOWN_ARGUMENT = re.compile(r"got an unexpected keyword argument '(?P<name>\w+)'")


def build_error_message(cfg: Any, error: Exception) -> Optional[str]:
    """The config keys that a build error of mmengine's registries points at, with the error;
    None where ``error`` is not one of those or no key of ``cfg`` matches it.

    A type that no registry holds comes as a ``KeyError`` naming the type, an argument that a
    class does not take as a ``TypeError`` naming the argument: neither says where in the
    config it was given.

    Args:
        cfg (Config | dict): The config the objects were built from.
        error (Exception): What building them raised.
    """
    message = str(error.args[0]) if error.args else ''
    keys = []
    unknown_type = _UNKNOWN_TYPE.match(message) if isinstance(error, KeyError) else None
    unknown_argument = (_UNKNOWN_ARGUMENT.search(message) if isinstance(error, TypeError) else None)
    tree = cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg  # mmengine's Config is no dict
    for key, node in config_dicts(tree):
        if unknown_type and type_name(node) == unknown_type['name']:
            keys.append(f'{key}.type={node["type"]!r}')
        elif unknown_argument and 'type' in node and unknown_argument['name'] in node:
            keys.append(f'{key}.{unknown_argument["name"]}')
    if not keys:
        return None
    advice = ('Check the spelling; a class of another codebase needs its scope '
              "(type='mmdet.FPN') and the codebase in custom_imports."
              if unknown_type else 'Remove it or check its spelling against the class.')
    return f'{", ".join(keys)}: {message.rstrip(".")}. {advice}'


class ConfigBuildError(ValueError):
    """A config names a type that no registry holds, or gives a class an argument it does not
    take (see :func:`build_error_message`)."""


def batched_detection_warning(cfg: Any, dataloader: str) -> Optional[str]:
    """Why batching in ``dataloader`` changes an mmdet GLNet model's predictions, or None.

    mmdet pads a batch to its largest image, and GLNet's slots pool over every pixel, the
    padding included: the predictions for an image then depend on the images beside it (the
    demo's RetinaNet, random weights, two images of other shapes: top scores moved by 2-3%
    batched, 0.5% with a ResNet-18). mmseg refuses evaluation batches of mixed sizes itself.
    Training batches are left alone: padding there is part of every mmdet recipe.

    Args:
        cfg (Config): The config.
        dataloader (str): ``'val_dataloader'`` or ``'test_dataloader'``.
    """
    batch_size = (_get(cfg, dataloader) or {}).get('batch_size', 1)
    if _get(cfg, 'default_scope') != 'mmdet' or batch_size <= 1 or not config_has(
            _get(cfg, 'model'), lambda node: type_name(node) == 'GLNet'):
        return None
    return (f'{dataloader}.batch_size={batch_size}: mmdet pads each batch to its largest '
            'image and GLNet pools its slots over the padding too, so an image\'s predictions '
            'depend on the images batched with it. For metrics that do not, use batch_size=1 '
            '(the configs\' setting).')


def _dataset_help(cfg: Any, dataset: dict) -> str:
    hint = _get(cfg, 'data_preparation')
    if hint:
        return str(hint)
    short = type_name(dataset)
    if short in DATASET_HELP:
        return DATASET_HELP[short]
    return (f'Put the {short or "dataset"} files there, or point the config at them with '
            f'--cfg-options {{key}}=PATH.')


def _join(data_root: Optional[str], path: str) -> str:
    if data_root and not osp.isabs(path):
        return osp.join(data_root, path)
    return path


def _prefix_paths(data_prefix: Any) -> List[Tuple[str, str]]:
    if isinstance(data_prefix, str):
        return [('data_prefix', data_prefix)]
    if hasattr(data_prefix, 'items'):
        return [(f'data_prefix.{k}', v) for k, v in data_prefix.items() if isinstance(v, str)]
    return []


def check_dataset_paths(cfg: Any, dataloaders: Sequence[str] = DATALOADERS) -> None:
    """Check that the data root, annotation files and image folders of datasets exist.

    Args:
        cfg (Config | dict): The full config.
        dataloaders (Sequence[str]): Top-level dataloader keys to check. Defaults to
            ``('train_dataloader', 'val_dataloader', 'test_dataloader')``.

    Raises:
        ConfigPathError: Naming the first missing path, its config key and what to do.
    """
    for loader_key in dataloaders:
        loader = _get(cfg, loader_key)
        if loader is None or _get(loader, 'dataset') is None:
            continue
        for key, dataset in iter_dataset_cfgs(loader['dataset'], loader_key + '.dataset'):
            backend = _get(dataset, 'backend_args') or {}
            if _get(backend, 'backend', 'local') != 'local':
                continue
            data_root = dataset.get('data_root')
            help_text = _dataset_help(cfg, dataset)
            if isinstance(data_root, str) and data_root and not _is_remote(data_root) \
                    and not osp.isdir(data_root):
                raise ConfigPathError(
                    f'The data root {_where(data_root)} of {key} does not exist. ' +
                    help_text.replace('{key}', key + '.data_root'))
            ann_file = dataset.get('ann_file')
            if isinstance(ann_file, str) and ann_file:
                path = _join(data_root, ann_file)
                if not _is_remote(path) and not osp.isfile(path):
                    raise ConfigPathError(
                        f'The annotation file {_where(path)} ({key}.ann_file) does not '
                        'exist. ' + help_text.replace('{key}', key + '.ann_file'))
            for prefix_key, prefix in _prefix_paths(dataset.get('data_prefix')):
                path = _join(data_root, prefix)
                if path and not _is_remote(path) and not osp.exists(path):
                    raise ConfigPathError(
                        f'The folder {_where(path)} ({key}.{prefix_key}) does not exist. ' +
                        help_text.replace('{key}', f'{key}.{prefix_key}'))


def check_evaluator_paths(
    cfg: Any, evaluators: Sequence[str] = ('val_evaluator', 'test_evaluator')) -> None:
    """Check the annotation files that evaluators read themselves (e.g. ``CocoMetric``).

    Args:
        cfg (Config | dict): The full config.
        evaluators (Sequence[str]): Top-level evaluator keys to check. Defaults to
            ``('val_evaluator', 'test_evaluator')``.

    Raises:
        ConfigPathError: Naming the missing annotation file and its config key.
    """
    for eval_key in evaluators:
        evaluator = _get(cfg, eval_key)
        metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
        for i, metric in enumerate(metrics):
            ann_file = _get(metric, 'ann_file')
            if not isinstance(ann_file, str) or not ann_file or _is_remote(ann_file):
                continue
            if not osp.isfile(ann_file):
                key = eval_key if len(metrics) == 1 else f'{eval_key}[{i}]'
                raise ConfigPathError(
                    f'The annotation file {_where(ann_file)} ({key}.ann_file) does not exist. ' +
                    _dataset_help(cfg, dict(
                        type='CocoDataset')).replace('{key}', key + '.ann_file'))


def iter_pretrained_paths(cfg: Any, key: str = 'model') -> Iterator[Tuple[str, str, str]]:
    """Yield every ``Pretrained`` init and ``pretrained`` entry of a model config.

    Yields:
        tuple: The config key of the path, the path, and the key to set to None to train
        without it.
    """
    if isinstance(cfg, (list, tuple)):
        for i, item in enumerate(cfg):
            yield from iter_pretrained_paths(item, f'{key}[{i}]')
        return
    if not hasattr(cfg, 'items'):
        return
    for name, value in cfg.items():
        child = f'{key}.{name}'
        if name == 'init_cfg':
            inits = value if isinstance(value, (list, tuple)) else [value]
            for i, init in enumerate(inits):
                if _get(init, 'type') == 'Pretrained' and isinstance(_get(init, 'checkpoint'), str):
                    where = child if len(inits) == 1 else f'{child}[{i}]'
                    yield where + '.checkpoint', init['checkpoint'], child
        elif name == 'pretrained' and isinstance(value, str):
            yield child, value, child
        else:
            yield from iter_pretrained_paths(value, child)


def check_pretrained_files(cfg: Any) -> None:
    """Check that every local pretrained-weights file the model config names is a checkpoint.

    Args:
        cfg (Config | dict): The full config (its ``model`` is searched).

    Raises:
        ConfigPathError: Naming the missing file, the config key, where to get the file and
            how to train without it; or naming an empty, truncated or foreign file.
    """
    for key, path, disable_key in iter_pretrained_paths(_get(cfg, 'model')):
        if _is_remote(path):
            continue
        if osp.isfile(path):
            _check_format(path, key)
            continue
        name = osp.basename(path)
        if name in GLNET_RELEASE_FILES:
            source = (f'{name} is an official GLNet release file: download it from the model '
                      'card in the README of https://github.com/rayleizhu/GLMix and save it as '
                      f'{path} (the README\'s "Pretrained weights" section lists every file).')
        else:
            source = f'Download or convert the weights and save them as {path}.'
        raise ConfigPathError(
            f'The pretrained weights file {_where(path)} ({key}) does not exist. {source} To '
            f'train from random initialisation instead, pass --cfg-options {disable_key}=None.')


def check_checkpoint_file(path: str, what: str = 'checkpoint') -> None:
    """Check that a checkpoint given on the command line exists and is a torch checkpoint.

    Args:
        path (str): The file.
        what (str): How to call it in the message. Defaults to ``'checkpoint'``.

    Raises:
        ConfigPathError: When a local ``path`` is not a file, or is empty, truncated or not a
            torch checkpoint.
    """
    if _is_remote(path):
        return
    if osp.isfile(path):
        _check_format(path)
        return
    raise ConfigPathError(
        f'The {what} {_where(path)} does not exist. Give a .pth file written by '
        'tools/train.py (work_dirs/<config name>/iter_<n>.pth or epoch_<n>.pth; the file '
        'last_checkpoint there names the latest one).')
