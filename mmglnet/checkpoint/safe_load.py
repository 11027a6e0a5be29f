"""Checkpoints, in one place: safe reading, the official key layout, loading into a backbone.

Two kinds of files reach mmglnet:

* **mmengine checkpoints** (written by the Runner). torch >= 2.6 loads them with
  ``weights_only=True``; they also hold a few trusted mmengine and numpy objects
  (``message_hub`` history buffers, numpy arrays and dtypes), which :func:`allow_mmengine_types`
  allow-lists. Anything else in such a file raises :class:`UntrustedCheckpointError`, naming the
  object and the per-file opt-in (:func:`trust_checkpoint` or ``MMGLNET_TRUSTED_CHECKPOINTS``).
* **official GLNet release files**, which also hold training ``args`` (argparse or OmegaConf
  objects) and optimizer state. :func:`read_checkpoint_tensors` reads them with a restricted
  unpickler: tensors and plain containers are rebuilt, every other object becomes an inert
  :class:`UnloadedObject`, and nothing the file asks to call is called.
"""
import _compat_pickle
import os
import os.path as osp
import pickle
import re
from collections import OrderedDict
from typing import Any, Dict, Iterable, Optional

import torch
import torch.nn as nn
from mmengine.logging import MMLogger

TRUSTED_ENV = 'MMGLNET_TRUSTED_CHECKPOINTS'
_trusted_files = set()


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds an object that is not allow-listed for safe loading."""


# --------------------------------------------------------------------------------------------
# Restricted reading of release files: tensors only, everything else inert.
# --------------------------------------------------------------------------------------------
class UnloadedObject:
    """Inert stand-in for an object a checkpoint wanted to build (or a call it asked for).

    It records only the qualified name; constructor arguments and state are dropped.
    """
    qualified_name = '?'

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass

    def __repr__(self):
        return f'<unloaded {self.qualified_name}>'


def _placeholder(module: str, name: str) -> type:
    return type(name, (UnloadedObject, ), {'qualified_name': f'{module}.{name}'})


_SAFE_GLOBALS = {
    ('collections', 'OrderedDict'): OrderedDict,
    ('torch._utils', '_rebuild_tensor'): torch._utils._rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): torch._utils._rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): torch._utils._rebuild_parameter,
    ('torch', 'Size'): torch.Size,
    ('torch', 'device'): torch.device,
    ('builtins', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    ('builtins', 'slice'): slice,
    ('builtins', 'complex'): complex,
}
for _name in ('_rebuild_tensor_v3', '_rebuild_parameter_with_state'):
    if hasattr(torch._utils, _name):
        _SAFE_GLOBALS[('torch._utils', _name)] = getattr(torch._utils, _name)


class _TensorOnlyUnpickler(pickle.Unpickler):
    """Resolves only tensor-building globals; any other global becomes a placeholder class."""

    def find_class(self, module: str, name: str) -> Any:
        # What pickle.Unpickler.find_class does for protocol < 3 (Python 2 names).
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == 'torch' and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return _placeholder(module, name)


class _TensorOnlyPickleModule:
    """The ``pickle_module`` handed to :func:`torch.load` for restricted reading."""
    __name__ = 'mmglnet_tensor_only_pickle'
    Unpickler = _TensorOnlyUnpickler

    @staticmethod
    def load(file, **kwargs):
        return _TensorOnlyUnpickler(file, **kwargs).load()


def read_checkpoint_tensors(path: str, map_location: str = 'cpu') -> Any:
    """Read any checkpoint file without executing code from it.

    Tensors, dicts, lists and numbers are rebuilt; any other object (argparse namespaces,
    OmegaConf configs, numpy scalars, functions a malicious file names) becomes an inert
    :class:`UnloadedObject`.

    Args:
        path (str): Local file.
        map_location (str): Where tensors go. Defaults to ``'cpu'``.

    Returns:
        The file's top-level object (usually a dict).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'Checkpoint file {path!r} does not exist. Download the release file (see the '
            'README, "Pretrained weights") and put it there, or fix the path in your config.')
    return torch.load(
        path, map_location=map_location, pickle_module=_TensorOnlyPickleModule,
        weights_only=False)


# --------------------------------------------------------------------------------------------
# mmengine checkpoints under torch >= 2.6: allow-list, per-file trust, clear errors.
# --------------------------------------------------------------------------------------------
def _numpy_globals() -> list:
    import numpy as np
    try:
        multiarray = np._core.multiarray
    except AttributeError:
        multiarray = np.core.multiarray
    found = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    # The concrete dtype classes (numpy >= 1.25): ``numpy.dtypes.Float64DType`` and friends.
    for code in '?bBhHiIlLqQefdgFDGUSV':
        found.append(type(np.dtype(code)))
    return found


HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_statistic(owner: Any, name: str) -> Any:
    """Stands in for ``getattr`` while unpickling: resolves only HistoryBuffer statistics.

    A ``HistoryBuffer`` pickles its statistics methods as ``getattr(HistoryBuffer, 'min')``;
    allow-listing ``getattr`` itself would allow attribute access on any allowed object.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    # The built-in statistics, plus any registered since (the class table fills only once a
    # buffer exists, so a fresh process has it empty).
    known = set(HISTORY_BUFFER_STATISTICS) | set(HistoryBuffer._statistics_methods)
    if owner is HistoryBuffer and name in known:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'Refusing getattr({owner!r}, {name!r}) while loading a checkpoint: only '
        'HistoryBuffer statistics are resolved.')


def allow_mmengine_types() -> None:
    """Allow-list the objects mmengine itself writes into checkpoints for weights-only loading.

    These are mmengine's ``HistoryBuffer`` (``message_hub``) with its statistics methods, and
    numpy arrays, scalars and dtypes. Called when mmglnet is imported; does not switch the
    weights-only check off.
    """
    if not hasattr(torch.serialization, 'add_safe_globals'):
        return
    from mmengine.logging.history_buffer import HistoryBuffer
    torch.serialization.add_safe_globals(
        [HistoryBuffer, (_history_buffer_statistic, 'builtins.getattr'),
         (_history_buffer_statistic, '__builtin__.getattr')] + _numpy_globals())


def trust_checkpoint(path: str) -> None:
    """Opt in to full (unrestricted) unpickling of one checkpoint file you trust.

    Equivalent to listing the file in the ``MMGLNET_TRUSTED_CHECKPOINTS`` environment variable
    (paths separated by ``os.pathsep``). Unpickling can run arbitrary code: only do this for
    files from a source you trust.
    """
    _trusted_files.add(osp.realpath(path))


def is_trusted(path: str) -> bool:
    """Whether ``path`` was opted in to unrestricted unpickling."""
    env = [p for p in os.environ.get(TRUSTED_ENV, '').split(os.pathsep) if p]
    trusted = _trusted_files | {osp.realpath(p) for p in env}
    return osp.realpath(path) in trusted


def load_local_checkpoint(filename: str, map_location=None) -> Any:
    """mmengine's local-file checkpoint loader, with weights-only loading kept on.

    Registered for local paths when mmglnet is imported, so every mmengine loader (Runner
    ``load_from``/``--resume``, ``load_checkpoint``, ``Pretrained`` init) goes through it.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if is_trusted(filename):
        return torch.load(filename, map_location=map_location, weights_only=False)
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        match = re.search(r'GLOBAL ([\w\.]+)', str(error))
        what = match.group(1) if match else 'an object that is not allow-listed'
        if match and '.' not in what:  # torch names builtins without their module
            what = f'builtins.{what}'
        raise UntrustedCheckpointError(
            f'Checkpoint {filename!r} holds {what}, which is not a tensor or one of the types '
            'mmengine writes, so it is not loaded: unpickling it could run code. If you trust '
            f'this file, opt in for it alone with the environment variable {TRUSTED_ENV}='
            f'{filename} or mmglnet.checkpoint.trust_checkpoint(path) (README, "Checkpoint '
            'safety"). An official GLNet release file can instead be converted with '
            'tools/model_converters/glnet2mm.py or given to the backbone init_cfg directly.'
        ) from error


def register_safe_local_loader() -> None:
    """Install :func:`load_local_checkpoint` as mmengine's loader for local paths."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)


# --------------------------------------------------------------------------------------------
# Official key layout and loading into a GLNet backbone.
# --------------------------------------------------------------------------------------------
OFFICIAL_CLASSIFIER_PREFIXES = ('head.', 'tklb_aux_head.')


def _tensor_items(mapping: Any) -> Dict[str, torch.Tensor]:
    if not isinstance(mapping, dict):
        return {}
    return {k: v for k, v in mapping.items() if isinstance(k, str) and torch.is_tensor(v)}


def _strip(state: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def extract_backbone_state(checkpoint: Any, weights_key: str = 'model',
                           prefix: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """The backbone's tensors from an official release file or an mm checkpoint.

    Args:
        checkpoint: What :func:`read_checkpoint_tensors` returned.
        weights_key (str): Entry of an official file that holds the weights. Defaults to
            ``'model'``.
        prefix (str, optional): For mm checkpoints, the prefix of the backbone's keys in
            ``state_dict`` (``'backbone.'``). Defaults to None.

    Returns:
        dict: Backbone keys (the official ``norm.*`` final norm renamed ``norm3.*``).
    """
    if not isinstance(checkpoint, dict):
        raise ValueError(f'A checkpoint must hold a dict, got {type(checkpoint).__name__}.')
    top_keys = sorted(str(k) for k in checkpoint)
    if prefix:
        source = _tensor_items(checkpoint.get('state_dict', checkpoint))
        state = _strip(source, prefix)
        if not state:
            raise ValueError(
                f'No key of the checkpoint starts with prefix={prefix!r} (top-level keys: '
                f'{top_keys}). For an official release file, drop prefix from init_cfg.')
        return state
    if weights_key in checkpoint:
        source = _tensor_items(checkpoint[weights_key])
        if source and all(k.startswith('module.') for k in source):
            source = _strip(source, 'module.')
        state = {}
        for key, value in source.items():
            if key.startswith(OFFICIAL_CLASSIFIER_PREFIXES):
                continue
            state['norm3.' + key[len('norm.'):] if key.startswith('norm.') else key] = value
        return state
    if 'state_dict' in checkpoint:
        source = _tensor_items(checkpoint['state_dict'])
        backbone = _strip(source, 'backbone.')
        return backbone or source
    official = [k for k in ('model', 'model_ema') if k in checkpoint]
    if official:
        raise KeyError(
            f'weights_key={weights_key!r} is not in the checkpoint; it holds {top_keys}. '
            f'Set the backbone argument weights_key to one of {official}.')
    flat = _tensor_items(checkpoint)
    if flat and len(flat) == len(checkpoint):
        return flat
    raise KeyError(
        f'Cannot find weights in the checkpoint (top-level keys: {top_keys}); expected an '
        "official file ('model' / 'model_ema') or an mm checkpoint ('state_dict').")


def load_pretrained_backbone(backbone: nn.Module, path: str, prefix: Optional[str] = None,
                             weights_key: str = 'model') -> Dict[str, list]:
    """Load an official release file or an mm checkpoint into a GLNet backbone.

    Casts tensors to the model's dtypes, logs missing, unexpected and mismatched keys, and
    raises if no weight matched (never a silent no-op). The official final BatchNorm
    (``norm.*``) is loaded into ``norm3`` only when that output norm is a BatchNorm.

    Returns:
        dict: ``loaded``, ``missing``, ``unexpected``, ``mismatched`` and ``skipped`` key lists.
    """
    logger = MMLogger.get_current_instance()
    state = extract_backbone_state(read_checkpoint_tensors(path), weights_key, prefix)
    own = backbone.state_dict()
    # An output norm saved as a BatchNorm (the official final norm, or a classifier's) does not
    # belong in a LayerNorm output norm of the same shape: skip it instead of loading it.
    skipped = []
    for index in range(4):
        norm = getattr(backbone, f'norm{index}', None)
        saved_as_bn = f'norm{index}.running_mean' in state
        if saved_as_bn and not isinstance(norm, nn.modules.batchnorm._BatchNorm):
            skipped += sorted(k for k in state if k.startswith(f'norm{index}.'))
    for key in skipped:
        state.pop(key)
    mismatched = sorted(
        f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
        for k, v in state.items() if k in own and v.shape != own[k].shape)
    loadable = {
        k: v.to(own[k].dtype) if v.is_floating_point() else v
        for k, v in state.items() if k in own and v.shape == own[k].shape
    }
    missing = sorted(set(own) - set(loadable))
    unexpected = sorted(set(state) - set(own))
    if not loadable:
        raise RuntimeError(
            f'No weight of {path!r} matches the GLNet backbone (arch '
            f'{getattr(backbone, "arch_name", "?")}): {len(unexpected)} unexpected keys (e.g. '
            f'{unexpected[:3]}), {len(mismatched)} shape mismatches (e.g. {mismatched[:2]}). '
            'Check the arch, the prefix (use prefix="backbone." for mm checkpoints) and '
            'weights_key.')
    backbone.load_state_dict(loadable, strict=False)
    logger.info(f'Loaded {len(loadable)}/{len(own)} GLNet backbone tensors from {path}'
                + (f" (weights '{weights_key}')" if not prefix else f' (prefix {prefix!r})'))
    for title, keys in (('missing', missing), ('unexpected', unexpected),
                        ('mismatched', mismatched)):
        if keys:
            logger.warning(f'{len(keys)} {title} key(s) loading {path}: {_short(keys)}')
    if skipped:
        logger.info(f'Skipped {_short(skipped)}: saved from a BatchNorm (the classifier\'s '
                    'final norm), while this backbone\'s output norm is not one.')
    return dict(loaded=sorted(loadable), missing=missing, unexpected=unexpected,
                mismatched=mismatched, skipped=skipped)


def _short(keys: Iterable[str], limit: int = 20) -> str:
    keys = list(keys)
    more = f' ... and {len(keys) - limit} more' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more
