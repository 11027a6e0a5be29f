"""Preparing a config for mmengine's Runner: the command line's overrides, the codebase,
CPU processes, mixed precision; the device a tool is asked to run on.

Steps ``tools/train.py`` and ``tools/test.py`` share, for mmdet, mmseg and mmpretrain configs
alike (the codebase's registry is set up by :func:`mmglnet.apis.register_codebase`).
"""
import argparse
import copy
import os
import os.path as osp
from typing import Any

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from mmglnet.apis import register_codebase
from mmglnet.utils import ConfigFileError, load_config

from .config_checks import ConfigBuildError, build_error_message

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN', 'TorchSyncBN')


def load_run_config(args: argparse.Namespace) -> Config:
    """The config of a train or test run, with the command line's settings applied.

    Args:
        args (argparse.Namespace): ``config`` (path), ``launcher``, ``cfg_options`` (dict or
            None) and ``work_dir`` (None: the config's, else ``./work_dirs/<config name>``).

    Returns:
        Config: The config.

    Raises:
        ConfigFileError: The file does not exist or cannot be parsed (named, with the line).
    """
    if not osp.isfile(args.config):
        raise ConfigFileError(f'config file {args.config!r} does not exist.')
    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    # work_dir: command line > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def build_runner(cfg: Config):
    """mmengine's Runner for ``cfg`` (or the config's ``runner_type``); it builds the model.

    Args:
        cfg (Config): The prepared config.

    Returns:
        Runner: The runner.

    Raises:
        GLNetConfigError: A GLNet setting of the config cannot be built (the tools report it
            in one line).
        ConfigBuildError: The config names a type no registry holds, or gives a class an
            argument it does not take: the message names the config key.
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    try:
        return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    except (KeyError, TypeError) as error:
        message = build_error_message(cfg, error)
        if message is None:
            raise
        raise ConfigBuildError(message) from error


def check_device(name: str) -> str:
    """Check that a tool's ``--device`` names a device this machine has, before any work.

    Args:
        name (str): ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or another device torch knows.

    Returns:
        str: ``name``.

    Raises:
        ValueError: Naming the value, the devices there are and what to give instead.
    """
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f'--device {name!r} is not a device name torch knows. Give cpu, cuda '
                         'or cuda:N.') from None
    if device.type == 'cpu':
        return name
    if device.type == 'cuda':
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f'--device {name}: this machine has no CUDA device that torch can use (torch '
                f'{torch.__version__}, built for CUDA {torch.version.cuda}). Give --device cpu.')
        if device.index is not None and device.index >= count:
            raise ValueError(f'--device {name}: this machine has {count} CUDA device(s), '
                             f'cuda:0 to cuda:{count - 1}. Give one of them.')
        return name
    backend = getattr(torch, device.type, None)
    if not getattr(backend, 'is_available', lambda: False)():
        raise ValueError(f'--device {name}: no {device.type} device is available here. Give '
                         '--device cpu (or cuda on a machine with an NVIDIA GPU).')
    return name


def prepare_runtime(cfg: Config, launcher: str) -> None:
    """Set up what mmengine's Runner needs before it is built: the registries of the config's
    codebase, and on machines without CUDA the processes (:func:`setup_cpu_distributed`).

    Raises:
        ImportError: The config's codebase is not installed (named, with what to install).
        RuntimeError: A launcher that needs CUDA on a machine without it.
    """
    register_codebase(cfg)
    setup_cpu_distributed(cfg, launcher)


def _to_plain_bn(node: Any) -> int:
    """Replace SyncBN norm configs by BN in place; returns how many were replaced."""
    count = 0
    if isinstance(node, (list, tuple)):
        for item in node:
            count += _to_plain_bn(item)
    elif hasattr(node, 'items'):
        if node.get('type') in SYNC_BN_TYPES:
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += _to_plain_bn(value)
    return count


def setup_cpu_distributed(cfg: Config, launcher: str) -> bool:
    """Prepare multi-process training without CUDA (gloo), before the Runner is built.

    mmengine's ``init_dist`` selects a CUDA device and fails on CPU-only machines. When the
    job is launched by torchrun (``--launcher pytorch``) and CUDA is absent, this initialises
    the gloo process group itself (mmengine then skips its own initialisation), wraps the model
    in ``MMDistributedDataParallel`` without device ids, and turns SyncBN into BN (SyncBN
    refuses CPU modules). With CUDA, or single-process, nothing changes.

    Args:
        cfg (Config): The config; changed in place.
        launcher (str): One of ``'none'``, ``'pytorch'``, ``'slurm'``, ``'mpi'``.

    Returns:
        bool: Whether the CPU set-up was applied.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f'launcher={launcher!r}; choose one of {LAUNCHERS}.')
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise RuntimeError(
            f'--launcher {launcher} needs CUDA devices, and none is available. On CPU-only '
            'machines, start the processes with torchrun (bash tools/dist_train.sh CONFIG N), '
            'which uses --launcher pytorch and the gloo backend.')
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = copy.deepcopy(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    replaced = _to_plain_bn(cfg.get('model'))
    if cfg.get('sync_bn') is not None:
        cfg.sync_bn = None
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    print_log(
        f'CPU processes: gloo process group of world size {dist.get_world_size()} '
        f'(rank {dist.get_rank()}, LOCAL_RANK {os.environ.get("LOCAL_RANK")})' +
        (f'; {replaced} SyncBN layer config(s) changed to BN' if replaced else ''),
        logger='current')
    return True


def finish_distributed() -> None:
    """Destroy the default process group, if any, once a tool's work is done.

    Left to the interpreter's exit, the gloo group's threads are sometimes torn down in an
    order that aborts the process (``terminate called without an active exception``, SIGABRT)
    after the results were printed, and torchrun then reports the run as failed. The barrier
    first waits until every rank has finished its collectives, so that no rank tears down
    connections another still uses: one such abort was seen with the group destroyed but
    no barrier (the test suite's compiled-backbone DDP run, once); its cause is unconfirmed.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def enable_amp(cfg: Config) -> None:
    """Switch the config's optimizer wrapper to mmengine's ``AmpOptimWrapper``.

    Args:
        cfg (Config): The config; changed in place.

    Raises:
        RuntimeError: When no GPU (or other accelerator mmengine supports for mixed
            precision) is present; mmengine's ``AmpOptimWrapper`` refuses the CPU.
    """
    from mmengine.device import get_device
    device = get_device()
    if device == 'cpu':
        raise RuntimeError(
            '--amp trains with mixed precision through mmengine\'s AmpOptimWrapper, which '
            'needs a GPU (or NPU/MLU/MUSA device); none is available here. Run without --amp '
            'on the CPU: the configs use the plain OptimWrapper.')
    optim_wrapper = cfg.get('optim_wrapper')
    if optim_wrapper is None:
        raise RuntimeError('--amp needs an optim_wrapper in the config; this one has none.')
    kind = optim_wrapper.get('type', 'OptimWrapper')
    if kind == 'AmpOptimWrapper':
        print_log('--amp: the config already uses AmpOptimWrapper.', logger='current')
        return
    if kind != 'OptimWrapper':
        raise RuntimeError(
            f'--amp replaces the plain OptimWrapper by AmpOptimWrapper, but this config uses '
            f'optim_wrapper.type={kind!r}. Set the AMP wrapper in the config instead.')
    optim_wrapper['type'] = 'AmpOptimWrapper'
    optim_wrapper.setdefault('loss_scale', 'dynamic')
