"""Export models with a GLNet backbone to ONNX and check the file with ONNX Runtime.

What is exported, for an image batch already normalised by the model's data preprocessor:

* a bare :class:`~mmglnet.models.GLNet`: its stage outputs;
* a segmentor (mmseg): ``model(inputs, mode='tensor')``, the decode head's logits;
* a one-stage detector (mmdet): ``model(inputs, mode='tensor')``, the head's raw outputs;
* a two-stage detector (mmdet): the backbone, the neck and the RPN head's raw outputs (the
  second stage needs proposals picked by NMS, which mmdeploy handles);
* a classifier (mmpretrain): ``model(inputs, mode='tensor')``, the head's class scores;
* any other mmengine model: ``model(inputs, mode='tensor')``.

The graph is written by torch's TorchScript-based exporter, with height and width (and the
batch size) as free axes on request. Adaptive average pooling (GLNet's slot pooling, pyramid
pooling in decode heads) is traced in an exportable form (:mod:`mmglnet.models.pooling`), so
the graph holds at every input size.
"""
import importlib.util
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.model import revert_sync_batchnorm

from mmglnet.models import GLNet
from mmglnet.models.pooling import make_pooling_exportable
from mmglnet.utils import atomic_output


def _flatten(outputs) -> List[torch.Tensor]:
    """Tensors of nested tuples, lists and dicts, in order."""
    if torch.is_tensor(outputs):
        return [outputs]
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if isinstance(outputs, (tuple, list)):
        return [t for item in outputs for t in _flatten(item)]
    raise TypeError(f'Cannot export an output of type {type(outputs).__name__}: the model '
                    'must return tensors (or tuples, lists, dicts of tensors).')


class ExportWrapper(nn.Module):
    """``forward(inputs)`` returning the flat tuple of tensors that is exported.

    Args:
        model (nn.Module): A GLNet, or an mmengine model (segmentor, detector, classifier)
            with a GLNet backbone.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        if isinstance(model, GLNet):
            self.kind = 'backbone'
        elif hasattr(model, 'rpn_head') and hasattr(model, 'roi_head'):
            self.kind = 'two-stage detector'
        elif hasattr(model, 'decode_head'):
            self.kind = 'segmentor'
        elif hasattr(model, 'bbox_head'):
            self.kind = 'detector'
        elif hasattr(model, 'head'):
            self.kind = 'classifier'
        else:
            self.kind = 'model'

    def forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.kind == 'backbone':
            outputs = self.model(inputs)
        elif self.kind == 'two-stage detector':
            feats = self.model.extract_feat(inputs)
            outputs = self.model.rpn_head(feats)
        else:
            outputs = self.model(inputs, mode='tensor')
        return tuple(_flatten(outputs))

    def output_names(self, num_outputs: int) -> List[str]:
        """Names of the graph outputs: ``stage{i}`` for a backbone, else ``output{i}``."""
        if self.kind == 'backbone':
            return [f'stage{i}' for i in self.model.out_indices]
        return [f'output{i}' for i in range(num_outputs)]


def export_onnx(model: nn.Module,
                path: str,
                shape: Sequence[int] = (224, 224),
                dynamic: bool = False,
                opset_version: int = 17,
                in_channels: int = 3) -> Dict[str, object]:
    """Export ``model`` (eval mode) to ``path`` with torch's TorchScript-based exporter.

    Args:
        model (nn.Module): A GLNet or a model with a GLNet backbone (see
            :class:`ExportWrapper`). Its ``nn.AdaptiveAvgPool2d`` modules are made
            exportable in place (same values); SyncBN layers are replaced by BN (the
            returned wrapper holds the converted model).
        path (str): The ``.onnx`` file to write.
        shape (Sequence[int]): (H, W) of the traced input. Defaults to (224, 224).
        dynamic (bool): Make batch, height and width free axes. Defaults to False.
        opset_version (int): ONNX opset. Defaults to 17.
        in_channels (int): Input channels. Defaults to 3.

    Returns:
        dict: ``wrapper`` (the exported module), ``input_name``, ``output_names``,
        ``shape``.
    """
    if importlib.util.find_spec('onnx') is None:
        raise ImportError('Exporting to ONNX needs the onnx package: pip install -r '
                          'requirements/tests.txt (or pip install onnx onnxruntime).')
    # SyncBN (in many heads) computes as BN at inference; BN is what the graph needs.
    model = make_pooling_exportable(revert_sync_batchnorm(model).eval())
    wrapper = ExportWrapper(model).eval()
    height, width = shape
    dummy = torch.randn(1, in_channels, height, width, device=next(model.parameters()).device)
    with torch.no_grad():
        num_outputs = len(wrapper(dummy))
    output_names = wrapper.output_names(num_outputs)
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        # Outputs too: otherwise their traced sizes are written into the graph, and ONNX
        # Runtime plans reshapes with them.
        for name in output_names:
            dynamic_axes[name] = {0: 'batch', 2: f'{name}_height', 3: f'{name}_width'}
    with torch.no_grad(), warnings.catch_warnings():
        # Expected here: the TorchScript-based exporter announces its deprecation, and the
        # tracer notes the Python checks on input sizes (GLNet's input check, BatchNorm's),
        # which hold for the traced input. A size baked into the graph would show in the
        # comparison with ONNX Runtime at other sizes.
        warnings.filterwarnings(
            'ignore', message='You are using the legacy TorchScript', category=DeprecationWarning)
        warnings.filterwarnings(
            'ignore', message='The feature will be removed', category=DeprecationWarning)
        warnings.filterwarnings(
            'ignore',
            message='Converting a tensor to a Python boolean',
            category=torch.jit.TracerWarning)
        # Through a temporary file: a failed or killed export leaves ``path`` as it was.
        with atomic_output(path) as temporary:
            torch.onnx.export(
                wrapper, (dummy, ),
                temporary,
                input_names=['input'],
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=opset_version,
                dynamo=False)
    return dict(
        wrapper=wrapper, input_name='input', output_names=output_names, shape=(height, width))


def compare_with_onnxruntime(wrapper: nn.Module,
                             path: str,
                             shapes: Sequence[Sequence[int]],
                             batch_size: int = 1,
                             in_channels: int = 3,
                             seed: int = 0) -> List[Dict[str, object]]:
    """Run the exported file with ONNX Runtime and PyTorch on the same random inputs.

    Args:
        wrapper (nn.Module): The module :func:`export_onnx` exported.
        path (str): The ``.onnx`` file.
        shapes (Sequence[Sequence[int]]): Input (H, W) sizes to compare at.
        batch_size (int): Images per input. Defaults to 1.
        in_channels (int): Input channels. Defaults to 3.
        seed (int): Seed of the random inputs. Defaults to 0.

    Returns:
        list[dict]: Per size: ``shape``, ``max_abs_diff`` (over all outputs), ``max_abs``
        (largest PyTorch output magnitude), ``relative`` (their ratio).
    """
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise ImportError('Checking the exported file needs onnxruntime: pip install -r '
                          'requirements/tests.txt (or pip install onnxruntime).') from error
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    input_name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(seed)
    device = next(wrapper.parameters()).device
    results = []
    for height, width in shapes:
        inputs = torch.randn(batch_size, in_channels, height, width, generator=generator)
        with torch.no_grad():
            expected = [t.float().cpu().numpy() for t in wrapper(inputs.to(device))]
        got = session.run(None, {input_name: inputs.numpy()})
        if len(got) != len(expected):
            raise RuntimeError(f'{path} returned {len(got)} outputs where PyTorch returns '
                               f'{len(expected)}.')
        diff, magnitude = 0., 0.
        for name, out, ref in zip([o.name for o in session.get_outputs()], got, expected):
            if out.shape != ref.shape:
                raise RuntimeError(
                    f'At input size {height}x{width}, output {name!r} of {path} has shape '
                    f'{out.shape}, PyTorch {ref.shape}: the graph was not exported for this '
                    'size (export with --dynamic for free height and width).')
            diff = max(diff, float(np.abs(out - ref).max()))
            magnitude = max(magnitude, float(np.abs(ref).max()))
        results.append(
            dict(
                shape=(height, width),
                max_abs_diff=diff,
                max_abs=magnitude,
                relative=diff / max(magnitude, 1e-12)))
    return results


def default_check_shape(shape: Sequence[int], min_size: int = 32) -> Tuple[int, int]:
    """A size other than ``shape`` for checking a dynamic graph: 24 rows fewer, 40 columns
    more (224x224 gives 200x264), at least ``min_size`` each."""
    height, width = shape
    return max(height - 24, min_size), width + 40


def export_and_check(model: nn.Module,
                     path: str,
                     shape: Sequence[int] = (224, 224),
                     dynamic: bool = False,
                     check_shapes: Optional[Sequence[Sequence[int]]] = None,
                     opset_version: int = 17,
                     in_channels: int = 3) -> Tuple[dict, List[dict]]:
    """:func:`export_onnx`, then :func:`compare_with_onnxruntime` at the traced size and,
    for a dynamic graph, at ``check_shapes`` (default: :func:`default_check_shape`).

    Returns:
        tuple[dict, list[dict]]: The export record and the comparisons.
    """
    record = export_onnx(model, path, shape, dynamic, opset_version, in_channels)
    shapes = [tuple(shape)]
    if dynamic:
        shapes += [tuple(s) for s in (check_shapes or [default_check_shape(shape)])]
    comparisons = compare_with_onnxruntime(record['wrapper'], path, shapes, in_channels=in_channels)
    return record, comparisons
