"""GLNet under :func:`torch.compile`: every block compiled, or the whole backbone as one graph.

``GLNet(compile_blocks=True)`` (or a dict of :func:`torch.compile` keywords) runs every block
through one compiled function, ``run_block(block, x)`` (regional compilation). The block is an
input of that function, so blocks of one class at one input shape share a compiled graph:
GLNet-4G compiles five graphs (its GLMix blocks at three strides, its attention blocks at two)
instead of one graph of the whole backbone, which keeps compilation short and leaves the rest
of a detector or segmentor (heads, losses, data preprocessing, with their data-dependent
shapes) in eager mode. Each block is then a compiled call of its own, with its own kernel
launches: on a GPU the step stays bound by the host launching them.

``GLNet(compile_backbone=True)`` (or a dict) runs the backbone's stem, stages and output norms
as one compiled call, ``run_backbone(backbone, x)``: one graph forward and one backward, fused
across block boundaries, and with ``mode='reduce-overhead'`` one CUDA graph each, replayed
without launching kernels one by one. It compiles longer (every block is traced) and
recompiles for every input shape it is specialised to.

Both options compile training forwards only, unless the backbone has ``compile_eval=True``:
validation and test images often vary in size, and each new size would compile again.

A graph is specialised to its input shape and training flag, and to whether a block has drop
path (its rate is an input: :class:`~mmglnet.models.layers.DropPath`); while the compiled
functions run, dynamo's per-function recompile limit is raised to :data:`RECOMPILE_LIMIT` so
that all of these fit (torch's default of 8 would send the rest back to eager mode).

Nothing compiled is stored in the model: its state dict, ``copy.deepcopy`` (EMA), pickling and
DDP see the plain modules. While tracing (FLOP counting) or exporting to ONNX, and inside a
``torch.compile`` of the whole model, GLNet runs eagerly.
"""
import os.path as osp
from typing import Callable, Dict, Optional, Union

import torch
import torch.nn as nn

from .config_errors import GLNetConfigError
from .layers import compiling_disallowed

# Keywords of torch.compile that make sense here (``model`` is the block or the backbone).
COMPILE_KEYS = ('fullgraph', 'dynamic', 'backend', 'mode', 'options', 'disable')

# The oldest torch whose torch.compile trains GLNet (checked with tests/test_compilation.py
# on torch 2.4.1, 2.5.1, 2.6.0, 2.11.0 and 2.14.1 on the CPU).
MIN_COMPILE_TORCH = '2.5'

# Graphs allowed per compiled function: for ``run_block`` (GLMix, attention) x strides x
# train/eval x drop path, and for both more input sizes with ``dynamic=False``.
RECOMPILE_LIMIT = 64

_COMPILED: Dict[tuple, Callable] = {}

# Devices on which torch.compile replays CUDA graphs.
CUDA_GRAPH_DEVICES = frozenset({'cuda'})
# Devices on which inductor's C++ wrapper (``options={'cpp_wrapper': True}``) is built against
# CUDA's toolkit.
CUDA_TOOLKIT_DEVICES = frozenset({'cuda'})
# Devices on which torch before CPP_WRAPPER_TRAINING_TORCH cannot build the C++ wrapper of a
# backward graph asked for through torch.compile's ``options``: the backward compiles lazily,
# at the first backward, after the options are undone, without the settings the wrapper of
# Triton kernels needs ("CudaKernelParamCache not populated", pytorch/pytorch#178845; fixed
# by #178847, found in torch 2.13.0's source and not in 2.11.0's, 2.12.0's or 2.12.1's).
CPP_WRAPPER_BACKWARD_BUG_DEVICES = frozenset({'cuda'})
CPP_WRAPPER_TRAINING_TORCH = '2.13'


def resolve_compile_cfg(value: Union[bool, dict, None],
                        option: str = 'compile_blocks') -> Optional[dict]:
    """The :func:`torch.compile` keywords for a compile option, or None for eager.

    Args:
        value (bool | dict | None): False or None: eager; True: torch's defaults; a dict:
            keywords of :func:`torch.compile` among :data:`COMPILE_KEYS`, e.g.
            ``dict(mode='max-autotune-no-cudagraphs', dynamic=False)``.
        option (str): The option's name, for the errors. Defaults to ``'compile_blocks'``.

    Returns:
        dict | None: The keywords.
    """
    if value is None or value is False:
        return None
    if value is True:
        cfg = {}
    elif isinstance(value, dict):
        cfg = dict(value)
        unknown = sorted(set(cfg) - set(COMPILE_KEYS))
        if unknown:
            raise GLNetConfigError(
                f'{option}={value!r} has unknown key(s) {unknown}: the dict holds '
                f'torch.compile keywords, one of {COMPILE_KEYS}.')
    else:
        raise GLNetConfigError(f'{option}={value!r} must be a bool or a dict of torch.compile '
                               f'keywords ({", ".join(COMPILE_KEYS)}).')
    if torch.__version__ < MIN_COMPILE_TORCH:
        raise RuntimeError(
            f'{option}={value!r} needs torch >= {MIN_COMPILE_TORCH}; this torch is '
            f'{torch.__version__}, whose compiler fails on GLNet\'s training graphs (torch '
            '2.4.1: inductor errors with drop path; torch 2.1: dynamo cannot trace the slot '
            f'logits). Set {option}=False (eager GLNet runs on torch >= 2.0), or upgrade torch.')
    return cfg


def run_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``block(x)``: the function ``compile_blocks`` compiles, once per set of keywords."""
    return block(x)


def run_backbone(backbone: nn.Module, x: torch.Tensor) -> tuple:
    """The backbone's stem, stages and output norms on ``x``
    (``backbone.forward_features(x)``): the function ``compile_backbone`` compiles."""
    return backbone.forward_features(x)


def compiled_run_block(cfg: dict) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    """:func:`run_block` compiled with ``cfg``, shared by every stage with the same keywords.

    Args:
        cfg (dict): Keywords of :func:`torch.compile`.

    Returns:
        Callable: ``fn(block, x)``.
    """
    return _compiled(run_block, cfg)


def compiled_run_backbone(cfg: dict) -> Callable[[nn.Module, torch.Tensor], tuple]:
    """:func:`run_backbone` compiled with ``cfg``, shared by every backbone with the same
    keywords (an EMA copy included: the weights are inputs of the graph).

    Args:
        cfg (dict): Keywords of :func:`torch.compile`.

    Returns:
        Callable: ``fn(backbone, x)``.
    """
    return _compiled(run_backbone, cfg)


def _compiled(fn: Callable, cfg: dict) -> Callable:
    key = (fn.__name__, repr(sorted(cfg.items())))
    if key not in _COMPILED:
        compiled = torch.compile(fn, **cfg)
        config = torch._dynamo.config
        # Named cache_size_limit before torch 2.7.
        name = 'recompile_limit' if hasattr(config, 'recompile_limit') else 'cache_size_limit'

        def run(module: nn.Module, x: torch.Tensor):
            limit = max(RECOMPILE_LIMIT, getattr(config, name))
            with config.patch(**{name: limit}):
                return compiled(module, x)

        _COMPILED[key] = run
    return _COMPILED[key]


def replays_cuda_graphs(cfg: Optional[dict]) -> bool:
    """Whether graphs compiled with ``cfg`` are replayed as CUDA graphs (torch's CUDA-graph
    trees): modes ``'reduce-overhead'`` and ``'max-autotune'``, or ``triton.cudagraphs`` in
    ``options``.

    Args:
        cfg (dict, optional): Keywords of :func:`torch.compile`, or None (eager).

    Returns:
        bool: Whether the compiled graphs run as CUDA graphs on a CUDA device.
    """
    if cfg is None:
        return False
    options = cfg.get('options') or {}
    if 'triton.cudagraphs' in options:
        return bool(options['triton.cudagraphs'])
    return cfg.get('mode') in ('reduce-overhead', 'max-autotune')


def uses_cpp_wrapper(cfg: Optional[dict]) -> bool:
    """Whether graphs compiled with ``cfg`` launch their kernels from inductor's C++ wrapper
    (``options={'cpp_wrapper': True}``) instead of generated Python.

    Args:
        cfg (dict, optional): Keywords of :func:`torch.compile`, or None (eager).

    Returns:
        bool: Whether ``cfg`` asks for the C++ wrapper.
    """
    return cfg is not None and bool((cfg.get('options') or {}).get('cpp_wrapper'))


def cuda_toolkit_home() -> Optional[str]:
    """The folder of CUDA's toolkit that torch's C++ builds use (``CUDA_HOME``, else the
    folder above ``nvcc``'s), where it holds CUDA's headers (``include/cuda.h``); else None:
    where ``nvcc`` is a launcher script in ``/usr/local/bin``, torch takes ``/usr/local``."""
    from torch.utils import cpp_extension
    home = cpp_extension.CUDA_HOME
    return home if home and osp.isfile(osp.join(home, 'include', 'cuda.h')) else None


def check_cpp_wrapper_toolkit(cfg: Optional[dict], device_type: str) -> None:
    """Refuse graphs compiled with inductor's C++ wrapper on CUDA where torch finds no CUDA
    toolkit to build the wrapper with: torch would fail only after tracing and compiling the
    graph, minutes later.

    Args:
        cfg (dict, optional): The blocks' or the backbone's :func:`torch.compile` keywords.
        device_type (str): The device the graphs run on, e.g. ``'cuda'``.

    Raises:
        RuntimeError: Naming ``CUDA_HOME`` and what to set.
    """
    if (not uses_cpp_wrapper(cfg) or device_type not in CUDA_TOOLKIT_DEVICES
            or cuda_toolkit_home() is not None):
        return
    from torch.utils import cpp_extension
    raise RuntimeError(
        f"GLNet compiled with {cfg!r} uses inductor's C++ wrapper, which on CUDA is built "
        "against CUDA's toolkit, and torch finds none with its headers (CUDA_HOME="
        f"{cpp_extension.CUDA_HOME!r}, include/cuda.h): set CUDA_HOME to the toolkit's folder "
        "(the one holding bin/nvcc and include/cuda.h), or leave out options={'cpp_wrapper': "
        'True}.')


def cpp_wrapper_trains(device_type: str) -> bool:
    """Whether this torch compiles backward graphs with inductor's C++ wrapper, asked for
    through :func:`torch.compile`'s ``options``, on ``device_type`` (see
    :data:`CPP_WRAPPER_BACKWARD_BUG_DEVICES`).

    Args:
        device_type (str): The device the graphs run on, e.g. ``'cuda'``.

    Returns:
        bool: False for CUDA before torch 2.13.
    """
    return (device_type not in CPP_WRAPPER_BACKWARD_BUG_DEVICES
            or torch.__version__ >= CPP_WRAPPER_TRAINING_TORCH)


def check_cpp_wrapper_training(cfg: Optional[dict], module: nn.Module, x: torch.Tensor) -> None:
    """Refuse a training forward compiled with inductor's C++ wrapper where this torch cannot
    build the wrapper of the backward graph (:func:`cpp_wrapper_trains`): torch would fail at
    the first backward, after the forward graph has been compiled, minutes later.

    Args:
        cfg (dict, optional): The blocks' or the backbone's :func:`torch.compile` keywords.
        module (nn.Module): The backbone.
        x (Tensor): Its input.

    Raises:
        RuntimeError: Naming the torch issue, the version that fixes it and the alternatives.
    """
    if (not (uses_cpp_wrapper(cfg) and module.training and torch.is_grad_enabled())
            or compiling_disallowed() or cpp_wrapper_trains(x.device.type)):
        return
    raise RuntimeError(
        f"GLNet compiled with {cfg!r} would train with inductor's C++ wrapper, whose backward "
        f'graphs torch {torch.__version__} cannot build on {x.device.type} when the wrapper is '
        "asked for through torch.compile's options: the backward compiles after the options "
        "are undone and fails (\"CudaKernelParamCache not populated\", pytorch/pytorch#178845, "
        f'fixed in torch {CPP_WRAPPER_TRAINING_TORCH}). Keep the wrapper for inference '
        '(compile_eval=True, the model in eval mode), train without options={\'cpp_wrapper\': '
        f'True}}, or upgrade torch to {CPP_WRAPPER_TRAINING_TORCH} or later.')


def begin_cuda_graph_step(cfg: Optional[dict], x: torch.Tensor) -> None:
    """Mark the start of a backbone forward for torch's CUDA-graph trees, where the blocks
    or the backbone are replayed as CUDA graphs on ``x``'s device.

    Each block is its own compiled call. Outside a training step, CUDA-graph trees take every
    compiled call as the start of a new iteration, whose replays may overwrite the outputs of
    the previous call: the input of the next block (pytorch/pytorch#152887, "accessing tensor
    output of CUDAGraphs that has been overwritten"). Marking the step once per backbone
    forward (:func:`torch.compiler.cudagraph_mark_step_begin`) keeps all the blocks of one
    forward in one iteration, in inference as in training. With the whole backbone compiled,
    the mark starts the iteration explicitly, as torch asks of a training loop. The outputs of
    a forward stay valid until the next forward, as with any CUDA-graph model.

    Args:
        cfg (dict, optional): The blocks' or the backbone's :func:`torch.compile` keywords.
        x (Tensor): The backbone's input.
    """
    if (replays_cuda_graphs(cfg) and x.device.type in CUDA_GRAPH_DEVICES
            and not compiling_disallowed()):
        torch.compiler.cudagraph_mark_step_begin()


def check_no_accumulated_gradients(cfg: Optional[dict], module: nn.Module, x: torch.Tensor) -> None:
    """Refuse a training forward, replaying CUDA graphs, whose parameters already hold
    gradients: gradient accumulation (several micro-batches' backwards before an optimizer
    step).

    A backward CUDA graph writes the gradients into its memory pool, and a parameter without a
    gradient takes that tensor as its ``.grad``; the next micro-batch's replay overwrites it
    before it is added to. torch then fails in the backward ("accessing tensor output of
    CUDAGraphs that has been overwritten"), or, in other versions, accumulates wrong
    gradients without a sign (pytorch/pytorch#169545). Checked on the first parameter that
    takes a gradient.

    Args:
        cfg (dict, optional): The blocks' or the backbone's :func:`torch.compile` keywords.
        module (nn.Module): The backbone.
        x (Tensor): Its input.

    Raises:
        RuntimeError: The gradients of an earlier backward are there.
    """
    if not (module.training and torch.is_grad_enabled() and replays_cuda_graphs(cfg)
            and x.device.type in CUDA_GRAPH_DEVICES) or compiling_disallowed():
        return
    param = next((p for p in module.parameters() if p.requires_grad), None)
    if param is not None and param.grad is not None:
        raise RuntimeError(
            f'GLNet compiled with {cfg!r} replays CUDA graphs, which cannot accumulate '
            'gradients: this training forward found the gradients of an earlier backward, '
            "and the next backward graph would overwrite them (torch's CUDA-graph trees, "
            'pytorch/pytorch#169545). Set accumulative_counts=1 in optim_wrapper (a larger '
            "batch instead), or use a mode without CUDA graphs (dict(mode='default') or "
            "'max-autotune-no-cudagraphs'). If you zero the gradients with "
            'set_to_none=False, use set_to_none=True (the default) instead.')
