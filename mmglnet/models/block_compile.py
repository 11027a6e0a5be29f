"""Regional compilation of the GLNet blocks with :func:`torch.compile`.

``GLNet(compile_blocks=True)`` (or a dict of :func:`torch.compile` keywords) runs every block
through one compiled function, ``run_block(block, x)``. The block is an input of that function,
so blocks of one class at one input shape share a compiled graph: GLNet-4G compiles five graphs
(its GLMix blocks at three strides, its attention blocks at two) instead of one graph of the
whole backbone, which keeps compilation short and leaves the rest of a detector or segmentor
(heads, losses, data preprocessing, with their data-dependent shapes) in eager mode.

A block's graph is specialised to its input shape and training flag, and to whether it has
drop path (its rate is an input: :class:`~mmglnet.models.layers.DropPath`); while the blocks
run, dynamo's per-function recompile limit is raised to :data:`RECOMPILE_LIMIT` so that all
of these fit (torch's default of 8 would send the rest back to eager mode).

Nothing compiled is stored in the model: its state dict, ``copy.deepcopy`` (EMA), pickling and
DDP see the plain modules. While tracing (FLOP counting) or exporting to ONNX, and inside a
``torch.compile`` of the whole model, the blocks run eagerly.
"""
from typing import Callable, Dict, Optional, Union

import torch
import torch.nn as nn

from .layers import is_compiling
from .pooling import is_exporting

# Keywords of torch.compile that make sense for a block (``model`` is the block itself).
COMPILE_KEYS = ('fullgraph', 'dynamic', 'backend', 'mode', 'options', 'disable')

# Graphs allowed for ``run_block``: (GLMix, attention) x strides x train/eval x drop path,
# and more input sizes with ``dynamic=False``.
RECOMPILE_LIMIT = 64

_COMPILED: Dict[str, Callable] = {}


def resolve_compile_cfg(compile_blocks: Union[bool, dict, None]) -> Optional[dict]:
    """The :func:`torch.compile` keywords for ``compile_blocks``, or None for eager blocks.

    Args:
        compile_blocks (bool | dict | None): False or None: eager; True: torch's defaults;
            a dict: keywords of :func:`torch.compile` among :data:`COMPILE_KEYS`, e.g.
            ``dict(mode='max-autotune-no-cudagraphs', dynamic=False)``.

    Returns:
        dict | None: The keywords.
    """
    if compile_blocks is None or compile_blocks is False:
        return None
    if compile_blocks is True:
        cfg = {}
    elif isinstance(compile_blocks, dict):
        cfg = dict(compile_blocks)
        unknown = sorted(set(cfg) - set(COMPILE_KEYS))
        if unknown:
            raise ValueError(
                f'compile_blocks={compile_blocks!r} has unknown key(s) {unknown}: the dict '
                f'holds torch.compile keywords, one of {COMPILE_KEYS}.')
    else:
        raise TypeError(f'compile_blocks={compile_blocks!r} must be a bool or a dict of '
                        f'torch.compile keywords ({", ".join(COMPILE_KEYS)}).')
    if not hasattr(torch, 'compile'):
        raise RuntimeError(f'compile_blocks={compile_blocks!r} needs torch.compile (torch >= '
                           f'2.0); this torch is {torch.__version__}. Set compile_blocks=False.')
    return cfg


def run_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``block(x)``: the function that is compiled, once per set of keywords."""
    return block(x)


def compiled_run_block(cfg: dict) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    """:func:`run_block` compiled with ``cfg``, shared by every stage with the same keywords.

    Args:
        cfg (dict): Keywords of :func:`torch.compile`.

    Returns:
        Callable: ``fn(block, x)``.
    """
    key = repr(sorted(cfg.items()))
    if key not in _COMPILED:
        compiled = torch.compile(run_block, **cfg)

        def run(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
            limit = max(RECOMPILE_LIMIT, torch._dynamo.config.recompile_limit)
            with torch._dynamo.config.patch(recompile_limit=limit):
                return compiled(block, x)

        _COMPILED[key] = run
    return _COMPILED[key]


def compiling_disallowed() -> bool:
    """Whether blocks must run eagerly now: JIT tracing, ONNX export, or an outer compile."""
    return torch.jit.is_tracing() or is_exporting() or is_compiling()
