"""What checks GLNet rather than runs it: the reference forward passes of its blocks."""
from .reference import IMPLS, REFERENCE_CLASSES, get_impl, set_impl

__all__ = ['IMPLS', 'REFERENCE_CLASSES', 'get_impl', 'set_impl']
