"""Semantic-slot maps of a model's GLNet for given images: extraction, drawing, saving."""
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn as nn
from mmengine.fileio import LocalBackend, get_file_backend, put

from mmglnet.utils import atomic_output

from .drawing import BlockSlotMaps, block_panel, render_block, stack_rows
from .inputs import prepare_inputs
from .slot_maps import extract_slot_weights, find_glnet


def visualize_slots(model: nn.Module,
                    inputs: torch.Tensor,
                    images: Sequence[np.ndarray],
                    valid_shapes: Optional[Sequence[Tuple[int, int]]] = None,
                    blocks: Optional[Union[str, Sequence[str]]] = None,
                    k: int = 4,
                    alpha: float = 0.6) -> List[List[BlockSlotMaps]]:
    """Slot maps of the GLNet in ``model`` for a preprocessed batch.

    The GLNet runs in eval mode (BatchNorm statistics do not move); every module's previous
    mode is restored afterwards (see :func:`extract_slot_weights`).

    Args:
        model (nn.Module): A model containing a GLNet, or the GLNet itself.
        inputs (Tensor): (N, 3, H, W) preprocessed batch on the model's device.
        images (Sequence[np.ndarray]): N RGB images to draw on (any size; usually the
            unnormalised inputs or the original photographs).
        valid_shapes (Sequence[tuple[int, int]], optional): Per image, the (H, W) of the image
            inside the padded input. Defaults to None (no padding).
        blocks (str | Sequence[str], optional): ``'stage.block'`` names, ``'all'``, or None for
            a few blocks at several depths. Defaults to None.
        k (int): Representative slots per block. Defaults to 4.
        alpha (float): Blending weight of colours and heat maps. Defaults to 0.6.

    Returns:
        list[list[BlockSlotMaps]]: Per image, per block, the drawings.
    """
    if len(images) != inputs.shape[0]:
        raise ValueError(f'{len(images)} images to draw on for a batch of {inputs.shape[0]}.')
    backbone = find_glnet(model)
    inputs = inputs.to(next(backbone.parameters()).device)
    weights = extract_slot_weights(backbone, inputs, blocks)
    input_shape = tuple(inputs.shape[-2:])
    results = []
    for n, image in enumerate(images):
        valid = valid_shapes[n] if valid_shapes is not None else None
        results.append([
            render_block(name, image, block_weights[n], input_shape, valid, k=k, alpha=alpha)
            for name, block_weights in weights.items()
        ])
    return results


def visualize_image_slots(model: nn.Module,
                          image: np.ndarray,
                          size: Optional[Union[int, Sequence[int]]] = 512,
                          size_divisor: int = 32,
                          blocks: Optional[Union[str, Sequence[str]]] = None,
                          k: int = 4,
                          alpha: float = 0.6) -> List[BlockSlotMaps]:
    """Slot maps of one photograph, drawn at the photograph's own size.

    The image is resized (see :func:`~mmglnet.visualization.inputs.network_size`) and
    preprocessed by ``model.data_preprocessor`` (channel order, mean, std, padding), or with
    the ImageNet statistics when the model has none (a bare backbone).

    Args:
        model (nn.Module): A model containing a GLNet, or the GLNet itself.
        image (np.ndarray): (H, W, 3) uint8 BGR image.
        size (int | Sequence[int], optional): Shorter side, (H, W), or None to keep the image
            size. Defaults to 512.
        size_divisor (int): The network input sides are multiples of this. Defaults to 32.
        blocks (str | Sequence[str], optional): See :func:`visualize_slots`. Defaults to None.
        k (int): Representative slots per block. Defaults to 4.
        alpha (float): Blending weight. Defaults to 0.6.

    Returns:
        list[BlockSlotMaps]: Per block, drawings at the image's size.
    """
    preprocessor = getattr(model, 'data_preprocessor', None)
    inputs, valid = prepare_inputs(image, preprocessor, size, size_divisor)
    rgb = np.ascontiguousarray(image[..., ::-1])
    return visualize_slots(model, inputs, [rgb], [valid], blocks, k, alpha)[0]


def write_image(path: str, image: np.ndarray) -> None:
    """Write an RGB uint8 image, encoded by its extension (PNG without one).

    Any mmengine file backend; folders are created. A local file is written atomically
    (:func:`mmglnet.utils.atomic_output`): a kill while writing leaves it as it was.

    Args:
        path (str): The destination.
        image (np.ndarray): ``(H, W, 3)`` RGB ``uint8`` image.
    """
    ok, encoded = cv2.imencode(osp.splitext(path)[1] or '.png', image[..., ::-1])
    if not ok:
        raise ValueError(f'Could not encode an image of shape {image.shape} for {path!r}.')
    if not isinstance(get_file_backend(path), LocalBackend):
        put(encoded.tobytes(), path)
        return
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with atomic_output(path) as temporary, open(temporary, 'wb') as f:
        f.write(encoded.tobytes())


def save_slot_maps(out_dir: str,
                   image: np.ndarray,
                   maps: Sequence[BlockSlotMaps],
                   prefix: str = '',
                   panel_height: int = 256) -> List[str]:
    """Write the slot maps of one image as PNG files.

    Files, for every block ``S.B``: ``{prefix}input.png``, ``{prefix}block{S.B}_assignment.png``,
    ``{prefix}block{S.B}_slot{N}.png`` for each representative slot ``N`` (all at the image's
    size), ``{prefix}block{S.B}_panel.png`` (these side by side, titled) and
    ``{prefix}overview.png`` (one panel row per block).

    Args:
        out_dir (str): Output folder (created if needed).
        image (np.ndarray): The RGB image the maps were drawn on.
        maps (Sequence[BlockSlotMaps]): From :func:`visualize_image_slots`.
        prefix (str): File name prefix. Defaults to ``''``.
        panel_height (int): Tile height in the panels. Defaults to 256.

    Returns:
        list[str]: The written paths.
    """
    written = []

    def save(name, picture):
        path = osp.join(out_dir, prefix + name)
        write_image(path, picture)
        written.append(path)

    save('input.png', image)
    rows = []
    for block in maps:
        save(f'block{block.name}_assignment.png', block.assignment)
        for slot, heatmap in zip(block.slots, block.heatmaps):
            save(f'block{block.name}_slot{slot}.png', heatmap)
        rows.append(block_panel(image, block, panel_height))
        save(f'block{block.name}_panel.png', rows[-1])
    save('overview.png', stack_rows(rows))
    return written
