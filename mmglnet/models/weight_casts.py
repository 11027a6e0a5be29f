"""Autocast's casts of GLNet's weights, made by one multi-tensor copy per forward.

Under autocast every convolution and linear layer casts its float32 weight and bias to
float16/bfloat16 each time it runs. GLNet-4G has 621 parameter tensors, and its eager
forward dispatches 1373 operators, 629 of them casts: on a GPU each is a launch from the host,
and the host's time bounds the eager forward (docs/benchmark.md, "Eager batch-1 latency: the
host's share"). In a forward without gradients, :class:`BatchedWeightCasts` casts the
parameters that are only ever read through those casts with a single ``torch._foreach_copy_``
into buffers kept between forwards (one multi-tensor kernel on CUDA), and runs the forward
with the parameters' data swapped for their copies: autocast finds them in its dtype and
casts nothing. The parameters get their float32 data back when the forward ends, however it
ends.

The residual depth-wise convolutions (:class:`~mmglnet.models.layers.ResidualDWConv`) add
the identity kernel to their float32 weight and have autocast cast the sum, an addition and a
cast each per forward (120 operators of GLNet-4G's). In the batch, two more multi-tensor
operations make those sums in float32 buffers, the copy casts them with the rest, and each
module is handed its folded kernel for the forward.

The copies are refreshed at every forward, so they never go stale: weights changed in place
by an optimizer, a loaded checkpoint or an EMA swapped in through ``.data`` (which torch's
version counters do not see) are read as they are now. The outputs are bit-identical to
autocast's own casts, which round the same way, of the same float32 sums.
"""
import contextlib
import threading
from typing import Dict, Iterator, List, Optional, Tuple, Type

import torch
import torch.nn as nn

from .attention import MultiheadSelfAttention
from .layers import (DepthwiseConv2d, LayerNorm, LayerNorm2d, PointwiseConv2d, ResidualDWConv,
                     compiling_disallowed, eager_autocast_dtype, triton_layer_norm_chosen)

# The dtypes autocast casts the weights to.
BATCHED_CAST_DTYPES = (torch.float16, torch.bfloat16)

# Module class (exactly: the reference path's subclasses read some of them otherwise) -> the
# parameters its forward reads only through autocast's casts. Left out: a ResidualDWConv's
# weight, to which the identity kernel is added in float32 before the cast; BatchNorm, layer
# scales, slot temperatures and learned slots, read in float32.
CAST_ONLY_PARAMETERS: Dict[Type[nn.Module], Tuple[str, ...]] = {
    nn.Conv2d: ('weight', 'bias'),
    DepthwiseConv2d: ('weight', 'bias'),
    PointwiseConv2d: ('weight', 'bias'),
    ResidualDWConv: ('bias', ),
    nn.Linear: ('weight', 'bias'),
    MultiheadSelfAttention: ('in_proj_weight', 'in_proj_bias'),
    # The fast path's LayerNorms cast their weight and bias to autocast's dtype themselves,
    # except where the Triton kernels read them in float32 (see cast_only_parameters).
    LayerNorm: ('weight', 'bias'),
    LayerNorm2d: ('weight', 'bias'),
}
_LAYER_NORMS = (LayerNorm, LayerNorm2d)


def residual_dw_convs(candidates: List[Tuple[nn.Module, Type[nn.Module]]]) -> List[ResidualDWConv]:
    """The residual depth-wise convolutions among :func:`cast_only_candidates` whose folded
    kernel may be made in the batch: of that class still (not switched to the reference
    path), with a float32 weight."""
    return [
        module for module, cls in candidates if cls is ResidualDWConv and type(module) is cls
        and module.weight.dtype is torch.float32 and module.identity.dtype is torch.float32
    ]


def batched_cast_dtype(x: torch.Tensor) -> Optional[torch.dtype]:
    """The dtype in which a forward of ``x`` may have its weights cast in one batch, or None:
    autocast's float16/bfloat16 in an eager forward without gradients (not compiling,
    tracing or exporting, where the swapped parameters would be recorded)."""
    if torch.is_grad_enabled() or compiling_disallowed():
        return None
    dtype = eager_autocast_dtype(x.device.type)
    return dtype if dtype in BATCHED_CAST_DTYPES else None


def cast_only_parameters(module: nn.Module, device: torch.device,
                         dtype: torch.dtype) -> List[nn.Parameter]:
    """The float32 parameters of ``module`` (and its children) that a forward
    under autocast in ``dtype`` reads only through casts to ``dtype``
    (:data:`CAST_ONLY_PARAMETERS`)."""
    return select_cast_only(cast_only_candidates(module), device, dtype)


def cast_only_candidates(module: nn.Module) -> List[Tuple[nn.Module, Type[nn.Module]]]:
    """The submodules of ``module`` (itself included) whose class
    :data:`CAST_ONLY_PARAMETERS` lists, with that class."""
    return [(submodule, type(submodule)) for submodule in module.modules()
            if type(submodule) in CAST_ONLY_PARAMETERS]


def select_cast_only(candidates: List[Tuple[nn.Module, Type[nn.Module]]], device: torch.device,
                     dtype: torch.dtype) -> List[nn.Parameter]:
    """:func:`cast_only_parameters` from :func:`cast_only_candidates` (``device``: the
    input's, which decides the LayerNorms' kernels): a module whose class
    has changed since (the reference path's, see :func:`mmglnet.testing.set_impl`) is left
    out, and each parameter is read from its module now."""
    # Where the Triton LayerNorm may run, it reads the norms' float32 weights (it may take
    # every input, so all of them are left out).
    triton_layer_norm = triton_layer_norm_chosen(device.type, dtype)
    params, seen = [], set()
    for submodule, cls in candidates:
        if type(submodule) is not cls or (triton_layer_norm and cls in _LAYER_NORMS):
            continue
        for name in CAST_ONLY_PARAMETERS[cls]:
            param = submodule._parameters.get(name)
            # A parameter shared by two modules is taken once.
            if param is not None and param.dtype is torch.float32 and id(param) not in seen:
                seen.add(id(param))
                params.append(param)
    return params


class BatchedWeightCasts:
    """The 16-bit copies of a module's cast-only parameters and folded residual kernels,
    refreshed at every forward in one multi-tensor copy (see the module's description).

    The module's submodules that may hold such parameters are listed at the first forward
    (a submodule added later keeps autocast's casts). The buffers are allocated once per dtype
    and set of parameters, and again when the parameters move (``.to()``, ``.cuda()``) or
    change. :meth:`clear` frees them and the list.

    The module's forwards run one at a time, in whatever mode: while one has the parameters
    swapped, another in another thread would read them as they change under it (autocast
    finding a copy that is put back before the kernel reads it, or a float32 forward the
    16-bit copies), or take the copies for the parameters' data and leave them there. A
    forward nested in the module's own forward, in the same thread, runs without swapping
    and reads the copies in place. A shallow copy of the module that shares this object
    (``nn.DataParallel``'s replicas) runs as if it were not there; a deep copy (mmengine's EMA
    model) gets its own.

    Args:
        module (nn.Module): The module whose forwards :meth:`applied` wraps.
    """

    def __init__(self, module: nn.Module) -> None:
        self._owner = module
        self._lock = threading.Lock()
        self._holder: Optional[int] = None  # the thread whose forward holds the lock
        self._candidates: Optional[List[Tuple[nn.Module, Type[nn.Module]]]] = None
        self._dtype: Optional[torch.dtype] = None
        self._sources: List[Tuple[int, int]] = []
        self._copies: List[torch.Tensor] = []
        self._folded: List[torch.Tensor] = []

    def clear(self) -> None:
        """Free the copies (e.g. when the module goes back to training)."""
        self._candidates, self._dtype, self._sources = None, None, []
        self._copies, self._folded = [], []

    def __getstate__(self) -> dict:
        # A deep copy or a pickle of the module gets a lock of its own, held by no one.
        state = self.__dict__.copy()
        del state['_lock']
        state['_holder'] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _buffers_for(self, data: List[torch.Tensor], kernels: List[torch.Tensor],
                     dtype: torch.dtype) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """The ``dtype`` copies of ``data`` then of the folded ``kernels``, and the float32
        buffers in which the kernels are folded."""
        # Where each tensor's data lies (its storage and offset: data_ptr() would read a fake
        # tensor's), to tell parameters moved or replaced since the buffers were made.
        sources = [(tensor.untyped_storage()._cdata, tensor.storage_offset())
                   for tensor in data + kernels]
        if dtype != self._dtype or sources != self._sources:
            # empty_like keeps the strides, as the multi-tensor kernels require. Normal tensors
            # even under torch.inference_mode(): an inference tensor could not be refreshed
            # by a later forward outside it.
            with torch.inference_mode(False):
                self._copies = [torch.empty_like(tensor, dtype=dtype) for tensor in data + kernels]
                self._folded = [torch.empty_like(kernel) for kernel in kernels]
            self._dtype, self._sources = dtype, sources
        return self._copies, self._folded

    @contextlib.contextmanager
    def applied(self, module: nn.Module, x: torch.Tensor, batch: bool = True) -> Iterator[None]:
        """Within: the forward of ``module`` on ``x``, the only one running (see the class's
        description); where ``batch`` is true and :func:`batched_cast_dtype` allows it for
        ``x``, ``module``'s cast-only parameters hold their copies in autocast's dtype, and
        its residual depth-wise convolutions their folded kernels in that dtype, made now.

        Args:
            module (nn.Module): The module about to run.
            x (Tensor): Its input.
            batch (bool): Whether the forward may have its weights cast in one batch (False
                where it runs compiled). Defaults to True.
        """
        # A graph being traced reads the parameters as they are when it runs.
        if compiling_disallowed() or module is not self._owner:
            yield
            return
        thread = threading.get_ident()
        if self._holder == thread:  # nested in this thread's own forward
            yield
            return
        with self._lock:
            self._holder = thread
            try:
                dtype = batched_cast_dtype(x) if batch else None
                if dtype is None:
                    yield
                    return
                if self._candidates is None:
                    self._candidates = cast_only_candidates(module)
                params = select_cast_only(self._candidates, x.device, dtype)
                residuals = residual_dw_convs(self._candidates)
                with self._swapped(params, residuals, dtype):
                    yield
            finally:
                self._holder = None

    @contextlib.contextmanager
    def _swapped(self, params: List[nn.Parameter], residuals: List[ResidualDWConv],
                 dtype: torch.dtype) -> Iterator[None]:
        """Within: ``params`` hold their refreshed copies in ``dtype``, ``residuals`` their
        folded kernels in ``dtype``."""
        if not params and not residuals:
            yield
            return
        data = [param.data for param in params]
        kernels = [conv.weight.data for conv in residuals]
        copies, folded = self._buffers_for(data, kernels, dtype)
        if residuals:
            # weight + identity in float32, as the module's own forward adds them.
            torch._foreach_copy_(folded, kernels)
            torch._foreach_add_(folded, [conv.identity for conv in residuals])
        torch._foreach_copy_(copies, data + folded)
        try:
            for param, copy in zip(params, copies):
                param.data = copy
            for conv, copy in zip(residuals, copies[len(params):]):
                conv.folded_kernel = copy
            yield
        finally:
            for param, tensor in zip(params, data):
                param.data = tensor
            for conv in residuals:
                conv.folded_kernel = None
