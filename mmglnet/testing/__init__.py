"""What checks GLNet rather than runs it: the reference forward passes of its blocks, CUDA's
code paths on fake tensors, and which parameters a forward reads only through casts."""
from .autocast_reads import parameters_only_cast_to
from .fake_cuda import FakeCuda
from .reference import IMPLS, REFERENCE_CLASSES, get_impl, set_impl

__all__ = [
    'FakeCuda', 'IMPLS', 'REFERENCE_CLASSES', 'get_impl', 'parameters_only_cast_to', 'set_impl'
]
