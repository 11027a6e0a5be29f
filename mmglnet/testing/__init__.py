"""What checks GLNet rather than runs it: the reference forward passes of its blocks, and
CUDA's code paths on fake tensors."""
from .fake_cuda import FakeCuda
from .reference import IMPLS, REFERENCE_CLASSES, get_impl, set_impl

__all__ = ['FakeCuda', 'IMPLS', 'REFERENCE_CLASSES', 'get_impl', 'set_impl']
