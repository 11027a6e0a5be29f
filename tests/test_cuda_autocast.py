"""GLNet's CUDA code paths under CUDA's autocast, run on the CPU with fake CUDA tensors.

CUDA's autocast runs some operators in float32 that the CPU's keeps in bfloat16 (a norm
without a dtype, ``reciprocal``, ``softmax``, ``layer_norm``), so the CPU tests of the
autocast dtypes (test_fast_path.py) cannot see what a GPU would compute in float32.
"""
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mmglnet.models import GLNet
from mmglnet.models import layers as glnet_layers
from mmglnet.models.glmix import GLMixBlock
from mmglnet.testing import FakeCuda

from conftest import TINY_ARCH, TINY_STL_ARCH

# Not square, and sizes such that no feature map's pixel count equals a height, a width, a
# width of the model, the batch or the slot count.
INPUT_SIZE = (160, 96)
BATCH = 2
STRIDES = (4, 8, 16, 32)


class OutputDtypes(TorchDispatchMode):
    """Records the operators dispatched and their outputs' dtypes and shapes, leaving out
    views, which compute nothing, and what
    :func:`torch.nn.functional.scaled_dot_product_attention` dispatches inside: on fake tensors
    it takes the math form, which a GPU's fused kernels replace."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs = []
        self._attention_depth = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if not (self._attention_depth or func.is_view):
            for out in result if isinstance(result, (tuple, list)) else (result, ):
                if torch.is_tensor(out):
                    self.outputs.append((func.overloadpacket.__name__, out.dtype, tuple(out.shape)))
        return result

    def attention(self, fn):

        def outer_attention(*args, **kwargs):
            self._attention_depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._attention_depth -= 1

        return outer_attention


def pixel_grid_sized(shape: tuple) -> bool:
    """Whether ``shape`` is of a batch of feature maps, pixel matrices or slot-pixel logits:
    a stage's (H, W) grid, or else its H*W pixels, among its sizes, with more than one value
    per pixel (a LayerNorm's float32 statistics have one)."""
    if len(shape) < 3 or shape[0] != BATCH:
        return False
    grids = [(INPUT_SIZE[0] // s, INPUT_SIZE[1] // s) for s in STRIDES]
    values = math.prod(shape) // BATCH
    for height, width in grids:
        if any(shape[i:i + 2] == (height, width) for i in range(1, len(shape) - 1)):
            return values > height * width
    return any(height * width in shape[1:] and values > height * width for height, width in grids)


def run_forward(dtype, training, monkeypatch, arch=TINY_ARCH):
    fake = FakeCuda()
    torch.manual_seed(0)
    model = fake.module(GLNet(arch, drop_path_rate=0.1).train(training))
    x = fake.tensor(
        torch.empty(BATCH, 3, *INPUT_SIZE).contiguous(memory_format=torch.channels_last))
    recorder = OutputDtypes()
    monkeypatch.setattr(F, 'scaled_dot_product_attention',
                        recorder.attention(F.scaled_dot_product_attention))
    with fake.run(autocast_dtype=dtype), recorder:
        assert glnet_layers.eager_autocast_dtype(x.device.type) == dtype
        outs = model(x)
    return outs, recorder.outputs


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('training', [False, True])
@pytest.mark.parametrize('arch', [TINY_ARCH, TINY_STL_ARCH], ids=['g_series', 'stl'])
def test_forward_computes_no_float32_feature_maps(dtype, training, arch, monkeypatch):
    """Every tensor of a feature map's, the pixels' or the slot logits' size stays in the
    autocast dtype: a float32 one costs a pass in float32 and a cast back on a GPU, and
    twice the memory, in the backward too."""
    outs, outputs = run_forward(dtype, training, monkeypatch, arch)
    assert all(out.device.type == 'cuda' and out.dtype == dtype for out in outs)
    float32_maps = sorted({(op, shape)
                           for op, out_dtype, shape in outputs
                           if out_dtype == torch.float32 and pixel_grid_sized(shape)})
    assert float32_maps == []
    # The check sees the maps: the logits of every GLMix block, in the autocast dtype.
    slot_logits = [(op, shape) for op, out_dtype, shape in outputs
                   if op == '_softmax' and out_dtype == dtype and pixel_grid_sized(shape)]
    glmix_blocks = sum(isinstance(m, GLMixBlock) for m in GLNet(arch).modules())
    assert glmix_blocks > 0 and len(slot_logits) == 2 * glmix_blocks


def test_forward_takes_the_cuda_forms(monkeypatch):
    """The fake tensors take GLNet's CUDA paths: the pointwise convolutions as products and
    the slot pooling as a mean over windows or averaging products, where the same forward on
    the CPU runs convolutions and adaptive pooling."""
    _, outputs = run_forward(torch.float16, False, monkeypatch)
    on_cuda = Counter(op for op, _, _ in outputs)
    torch.manual_seed(0)
    model = GLNet(TINY_ARCH).eval()
    recorder = OutputDtypes()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16), recorder:
        model(torch.randn(BATCH, 3, *INPUT_SIZE))
    on_cpu = Counter(op for op, _, _ in recorder.outputs)
    pointwise = sum(isinstance(m, glnet_layers.PointwiseConv2d) for m in model.modules())
    assert pointwise > 0
    assert on_cpu['convolution'] - on_cuda['convolution'] == pointwise
    assert on_cuda['addmm'] - on_cpu['addmm'] == pointwise
    assert on_cpu['_adaptive_avg_pool2d'] > 0 and on_cuda['_adaptive_avg_pool2d'] == 0
