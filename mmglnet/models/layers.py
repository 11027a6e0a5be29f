"""Small layers shared by the GLMix and attention blocks.

Parameter names and shapes follow the official GLNet release so that its checkpoints load
without renaming (https://arxiv.org/abs/2411.14429).
"""
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

# torch >= 2.4 tells the autocast state per device type.
_DEVICE_AUTOCAST_API = hasattr(torch, 'get_autocast_dtype') and hasattr(
    torch.amp, 'is_autocast_available')


def is_compiling() -> bool:
    """Whether :func:`torch.compile` is tracing the code now."""
    compiler = getattr(torch, 'compiler', None)
    return compiler is not None and hasattr(compiler, 'is_compiling') and compiler.is_compiling()


def is_exporting() -> bool:
    """Whether the forward is being exported to ONNX.

    Plain JIT tracing (mmengine's FLOP counter) keeps torch's kernels, and so their count.
    """
    return torch.onnx.is_in_onnx_export()


def compiling_disallowed() -> bool:
    """Whether GLNet must run its plain operators now: JIT tracing, ONNX export, or a
    :func:`torch.compile` (its own, or an outer one) tracing the code. GLNet's own compilation
    and the eager-only forms (:class:`PointwiseConv2d`) are off then."""
    return torch.jit.is_tracing() or is_exporting() or is_compiling()


def eager_autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The autocast dtype that eager code should keep by hand for ``device_type``, or None.

    Inside an autocast region, some ops (``layer_norm``, ``softmax`` on CUDA) run in float32
    and every consumer casts their output back down: in eager mode that is an extra pass
    over a large tensor, which :func:`layer_norm` and the GLMix softmax avoid by computing in
    the autocast dtype. Under :func:`torch.compile` the casts are fused into neighbouring
    kernels and cost nothing, and torch < 2.12 cannot trace the autocast queries (each would
    break the graph), so this returns None there and the plain ops run.

    Args:
        device_type (str): ``'cuda'``, ``'cpu'``...

    Returns:
        torch.dtype | None: e.g. ``torch.float16``; None outside autocast, while compiling,
        or on a torch too old to tell.
    """
    if is_compiling() or not _DEVICE_AUTOCAST_API:
        return None
    if not torch.amp.is_autocast_available(device_type):
        return None
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


# Devices on which eager mode computes the LayerNorms of float16/bfloat16 inputs, and their
# gradients, with mmglnet's Triton kernels (:mod:`mmglnet.models.triton_layer_norm`): a tile
# of rows per program instead of torch's block of threads per row, which is slow on GLNet's
# rows of 64 to 512 channels, and the float32 weight and bias read without casts. Empty: an
# experiment, measured on a GPU by the benchmark's ``*_triton_layernorm`` models before it
# becomes a default.
TRITON_LAYER_NORM_DEVICES: frozenset = frozenset()
# Devices on which it is chosen for forwards that record gradients (training) only. A GPU
# measured it faster where the training step's kernels were replayed as CUDA graphs and not
# faster in eager inference, which the host bounds (H200, 2026-11-30): the default it may
# become is this one. Empty until the eager training step has been measured with it.
TRITON_LAYER_NORM_TRAINING_DEVICES: frozenset = frozenset()
# The dtypes it is chosen in.
TRITON_LAYER_NORM_DTYPES = (torch.float16, torch.bfloat16)


def triton_layer_norm_chosen(device_type: str, dtype: torch.dtype) -> bool:
    """Whether the Triton LayerNorm is switched on for ``device_type`` and ``dtype`` in this
    forward (the devices of :data:`TRITON_LAYER_NORM_DEVICES`, and of
    :data:`TRITON_LAYER_NORM_TRAINING_DEVICES` where gradients are recorded; float16/bfloat16):
    the part of :func:`uses_triton_layer_norm` that does not depend on the input."""
    if dtype not in TRITON_LAYER_NORM_DTYPES:
        return False
    return device_type in TRITON_LAYER_NORM_DEVICES or (
        device_type in TRITON_LAYER_NORM_TRAINING_DEVICES and torch.is_grad_enabled())


def uses_triton_layer_norm(x: torch.Tensor, dtype: torch.dtype, normalized_shape: Sequence[int],
                           weight: Optional[torch.Tensor], bias: Optional[torch.Tensor]) -> bool:
    """Whether :func:`layer_norm` normalises ``x`` (computing in ``dtype``) with the Triton
    kernels: where :func:`triton_layer_norm_chosen`, in eager mode (not compiling, tracing or
    exporting), over the last dimension only, where
    :func:`~mmglnet.models.triton_layer_norm.fits`."""
    if (not triton_layer_norm_chosen(x.device.type, dtype) or compiling_disallowed()
            or tuple(normalized_shape) != tuple(x.shape[-1:])):
        return False
    from . import triton_layer_norm  # imports Triton: only where the kernel may be chosen
    return triton_layer_norm.fits(x, weight, bias)


def layer_norm(x: torch.Tensor, normalized_shape: Sequence[int], weight: Optional[torch.Tensor],
               bias: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    """:func:`torch.nn.functional.layer_norm` whose output stays in autocast's dtype.

    On CUDA, autocast runs ``layer_norm`` in float32: a float16 input is cast up, the output
    is float32 and every consumer casts it down again. The kernels accumulate in float32
    either way, so within an autocast region this computes in the autocast dtype instead
    (one read, one half-size write). Outside autocast, and under :func:`torch.compile`, it is
    ``F.layer_norm`` (see :func:`eager_autocast_dtype`). Where :func:`uses_triton_layer_norm`,
    it is :func:`~mmglnet.models.triton_layer_norm.layer_norm_rows`.
    """
    dtype = eager_autocast_dtype(x.device.type)
    if uses_triton_layer_norm(x, dtype or x.dtype, normalized_shape, weight, bias):
        from .triton_layer_norm import fitted_layer_norm_rows  # checked by the choice
        return fitted_layer_norm_rows(x, weight, bias, eps, dtype=dtype or x.dtype)
    if dtype is None:
        return F.layer_norm(x, normalized_shape, weight, bias, eps)
    if weight is not None:
        weight = weight.to(dtype)
    if bias is not None:
        bias = bias.to(dtype)
    with torch.autocast(x.device.type, enabled=False):
        return F.layer_norm(x.to(dtype), normalized_shape, weight, bias, eps)


# Devices on which a training forward in float16/bfloat16 has the gradients of its
# convolutions' biases summed by mmglnet's Triton kernel
# (:mod:`mmglnet.models.triton_bias_grad`): a run of tiles of channels-last rows per program
# instead of torch's generic reduction, slow on GLNet's rows of 64 to 512 channels, and no
# cast of the sums to the float32 bias. Empty: an experiment, measured on a GPU by the
# benchmark's ``*_triton_bias_grad`` models before it becomes a default.
TRITON_BIAS_GRAD_DEVICES: frozenset = frozenset()
# The dtypes it is chosen in.
TRITON_BIAS_GRAD_DTYPES = (torch.float16, torch.bfloat16)


def triton_bias_grad_dtype(x: torch.Tensor, bias: Optional[torch.Tensor]) -> Optional[torch.dtype]:
    """The dtype in which a layer of ``x`` adds ``bias`` detached, leaving its gradient to the
    Triton kernel (see :func:`with_bias`), or None where torch's backward gives it: on the
    devices of :data:`TRITON_BIAS_GRAD_DEVICES`, for a bias that takes a gradient in a forward
    that records one, computing in float16/bfloat16 (autocast's dtype or ``x``'s), in eager
    mode (not compiling, tracing or exporting), with Triton there."""
    if (bias is None or x.device.type not in TRITON_BIAS_GRAD_DEVICES
            or not (torch.is_grad_enabled() and bias.requires_grad) or compiling_disallowed()):
        return None
    dtype = eager_autocast_dtype(x.device.type) or x.dtype
    if dtype not in TRITON_BIAS_GRAD_DTYPES:
        return None
    from . import triton_bias_grad  # imports Triton: only where the kernel may be chosen
    return dtype if triton_bias_grad.is_available() else None


def with_bias(layer: Callable[[Optional[torch.Tensor]], torch.Tensor], x: torch.Tensor,
              bias: Optional[torch.Tensor], channel_dim: int) -> torch.Tensor:
    """``layer(bias)``: a convolution or product of ``x`` that adds ``bias`` along
    ``channel_dim`` of its output.

    Where :func:`triton_bias_grad_dtype` chooses the Triton kernel, the layer adds a detached
    copy of ``bias`` in that dtype (so that torch's backward leaves it out) and the output
    passes through :func:`~mmglnet.models.triton_bias_grad.tap_bias_gradient`, which gives
    ``bias`` the same gradient.

    Args:
        layer (Callable): Computes the output from the bias it is given (or None).
        x (Tensor): The layer's input.
        bias (Tensor, optional): The layer's bias.
        channel_dim (int): The output's dimension of the channels.

    Returns:
        Tensor: The layer's output.
    """
    dtype = triton_bias_grad_dtype(x, bias)
    if dtype is None:
        return layer(bias)
    from .triton_bias_grad import tap_bias_gradient
    return tap_bias_gradient(layer(bias.detach().to(dtype)), bias, channel_dim)


# Devices on which, in eager forwards that record no gradient, the FFN's residual depth-wise
# convolution adds its bias with the GELU that follows, in one pass of mmglnet's Triton kernel
# over the FFN's hidden features (:mod:`mmglnet.models.triton_bias_gelu`), where torch adds
# the bias of a cuDNN convolution in a broadcast kernel of its own, slow on channels-last
# outputs, before the GELU's pass. Empty: an experiment, measured on a GPU by the benchmark's
# ``*_triton_bias_gelu`` models before it becomes a default.
TRITON_BIAS_GELU_DEVICES: frozenset = frozenset()
# The dtypes it is chosen in.
TRITON_BIAS_GELU_DTYPES = (torch.float16, torch.bfloat16)


def uses_triton_bias_gelu(x: torch.Tensor, conv: nn.Conv2d) -> bool:
    """Whether :class:`ConvFFN` adds the bias of ``conv``, its residual depth-wise convolution
    of ``x``, with the GELU in the Triton kernel: on the devices of
    :data:`TRITON_BIAS_GELU_DEVICES`, computing in float16/bfloat16 (autocast's dtype or
    ``x``'s), in eager mode (not compiling, tracing or exporting), in a forward that records no
    gradient, with Triton there."""
    if (x.device.type not in TRITON_BIAS_GELU_DEVICES or conv.bias is None
            or compiling_disallowed()):
        return False
    if torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad
                                    or conv.bias.requires_grad):
        return False
    dtype = eager_autocast_dtype(x.device.type) or x.dtype
    if dtype not in TRITON_BIAS_GELU_DTYPES:
        return False
    from . import triton_bias_gelu  # imports Triton: only where the kernel may be chosen
    return triton_bias_gelu.is_available()


def conv2d_with_bias(conv: nn.Conv2d,
                     x: torch.Tensor,
                     weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``conv``'s convolution of ``x`` (with ``weight`` in place of ``conv.weight`` if given),
    its bias added through :func:`with_bias`."""
    weight = conv.weight if weight is None else weight
    return with_bias(lambda bias: conv._conv_forward(x, weight, bias), x, conv.bias, 1)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (over the last dimension) that keeps autocast's dtype (see
    :func:`layer_norm`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class LayerNorm2d(LayerNorm):
    """LayerNorm over the channel dimension of an (N, C, H, W) tensor.

    Free of copies for channels-last inputs, whose channels are the innermost dimension
    (other inputs are copied once); the output is channels-last strided.

    Args:
        num_channels (int): Number of channels C.
        eps (float): Added to the variance. Defaults to 1e-6.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def identity_dw_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """The (C, 1, k, k) depth-wise kernel whose convolution is the identity (odd ``k``)."""
    kernel = torch.zeros(channels, 1, kernel_size, kernel_size)
    kernel[:, :, kernel_size // 2, kernel_size // 2] = 1
    return kernel


# Devices on which, under torch.compile, the residual depth-wise convolutions are computed as
# sums of shifted products (:func:`depthwise_conv_by_shifts`) instead of a convolution call.
# Empty: an experiment, measured on a GPU by the benchmark's ``*_shift_dwconv`` models before it
# becomes a default. Inductor fuses the shifted products with their neighbours (the FFN's GELU,
# the position encoding's consumers) into one generated kernel, where a convolution is a
# library call that writes its output to memory and reads nothing fused: GLNet-4G's 60
# depth-wise 3x3 convolutions move 4.5 GB per 224², batch-128 forward in fp16
# (tools/analysis_tools/memory_traffic.py), a quarter of its library calls' bytes. Not for the
# CPU with torch 2.11: its vectorised C++ kernels crash (segmentation fault) on GLNet's
# training graph with shifted position encodings (torch 2.14 runs it).
SHIFTED_DW_CONV_DEVICES: frozenset = frozenset()


def depthwise_conv_by_shifts(x: torch.Tensor, weight: torch.Tensor,
                             bias: Optional[torch.Tensor]) -> torch.Tensor:
    """A same-size, stride-1 depth-wise convolution as a sum of shifted products.

    ``out[:, c] = bias[c] + sum_ij weight[c, 0, i, j] * x_padded[:, c, i:i + H, j:j + W]``,
    the zero-padded convolution of :func:`torch.nn.functional.conv2d` with ``groups=C``.
    Eagerly that is ``k * k`` passes; under :func:`torch.compile` it is one generated kernel
    with ``k * k`` loads per output, fused with element-wise neighbours, and its backward a
    few more (the weights' gradient a reduction per tap). Under autocast it computes in
    autocast's dtype, as the convolution would.

    Args:
        x (Tensor): Input (N, C, H, W).
        weight (Tensor): (C, 1, k, k) kernel, odd ``k``.
        bias (Tensor, optional): (C, ) bias.

    Returns:
        Tensor: (N, C, H, W), in ``x``'s memory format.
    """
    device_type = x.device.type
    if _DEVICE_AUTOCAST_API and torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
    else:
        dtype = torch.promote_types(x.dtype, weight.dtype)
    x, weight = x.to(dtype), weight.to(dtype)
    size = weight.shape[-1]
    height, width = x.shape[-2:]
    padded = F.pad(x, (size // 2, ) * 4)
    out = None
    for i in range(size):
        for j in range(size):
            term = padded[:, :, i:i + height, j:j + width] * weight[:, :, i, j].view(1, -1, 1, 1)
            out = term if out is None else out + term
    if bias is not None:
        out = out + bias.to(dtype).view(1, -1, 1, 1)
    return out


def residual_dw_conv(x: torch.Tensor, conv: nn.Conv2d, identity: torch.Tensor) -> torch.Tensor:
    """``x + conv(x)`` for a same-size depth-wise ``conv``, as a single convolution.

    Adding the identity kernel to the weights folds the shortcut into the convolution: one
    pass over the feature map instead of a convolution and an addition. The gradients of
    the weight, the bias and ``x`` are those of ``x + conv(x)``. Under :func:`torch.compile`
    on the devices of :data:`SHIFTED_DW_CONV_DEVICES`, the convolution is
    :func:`depthwise_conv_by_shifts`.

    Args:
        x (Tensor): Input (N, C, H, W).
        conv (nn.Conv2d): Depth-wise convolution with 'same' padding, stride 1.
        identity (Tensor): :func:`identity_dw_kernel` of the same shape as ``conv.weight``.

    Returns:
        Tensor: ``x + conv(x)``.
    """
    if x.device.type in SHIFTED_DW_CONV_DEVICES and is_compiling():
        return depthwise_conv_by_shifts(x, conv.weight + identity, conv.bias)
    return conv2d_with_bias(conv, x, conv.weight + identity)


class DepthwiseConv2d(nn.Conv2d):
    """A depth-wise convolution (stride 1, padding ``kernel_size // 2``) whose bias's gradient
    may be summed by the Triton kernel (see :func:`with_bias`); otherwise ``nn.Conv2d``.

    Args:
        channels (int): Number of channels.
        kernel_size (int): Kernel size.
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d_with_bias(self, x)


class ResidualDWConv(nn.Conv2d):
    """Depth-wise convolution with an identity shortcut: ``x + dwconv(x)``.

    Computed as one convolution with the identity folded into the kernel (see
    :func:`residual_dw_conv`); ``weight`` and ``bias`` are those of the plain convolution.

    Args:
        channels (int): Number of channels.
        kernel_size (int): Kernel size (odd). Defaults to 3.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f'kernel_size={kernel_size} must be odd for a same-size '
                             'residual depth-wise convolution.')
        super().__init__(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        # Not saved: a constant of the computation, not a weight of the checkpoint.
        self.register_buffer(
            'identity', identity_dw_kernel(channels, kernel_size), persistent=False)
        # ``weight + identity`` already made and cast to autocast's dtype, handed to the
        # module for one forward by :class:`~mmglnet.models.weight_casts.BatchedWeightCasts`;
        # None otherwise.
        self.folded_kernel: Optional[torch.Tensor] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.folded_kernel is not None:
            return conv2d_with_bias(self, x, self.folded_kernel)
        return residual_dw_conv(x, self, self.identity)

    def forward_without_bias(self, x: torch.Tensor) -> torch.Tensor:
        """``x + dwconv(x)`` without the bias, for a caller that adds it itself (the
        convolution call of :meth:`forward`, in eager mode)."""
        kernel = self.weight + self.identity if self.folded_kernel is None else self.folded_kernel
        return self._conv_forward(x, kernel, None)


# Devices on which, in eager mode, a 1x1 convolution over a channels-last feature map in a
# 16-bit dtype is computed as a matrix product with its bias added by the product itself
# (:class:`PointwiseConv2d`). On CUDA a convolution call adds its bias in a separate kernel,
# one more pass over the output: for GLNet-4G's 94 pointwise convolutions at 224², batch 128
# in float16 that is 6.2 GB read and written per forward. The CPU keeps the convolution,
# which is mostly as fast or faster there (2 threads, GLNet-4G's stage shapes, training most
# of all).
LINEAR_POINTWISE_CONV_DEVICES: frozenset = frozenset({'cuda'})
# The dtypes it is chosen in (see computes_pointwise_as_linear).
LINEAR_POINTWISE_CONV_DTYPES = (torch.float16, torch.bfloat16)


def computes_pointwise_as_linear(x: torch.Tensor) -> bool:
    """Whether :class:`PointwiseConv2d` computes its convolution of ``x`` as a matrix product.

    Only in eager mode: under :func:`torch.compile` inductor fuses the bias with neighbouring
    element-wise work itself, JIT traces (mmengine's FLOP counter) and ONNX export keep the
    convolution operator. Only in float16/bfloat16 (autocast's dtype or the input's): in
    float32 cuDNN's convolutions may use TF32 (``torch.backends.cudnn.allow_tf32``, on by
    default) where matrix products do not, and a product would be slower and round
    differently.
    """
    device_type = x.device.type
    if device_type not in LINEAR_POINTWISE_CONV_DEVICES or x.dim() != 4 or compiling_disallowed():
        return False
    dtype = eager_autocast_dtype(device_type) or x.dtype
    return dtype in LINEAR_POINTWISE_CONV_DTYPES and x.is_contiguous(
        memory_format=torch.channels_last)


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 convolution that, on the devices of :data:`LINEAR_POINTWISE_CONV_DEVICES`, runs
    as a matrix product with a fused bias.

    A channels-last (N, C, H, W) feature map is a contiguous (N * H * W, C) matrix, and its
    1x1 convolution is ``F.linear`` of that matrix: on CUDA one GEMM whose epilogue adds the
    bias, where the convolution call writes its output and adds the bias in a second kernel.
    The output is channels-last strided, as the convolution's would be; the weight keeps the
    convolution's (C_out, C_in, 1, 1) shape and name, so checkpoints load unchanged. Elsewhere
    (see :func:`computes_pointwise_as_linear`) it is ``nn.Conv2d``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not computes_pointwise_as_linear(x):
            return conv2d_with_bias(self, x)
        batch, _, height, width = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(batch * height * width, self.in_channels)  # a view
        out = with_bias(lambda bias: F.linear(tokens, self.weight.flatten(1), bias), x, self.bias,
                        -1)
        return out.view(batch, height, width, self.out_channels).permute(0, 3, 1, 2)


class LayerScale(nn.Module):
    """Per-channel learnable scaling, as in CaiT.

    Args:
        channels (int): Number of channels.
        init_value (float): Initial value of every scale.
        channels_first (bool): If True, scales an (N, C, H, W) tensor (parameter of shape
            (1, C, 1, 1)); otherwise a channels-last tensor (parameter of shape (C,)).
    """

    def __init__(self, channels: int, init_value: float, channels_first: bool) -> None:
        super().__init__()
        shape = (1, channels, 1, 1) if channels_first else (channels, )
        self.gamma = nn.Parameter(torch.full(shape, float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * x


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample during training.

    mmcv has the same brick, but mmglnet's core depends on torch and mmengine only. The keep
    probability is also held as a tensor (a buffer, not saved) and the forward reads only that
    and the training flag: under ``torch.compile`` it is then an input, not a constant, and
    blocks with different rates share one compiled graph (see
    :mod:`mmglnet.models.compilation`). Drawn with a tensor probability, its masks differ
    from those of timm's ``DropPath`` (the official code's) for the same seed; their
    distribution is the same.

    Args:
        drop_prob (float): Probability of dropping a sample's branch. Defaults to 0.
    """

    def __init__(self, drop_prob: float = 0.) -> None:
        super().__init__()
        if not 0 <= drop_prob < 1:
            raise ValueError(f'drop_prob={drop_prob} must be in [0, 1).')
        self.drop_prob = drop_prob
        self.register_buffer('keep_prob', torch.tensor(1. - drop_prob), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        mask_shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
        keep_prob = self.keep_prob.to(x.dtype)
        mask = x.new_empty(mask_shape).bernoulli_(keep_prob).div_(keep_prob)
        return x * mask  # one pass over x: the (N, 1, ...) mask carries 1 / keep_prob

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


def make_layer_scale(channels: int, init_value: float, channels_first: bool) -> nn.Module:
    """A :class:`LayerScale` if ``init_value > 0``, else an identity (layer scale off)."""
    if init_value > 0:
        return LayerScale(channels, init_value, channels_first)
    return nn.Identity()


def make_drop_path(drop_prob: float) -> nn.Module:
    """A :class:`DropPath` if ``drop_prob > 0``, else an identity."""
    return DropPath(drop_prob) if drop_prob > 0 else nn.Identity()


def has_forward_hooks(module: nn.Module) -> bool:
    """Whether calling ``module`` runs forward hooks or pre-hooks, its own or global ones."""
    hooks = nn.modules.module
    return bool(module._forward_hooks or module._forward_pre_hooks or hooks._global_forward_hooks
                or hooks._global_forward_pre_hooks)


class ConvFFN(nn.Sequential):
    """Feed-forward network on an (N, C, H, W) grid.

    ``1x1 conv -> [residual 3x3 depth-wise conv] -> GELU -> 1x1 conv``. Indices 0..3 match the
    official ``mlp.{0,1,3}`` keys (index 1 is an identity without the depth-wise conv). On the
    devices of :data:`TRITON_BIAS_GELU_DEVICES`, a forward that records no gradient adds the
    depth-wise convolution's bias with the GELU in one Triton kernel (see
    :func:`uses_triton_bias_gelu`), where neither module has forward hooks to run.

    Args:
        channels (int): Input and output channels.
        mlp_ratio (float): Hidden channels = ``int(mlp_ratio * channels)``.
        with_dwconv (bool): Add the residual depth-wise conv. Defaults to False.
    """

    def __init__(self, channels: int, mlp_ratio: float, with_dwconv: bool = False) -> None:
        hidden = int(mlp_ratio * channels)
        super().__init__(
            PointwiseConv2d(channels, hidden),
            ResidualDWConv(hidden, 3) if with_dwconv else nn.Identity(),
            nn.GELU(),
            PointwiseConv2d(hidden, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self[0](x)
        dwconv, gelu = self[1], self[2]
        # The choice first (off by default: the cheapest test then), then exactly these
        # classes (the reference path's subclasses compute otherwise), called without hooks:
        # the kernel's path calls neither module.
        if (type(dwconv) is ResidualDWConv and uses_triton_bias_gelu(hidden, dwconv)
                and type(gelu) is nn.GELU and gelu.approximate == 'none'
                and not has_forward_hooks(dwconv) and not has_forward_hooks(gelu)):
            from . import triton_bias_gelu
            out = dwconv.forward_without_bias(hidden)
            # Checked here: no gradient is recorded (uses_triton_bias_gelu), and it fits.
            if triton_bias_gelu.fits(out, dwconv.bias):
                return self[3](triton_bias_gelu.fitted_bias_gelu_(out, dwconv.bias))
            return self[3](gelu(out + dwconv.bias.to(out.dtype).view(1, -1, 1, 1)))
        return self[3](gelu(dwconv(hidden)))


class TokenFFN(nn.Sequential):
    """Feed-forward network on (N, L, C) tokens: ``Linear -> GELU -> Linear``.

    Args:
        channels (int): Input and output channels.
        mlp_ratio (float): Hidden channels = ``int(mlp_ratio * channels)``.
    """

    def __init__(self, channels: int, mlp_ratio: float) -> None:
        hidden = int(mlp_ratio * channels)
        super().__init__(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))


NORM_TYPES = ('LN2d', 'LN', 'BN', 'BN2d', 'SyncBN', 'GN')


def build_channel_norm(cfg: dict, channels: int) -> nn.Module:
    """Build a norm layer for (N, C, H, W) features from an mm-style config.

    Args:
        cfg (dict): ``type`` is one of ``'LN2d'`` / ``'LN'`` (LayerNorm over channels),
            ``'BN'`` / ``'BN2d'``, ``'SyncBN'``, ``'GN'`` (needs ``num_groups``); other keys go
            to the layer (``eps``, ``momentum``...). ``requires_grad=False`` freezes it.
        channels (int): Number of channels.

    Returns:
        nn.Module: The norm layer.
    """
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'A norm config must be a dict with a "type" key, got {cfg!r}.')
    cfg = dict(cfg)
    norm_type = cfg.pop('type')
    requires_grad = cfg.pop('requires_grad', True)
    if norm_type in ('LN2d', 'LN'):
        layer = LayerNorm2d(channels, **cfg)
    elif norm_type in ('BN', 'BN2d'):
        layer = nn.BatchNorm2d(channels, **cfg)
    elif norm_type == 'SyncBN':
        layer = nn.SyncBatchNorm(channels, **cfg)
    elif norm_type == 'GN':
        if 'num_groups' not in cfg:
            raise ValueError(f'GN needs num_groups, got {cfg!r}.')
        layer = nn.GroupNorm(num_channels=channels, **cfg)
    else:
        raise ValueError(f'Unknown norm type {norm_type!r}; choose one of {NORM_TYPES}.')
    for param in layer.parameters():
        param.requires_grad = requires_grad
    return layer
