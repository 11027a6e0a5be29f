"""Deployment: ONNX export of GLNet models, checked with ONNX Runtime."""
from .onnx import (ExportWrapper, compare_with_onnxruntime, default_check_shape, export_and_check,
                   export_onnx)

__all__ = [
    'ExportWrapper', 'compare_with_onnxruntime', 'default_check_shape', 'export_and_check',
    'export_onnx'
]
