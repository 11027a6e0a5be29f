"""Drawing semantic-slot maps: assignment maps, slot heat maps and labelled panels.

Everything here works on numpy RGB images (H, W, 3) uint8 and on the (S, h, w) dispatching
weights of one image in one GLMix block (see :mod:`mmglnet.visualization.slot_maps`).
"""
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.visualization import Visualizer

from .kmedoids import cosine_distances, k_medoids


def slot_palette(num_colors: int) -> np.ndarray:
    """Distinct, deterministic RGB colours, one per slot.

    Hues advance by the golden ratio so that neighbouring slot indices get far-apart hues;
    saturation and brightness alternate over three levels.

    Args:
        num_colors (int): Number of colours.

    Returns:
        np.ndarray: (num_colors, 3) uint8 RGB colours.
    """
    index = np.arange(num_colors)
    hue = (index * 0.618033988749895 % 1.0) * 180  # OpenCV's 8-bit hue range is [0, 180)
    saturation = np.array([230, 160, 255])[index % 3]
    value = np.array([255, 210, 170])[(index // 3) % 3]
    hsv = np.stack([hue, saturation, value], axis=-1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def upsample_weights(weights: torch.Tensor,
                     input_shape: Tuple[int, int],
                     valid_shape: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """Resize one image's (S, h, w) weights to the network input and crop the padding.

    Args:
        weights (Tensor): (S, h, w) weights on a block's grid.
        input_shape (tuple[int, int]): (H, W) of the (padded) network input.
        valid_shape (tuple[int, int], optional): (H, W) of the image inside the input, which
            preprocessors pad at the bottom and right. Defaults to None (no padding).

    Returns:
        Tensor: (S, H', W') bilinearly resized weights; they still sum to 1 over slots.
    """
    resized = F.interpolate(
        weights[None].float(), size=tuple(input_shape), mode='bilinear', align_corners=False)[0]
    if valid_shape is not None:
        resized = resized[:, :valid_shape[0], :valid_shape[1]]
    return resized


def draw_assignment(image: np.ndarray,
                    labels: np.ndarray,
                    palette: np.ndarray,
                    alpha: float = 0.6,
                    boundaries: bool = True) -> np.ndarray:
    """Colour every pixel by its slot and blend the colours over the image.

    Args:
        image (np.ndarray): (H, W, 3) uint8 RGB image.
        labels (np.ndarray): (H, W) int slot index per pixel.
        palette (np.ndarray): (S, 3) uint8 RGB colours, see :func:`slot_palette`.
        alpha (float): Weight of the colours. Defaults to 0.6.
        boundaries (bool): Draw the borders between slots in white. Defaults to True.

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB image.
    """
    if labels.shape != image.shape[:2]:
        raise ValueError(f'labels of shape {labels.shape} do not match the image '
                         f'{image.shape[:2]}.')
    colours = palette[labels]
    drawn = cv2.addWeighted(image, 1 - alpha, colours, alpha, 0)
    if boundaries:
        edge = np.zeros(labels.shape, dtype=bool)
        edge[1:] |= labels[1:] != labels[:-1]
        edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
        drawn[edge] = 255
    return drawn


def draw_heatmap(image: np.ndarray, weight_map: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """One slot's assignment weights as a heat map (min-max normalised) over the image.

    Args:
        image (np.ndarray): (H, W, 3) uint8 RGB image.
        weight_map (Tensor): (h, w) weights; resized bilinearly to the image.
        alpha (float): Weight of the heat map. Defaults to 0.5.

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB image.
    """
    featmap = F.interpolate(
        weight_map[None, None].float(), size=image.shape[:2], mode='bilinear',
        align_corners=False)[0]
    return Visualizer.draw_featmap(featmap, overlaid_image=image, alpha=alpha)


def representative_slots(weights: torch.Tensor, k: int) -> Tuple[List[int], List[int]]:
    """The ``k`` most representative slots: k-medoids over the slots' assignment maps.

    Slots are compared by ``1 - cosine similarity`` of their weight maps; medoids are sorted
    by the number of slots in their group (largest first), then by their total weight.

    Args:
        weights (Tensor): (S, h, w) weights of one image.
        k (int): Number of slots to choose, 1 <= k <= S.

    Returns:
        tuple[list[int], list[int]]: Distinct slot indices and the size of each one's group.
    """
    num_slots = weights.shape[0]
    if not isinstance(k, int) or not 1 <= k <= num_slots:
        raise ValueError(f'k={k!r} representative slots requested, but the block has '
                         f'{num_slots} slots: choose 1 <= k <= {num_slots}.')
    medoids, labels = k_medoids(cosine_distances(weights), k)
    sizes = torch.bincount(labels, minlength=k)
    mass = weights.flatten(1).sum(dim=1)[medoids]
    order = sorted(range(k), key=lambda i: (-int(sizes[i]), -float(mass[i]), int(medoids[i])))
    return [int(medoids[i]) for i in order], [int(sizes[i]) for i in order]


@dataclass
class BlockSlotMaps:
    """The drawings of one GLMix block for one image.

    Attributes:
        name (str): Block name ``'stage.block'``.
        assignment (np.ndarray): Argmax-slot colours blended over the image (RGB).
        labels (np.ndarray): (H, W) argmax slot per pixel of the displayed image.
        slots (list[int]): The representative slots (k-medoids), most representative first.
        group_sizes (list[int]): Number of slots each representative slot stands for.
        heatmaps (list[np.ndarray]): One heat map (RGB) per representative slot.
    """
    name: str
    assignment: np.ndarray
    labels: np.ndarray
    slots: List[int] = field(default_factory=list)
    group_sizes: List[int] = field(default_factory=list)
    heatmaps: List[np.ndarray] = field(default_factory=list)


def render_block(name: str,
                 image: np.ndarray,
                 weights: torch.Tensor,
                 input_shape: Tuple[int, int],
                 valid_shape: Optional[Tuple[int, int]] = None,
                 k: int = 4,
                 alpha: float = 0.6) -> BlockSlotMaps:
    """Draw the assignment map and the k representative slots' heat maps of one block.

    Args:
        name (str): Block name, used in titles.
        image (np.ndarray): (H, W, 3) uint8 RGB image to draw on, of any size (usually the
            original photograph; the network saw it resized to ``valid_shape``).
        weights (Tensor): (S, h, w) dispatching weights of this image in this block.
        input_shape (tuple[int, int]): (H, W) of the padded network input.
        valid_shape (tuple[int, int], optional): (H, W) of the image inside the network input.
            Defaults to None (``input_shape``).
        k (int): Number of representative slots. Defaults to 4.
        alpha (float): Blending weight of the colours and heat maps. Defaults to 0.6.

    Returns:
        BlockSlotMaps: Drawings at the size of ``image``.
    """
    weights = upsample_weights(weights, input_shape, valid_shape)
    height, width = image.shape[:2]
    # Argmax at the network resolution, then nearest-neighbour resizing to the image: large
    # photographs never need S full-resolution maps.
    labels = weights.argmax(dim=0).numpy().astype(np.int32)
    labels = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
    assignment = draw_assignment(image, labels, slot_palette(weights.shape[0]), alpha)
    slots, sizes = representative_slots(weights, k)
    heatmaps = [draw_heatmap(image, weights[slot], alpha=alpha) for slot in slots]
    return BlockSlotMaps(name, assignment, labels, slots, sizes, heatmaps)


def _titled(tile: np.ndarray, title: str, height: int) -> np.ndarray:
    scale = height / tile.shape[0]
    tile = cv2.resize(
        tile, (max(1, round(tile.shape[1] * scale)), height),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    font = cv2.FONT_HERSHEY_SIMPLEX
    font_scale = max(0.35, height / 500)
    text_width = cv2.getTextSize(title, font, font_scale, 1)[0][0]
    if text_width > tile.shape[1] - 8:  # shrink to fit narrow tiles
        font_scale *= (tile.shape[1] - 8) / text_width
    band_height = max(12, int(28 * max(0.35, height / 500) / 0.5))
    band = np.full((band_height, tile.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(band, title, (4, band_height - max(3, band_height // 4)), font, font_scale,
                (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, tile], axis=0)


def make_panel(tiles: Sequence[np.ndarray],
               titles: Sequence[str],
               height: int = 256,
               gap: int = 4) -> np.ndarray:
    """Put images side by side at one height, each under a title band.

    Args:
        tiles (Sequence[np.ndarray]): RGB images.
        titles (Sequence[str]): One title per image.
        height (int): Height every image is resized to. Defaults to 256.
        gap (int): White pixels between images. Defaults to 4.

    Returns:
        np.ndarray: The RGB panel.
    """
    if len(tiles) != len(titles) or not tiles:
        raise ValueError(f'make_panel needs one title per tile, got {len(tiles)} tiles and '
                         f'{len(titles)} titles.')
    titled = [_titled(tile, title, height) for tile, title in zip(tiles, titles)]
    spacer = np.full((titled[0].shape[0], gap, 3), 255, dtype=np.uint8)
    parts = []
    for tile in titled:
        parts += [tile, spacer]
    return np.concatenate(parts[:-1], axis=1)


def block_panel(image: np.ndarray, maps: BlockSlotMaps, height: int = 256) -> np.ndarray:
    """One row: the image, the assignment map and the representative slots' heat maps."""
    tiles = [image, maps.assignment] + list(maps.heatmaps)
    used = len(np.unique(maps.labels))
    titles = ['input', f'block {maps.name}: {used} slots used'] + [
        f'slot {slot} (group of {size})' for slot, size in zip(maps.slots, maps.group_sizes)
    ]
    return make_panel(tiles, titles, height)


def stack_rows(rows: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Stack RGB panels vertically, padding narrower ones with white on the right."""
    width = max(row.shape[1] for row in rows)
    padded = []
    for row in rows:
        pad = np.full((row.shape[0], width - row.shape[1], 3), 255, dtype=np.uint8)
        padded += [
            np.concatenate([row, pad], axis=1),
            np.full((gap, width, 3), 255, dtype=np.uint8)
        ]
    return np.concatenate(padded[:-1], axis=0)
