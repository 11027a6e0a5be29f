"""Parameter and FLOP counting that includes the attention products.

mmengine's :class:`~mmengine.analysis.FlopAnalyzer` traces a model with the JIT and counts each
operator it has a handle for. It has none for ``aten::scaled_dot_product_attention``, which
computes GLNet's attention products (``q @ k^T`` and ``attn @ v``), nor for ``aten::baddbmm``,
which the tracer records for some batched products, and its ``aten::matmul`` handle ignores
broadcast batch dimensions. :data:`FLOP_HANDLES` adds or replaces those handles; everything else
follows mmengine's conventions: one multiply-add is one FLOP, element-wise operators (additions,
activations, softmax) count zero.

:func:`count_flops` counts any module; :func:`config_complexity` builds the model of an mmdet,
mmseg or mmpretrain config (no dataset, no checkpoint) and counts its inference forward the way
those codebases' ``get_flops.py`` tools do: the data preprocessor runs outside the count, then
the model's ``mode='tensor'`` forward (backbone, neck and heads without post-processing) is
traced. Parameters are those of the whole model, auxiliary heads included.
"""
import logging
from math import prod
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import revert_sync_batchnorm
from mmengine.structures import BaseDataElement

from mmglnet.apis import build_model


def _shapes(values: Sequence[Any], what: str) -> List[List[int]]:
    shapes = [get_shape(value) for value in values]
    if any(shape is None for shape in shapes):
        raise RuntimeError(f'The JIT trace gave no complete shapes for the inputs of {what}.')
    return shapes


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOPs of ``aten::scaled_dot_product_attention``: the two attention products.

    For ``q`` (..., Lq, E), ``k`` (..., Lk, E) and ``v`` (..., Lk, Ev), ``q @ k^T`` takes
    ``Lq * Lk * E`` multiply-adds and ``attn @ v`` takes ``Lq * Lk * Ev`` per batch-and-head
    entry, i.e. ``2 * B * heads * Lq * Lk * head_dim`` when ``E == Ev``. The softmax and the
    scaling are element-wise and count zero, as in mmengine.
    """
    query, key, value = _shapes(inputs[:3], 'aten::scaled_dot_product_attention')
    out = _shapes(outputs[:1], 'aten::scaled_dot_product_attention')[0]
    batch = prod(out[:-2])  # broadcast over the leading (batch, head) dimensions
    len_q, len_k = query[-2], key[-2]
    return batch * len_q * len_k * (query[-1] + value[-1])


def matmul_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOPs of ``aten::matmul`` with broadcasting: output elements times the inner size."""
    first = _shapes(inputs[:1], 'aten::matmul')[0]
    out = _shapes(outputs[:1], 'aten::matmul')[0]
    return prod(out) * first[-1]


def baddbmm_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOPs of ``aten::baddbmm(input, batch1, batch2)``: the batched product only."""
    batch1, batch2 = _shapes(inputs[1:3], 'aten::baddbmm')
    return prod(batch1) * batch2[-1]


#: Handles that :func:`count_flops` adds to (or replaces in) mmengine's FLOP counter.
FLOP_HANDLES = {
    'aten::scaled_dot_product_attention': sdpa_flop_jit,
    'aten::baddbmm': baddbmm_flop_jit,
    'aten::matmul': matmul_flop_jit,
}

# Operators counted as zero FLOPs, as mmengine's convention is for element-wise work:
# arithmetic and activations, reductions and comparisons, sorting and indexing, copies and
# shape changes. Any other operator without a handle is reported by :func:`count_flops`.
ZERO_FLOP_OPS = (
    # element-wise arithmetic and activations
    'aten::abs',
    'aten::add',
    'aten::add_',
    'aten::ceil',
    'aten::clamp_min',
    'aten::div',
    'aten::div_',
    'aten::exp',
    'aten::exp_',
    'aten::gelu',
    'aten::hardsigmoid',
    'aten::hardswish',
    'aten::leaky_relu',
    'aten::log',
    'aten::log2',
    'aten::log_softmax',
    'aten::maximum',
    'aten::minimum',
    'aten::mul',
    'aten::mul_',
    'aten::neg',
    'aten::pow',
    'aten::reciprocal',
    'aten::round',
    'aten::rsqrt',
    'aten::rsub',
    'aten::sigmoid',
    'aten::sigmoid_',
    'aten::silu',
    'aten::softmax',
    'aten::sqrt',
    'aten::sqrt_',
    'aten::sub',
    'aten::tanh',
    'aten::where',
    # reductions, norms of vectors, comparisons, pooling by maximum
    'aten::all',
    'aten::any',
    'aten::argmax',
    'aten::le',
    'aten::linalg_vector_norm',
    'aten::lt',
    'aten::max_pool2d',
    'aten::max_pool2d_with_indices',
    'aten::mean',
    'aten::min',
    'aten::ne',
    'aten::norm',
    'aten::sum',
    # sorting, indexing, creation, copies and shape changes
    'aten::alias',
    'aten::clone',
    'aten::dropout_',
    'aten::expand_as',
    'aten::feature_dropout',
    'aten::fill_',
    'aten::index_select',
    'aten::lift_fresh',
    'aten::linspace',
    'aten::masked_fill_',
    'aten::masked_select',
    'aten::meshgrid',
    'aten::new_ones',
    'aten::numel',
    'aten::ones_like',
    'aten::repeat',
    'aten::reshape_as',
    'aten::resolve_conj',
    'aten::resolve_neg',
    'aten::scalar_tensor',
    'aten::sort',
    'aten::topk',
    'aten::unflatten',
    'aten::view_as',
    'aten::zero_',
    'aten::_shape_as_tensor')


def count_flops(model: nn.Module,
                inputs: Union[torch.Tensor, Tuple[Any, ...]],
                handles: Optional[Dict[str, Any]] = None) -> Tuple[int, int]:
    """Count the FLOPs of ``model(*inputs)`` and the model's parameters.

    Args:
        model (nn.Module): The model; it is traced as it is (put it in eval mode first for
            inference figures).
        inputs (Tensor | tuple): The forward's positional inputs.
        handles (dict, optional): Extra or replacement operator handles (mmengine's handle
            signature), applied after :data:`FLOP_HANDLES`; a None handle counts that
            operator as zero. Defaults to None.

    Returns:
        tuple[int, int]: FLOPs (one multiply-add is one FLOP) and the number of parameters.
    """
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs, )
    if not isinstance(inputs, tuple):
        raise TypeError(f'inputs must be a tensor or a tuple of forward arguments, got '
                        f'{type(inputs).__name__}.')
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(**{name: None for name in ZERO_FLOP_OPS})
    analyzer.set_op_handle(**dict(FLOP_HANDLES, **(handles or {})))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        flops = analyzer.total()
    skipped = analyzer.unsupported_ops()
    if skipped:
        listed = ', '.join(f'{name} x{count}' for name, count in sorted(skipped.items()))
        print_log(
            f'Operators without a FLOP handle, counted as 0: {listed}.',
            logger='current',
            level=logging.WARNING)
    return int(flops), parameter_count(model)['']


class TensorForward(nn.Module):
    """Calls an OpenMMLab model's ``mode='tensor'`` forward with fixed data samples.

    Args:
        model (nn.Module): A model of mmdet, mmseg or mmpretrain (an mmengine ``BaseModel``).
        data_samples (list, optional): Data samples passed to every call. Defaults to None.
    """

    def __init__(self, model: nn.Module, data_samples: Optional[list] = None) -> None:
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor) -> Any:
        return self.model(inputs, self.data_samples, mode='tensor')


def _input_size(shape: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(shape, int):
        shape = (shape, )
    shape = tuple(shape)
    if len(shape) == 1:
        shape = shape * 2
    if len(shape) != 2 or not all(isinstance(v, int) and v > 0 for v in shape):
        raise ValueError(f'shape={shape!r} is not an input size: give one positive int (a '
                         'square image) or two (height, width).')
    return shape


def config_complexity(cfg: Union[str, Config],
                      shape: Union[int, Sequence[int]],
                      seed: int = 0,
                      cfg_options: Optional[dict] = None) -> Dict[str, Any]:
    """Parameters and inference FLOPs of a config's model on one image of ``shape``.

    The model is built from the config alone, without data or pretrained weights
    (:func:`mmglnet.apis.build_model`), in eval mode with SyncBN layers turned into BatchNorm
    (one process). A random image goes through the model's data preprocessor (normalisation
    and padding, not counted), then the ``mode='tensor'`` forward is counted with
    :func:`count_flops`. For two-stage
    detectors that forward runs the RPN's prediction, so the RoI heads see the proposals the
    (randomly initialised) RPN keeps, at most its ``max_per_img``; ``seed`` fixes them.

    Args:
        cfg (str | Config): A config file or a loaded config.
        shape (int | Sequence[int]): Image size, ``(height, width)`` or one int for a square.
        seed (int): Seed of the random weights and image. Defaults to 0.
        cfg_options (dict, optional): Settings merged into the config, as with
            ``--cfg-options``. Defaults to None.

    Returns:
        dict: ``flops`` (int), ``params`` (int) and ``input_shape`` (the padded network input,
        (1, C, H, W)).
    """
    height, width = _input_size(shape)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = revert_sync_batchnorm(build_model(cfg, cfg_options)).eval()
        image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
        meta = dict(
            img_shape=(height, width),
            ori_shape=(height, width),
            pad_shape=(height, width),
            scale_factor=(1., 1.))
        batch = dict(inputs=[image], data_samples=[BaseDataElement(metainfo=meta)])
        data = model.data_preprocessor(batch, False)
        flops, params = count_flops(TensorForward(model, data['data_samples']), (data['inputs'], ))
    return dict(flops=flops, params=params, input_shape=tuple(data['inputs'].shape))
