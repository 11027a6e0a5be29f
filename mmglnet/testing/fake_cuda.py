"""CUDA's code paths and autocast on a machine without a GPU, with fake CUDA tensors.

torch's autocast casts other operators on CUDA than on the CPU: on CUDA ``softmax`` and
``linalg_vector_norm`` without a dtype, ``reciprocal`` and ``layer_norm`` run in float32, where
the CPU's autocast keeps bfloat16. And GLNet's fast path takes forms of its own on CUDA
(the pointwise convolutions as products, the slot pooling). A model whose parameters are
fake tensors on a ``cuda`` device (:class:`~torch._subclasses.fake_tensor.FakeTensor`:
shapes, dtypes, strides and devices, no data) runs those paths on the CPU, through CUDA's
autocast, so that the operators it dispatches and the dtypes of their outputs can be
checked. Only the forward runs: torch's autograd engine asks the CUDA driver for the device.
Autocast acts in the forward only, so the forward's dtypes decide the backward's.

Example:
    >>> fake = FakeCuda()
    >>> model = fake.module(GLNet(arch).train())
    >>> with fake.run(autocast_dtype=torch.float16):
    ...     outs = model(fake.tensor(torch.empty(2, 3, 64, 64)))
"""
import contextlib
from typing import Iterator, Optional
from unittest import mock

import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensorMode

from mmglnet.models import pooling


class FakeCuda:
    """Makes fake CUDA tensors and modules, and runs code on them (:meth:`run`)."""

    def __init__(self) -> None:
        self.mode = FakeTensorMode()

    def tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """A fake CUDA tensor with ``tensor``'s shape, dtype and strides (the memory format
        included)."""
        with self.mode:
            return self.mode.from_tensor(tensor).to('cuda')

    def module(self, module: nn.Module) -> nn.Module:
        """``module``, its parameters and buffers replaced in place by fake CUDA tensors."""
        for submodule in module.modules():
            for name, param in submodule._parameters.items():
                if param is not None:
                    submodule._parameters[name] = nn.Parameter(
                        self.tensor(param.detach()), requires_grad=param.requires_grad)
            for name, buffer in submodule._buffers.items():
                if buffer is not None:
                    submodule._buffers[name] = self.tensor(buffer)
        return module

    @contextlib.contextmanager
    def run(self, autocast_dtype: Optional[torch.dtype] = None) -> Iterator[None]:
        """Within: operators on the fake tensors, with CUDA's autocast in ``autocast_dtype``.

        Autocast is switched on by torch's low-level calls, since ``torch.autocast('cuda')``
        turns itself off where CUDA is not available; the state before is restored after.
        No CUDA graph is being captured (torch would ask the driver), and the slot pooling's
        matrices are cached apart (a fake tensor belongs to its :class:`FakeCuda`).

        Args:
            autocast_dtype (torch.dtype, optional): float16 or bfloat16; None: no autocast.
                Defaults to None.
        """
        enabled = torch.is_autocast_enabled('cuda')
        dtype = torch.get_autocast_dtype('cuda')
        with mock.patch.object(torch.cuda, 'is_current_stream_capturing', lambda: False), \
                mock.patch.dict(pooling._AVERAGING_MATRICES, clear=True):
            try:
                if autocast_dtype is not None:
                    torch.set_autocast_dtype('cuda', autocast_dtype)
                    torch.set_autocast_enabled('cuda', True)
                with self.mode:
                    yield
            finally:
                torch.set_autocast_enabled('cuda', enabled)
                torch.set_autocast_dtype('cuda', dtype)
                torch.clear_autocast_cache()
