"""Extract the semantic-slot assignment maps of GLMix blocks from any model with a GLNet.

The maps are the dispatching weights of each block (softmax over slots of the slot-pixel
logits). They are recomputed by :meth:`GLMixBlock.dispatch_weights` from the block inputs,
which forward pre-hooks capture during one forward pass of the backbone. The hooks exist only
inside :func:`extract_slot_weights` and are removed in a ``finally`` clause, so the model's
normal forward is neither slowed nor changed.
"""
from collections import OrderedDict
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn

from mmglnet.models import GLMixBlock, GLNet


class SlotSelectionError(ValueError):
    """A slot map asked of a model that cannot give it (no GLNet, no such GLMix block, more
    representative slots than a block has); the message names the choices."""


def find_glnet(model: nn.Module) -> GLNet:
    """The GLNet inside ``model`` (a detector, segmentor, classifier or the backbone itself).

    Model wrappers (``DistributedDataParallel`` and friends) are looked through, since their
    submodules include the wrapped model's.

    Args:
        model (nn.Module): Any module.

    Returns:
        GLNet: The first GLNet among ``model.modules()``.
    """
    for module in model.modules():
        if isinstance(module, GLNet):
            return module
    raise SlotSelectionError(
        f'The model ({type(model).__name__}) contains no mmglnet GLNet module, so it has no '
        "semantic slots to show. Use a config whose backbone is type='mmglnet.GLNet' or a "
        "preset name such as '4g'.")


def glmix_blocks(backbone: GLNet) -> 'OrderedDict[str, GLMixBlock]':
    """All GLMix blocks of a GLNet, named ``'stage.block'`` (e.g. ``'2.4'``) in forward order."""
    blocks = OrderedDict()
    for i, stage in enumerate(backbone.stages):
        for j, block in enumerate(stage.blocks):
            if isinstance(block, GLMixBlock):
                blocks[f'{i}.{j}'] = block
    return blocks


def default_block_names(backbone: GLNet) -> list:
    """A few GLMix blocks at several depths: the last GLMix block of every stage that has one."""
    last = OrderedDict()
    for name in glmix_blocks(backbone):
        last[name.split('.')[0]] = name
    return list(last.values())


def select_blocks(backbone: GLNet, names: Optional[Union[str, Sequence[str]]] = None) -> list:
    """Validate block names against the backbone.

    Args:
        backbone (GLNet): The backbone.
        names (str | Sequence[str], optional): ``'stage.block'`` names such as ``['0.0', '2.4']``,
            ``'all'`` for every GLMix block, or None for :func:`default_block_names`.
            Defaults to None.

    Returns:
        list[str]: Block names, in forward order, without duplicates.
    """
    available = glmix_blocks(backbone)
    if not available:
        raise SlotSelectionError('This GLNet has no GLMix block (every stage uses MHSA): there '
                                 'are no semantic slots to show.')
    if names is None:
        return default_block_names(backbone)
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if names == ['all']:
        return list(available)
    unknown = [name for name in names if name not in available]
    if unknown:
        raise SlotSelectionError(
            f'Block(s) {unknown} are not GLMix blocks of this GLNet (arch '
            f'{backbone.arch_name}). Give stage.block names from {list(available)} or "all".')
    return [name for name in available if name in names]


def check_slot_request(model: nn.Module,
                       blocks: Optional[Union[str, Sequence[str]]] = None,
                       k: Optional[int] = None) -> list:
    """Check, before any image is run, that ``model`` can give the slot maps asked of it.

    Args:
        model (nn.Module): A model with a GLNet (see :func:`find_glnet`).
        blocks (str | Sequence[str], optional): See :func:`select_blocks`. Defaults to None.
        k (int, optional): Representative slots per block; each chosen block must have at
            least ``k`` slots. Defaults to None (not checked).

    Returns:
        list[str]: The chosen block names (:func:`select_blocks`).

    Raises:
        SlotSelectionError: Naming what does not fit and the choices.
    """
    backbone = find_glnet(model)
    names = select_blocks(backbone, blocks)
    if k is not None:
        available = glmix_blocks(backbone)
        fewest = min(available[name].num_slots for name in names)
        if not isinstance(k, int) or not 1 <= k <= fewest:
            raise SlotSelectionError(
                f'k={k!r} representative slots asked of blocks {names}, which have '
                f'{fewest} slots{" at the fewest" if len(names) > 1 else ""}: choose 1 <= k '
                f'<= {fewest}.')
    return names


class _AllCaptured(Exception):
    """Stops the backbone forward once every requested block input is captured."""


@torch.no_grad()
def extract_slot_weights(
        backbone: GLNet,
        inputs: torch.Tensor,
        names: Optional[Union[str, Sequence[str]]] = None) -> 'OrderedDict[str, torch.Tensor]':
    """Dispatching weights of the chosen GLMix blocks for a batch of preprocessed images.

    Runs ``backbone(inputs)`` with forward pre-hooks on the chosen blocks that keep each
    block's input, stopping once the last one is reached; the hooks are removed before
    returning, whatever happens. The weights are
    then recomputed from those inputs with :meth:`GLMixBlock.dispatch_weights`. The backbone
    runs in eval mode (BatchNorm statistics do not move) and every module's mode is restored.

    Args:
        backbone (GLNet): The backbone (see :func:`find_glnet`).
        inputs (Tensor): (N, 3, H, W) normalised images, on the backbone's device.
        names (str | Sequence[str], optional): Blocks, see :func:`select_blocks`.
            Defaults to None.

    Returns:
        OrderedDict[str, Tensor]: Per block name, (N, S, h, w) float weights on the CPU that sum
        to 1 over the S slots at every position of the block's grid.
    """
    blocks = glmix_blocks(backbone)
    names = select_blocks(backbone, names)
    captured = {}

    def keep_input(name):

        def hook(module, args):
            captured[name] = args[0].detach()
            if len(captured) == len(names):
                raise _AllCaptured  # the rest of the backbone is not needed

        return hook

    modes = {module: module.training for module in backbone.modules()}
    handles = [blocks[name].register_forward_pre_hook(keep_input(name)) for name in names]
    try:
        backbone.eval()
        backbone(inputs)
    except _AllCaptured:
        pass
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
    missing = [name for name in names if name not in captured]
    if missing:
        raise RuntimeError(f'GLMix block(s) {missing} were not called through their forward '
                           'during the backbone forward, so their inputs could not be captured.')
    return OrderedDict(
        (name, blocks[name].dispatch_weights(captured.pop(name)).float().cpu()) for name in names)
