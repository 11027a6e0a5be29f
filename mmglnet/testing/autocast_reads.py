"""How a forward reads a model's parameters: which ones it reads only through casts.

Under autocast a convolution or a linear layer casts its float32 weight to float16/bfloat16
as it runs; other parameters are read in float32 (BatchNorm's, layer scales, a kernel the
identity is added to before the cast). Only the first kind may be replaced by copies cast
beforehand without changing a result. :func:`parameters_only_cast_to` tells them apart by
watching the ATen operators of one forward, so that it holds for any model and checks GLNet's
own list (:data:`mmglnet.models.weight_casts.CAST_ONLY_PARAMETERS`).
"""
from typing import Callable, List

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

# ATen operators that read a tensor's metadata only, not its values: fake tensors dispatch
# ``device`` queries, and setting a parameter's ``.data`` asks
# ``_has_compatible_shallow_copy_type``.
METADATA_OPS = frozenset({'device', 'is_same_size', '_has_compatible_shallow_copy_type'})
# ATen operators that only make a new view of their input (or read metadata or a host
# scalar): they launch no kernel on a GPU, and a view of a parameter reads it no more than
# the parameter itself.
VIEW_OPS = frozenset({
    'alias', 'as_strided', 'detach', 'expand', 'permute', 'reshape', 'select', 'slice', 'split',
    'split_with_sizes', 'squeeze', 't', 'transpose', 'unbind', 'unflatten', 'unsqueeze', 'view',
    '_reshape_alias', '_unsafe_view', 'promote_types', '_local_scalar_dense'
}) | METADATA_OPS


def parameters_only_cast_to(model: nn.Module, forward: Callable[[], object],
                            dtype: torch.dtype) -> List[str]:
    """Names of ``model``'s parameters that ``forward()`` reads only through casts to
    ``dtype`` (directly or through views of them).

    ``forward`` runs once, as it is: the caller sets autocast up (with ``cache_enabled=False``
    where an enclosing autocast context may have cast the weights already, since a cast
    served from autocast's cache is not seen).

    Args:
        model (nn.Module): The model whose parameters are watched.
        forward (Callable): Runs the model, e.g. ``lambda: model(x)``.
        dtype (torch.dtype): The dtype of the casts, e.g. ``torch.float16``.

    Returns:
        list[str]: Sorted parameter names; a parameter ``forward`` does not read is not in it.
    """
    names = {id(param): name for name, param in model.named_parameters()}
    casts, other_uses, aliases = set(), set(), []

    class ParameterUses(TorchDispatchMode):

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            op = func.overloadpacket.__name__
            # Tensors in lists and keywords too (a parameter passed so is a use).
            for arg in tree_leaves((args, kwargs)):
                name = names.get(id(arg)) if torch.is_tensor(arg) else None
                if name is None:
                    continue
                if op == '_to_copy' and arg is args[0] and kwargs.get('dtype') == dtype:
                    casts.add(name)
                elif op in VIEW_OPS and torch.is_tensor(out):
                    names[id(out)] = name
                    aliases.append(out)  # keeps the id from being reused
                elif op not in METADATA_OPS:
                    other_uses.add(name)
            return out

    with ParameterUses():
        forward()
    return sorted(casts - other_uses)
