"""The bytes that the operators of one forward pass which no compiler fuses must move.

``torch.compile`` fuses element-wise work (norms, activations, additions, casts) into generated
kernels, but convolutions, matrix products and attention stay library calls (cuDNN, cuBLAS,
flash attention) that read their inputs from memory and write their outputs back. Their bytes
are a floor under the time of a compiled forward on a GPU, whatever the fusion around them:
this tool counts them per class of operator for the models of ``benchmark.py``, on meta tensors
(no memory, no device, a few seconds), and prints the time they take at a given memory
bandwidth. Attention through ``scaled_dot_product_attention`` counts its query, key, value and
output only, as a fused kernel moves them (the attention matrix stays on chip); attention
written as products (timm's Swin-T) counts its products.

It is an estimate of a lower bound, not a measurement: the kernels' own efficiency, the
element-wise traffic and the launch overhead come on top; ``benchmark.py --profile`` measures.

Example::

    python tools/analysis_tools/memory_traffic.py --models glnet_4g swin_t convnext_t \\
        --size 224 --batch 128
"""
import argparse
import os.path as osp
import sys
from collections import OrderedDict
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

if osp.dirname(osp.abspath(__file__)) not in sys.path:  # loaded by path, not run
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import benchmark  # noqa: E402  (tools/analysis_tools/benchmark.py: the models)

PRODUCTS = frozenset({'mm', 'bmm', 'addmm', 'baddbmm', 'addbmm'})
ATTENTION = 'attention (fused)'
# An H100 SXM's HBM3 bandwidth, bytes per second.
DEFAULT_BANDWIDTH = 3.35e12


def tensor_bytes(values) -> int:
    return sum(v.numel() * v.element_size() for v in values if isinstance(v, torch.Tensor))


def convolution_class(weight: torch.Tensor, groups: int) -> str:
    """``'convolution 1x1'``, ``'depth-wise convolution 3x3'``, ``'convolution 4x4'``..."""
    kernel = 'x'.join(str(k) for k in weight.shape[2:])
    if groups > 1 and weight.shape[1] == 1:
        return f'depth-wise convolution {kernel}'
    return f'convolution {kernel}'


class LibraryCallTraffic(TorchDispatchMode):
    """Counts, while active, the calls and bytes (inputs read, outputs written) of the
    convolutions and matrix products dispatched; ``attention`` is set by
    :class:`FusedAttention` while a fused attention runs, whose inner operators are not
    counted."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: Dict[str, List[int]] = OrderedDict()
        self.in_fused_attention = False

    def add(self, key: str, nbytes: int) -> None:
        row = self.rows.setdefault(key, [0, 0])
        row[0] += 1
        row[1] += nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.in_fused_attention:
            return out
        name = func.overloadpacket.__name__
        if name == 'convolution':
            key = convolution_class(args[1], args[8])
        elif name in PRODUCTS:
            key = 'matrix products'
        else:
            return out
        outputs = out if isinstance(out, (tuple, list)) else (out, )
        self.add(key, tensor_bytes(args) + tensor_bytes(outputs))
        return out


class FusedAttention(TorchFunctionMode):
    """Counts each ``F.scaled_dot_product_attention`` as one fused kernel: its query, key and
    value read, its output written."""

    def __init__(self, traffic: LibraryCallTraffic) -> None:
        super().__init__()
        self.traffic = traffic

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        self.traffic.in_fused_attention = True
        try:
            out = func(*args, **kwargs)
        finally:
            self.traffic.in_fused_attention = False
        query_key_value = list(
            args[:3]) + [kwargs[k] for k in ('query', 'key', 'value') if k in kwargs]
        self.traffic.add(ATTENTION, tensor_bytes(query_key_value) + tensor_bytes([out]))
        return out


def count_traffic(model: nn.Module,
                  batch: int,
                  size: int,
                  dtype: torch.dtype = torch.float16) -> Dict[str, List[int]]:
    """Calls and bytes per operator class of one inference forward of ``model``.

    The model and input go to the meta device in ``dtype`` and the channels-last layout (as
    the GPU benchmarks run them), so nothing is allocated or computed.

    Args:
        model (nn.Module): The model; moved to the meta device.
        batch (int): Batch size.
        size (int): Input side.
        dtype (torch.dtype): Precision of weights and activations. Defaults to float16.

    Returns:
        dict: ``{operator class: [calls, bytes]}``, largest bytes first.
    """
    model = model.eval().to(device='meta', dtype=dtype, memory_format=torch.channels_last)
    x = torch.empty(
        batch, 3, size, size, device='meta', dtype=dtype, memory_format=torch.channels_last)
    traffic = LibraryCallTraffic()
    with torch.no_grad(), FusedAttention(traffic), traffic:
        model(x)
    return OrderedDict(sorted(traffic.rows.items(), key=lambda item: -item[1][1]))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Bytes moved by the convolutions, products and attention of one forward.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument(
        '--models',
        nargs='+',
        default=['glnet_4g', 'swin_t', 'convnext_t'],
        help='models of benchmark.py (the GLNet ones without their compile suffixes)')
    parser.add_argument('--size', type=int, default=224, help='input side')
    parser.add_argument('--batch', type=int, default=128, help='batch size')
    parser.add_argument(
        '--bandwidth',
        type=float,
        default=DEFAULT_BANDWIDTH,
        help='memory bandwidth in bytes/s for the time column (default: an H100 SXM)')
    args = parser.parse_args(argv)
    benchmark.refuse_unknown_models(parser, args.models)
    self_compiling = [m for m in args.models if benchmark.compiles_itself(m)]
    if self_compiling:
        parser.error(f'{self_compiling} compile themselves; name the eager model (e.g. glnet_4g): '
                     'the count is the same')
    if args.size <= 0 or args.batch <= 0 or args.bandwidth <= 0:
        parser.error('--size, --batch and --bandwidth must be positive')
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, List[int]]]:
    args = parse_args(argv)
    results = OrderedDict()
    print(f'One fp16 forward at {args.size}², batch {args.batch}: bytes of the library calls, '
          f'and their time at {args.bandwidth / 1e12:.2f} TB/s')
    for name in args.models:
        rows = count_traffic(benchmark.MODEL_BUILDERS[name](args.size), args.batch, args.size)
        results[name] = rows
        total = sum(nbytes for _, nbytes in rows.values())
        print(f'{name}: {total / 1e9:.2f} GB, {total / args.bandwidth * 1e3:.2f} ms')
        for key, (calls, nbytes) in rows.items():
            print(f'  {key:32} {calls:5d} calls {nbytes / 1e9:8.2f} GB '
                  f'{nbytes / args.bandwidth * 1e3:7.2f} ms')
    return results


if __name__ == '__main__':
    main()
