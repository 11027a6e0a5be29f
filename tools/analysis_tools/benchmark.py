"""Benchmark GLNet backbones against peer backbones, every model in the same mode.

Measures, side by side in one run (the models take turns in every repeat, so a change of
load on the machine hits all of them alike):

* ``infer``: inference throughput (images/s) at ``--infer-size`` with ``--batch-size``, in
  each of ``--precision`` (fp32, or fp16/bf16 autocast);
* ``train``: a training step (forward, backward, AdamW; GradScaler with fp16) at
  ``--train-size`` with ``--train-batch-size``: images/s and peak memory;
* ``latency``: batch-1 latency at each of ``--latency-sizes`` and its peak memory.

``--compile``, ``--cuda-graphs``, ``--channels-last`` and ``--fused-optimizer`` apply to every
model of the run. ``--cuda-graphs`` without ``--compile`` captures every model's eager forward
(inference, latency), or its forward and backward (training step; AdamW and the loss scaler
stay outside), as CUDA graphs that replay its kernels without launching them one by one.
``--count-ops`` records, for every eager model, the ATen operators one step
of the model dispatches (views excluded; the optimizer's apart): on a GPU each is about one
kernel launch, the host-side cost that bounds an eager step when the kernels are short.
``--profile`` also records the device kernels of the profiled step and their total time.
Every model that ``torch.compile`` should replay as CUDA graphs (``mode='reduce-overhead'``
or ``'max-autotune'``) has ``cudagraph_skips`` in its row, the graphs compiled while it was
built and warmed up that torch runs without CUDA graphs, and their reasons: its figure is a
CUDA-graph figure only where that is 0.

Peak memory (CUDA) is read over the timed iterations only, after the warm-up, so cuDNN's
autotuning workspaces do not count; it is the step's own memory plus the model's parameters
(and, in training, gradients and optimizer state), as a run with that model alone would see.
A model that replays CUDA graphs (captured here, or by ``torch.compile``) allocates nothing
while it is timed: its graphs hold their memory in private pools from their capture on, so its
step memory is what those pools grew by while it was built and warmed up, plus what the timed
iterations allocated outside them (gradients a graph wrote into its pool counted once).
torch.compile's CUDA-graph trees share one pool per GPU, which a later model of the same run
can partly reuse: its figure can then be lower than alone. A row also says how many graphs
dynamo compiled while the model was timed (``graphs_compiled_while_timed``): a figure with
compilation in it is not the model's speed.

The table is printed and written as JSON with the device, the library versions, the git
commit and the exact command; ``render_benchmark_docs.py`` builds ``docs/benchmark.md`` from
the JSON files committed under ``docs/benchmarks/``. The JSON is rewritten after every case,
and a run told to stop (SIGTERM, as ``timeout`` sends it, or Ctrl-C) writes what it measured,
says where it stopped (``cut_short``) and exits with status 3: each model's first repeat is
timed right after its warm-up, so every model that finished warming up has a figure.

Models: ``glnet_<arch>`` (``stl``, ``stl_paramslot``, ``4g``, ``9g``, ``16g``) with the fast
implementation, ``glnet_<arch>_reference`` with the reference one
(:mod:`mmglnet.testing.reference`), ``glnet_<arch>_compile_blocks`` with the fast one and the
backbone's ``compile_blocks`` option (every block compiled; not compiled again by
``--compile``), ``glnet_<arch>_compile_blocks_cudagraphs`` the same with
``mode='reduce-overhead'`` (each compiled block replayed as a CUDA graph),
``glnet_<arch>_compile_backbone``, ``glnet_<arch>_compile_backbone_cudagraphs`` and
``glnet_<arch>_compile_backbone_autotune`` (``mode='max-autotune-no-cudagraphs'``) the same
with the ``compile_backbone`` option (the backbone compiled as one graph; with ``--compile``
the other models are compiled in the same mode, which the tool checks),
``glnet_<arch>_compile_backbone_cpp_wrapper`` the same in torch's default mode with inductor's
C++ wrapper (``options={'cpp_wrapper': True}``: the kernels launched from C++ rather than from
generated Python; on CUDA it builds against CUDA's toolkit, which the tool checks first; with
``--compile`` the other models need ``--compile-options cpp_wrapper=True``),
``glnet_<arch>_torch_pooling`` with the fast one but torch's adaptive pooling kernel for the
initial slots on every device (to measure the fast path's own pooling on CUDA,
:func:`mmglnet.models.pooling.slot_pool2d`), ``glnet_<arch>_conv_pointwise`` with the fast one
but its pointwise convolutions computed by convolution calls on every device (to measure its
products with a fused bias on CUDA, :class:`mmglnet.models.layers.PointwiseConv2d`),
``glnet_<arch>_triton_layernorm`` with the fast one and its LayerNorms computed by mmglnet's
Triton kernels in eager mode on CUDA (an experiment, :mod:`mmglnet.models.triton_layer_norm`;
its first forward, and its gradients in training, are checked against torch's kernels),
``glnet_<arch>_triton_bias_grad`` with the fast one and the gradients of its convolutions'
biases summed by mmglnet's Triton kernel in eager mode on CUDA (an experiment for training,
:mod:`mmglnet.models.triton_bias_grad`, checked likewise),
``glnet_<arch>_autocast_casts`` with the fast one and ``batch_weight_casts=False``
(autocast casting each weight at every forward, as before that option became GLNet's
default: the host's time it saves, :mod:`mmglnet.models.weight_casts`),
``glnet_<arch>_triton_bias_gelu`` with the fast one and the bias of each
FFN's depth-wise convolution added with its GELU by mmglnet's Triton kernel in eager forwards
without gradients on CUDA (an experiment for inference,
:mod:`mmglnet.models.triton_bias_gelu`, checked likewise),
``glnet_<arch>_triton_layernorm_bias_gelu`` with both Triton inference experiments together;
``glnet_<arch>_compile_backbone[_cudagraphs]_shift_dwconv`` with the residual depth-wise
convolutions computed as shifted products under compilation
(:func:`mmglnet.models.layers.depthwise_conv_by_shifts`, fused by inductor with their
neighbours); ``swin_t`` and ``convnext_t`` from timm
(``swin_tiny_patch4_window7_224``, ``convnext_tiny``); ``swin_t_mmdet`` (mmdet's
SwinTransformer with the Swin-T settings). Every eager model has a ``<model>_precast``
twin for inference and latency, whose weights that autocast casts at every forward are
stored cast beforehand (:class:`PrecastWeights`): the host's time for those casts (GLNet's
twin is built with autocast's own casts, ``batch_weight_casts=False``). Every
model runs up to its last stage, with the norm its detection/segmentation use applies there,
and no classifier.

Examples:
    # CPU: GLNet-4G fast and reference paths and mmdet's Swin-T, forward at 224, batch 8
    python tools/analysis_tools/benchmark.py \\
        --models glnet_4g glnet_4g_reference swin_t_mmdet --modes infer --threads 2

    # GPU: fp16 inference against timm's Swin-T and ConvNeXt-T, then compiled
    python tools/analysis_tools/benchmark.py --models glnet_4g glnet_stl swin_t convnext_t \\
        --modes infer --precision fp16 --channels-last
    python tools/analysis_tools/benchmark.py --models glnet_4g swin_t convnext_t \\
        --modes infer --precision fp16 --channels-last --compile

    # GPU: the same, every model compiled with inductor's C++ wrapper
    python tools/analysis_tools/benchmark.py --models glnet_4g_compile_backbone_cpp_wrapper \\
        swin_t convnext_t --modes infer --precision fp16 --channels-last --compile \\
        --compile-options cpp_wrapper=True
"""
import argparse
import contextlib
import ctypes
import datetime
import faulthandler
import gc
import io
import json
import logging
import os
import os.path as osp
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.config import DictAction
from torch.utils._python_dispatch import TorchDispatchMode

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # run from a checkout without `pip install -e .`
# Views launch no kernel on a GPU and are left out of --count-ops.
from mmglnet.testing.autocast_reads import VIEW_OPS  # noqa: E402

MODES = ('infer', 'train', 'latency')
PRECISIONS = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}
GLNET_ARCHS = ('stl', 'stl_paramslot', '4g', '9g', '16g')
SCHEMA_VERSION = 1
# Model-name suffixes of a GLNet that compiles itself as a config would set it: its option
# (compile_blocks: every block compiled; compile_backbone: the backbone as one graph) and
# its torch.compile keywords, torch's default mode, mode='reduce-overhead' (the compiled
# graphs replayed as CUDA graphs) or mode='max-autotune-no-cudagraphs' (kernels chosen by
# timing candidates, Triton matrix products with fused epilogues among them). Such a model is
# not compiled again by --compile, which must then use the same mode.
SELF_COMPILING = {
    '_compile_blocks': ('compile_blocks', dict(dynamic=False)),
    '_compile_blocks_cudagraphs': ('compile_blocks', dict(dynamic=False, mode='reduce-overhead')),
    '_compile_backbone': ('compile_backbone', dict(dynamic=False)),
    '_compile_backbone_cudagraphs':
    ('compile_backbone', dict(dynamic=False, mode='reduce-overhead')),
    '_compile_backbone_autotune':
    ('compile_backbone', dict(dynamic=False, mode='max-autotune-no-cudagraphs')),
    # Inductor's C++ wrapper: the compiled graph launches its kernels from C++ instead of
    # generated Python, less host time per kernel (torch's default mode otherwise).
    '_compile_backbone_cpp_wrapper': ('compile_backbone',
                                      dict(dynamic=False, options={'cpp_wrapper': True})),
}
# Appended to a compile_backbone model: the residual depth-wise convolutions computed as shifted
# products under torch.compile (an experiment; see mmglnet.models.layers).
SHIFTED_DW_CONV_SUFFIX = '_shift_dwconv'


class Features(nn.Module):
    """Runs ``fn(model, x)``: the backbone up to its last stage, as a module."""

    def __init__(self, model: nn.Module, fn: Callable) -> None:
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, x: torch.Tensor):
        return self.fn(self.model, x)


class WithDevices(nn.Module):
    """Runs ``model`` with a device set of the GLNet code (``module.attribute``, e.g. the
    devices of the fast slot pooling) replaced by ``devices`` during its forward."""

    def __init__(self, model: nn.Module, module: str, attribute: str, devices: frozenset) -> None:
        super().__init__()
        self.model = model
        self.module = module
        self.attribute = attribute
        self.devices = devices

    def forward(self, x: torch.Tensor):
        import importlib
        module = importlib.import_module(self.module)
        kept = getattr(module, self.attribute)
        setattr(module, self.attribute, self.devices)
        try:
            return self.model(x)
        finally:
            setattr(module, self.attribute, kept)


def torch_slot_pooling(model: nn.Module) -> WithDevices:
    """``model`` with torch's adaptive pooling kernel for the GLMix slots on every device: the
    fast path's own pooling (a mean or averaging products on CUDA) switched off."""
    return WithDevices(model, 'mmglnet.models.pooling', 'FAST_SLOT_POOLING_DEVICES', frozenset())


def shifted_dw_convs(model: nn.Module) -> WithDevices:
    """``model`` with its residual depth-wise convolutions computed as shifted products under
    torch.compile on every device (:func:`mmglnet.models.layers.depthwise_conv_by_shifts`)."""
    return WithDevices(model, 'mmglnet.models.layers', 'SHIFTED_DW_CONV_DEVICES',
                       frozenset({'cuda', 'cpu'}))


@contextlib.contextmanager
def exact_float32(device_type: str):
    """float32 without autocast and without TF32 (cuDNN's convolutions, CUDA's matrix
    products): the closest to exact that the model computes."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    kept = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        with torch.autocast(
                device_type, enabled=False), cudnn.flags(
                    enabled=cudnn.enabled,
                    benchmark=cudnn.benchmark,
                    deterministic=cudnn.deterministic,
                    allow_tf32=False):
            yield
    finally:
        matmul.allow_tf32 = kept


def parameter_kind(name: str) -> str:
    """``name`` with its indices starred: ``'stages.2.blocks.0.norm1.weight'`` is of the kind
    ``'stages.*.blocks.*.norm1.weight'``, as is the same parameter of every block."""
    return re.sub(r'(?<=\.)\d+(?=\.)', '*', name)


def by_kind(results: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``results`` (outputs, parameter gradients) with the tensors of one
    :func:`parameter_kind` flattened and joined in one, in the order of ``results``."""
    kinds: Dict[str, List[torch.Tensor]] = {}
    for name, tensor in results.items():
        kinds.setdefault(parameter_kind(name), []).append(tensor.flatten())
    return {kind: torch.cat(tensors) for kind, tensors in kinds.items()}


class CheckedWithDevices(WithDevices):
    """A :class:`WithDevices` whose first forward is checked against the model's own, for a
    choice that computes differently (another kernel, other roundings): the figures of the
    variant then come from kernels that give the model's results on that device.

    The variant may not be further from the model computed in :func:`exact_float32` than the
    model itself is, in its own precision, by more than ``factor`` times (plus ``floor``
    times the exact figure's norm, for the tensors the model computes almost exactly): its
    outputs, and where the forward is differentiated (a training step) the gradients of a
    fixed random projection of the outputs with respect to every parameter, compared per
    kind of parameter (:func:`parameter_kind`: the same parameter of every block together).
    Distances are Euclidean norms. Otherwise the forward raises: the model fails in the run,
    with no figure. The check leaves the parameters' ``.grad`` alone. A variant may wrap
    another: both compare with the innermost model, without any variant, and the inner one
    checks itself in the outer one's first forward, in that forward's precision, with the
    outer choice on.

    Calibrated on the CPU (``tests/triton_interpreted.py``): in GLNet training steps in
    float16 and bfloat16 the Triton LayerNorm and bias gradients came within 0.65 of the
    allowance. Compared tensor by tensor, a slot temperature's gradient, a scalar summed
    with cancellation, came to 1.22 times it for the LayerNorm in bfloat16: rounding noise,
    which its kind averages over the blocks. A LayerNorm weight gradient computed from the
    input instead of the normalised input was 4 (bfloat16) to 34 (float16) times over; a
    weight or bias gradient 2% too large, 2.3 to 4.5 times in float16 (within bfloat16's
    noise).
    """

    def __init__(self,
                 model: nn.Module,
                 module: str,
                 attribute: str,
                 devices: frozenset,
                 factor: float = 3.,
                 floor: float = 1e-3) -> None:
        super().__init__(model, module, attribute, devices)
        self.factor = factor
        self.floor = floor
        self.checked = False

    def forward(self, x: torch.Tensor):
        if not self.checked:
            self._check(x)
            self.checked = True
        return super().forward(x)

    def _results(self, forward: Callable, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Outputs (``'output N'``) and, where a gradient is taken, parameter gradients by
        name, in float32."""
        outputs = as_tuple(forward(x))
        results = {f'output {i}': out.detach().float() for i, out in enumerate(outputs)}
        params = [(name, p) for name, p in self.model.named_parameters() if p.requires_grad]
        if torch.is_grad_enabled() and params:
            generator = torch.Generator(x.device).manual_seed(0)
            loss = sum((out.float() *
                        torch.randn(out.shape, generator=generator, device=out.device)).sum()
                       for out in outputs)
            grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
            results.update({
                name: g.float()
                for (name, _), g in zip(params, grads) if g is not None
            })
        return results

    def _check(self, x: torch.Tensor) -> None:
        choice = f'{self.attribute}={set(self.devices)}'
        # The model without any variant: a variant this one wraps checks itself, in the
        # forward below, with this one's choice on.
        model = self.model
        while isinstance(model, WithDevices):
            model = model.model
        with exact_float32(x.device.type):
            exact = by_kind(self._results(model, x))
        reference = by_kind(self._results(model, x))
        results = by_kind(self._results(super().forward, x))
        if results.keys() != reference.keys():
            raise RuntimeError(f'{choice} gave {sorted(results)}, the model {sorted(reference)}')
        for key, want in exact.items():
            model_error = (reference[key] - want).norm().item()
            allowed = self.factor * model_error + self.floor * want.norm().item()
            error = (results[key] - want).norm().item()
            if not error <= allowed:  # NaN fails too
                raise RuntimeError(
                    f'{choice} is {error:.3g} from the float32 {key} (norm '
                    f'{want.norm().item():.3g}), the model {model_error:.3g}: over the '
                    f'{allowed:.3g} allowed')


def triton_layer_norms(
    model: nn.Module, devices: frozenset = frozenset({'cuda'})) -> CheckedWithDevices:
    """``model`` with its LayerNorms, and their gradients, computed by mmglnet's Triton
    kernels in eager mode on CUDA (``devices``; :mod:`mmglnet.models.triton_layer_norm`, an
    experiment off by default), its first forward checked against torch's kernels
    (:class:`CheckedWithDevices`)."""
    return CheckedWithDevices(model, 'mmglnet.models.layers', 'TRITON_LAYER_NORM_DEVICES', devices)


def triton_bias_grads(model: nn.Module) -> CheckedWithDevices:
    """``model`` with the gradients of its convolutions' biases summed by mmglnet's Triton
    kernel in eager mode on CUDA (:mod:`mmglnet.models.triton_bias_grad`, an experiment off
    by default), its first forward checked against torch's backward
    (:class:`CheckedWithDevices`)."""
    return CheckedWithDevices(model, 'mmglnet.models.layers', 'TRITON_BIAS_GRAD_DEVICES',
                              frozenset({'cuda'}))


def triton_bias_gelus(
    model: nn.Module, devices: frozenset = frozenset({'cuda'})) -> CheckedWithDevices:
    """``model`` with the bias of each FFN's depth-wise convolution added with its GELU by
    mmglnet's Triton kernel in eager forwards without gradients on CUDA (``devices``;
    :mod:`mmglnet.models.triton_bias_gelu`, an experiment off by default), its first forward
    checked against torch's kernels (:class:`CheckedWithDevices`)."""
    return CheckedWithDevices(model, 'mmglnet.models.layers', 'TRITON_BIAS_GELU_DEVICES', devices)


def triton_inference_kernels(
    model: nn.Module, devices: frozenset = frozenset({'cuda'})) -> CheckedWithDevices:
    """``model`` with both Triton experiments of eager inference on ``devices``: the
    LayerNorm (:func:`triton_layer_norms`) and the FFN's bias with its GELU
    (:func:`triton_bias_gelus`), each checked on its first forward."""
    return triton_bias_gelus(triton_layer_norms(model, devices), devices)


def conv_pointwise(model: nn.Module) -> WithDevices:
    """``model`` with its pointwise convolutions computed by convolution calls on every device:
    the fast path's matrix products with a fused bias on CUDA
    (:class:`mmglnet.models.layers.PointwiseConv2d`) switched off."""
    return WithDevices(model, 'mmglnet.models.layers', 'LINEAR_POINTWISE_CONV_DEVICES', frozenset())


class PrecastWeights(nn.Module):
    """Runs ``model`` in eval mode with the parameters that autocast casts at every forward
    stored in the autocast dtype beforehand: the eager forward without those casts (an
    inference experiment, for any model).

    The first forward under autocast traces which parameters are only ever read through a
    cast to the autocast dtype (directly or through views); a parameter also read otherwise
    (BatchNorm's, a layer scale, a kernel with the identity added in float32) keeps its dtype.
    It converts those, runs the forward again and compares the outputs with the unconverted
    model's: equal to the bit where two unconverted forwards are (cuDNN's deterministic
    algorithms are asked for during the check), else within twice their run-to-run
    difference; otherwise, or if that forward fails, it restores the parameters and raises.
    Training is refused: AdamW keeps float32 weights. Peak-memory figures still count the
    weights as float32.

    Args:
        model (nn.Module): The model to run; its forward takes one tensor.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.cast_dtype: Optional[torch.dtype] = None
        self.precast_names: List[str] = []

    def forward(self, x: torch.Tensor):
        if self.training:
            raise RuntimeError('the *_precast models run inference and latency only: a '
                               'training step needs the float32 weights for AdamW')
        device_type = x.device.type
        if torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
            if self.cast_dtype is None:
                with torch.inference_mode(False), torch.no_grad():
                    self._precast(x, dtype)
            elif dtype != self.cast_dtype:
                raise RuntimeError(f'the weights were cast to {self.cast_dtype} for autocast, '
                                   f'which now asks for {dtype}: build the model again')
        elif self.cast_dtype is not None:
            raise RuntimeError(f'the weights were cast to {self.cast_dtype} for autocast, '
                               'which this forward runs without: build the model again')
        return self.model(x)

    def parameters_only_cast_to(self, x: torch.Tensor, dtype: torch.dtype) -> List[str]:
        """Names of the parameters that one forward of ``x`` reads only through casts to
        ``dtype`` (and views)."""
        from mmglnet.testing import parameters_only_cast_to

        # Without autocast's cache, which would serve the casts of an enclosing context.
        with torch.autocast(x.device.type, dtype=dtype, cache_enabled=False):
            return parameters_only_cast_to(self.model, lambda: self.model(x), dtype)

    def _precast(self, x: torch.Tensor, dtype: torch.dtype) -> None:
        """Casts the parameters :meth:`parameters_only_cast_to` finds, if the outputs stay."""
        cudnn = torch.backends.cudnn
        kept_flags = cudnn.deterministic, cudnn.benchmark
        cudnn.deterministic, cudnn.benchmark = True, False  # one algorithm for every forward
        try:
            reference = as_tuple(self.model(x))
            repeat = as_tuple(self.model(x))
            names = self.parameters_only_cast_to(x, dtype)
            params = dict(self.model.named_parameters())
            kept = {name: params[name].data for name in names}
            for name in names:
                params[name].data = kept[name].to(dtype)
            try:
                precast = as_tuple(self.model(x))
                noise = largest_difference(reference, repeat)
                error = largest_difference(reference, precast)
                if error > 2 * noise:
                    raise RuntimeError(f'casting {len(kept)} parameters to {dtype} beforehand '
                                       f'changed the outputs by up to {error:.3g} (run to run: '
                                       f'{noise:.3g})')
            except Exception:
                for name, data in kept.items():
                    params[name].data = data
                raise
        finally:
            cudnn.deterministic, cudnn.benchmark = kept_flags
        self.cast_dtype, self.precast_names = dtype, names


def largest_difference(outputs: tuple, others: tuple) -> float:
    """The largest absolute difference between two tuples of tensors."""
    return max((a.float() - b.float()).abs().max().item() for a, b in zip(outputs, others))


def build_glnet(arch: str,
                impl: str,
                compiling: Optional[Tuple[str, dict]] = None,
                variant: Optional[Callable[[nn.Module], nn.Module]] = None,
                options: Optional[dict] = None) -> Callable[[int], nn.Module]:
    """A builder of GLNet ``arch`` with the ``impl`` path, compiled by its own option where
    ``compiling`` gives it, wrapped by ``variant`` (e.g. :func:`torch_slot_pooling`), with the
    other GLNet ``options`` given (e.g. ``dict(batch_weight_casts=False)``)."""

    def build(image_size: int) -> nn.Module:
        from mmengine.config import Config

        from mmglnet.apis import build_model
        from mmglnet.testing import set_impl

        # The last stage with its output norm, as detection/segmentation configs use it.
        backbone = dict(type='mmglnet.GLNet', arch=arch, out_indices=(3, ), **(options or {}))
        if compiling:  # the backbone's own option: (name, torch.compile keywords)
            option, cfg = compiling
            backbone[option] = cfg
            backbone['compile_eval'] = True  # inference and latency run in eval mode
        model = set_impl(build_model(Config(dict(model=backbone))), impl)
        return variant(model) if variant else model

    return build


def build_timm(name: str, takes_image_size: bool) -> Callable[[int], nn.Module]:

    def build(image_size: int) -> nn.Module:
        import timm
        kwargs = dict(pretrained=False, num_classes=0)
        if takes_image_size:  # Swin's attention masks depend on the input size
            kwargs['img_size'] = image_size
        model = timm.create_model(name, **kwargs)
        return Features(model, lambda m, x: m.forward_features(x))

    return build


def build_mmdet_swin(image_size: int) -> nn.Module:
    from mmdet.models.backbones import SwinTransformer
    return SwinTransformer(
        embed_dims=96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        window_size=7,
        drop_path_rate=0.,
        out_indices=(3, ))


# Model-name suffixes of the fast path with one of its choices for CUDA switched off, to measure
# that choice (torch's adaptive pooling kernel for the slots, convolution calls for the
# pointwise convolutions), or an experiment switched on (the Triton LayerNorm, the Triton bias
# gradients, the Triton bias-GELU).
EAGER_VARIANTS = {
    '_torch_pooling': torch_slot_pooling,
    '_conv_pointwise': conv_pointwise,
    '_triton_layernorm': triton_layer_norms,
    '_triton_bias_grad': triton_bias_grads,
    '_triton_bias_gelu': triton_bias_gelus,
    '_triton_layernorm_bias_gelu': triton_inference_kernels,
}

# Model-name suffixes of the fast path with a GLNet option set otherwise than by default:
# (the options, an eager variant or None). Autocast's own weight casts, one per weight and
# forward, in place of the one multi-tensor copy (batch_weight_casts, the default).
OPTION_VARIANTS = {
    '_autocast_casts': (dict(batch_weight_casts=False), None),
}

# name -> builder(image_size) -> module whose forward returns a tensor or a tuple of them.
MODEL_BUILDERS: Dict[str, Callable[[int], nn.Module]] = {
    'swin_t': build_timm('swin_tiny_patch4_window7_224', takes_image_size=True),
    'convnext_t': build_timm('convnext_tiny', takes_image_size=False),
    'swin_t_mmdet': build_mmdet_swin,
}
for _arch in GLNET_ARCHS:
    MODEL_BUILDERS[f'glnet_{_arch}'] = build_glnet(_arch, 'fast')
    # The stand-in for the official code: autocast's own weight casts, as there.
    MODEL_BUILDERS[f'glnet_{_arch}_reference'] = build_glnet(
        _arch, 'reference', options=dict(batch_weight_casts=False))
    for _suffix, _compiling in SELF_COMPILING.items():
        MODEL_BUILDERS[f'glnet_{_arch}{_suffix}'] = build_glnet(_arch, 'fast', compiling=_compiling)
    for _suffix, _variant in EAGER_VARIANTS.items():
        MODEL_BUILDERS[f'glnet_{_arch}{_suffix}'] = build_glnet(_arch, 'fast', variant=_variant)
    for _suffix, (_options, _variant) in OPTION_VARIANTS.items():
        MODEL_BUILDERS[f'glnet_{_arch}{_suffix}'] = build_glnet(
            _arch, 'fast', variant=_variant, options=_options)
    for _suffix in ('_compile_backbone', '_compile_backbone_cudagraphs'):
        MODEL_BUILDERS[f'glnet_{_arch}{_suffix}{SHIFTED_DW_CONV_SUFFIX}'] = build_glnet(
            _arch, 'fast', compiling=SELF_COMPILING[_suffix], variant=shifted_dw_convs)

# Every eager model once more with the weights that autocast casts stored cast beforehand
# (inference and latency only).
PRECAST_SUFFIX = '_precast'


def build_precast(build: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
    return lambda image_size: PrecastWeights(build(image_size))


# Twin -> the model it is built from. GLNet's twin is built with autocast's own casts
# (``_autocast_casts``): with its weights cast beforehand, its default one batch of casts per
# forward would have nothing left to cast.
PRECAST_SOURCES = {name: name for name in ['swin_t', 'convnext_t', 'swin_t_mmdet']}
for _arch in GLNET_ARCHS:
    PRECAST_SOURCES[f'glnet_{_arch}'] = f'glnet_{_arch}_autocast_casts'
    PRECAST_SOURCES[f'glnet_{_arch}_reference'] = f'glnet_{_arch}_reference'
for _name, _source in PRECAST_SOURCES.items():
    MODEL_BUILDERS[_name + PRECAST_SUFFIX] = build_precast(MODEL_BUILDERS[_source])

# Defaults that differ between devices (a 2-core CPU runs far smaller problems).
DEVICE_DEFAULTS = {
    'cuda':
    dict(
        batch_size=128,
        infer_precision=['fp32', 'fp16'],
        train_size=512,
        train_batch_size=16,
        train_precision='fp16',
        latency_sizes=[448, 896, 1792],
        latency_precision='fp16',
        warmup=10,
        iters=30,
        repeats=5),
    'cpu':
    dict(
        batch_size=8,
        infer_precision=['fp32'],
        train_size=224,
        train_batch_size=4,
        train_precision='fp32',
        latency_sizes=[448],
        latency_precision='fp32',
        warmup=2,
        iters=3,
        repeats=5),
}


def refuse_unknown_models(parser: argparse.ArgumentParser, models: List[str]) -> None:
    """``parser.error`` naming the choices, for names not in :data:`MODEL_BUILDERS`."""
    unknown = [name for name in models if name not in MODEL_BUILDERS]
    if unknown:
        parser.error(f'unknown model(s) {unknown}; choose from {sorted(MODEL_BUILDERS)}')


def refuse_mixed_compile_modes(parser: argparse.ArgumentParser, args) -> None:
    """``parser.error`` for a GLNet compiled by its own option in another mode, or with other
    inductor options, than the ``--compile`` of the others: models are compared in one mode."""
    run_mode = compile_mode(args) or 'default'
    run_options = args.compile_options or {}
    for name in args.models:
        own = own_compilation(name)
        if own is None:
            continue
        if (own[1].get('mode') or 'default') != run_mode:
            parser.error(f"{name} compiles itself with mode={own[1].get('mode') or 'default'!r} "
                         f'but --compile compiles the other models with mode={run_mode!r}: '
                         'compare models in one mode. Give --compile-mode (or --cuda-graphs for '
                         "'reduce-overhead') to match, or pick the GLNet variant of that mode: "
                         f'{self_compiling_variants(name, run_mode)}.')
        own_options = own[1].get('options') or {}
        if own_options != run_options:
            matching = ('--compile-options ' + ' '.join(f'{k}={v}' for k, v in own_options.items())
                        if own_options else 'no --compile-options')
            parser.error(f'{name} compiles itself with options={own_options} but --compile '
                         f'compiles the other models with options={run_options}: compare '
                         f'models in one mode. Give {matching} to match, or pick the GLNet '
                         'variant with the options of the run.')


def refuse_bad_compile_options(parser: argparse.ArgumentParser, args) -> None:
    """``parser.error`` for ``--compile-options`` that torch would refuse or that compile
    nothing: without ``--compile``, or beside a mode (torch.compile takes one or the other)."""
    if not args.compile_options:
        return
    if not args.compile:
        parser.error(f'--compile-options {args.compile_options} are for the models --compile '
                     'compiles: add --compile, or leave the options out.')
    if compile_mode(args) is not None:
        parser.error(f'--compile-options {args.compile_options} cannot go with mode '
                     f'{compile_mode(args)!r} (--compile-mode or --cuda-graphs): torch.compile '
                     "takes a mode or options, not both. Give the mode's options instead (e.g. "
                     "'triton.cudagraphs=True' for CUDA graphs) or drop the options.")


def refuse_graphed_compiled_training(parser: argparse.ArgumentParser, models: List[str]) -> None:
    """``parser.error`` for a GLNet that compiles itself in a ``--cuda-graphs`` training step
    without ``--compile``, where every model's eager forward and backward are captured as
    CUDA graphs: torch.compile's own CUDA graphs are its ``*_cudagraphs`` variants."""
    compiled = [name for name in models if compiles_itself(name)]
    if compiled:
        parser.error(f'{compiled} compile themselves, but --cuda-graphs without --compile '
                     "captures every model's eager training step as CUDA graphs. For "
                     "torch.compile's CUDA graphs run --compile --cuda-graphs with the "
                     '*_cudagraphs variants, or leave these models out of this run.')


def refuse_cpp_wrapper_without_cuda_toolkit(parser: argparse.ArgumentParser, args) -> None:
    """``parser.error``, before any model is built, for a GLNet compiled with inductor's C++
    wrapper where GLNet would refuse it at its first forward
    (:func:`mmglnet.models.compilation.check_cpp_wrapper_toolkit`: no CUDA toolkit), and for
    ``--compile-options cpp_wrapper=True`` there, where torch would fail after compiling."""
    from mmglnet.models.compilation import check_cpp_wrapper_toolkit
    for name in args.models:
        own = own_compilation(name)
        try:
            check_cpp_wrapper_toolkit(own and own[1], args.device)
        except RuntimeError as error:
            parser.error(f'{name}: {error} Or leave {name} out of this run.')
    if args.compile:
        try:
            check_cpp_wrapper_toolkit(dict(options=args.compile_options), args.device)
        except RuntimeError as error:
            parser.error(f'--compile-options {args.compile_options}: {error}')


def refuse_cpp_wrapper_training(parser: argparse.ArgumentParser, args) -> None:
    """``parser.error`` for a training step compiled with inductor's C++ wrapper where this
    torch cannot build the wrapper of the backward graph
    (:func:`mmglnet.models.compilation.cpp_wrapper_trains`): GLNet refuses it at its first
    forward, and a peer would fail at its first backward, after its forward had compiled."""
    from mmglnet.models.compilation import (CPP_WRAPPER_TRAINING_TORCH, cpp_wrapper_trains,
                                            uses_cpp_wrapper)
    if 'train' not in args.modes or cpp_wrapper_trains(args.device):
        return
    wrapped = [name for name in args.models if uses_cpp_wrapper(compile_cfg(name, args))]
    if wrapped:
        parser.error(f"{wrapped} would train with inductor's C++ wrapper, whose backward graphs "
                     f'torch {torch.__version__} cannot build on {args.device} '
                     f'(pytorch/pytorch#178845, fixed in torch {CPP_WRAPPER_TRAINING_TORCH}): '
                     'measure them with --modes infer latency, or leave the wrapper out of the '
                     'training step.')


def self_compiling_variants(name: str, mode: str) -> List[str]:
    """The self-compiling models of ``name``'s arch whose own mode is ``mode``."""
    arch = name[len('glnet_'):].split('_compile_')[0]
    return [
        f'glnet_{arch}{suffix}' for suffix, (_, cfg) in SELF_COMPILING.items()
        if (cfg.get('mode') or 'default') == mode
    ]


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Benchmark GLNet against peer backbones, all in the same mode.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument(
        '--models',
        nargs='+',
        default=['glnet_4g', 'glnet_4g_reference'],
        help=f'models to compare; choices: {", ".join(MODEL_BUILDERS)}')
    parser.add_argument('--modes', nargs='+', default=['infer'], choices=MODES)
    parser.add_argument(
        '--device', default=None, help="'cuda' or 'cpu'; defaults to cuda where there is one")
    parser.add_argument(
        '--precision',
        nargs='+',
        choices=list(PRECISIONS),
        default=None,
        help='inference precisions (fp16/bf16 = autocast); '
        'default: fp32 and fp16 on CUDA, fp32 on the CPU')
    parser.add_argument(
        '--train-precision',
        choices=list(PRECISIONS),
        default=None,
        help='training-step precision; default fp16 on CUDA, fp32 on the CPU')
    parser.add_argument(
        '--latency-precision',
        choices=list(PRECISIONS),
        default=None,
        help='batch-1 latency precision; default fp16 on CUDA, fp32 on the CPU')
    parser.add_argument(
        '--batch-size',
        type=int,
        default=None,
        help='inference batch; default 128 on CUDA, 8 on the CPU')
    parser.add_argument('--infer-size', type=int, default=224)
    parser.add_argument(
        '--train-size',
        type=int,
        default=None,
        help='training input side; default 512 on CUDA, 224 on the CPU')
    parser.add_argument(
        '--train-batch-size',
        type=int,
        default=None,
        help='training batch; default 16 on CUDA, 4 on the CPU')
    parser.add_argument(
        '--latency-sizes',
        type=int,
        nargs='+',
        default=None,
        help='batch-1 input sides; default 448 896 1792 on CUDA, 448 on CPU')
    parser.add_argument(
        '--channels-last',
        action='store_true',
        help='model and input in the channels-last memory format (all models)')
    parser.add_argument('--compile', action='store_true', help='torch.compile every model')
    parser.add_argument(
        '--compile-mode',
        default=None,
        help="torch.compile mode, e.g. 'max-autotune'; with --cuda-graphs "
        "the default is 'reduce-overhead'")
    parser.add_argument(
        '--compile-options',
        nargs='+',
        action=DictAction,
        default=None,
        metavar='KEY=VALUE',
        help="inductor options for the models --compile compiles (torch.compile's options=, "
        'e.g. cpp_wrapper=True); not with a mode. A GLNet that compiles itself must have the '
        'same options (the *_cpp_wrapper variants for cpp_wrapper=True)')
    parser.add_argument(
        '--cuda-graphs',
        action='store_true',
        help='replay CUDA graphs: captured eager forward passes for infer and latency, '
        'eager forward and backward passes for train (torch.cuda.make_graphed_callables), '
        "or with --compile the 'reduce-overhead' mode")
    parser.add_argument(
        '--fused-optimizer',
        action='store_true',
        help="training steps use AdamW's fused kernels (fused=True) instead of torch's "
        'default (foreach on CUDA)')
    parser.add_argument(
        '--count-ops',
        action='store_true',
        help='count the ATen operators (views excluded) one step of every eager model '
        'dispatches: on a GPU, about its kernel launches')
    parser.add_argument('--warmup', type=int, default=None, help='warm-up iterations')
    parser.add_argument('--iters', type=int, default=None, help='iterations per measurement')
    parser.add_argument(
        '--repeats',
        type=int,
        default=None,
        help='measurements per model (models take turns); medians reported')
    parser.add_argument('--threads', type=int, default=None, help='CPU threads for torch')
    parser.add_argument(
        '--baseline',
        default=None,
        help='model the ratios refer to; default the first non-GLNet model')
    parser.add_argument(
        '--out',
        default=None,
        help='JSON output; default work_dirs/benchmarks/<device>_<time>.json')
    parser.add_argument(
        '--git-commit', default=None, help='commit to record where the working tree has no .git')
    parser.add_argument(
        '--profile',
        action='store_true',
        help='after timing, profile one step of every model (torch.profiler) '
        'and write the top operators next to the JSON output')
    parser.add_argument('--note', default='', help='free text stored with the results')
    parser.add_argument(
        '--dump-stacks-after',
        type=float,
        default=None,
        metavar='SECONDS',
        help="write every thread's Python stack to standard error once SECONDS have passed, "
        'if the run has not ended by then (a few seconds before a time limit): it needs no '
        'signal, so it shows where a stuck run stood even where a SIGTERM finds no handler')
    args = parser.parse_args(argv)

    refuse_unknown_models(parser, args.models)
    if args.dump_stacks_after is not None and args.dump_stacks_after <= 0:
        parser.error(f'--dump-stacks-after {args.dump_stacks_after} must be a positive number '
                     'of seconds (a few seconds less than the time the run is allowed)')
    if len(set(args.models)) != len(args.models):
        parser.error(f'--models {args.models} names a model twice')
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.device not in DEVICE_DEFAULTS:
        parser.error(f"--device {args.device!r} is not one of {sorted(DEVICE_DEFAULTS)}")
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda was asked for but torch sees no CUDA device; '
                     'pass --device cpu')
    if args.cuda_graphs and args.device != 'cuda':
        parser.error('--cuda-graphs needs --device cuda')
    if args.cuda_graphs and not args.compile and 'train' in args.modes:
        refuse_graphed_compiled_training(parser, args.models)
    refuse_bad_compile_options(parser, args)
    if args.compile:
        refuse_mixed_compile_modes(parser, args)
    refuse_cpp_wrapper_without_cuda_toolkit(parser, args)
    refuse_cpp_wrapper_training(parser, args)
    precast = [name for name in args.models if name.endswith(PRECAST_SUFFIX)]
    if precast and ('train' in args.modes or args.compile):
        parser.error(f'{precast} cast their weights once for eager inference: run them with '
                     '--modes infer latency and without --compile, or leave them out of this run')
    if args.baseline is not None and args.baseline not in args.models:
        parser.error(f'--baseline {args.baseline!r} is not among --models {args.models}')
    defaults = DEVICE_DEFAULTS[args.device]
    fill = dict(
        precision=defaults['infer_precision'],
        batch_size=defaults['batch_size'],
        train_size=defaults['train_size'],
        train_batch_size=defaults['train_batch_size'],
        train_precision=defaults['train_precision'],
        latency_sizes=defaults['latency_sizes'],
        latency_precision=defaults['latency_precision'],
        warmup=defaults['warmup'],
        iters=defaults['iters'],
        repeats=defaults['repeats'])
    for key, value in fill.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.baseline is None:
        peers = [name for name in args.models if not name.startswith('glnet_')]
        args.baseline = peers[0] if peers else args.models[0]
    return args


class Runner:
    """One model in one benchmark case: a step to repeat and how to time it."""

    def __init__(self, name: str, step: Callable[[], None], model: nn.Module,
                 static_bytes: int) -> None:
        self.name = name
        self.step = step
        self.model = model
        self.static_bytes = static_bytes
        self.warmup_seconds = 0.
        # Bytes the private memory pools (CUDA graphs) grew by while it was built and warmed up.
        self.graph_pool_bytes = 0
        # CudaGraphSkips of its build and warm-up, where it should replay CUDA graphs.
        self.cudagraph_skips: Optional[CudaGraphSkips] = None


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))


def as_tuple(outputs) -> tuple:
    return outputs if isinstance(outputs, (tuple, list)) else (outputs, )


def autocast(device: str, precision: str, cache_enabled: bool = True):
    dtype = PRECISIONS[precision]
    return torch.autocast(
        device,
        dtype=dtype or torch.float32,
        enabled=dtype is not None,
        cache_enabled=cache_enabled)


def prepare_model(name: str, image_size: int, args) -> nn.Module:
    model = MODEL_BUILDERS[name](image_size).to(args.device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def own_compilation(name: str) -> Optional[Tuple[str, dict]]:
    """The (option, torch.compile keywords) of a GLNet that compiles itself, else None."""
    if name.endswith(SHIFTED_DW_CONV_SUFFIX):
        name = name[:-len(SHIFTED_DW_CONV_SUFFIX)]
    return next((value for suffix, value in SELF_COMPILING.items() if name.endswith(suffix)), None)


def compiles_itself(name: str) -> bool:
    return own_compilation(name) is not None


def compile_mode(args) -> Optional[str]:
    """The mode of ``--compile``: ``--compile-mode``, or 'reduce-overhead' for
    ``--cuda-graphs``."""
    if args.compile_mode is None and args.cuda_graphs:
        return 'reduce-overhead'
    return args.compile_mode


def compile_cfg(name: str, args) -> Optional[dict]:
    """The :func:`torch.compile` keywords ``name`` runs with in this run: its own option's, or
    those of ``--compile``; None where it runs eagerly."""
    own = own_compilation(name)
    if own is not None:
        return own[1]
    if not args.compile:
        return None
    return dict(mode=compile_mode(args), options=args.compile_options)


def replays_compiled_cuda_graphs(name: str, args) -> bool:
    """Whether torch.compile should replay the graphs of ``name`` as CUDA graphs in this run."""
    from mmglnet.models.compilation import replays_cuda_graphs
    return replays_cuda_graphs(compile_cfg(name, args))


def compile_model(name: str, model: nn.Module, args) -> Callable:
    if compiles_itself(name):
        return model  # its blocks or itself are compiled already
    if args.compile_options:
        return torch.compile(model, options=args.compile_options)
    return torch.compile(model, mode=compile_mode(args))


class CudaGraphSkips(logging.Handler):
    """While active, counts the graphs torch.compile compiles for CUDA graphs but will run
    without them, and keeps torch's reasons (BatchNorm statistics or other mutated inputs
    that are not static, tensors on the CPU, ...).

    The count is inductor's own counter; the reasons are its warnings, which start with
    'skipping cudagraphs' and are logged on a GPU only (a CPU compile is counted silently).
    """

    PREFIX = 'skipping cudagraphs'
    MAX_REASONS = 5
    # Where the warnings arrive: torch's logging stops them there (propagate=False).
    LOGGER = 'torch._inductor'

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reasons: List[str] = []
        self.count = 0

    @staticmethod
    def _counted() -> int:
        from torch._dynamo.utils import counters
        return counters['inductor']['cudagraph_skips']

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if (message.startswith(self.PREFIX) and message not in self.reasons
                and len(self.reasons) < self.MAX_REASONS):
            self.reasons.append(message[:300])

    def __enter__(self) -> 'CudaGraphSkips':
        self._start = self._counted()
        logging.getLogger(self.LOGGER).addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger(self.LOGGER).removeHandler(self)
        self.count = self._counted() - self._start


def make_input(batch: int, size: int, args) -> torch.Tensor:
    x = torch.randn(batch, 3, size, size, device=args.device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def capture_cuda_graph(forward: Callable[[torch.Tensor], object], x: torch.Tensor,
                       warmup: int) -> Callable[[], None]:
    """Capture ``forward(x)`` in a CUDA graph (after warm-up on a side stream)."""
    static_input = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(max(warmup, 3)):
            forward(static_input)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        forward(static_input)
    return graph.replay


def inference_runner(name: str, batch: int, size: int, precision: str, args) -> Runner:
    model = prepare_model(name, size, args)
    model.eval()  # not chained: some backbones' train() returns None
    x = make_input(batch, size, args)
    fn = compile_model(name, model, args) if args.compile else model
    graphed = args.cuda_graphs and not args.compile

    def forward(inputs):
        # Autocast's weight cache cannot outlive a CUDA graph capture.
        with torch.inference_mode(), autocast(args.device, precision, not graphed):
            return fn(inputs)

    if graphed:
        step = capture_cuda_graph(forward, x, args.warmup)
    else:

        def step():
            forward(x)

    static = tensor_bytes(model.parameters()) + tensor_bytes(model.buffers())
    return Runner(name, step, model, static)


def optimizer_kwargs(args) -> dict:
    """AdamW's keywords for ``--fused-optimizer`` (torch's default implementation otherwise)."""
    return dict(fused=True) if args.fused_optimizer else {}


def graph_training_passes(model: nn.Module, x: torch.Tensor, precision: str, warmup: int,
                          device: str) -> nn.Module:
    """``model`` with its forward and backward on ``x`` captured as CUDA graphs and replayed
    (:func:`torch.cuda.make_graphed_callables`): the eager kernels without their launches.

    The capture runs under autocast of ``precision`` without its weight cache (the casts
    are kernels of the graphs); parameters the forward leaves unused (a classifier's) are
    allowed. The optimizer and the loss scaler stay outside, as in a training loop.
    """
    with autocast(device, precision, cache_enabled=False):
        return torch.cuda.make_graphed_callables(
            model, (x, ), num_warmup_iters=max(warmup, 3), allow_unused_input=True)


def train_runner(name: str, batch: int, size: int, precision: str, args) -> Runner:
    model = prepare_model(name, size, args)
    model.train()
    x = make_input(batch, size, args)
    if args.compile:
        fn = compile_model(name, model, args)
    elif args.cuda_graphs:
        fn = graph_training_passes(model, x, precision, args.warmup, args.device)
    else:
        fn = model
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=1e-4, weight_decay=0.05, **optimizer_kwargs(args))
    scaler = torch.amp.GradScaler(args.device, enabled=precision == 'fp16')

    # The models the tool compiles with CUDA graphs (GLNet's options mark their own steps).
    marks_steps = (
        args.compile and not compiles_itself(name) and replays_compiled_cuda_graphs(name, args))

    def step():
        optimizer.zero_grad(set_to_none=True)
        if marks_steps:  # as torch asks of a training loop with CUDA-graph trees
            torch.compiler.cudagraph_mark_step_begin()
        with autocast(args.device, precision):
            outputs = as_tuple(fn(x))
            loss = sum(out.float().mean() for out in outputs)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    params = list(model.parameters())
    # Parameters, their gradients and AdamW's two moments.
    static = 4 * tensor_bytes(params) + tensor_bytes(model.buffers())
    return Runner(name, step, model, static)


def graph_pool_segments() -> List[dict]:
    """The CUDA caching allocator's segments in private pools: the memory that CUDA graphs
    (captured by the tool or by torch.compile's CUDA-graph trees) hold between replays."""
    return [
        segment for segment in torch.cuda.memory_snapshot()
        if tuple(segment['segment_pool_id']) != (0, 0)
    ]


def segments_bytes(segments: List[dict]) -> int:
    return sum(segment['total_size'] for segment in segments)


def bytes_inside(tensors, segments: List[dict]) -> int:
    """Bytes of those ``tensors`` (None skipped) whose memory lies in one of ``segments``."""
    spans = [(segment['address'], segment['address'] + segment['total_size'])
             for segment in segments]
    inside = 0
    for tensor in tensors:
        if tensor is None:
            continue
        address = tensor.data_ptr()
        if any(start <= address < end for start, end in spans):
            inside += tensor.numel() * tensor.element_size()
    return inside


def compiled_graph_count() -> int:
    """Graphs dynamo has compiled in this process so far."""
    from torch._dynamo.utils import counters
    return counters['stats']['unique_graphs']


def measure(runner: Runner, iters: int, args, per_iteration_sync: bool) -> dict:
    """Seconds per iteration of ``iters`` steps, the peak memory while they ran, and the
    graphs dynamo compiled meanwhile."""
    cuda = args.device == 'cuda'
    compiled_before = compiled_graph_count()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    start = time.perf_counter()
    for _ in range(iters):
        tick = time.perf_counter()
        runner.step()
        if cuda and per_iteration_sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - tick)
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    result = dict(
        seconds_per_iter=elapsed / iters,
        median_iter_seconds=statistics.median(times),
        graphs_compiled=compiled_graph_count() - compiled_before)
    if cuda:
        step_bytes = torch.cuda.max_memory_allocated() - base
        # Next to nothing where the step replays CUDA graphs (their memory is in the pools).
        result['timed_alloc_mib'] = step_bytes / 2**20
        if runner.graph_pool_bytes:
            # The graphs' memory, less the gradients a backward graph wrote into its pool:
            # static_bytes counts those already.
            gradients = (param.grad for param in runner.model.parameters())
            step_bytes += runner.graph_pool_bytes - bytes_inside(gradients, graph_pool_segments())
        result['step_mem_mib'] = step_bytes / 2**20
        result['peak_mem_mib'] = (step_bytes + runner.static_bytes) / 2**20
    return result


class OperatorCounter(TorchDispatchMode):
    """Counts the ATen operators dispatched while active, by name, views excluded.

    Those of optimizer steps are counted apart (``optimizer_counts``): torch's default AdamW
    is one loop over the parameters on the CPU and a few multi-tensor kernels on CUDA, so
    only the model's own operators compare across devices.
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts = Counter()
        self.optimizer_counts = Counter()
        self._in_optimizer = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in VIEW_OPS:
            (self.optimizer_counts if self._in_optimizer else self.counts)[name] += 1
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        from torch.optim.optimizer import (register_optimizer_step_post_hook,
                                           register_optimizer_step_pre_hook)

        def enter_step(*_):
            self._in_optimizer = True

        def leave_step(*_):
            self._in_optimizer = False

        self._hooks = (register_optimizer_step_pre_hook(enter_step),
                       register_optimizer_step_post_hook(leave_step))
        return super().__enter__()

    def __exit__(self, *exc):
        for hook in self._hooks:
            hook.remove()
        return super().__exit__(*exc)


def count_step_ops(runner: Runner) -> OperatorCounter:
    """The operators one step of ``runner`` dispatches: the model's (forward, backward, loss
    scaling) and the optimizer's."""
    with OperatorCounter() as counter:
        runner.step()
    return counter


def dispatches_operators(name: str, args) -> bool:
    """Whether a step of ``name`` dispatches its operators one by one in this run: not where
    it runs compiled code or replays a CUDA graph (--count-ops leaves those out)."""
    return not (args.compile or args.cuda_graphs or compiles_itself(name))


def device_work(events) -> dict:
    """The device operations (kernels, copies) among profiler ``events`` and their total time.

    The ranges that annotations draw on the device's timeline (a compiled graph's call,
    ``CompiledFunctionBackward``, the optimizer's step) are not operations: they span
    kernels counted on their own, and counting them too gave a compiled model's busy time as
    three times its kernels' (H200, 2026-11-30).

    Args:
        events: ``torch.profiler.profile(...).events()``.

    Returns:
        dict: ``device_ops`` and ``device_busy_ms`` (the sum of their durations); empty when
        no device operation was recorded (a CPU run).
    """
    device_events = [
        event for event in events if event.device_type == torch.autograd.DeviceType.CUDA
        and not getattr(event, 'is_user_annotation', False)
    ]
    if not device_events:
        return {}
    busy_us = sum(event.time_range.elapsed_us() for event in device_events)
    return dict(device_ops=len(device_events), device_busy_ms=round(busy_us / 1e3, 3))


def profile_step(runner: Runner, args, rows: int = 30) -> tuple:
    """Profile one step of ``runner``.

    Returns:
        tuple[str, dict]: The operators by self time on the device (or the CPU), and
        :func:`device_work` of the step.
    """
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU]
    if args.device == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities, record_shapes=True) as prof:
        runner.step()
        if args.device == 'cuda':
            torch.cuda.synchronize()
    sort_by = 'self_cuda_time_total' if args.device == 'cuda' else 'self_cpu_time_total'
    table = prof.key_averages(group_by_input_shape=True).table(
        sort_by=sort_by, row_limit=rows, max_name_column_width=60, max_shapes_column_width=70)
    try:
        work = device_work(prof.events())
    except Exception as error:  # keep the timings of the run if the profiler's API differs
        print(f'  {runner.name}: no device figures from the profile ({error!r})', flush=True)
        work = {}
    return table, work


def release(runners: List[Runner]) -> None:
    runners.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    torch._dynamo.reset()


class CutShort(BaseException):
    """The run was told to stop (SIGTERM, as ``timeout`` sends it): what was measured is kept.

    A ``BaseException``, like ``KeyboardInterrupt``, so that neither the report of a model that
    fails to build nor ``torch.compile``'s own error handling takes it for a model's failure.
    """


def raise_cut_short(signum, frame) -> None:
    raise CutShort(signal.Signals(signum).name)


def stop_signal(stop: BaseException) -> str:
    """The signal that stopped the run: the one a :class:`CutShort` names, or SIGINT."""
    return 'SIGINT' if isinstance(stop, KeyboardInterrupt) else str(stop)


def run_case(case: dict, args) -> Tuple[List[dict], Optional[str]]:
    """Build every model for ``case``, warm it up and time its first repeat; then time the
    other repeats with the models in turns; then profile and count operators as asked.

    A model's first repeat is timed right after its warm-up, so that a run stopped at any
    point (:class:`CutShort`, ``KeyboardInterrupt``) still has a figure for every model that
    finished its warm-up; what it was doing when stopped is returned with the rows.

    Returns:
        tuple[list[dict], str | None]: A row per model (its error where it failed), and a
        sentence saying where the run was stopped, or None.
    """
    mode, batch, size, precision = case['mode'], case['batch'], case['size'], case['precision']
    build = train_runner if mode == 'train' else inference_runner
    per_iteration_sync = mode == 'latency'
    runners, failures, samples = [], [], {}
    profiles, op_counts = {}, {}
    stage, cut = 'the start of the case', None
    started = time.perf_counter()
    try:
        # Inside the try: a SIGTERM that comes once the label is out is this case's.
        print(f'[{case_label(case)}]', flush=True)
        for name in args.models:
            stage = f'the warm-up of {name}'
            try:
                pools_before = segments_bytes(graph_pool_segments()) if args.device == 'cuda' else 0
                with CudaGraphSkips() as skips:  # compiled during the build and warm-up
                    runner = build(name, batch, size, precision, args)
                    start = time.perf_counter()
                    for _ in range(args.warmup):
                        runner.step()
                    if args.device == 'cuda':
                        torch.cuda.synchronize()
                    runner.warmup_seconds = time.perf_counter() - start
                if sigterm_handler_lost():
                    print(
                        f"  {name}: SIGTERM's handler was reset during its build and warm-up "
                        '(by a library, behind Python); put back',
                        flush=True)
                    install_stop_handlers()
                if args.device == 'cuda':
                    runner.graph_pool_bytes = max(
                        0,
                        segments_bytes(graph_pool_segments()) - pools_before)
                if replays_compiled_cuda_graphs(name, args):
                    runner.cudagraph_skips = skips
                    if skips.count:
                        print(
                            f'  {name}: {skips.count} compiled graph(s) run without CUDA '
                            f'graphs: {"; ".join(skips.reasons) or "no reason logged"}',
                            flush=True)
            except Exception as error:  # a peer that cannot run at this size is reported
                failures.append(dict(case, model=name, error=f'{type(error).__name__}: {error}'))
                print(f'  {name}: FAILED ({type(error).__name__}: {error})', flush=True)
                if args.device == 'cuda':
                    torch.cuda.empty_cache()
                continue
            runners.append(runner)
            stage = f'the timing of {name}'
            samples[name] = [measure(runner, args.iters, args, per_iteration_sync)]
            # As each model gets its first figure: a run that hangs later shows how far it got.
            print(
                f'  {name}: warmed up in {runner.warmup_seconds:.1f} s, '
                f'{samples[name][0]["median_iter_seconds"] * 1e3:.2f} ms per iteration',
                flush=True)
        for _ in range(args.repeats - 1):
            for runner in runners:
                stage = f'the timing of {runner.name}'
                samples[runner.name].append(measure(runner, args.iters, args, per_iteration_sync))
        # After the timings, which a failing profiler or counter must not take down with it.
        if args.profile:
            stage = 'the profiles'
            for runner in runners:
                kept_if_it_works(profiles, runner, 'profile', lambda: profile_step(runner, args))
        if args.count_ops:
            stage = 'the operator counts'
            for runner in runners:
                if dispatches_operators(runner.name, args):
                    kept_if_it_works(op_counts, runner, 'operator count',
                                     lambda: count_step_ops(runner))
    except (CutShort, KeyboardInterrupt) as stop:
        measured = [runner.name for runner in runners if samples.get(runner.name)]
        missing = [name for name in args.models if name not in measured]
        seconds = time.perf_counter() - started
        cut = (f'stopped by {stop_signal(stop)} during {stage}, {seconds:.0f} s into '
               f'{case_label(case)}; not measured there: {", ".join(missing) or "none"}')
        print(f'  {cut}', flush=True)
    rows = []
    for runner in runners:
        runs = samples.get(runner.name)
        if not runs:
            continue
        key = 'median_iter_seconds' if per_iteration_sync else 'seconds_per_iter'
        seconds = [run[key] for run in runs]
        row = dict(
            case,
            model=runner.name,
            samples_ms=[round(s * 1e3, 3) for s in seconds],
            ms=statistics.median(seconds) * 1e3,
            warmup_s=round(runner.warmup_seconds, 2))
        row['images_per_s'] = batch / statistics.median(seconds)
        if runner.cudagraph_skips is not None:
            row['cudagraph_skips'] = runner.cudagraph_skips.count
            if runner.cudagraph_skips.reasons:
                row['cudagraph_skip_reasons'] = runner.cudagraph_skips.reasons
        row['graphs_compiled_while_timed'] = sum(run['graphs_compiled'] for run in runs)
        if 'peak_mem_mib' in runs[0]:
            row['peak_mem_mib'] = max(run['peak_mem_mib'] for run in runs)
            row['step_mem_mib'] = max(run['step_mem_mib'] for run in runs)
            row['timed_alloc_mib'] = max(run['timed_alloc_mib'] for run in runs)
            if runner.graph_pool_bytes:
                row['graph_pool_mib'] = runner.graph_pool_bytes / 2**20
        if runner.name in profiles:
            row['profile'], work = profiles[runner.name]
            row.update(work)
        if runner.name in op_counts:
            counter = op_counts[runner.name]
            row['aten_ops_per_step'] = sum(counter.counts.values())
            row['top_aten_ops'] = dict(counter.counts.most_common(8))
            if counter.optimizer_counts:
                row['optimizer_aten_ops'] = sum(counter.optimizer_counts.values())
        rows.append(row)
    release(runners)
    return rows + failures, cut


def kept_if_it_works(results: dict, runner: Runner, what: str, measure_it: Callable) -> None:
    """``results[runner.name] = measure_it()``; a failure is reported and leaves no entry."""
    try:
        results[runner.name] = measure_it()
    except Exception as error:
        print(f'  {runner.name}: no {what} ({type(error).__name__}: {error})', flush=True)


def case_label(case: dict) -> str:
    """``'infer fp16 224px batch 128'``: a case as the log and ``cut_short`` name it."""
    return f'{case["mode"]} {case["precision"]} {case["size"]}px batch {case["batch"]}'


def benchmark_cases(args) -> List[dict]:
    cases = []
    for mode in args.modes:
        if mode == 'infer':
            cases += [
                dict(mode=mode, batch=args.batch_size, size=args.infer_size, precision=p)
                for p in args.precision
            ]
        elif mode == 'train':
            cases.append(
                dict(
                    mode=mode,
                    batch=args.train_batch_size,
                    size=args.train_size,
                    precision=args.train_precision))
        else:
            cases += [
                dict(mode=mode, batch=1, size=s, precision=args.latency_precision)
                for s in args.latency_sizes
            ]
    return cases


def git_state(override: Optional[str]) -> dict:
    if override:
        return dict(commit=override, dirty=None)
    try:
        commit = subprocess.run(['git', 'rev-parse', 'HEAD'],
                                cwd=REPO_ROOT,
                                check=True,
                                capture_output=True,
                                text=True).stdout.strip()
        # Uncommitted changes to what is measured: the models and this tool.
        status = subprocess.run(
            ['git', 'status', '--porcelain', '--', 'mmglnet/models', 'tools/analysis_tools'],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
            text=True).stdout.strip()
        return dict(commit=commit, dirty=bool(status))
    except (OSError, subprocess.CalledProcessError):
        return dict(commit='unknown', dirty=None)


def cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict:
    from importlib import metadata
    versions = {}
    for package in ('timm', 'mmengine', 'mmcv', 'mmdet'):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def environment(args) -> dict:
    env = dict(
        torch=torch.__version__,
        python=platform.python_version(),
        packages=package_versions(),
        threads=torch.get_num_threads(),
        cpu=cpu_name(),
        cpu_count=os.cpu_count())
    if args.device == 'cuda':
        env.update(
            device=torch.cuda.get_device_name(),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version())
    else:
        threads = env['threads']
        env['device'] = (f'{env["cpu"]} ({env["cpu_count"]} cores, {threads} torch '
                         f'thread{"s" if threads != 1 else ""})')
    return env


def load_average() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def format_table(rows: List[dict], baseline: str) -> str:
    lines = []
    header = (f'{"mode":8} {"prec":5} {"size":>5} {"batch":>5}  {"model":28} '
              f'{"img/s":>9} {"ms":>9} {"vs " + baseline:>16} {"peak MiB":>9}')
    counted = any('aten_ops_per_step' in row for row in rows)
    if counted:
        header += f' {"ops/step":>9}'
    lines.append(header)
    lines.append('-' * len(header))
    keyed = {}
    for row in rows:
        keyed.setdefault((row['mode'], row['precision'], row['size'], row['batch']), []).append(row)
    for (mode, precision, size, batch), group in keyed.items():
        base = next((r for r in group if r['model'] == baseline and 'ms' in r), None)
        for row in group:
            if 'error' in row:
                lines.append(f'{mode:8} {precision:5} {size:>5} {batch:>5}  {row["model"]:28} '
                             f'failed: {row["error"][:60]}')
                continue
            ratio = '' if base is None else f'{row["images_per_s"] / base["images_per_s"]:.2f}x'
            memory = f'{row["peak_mem_mib"]:.0f}' if 'peak_mem_mib' in row else '-'
            line = (f'{mode:8} {precision:5} {size:>5} {batch:>5}  {row["model"]:28} '
                    f'{row["images_per_s"]:9.1f} {row["ms"]:9.2f} {ratio:>16} {memory:>9}')
            if counted:
                line += f' {row.get("aten_ops_per_step", "-"):>9}'
            lines.append(line)
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == 'cuda':
        torch.backends.cudnn.benchmark = True
    command = 'python ' + shlex.join([
        osp.relpath(osp.abspath(sys.argv[0]), REPO_ROOT) if argv is
        None else 'tools/analysis_tools/benchmark.py'
    ] + (sys.argv[1:] if argv is None else argv))
    record = dict(
        schema=SCHEMA_VERSION,
        command=command,
        git=git_state(args.git_commit),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        environment=environment(args),
        note=args.note,
        baseline=args.baseline,
        settings=dict(
            models=args.models,
            modes=args.modes,
            compile=args.compile,
            compile_mode=args.compile_mode,
            compile_options=args.compile_options,
            cuda_graphs=args.cuda_graphs,
            channels_last=args.channels_last,
            fused_optimizer=args.fused_optimizer,
            warmup=args.warmup,
            iters=args.iters,
            repeats=args.repeats),
        load_average_start=load_average(),
        results=[])
    out = args.out or osp.join(
        'work_dirs', 'benchmarks',
        f'{args.device}_{datetime.datetime.now().strftime("%Y%m%d_%H%M%S")}.json')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    print(
        f'{record["environment"]["device"]}, torch {torch.__version__}, '
        f'commit {record["git"]["commit"][:12]}',
        flush=True)
    cases = benchmark_cases(args)
    previous_handler = signal.getsignal(signal.SIGTERM)
    dumps_stacks = install_stop_handlers()
    watches = dump_stacks_after(args.dump_stacks_after)
    saved, cases_done = record, 0
    try:
        for number, case in enumerate(cases):
            rows, cut = run_case(case, args)
            record['results'] += rows
            cases_done = number + 1
            if cut:
                not_run = [case_label(c) for c in cases[number + 1:]]
                record['cut_short'] = cut + (f'; cases not run: {", ".join(not_run)}'
                                             if not_run else '')
            record['load_average_end'] = load_average()
            saved = save_record(record, out)  # after every case: a run stopped later keeps it
            if cut:
                break
    except (CutShort, KeyboardInterrupt) as stop:  # between two cases, outside run_case's
        not_run = ', '.join(case_label(c) for c in cases[cases_done:]) or 'none'
        record['cut_short'] = (f'stopped by {stop_signal(stop)} between cases; cases not run: '
                               f'{not_run}')
        saved = save_record(record, out)
    finally:
        if watches:
            faulthandler.cancel_dump_traceback_later()
        if dumps_stacks:
            faulthandler.unregister(signal.SIGTERM)
        signal.signal(signal.SIGTERM, previous_handler)
    print(format_table(record['results'], args.baseline))
    if saved.get('profile_file'):
        print(f'profiles written to {osp.join(osp.dirname(out), saved["profile_file"])}')
    print(f'results written to {out}')
    if saved.get('cut_short'):
        print(f'cut short: {saved["cut_short"]}')
    return saved


def install_stop_handlers() -> bool:
    """Have a SIGTERM stop the run (:class:`CutShort`) and write every thread's stack first
    (:func:`dump_stacks_on`); also to put them back where a library has reset SIGTERM's
    handler. Returns whether the stacks will be written."""
    signal.signal(signal.SIGTERM, raise_cut_short)
    try:
        faulthandler.unregister(signal.SIGTERM)  # a registration is not renewed otherwise
    except (AttributeError, ValueError):
        pass
    return dump_stacks_on(signal.SIGTERM)


def sigterm_handler_lost() -> bool:
    """Whether SIGTERM's disposition in this process is the default again although the tool
    set a handler: reset by a library through libc, which Python's own record
    (:func:`signal.getsignal`) does not see. Read with libc's ``sigaction``; False where it
    cannot be read. On the H100 on 2026-11-28 a comparison died of the SIGTERM at its limit
    (exit status 143), as a process without a handler does."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        action = ctypes.create_string_buffer(256)  # more than any libc's struct sigaction
        if libc.sigaction(signal.SIGTERM, None, action) != 0:
            return False
    except (OSError, AttributeError):
        return False
    # The handler comes first in the struct; SIG_DFL is 0.
    return int.from_bytes(action.raw[:ctypes.sizeof(ctypes.c_void_p)], sys.byteorder) == 0


def dump_stacks_on(signum: int) -> bool:
    """Have signal ``signum`` write every thread's Python stack to the process's standard
    error at once, from C, then run its Python handler (chained): a run stuck in a call into
    torch (a CUDA-graph capture, a compile) never gets to that handler, and its log then shows
    where it was. Returns whether it could (not where standard error is no file)."""
    try:
        faulthandler.register(signum, file=sys.__stderr__, all_threads=True, chain=True)
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return False
    return True


def dump_stacks_after(seconds: Optional[float]) -> bool:
    """Have faulthandler's watchdog thread write every thread's Python stack to the process's
    standard error once ``seconds`` have passed, unless the run has ended by then (cancelled
    at the end of :func:`main`). It needs no signal: where a SIGTERM finds no handler in place
    (on the H100 on 2026-11-28 a comparison ended at its limit killed by the signal itself,
    exit status 143, with neither its JSON nor the stacks), the stacks still show where the
    run stood. Returns whether it could (not without ``seconds``, nor where standard error
    is no file)."""
    if seconds is None:
        return False
    try:
        faulthandler.dump_traceback_later(seconds, exit=False, file=sys.__stderr__)
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return False
    return True


def save_record(record: dict, out: str) -> dict:
    """Write ``record`` as JSON to ``out``, and the operator profiles of its rows next to it
    (``<out>_profile.txt``, named in the record as ``profile_file``).

    Each file is replaced whole (written to a temporary file, then renamed), so that a run
    stopped at any moment leaves the files of its last finished case, never half a file.

    Returns:
        dict: The record as written (the profiles' text left out of its rows).
    """
    from mmglnet.engine.checkpoint_files import atomic_write_text
    results, profiles = [], []
    for row in record['results']:
        row = dict(row)
        table = row.pop('profile', None)
        if table:
            profiles.append(f'== {row["model"]}: {row["mode"]} {row["precision"]} '
                            f'{row["size"]}px batch {row["batch"]}\n{table}\n')
        results.append(row)
    saved = dict(record, results=results)
    if profiles:
        profile_path = osp.splitext(out)[0] + '_profile.txt'
        atomic_write_text(profile_path, ''.join(profiles))
        saved['profile_file'] = osp.basename(profile_path)
    atomic_write_text(out, json.dumps(saved, indent=1))
    return saved


def exit_with(status: int) -> None:
    """Exit with ``status`` once every file is written, also if told to stop meanwhile.

    The interpreter's shutdown may outlast a time limit (torch waits for inductor's compile
    workers): a SIGTERM then would end a finished run with 143, as if it had failed. From here
    on it exits with the run's own status at once; nothing is left to write.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(status))
    sys.exit(status)


if __name__ == '__main__':
    # Exit status 3: stopped before the end (SIGTERM, Ctrl-C); the JSON holds what was measured.
    exit_with(3 if main().get('cut_short') else 0)
