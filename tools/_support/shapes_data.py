"""A small generated dataset of coloured shapes, written in the ADE20K and the COCO layouts.

Each image shows a few filled shapes (circles, squares, triangles) on a textured background.
A shape's class sets its outline and the hue range of its colour, so a small model can learn
the task in minutes on a CPU, yet it must localise and segment every shape. Images are made
from a seed alone: the same arguments always give the same files.

Two writers lay the scenes out the way mmsegmentation and mmdetection read the real datasets:

* :func:`write_ade20k_shapes` -- ``images/{training,validation}/*.jpg`` and
  ``annotations/{training,validation}/*.png`` label maps where 0 means "unlabelled" (ADE20K's
  convention, read with ``reduce_zero_label=True``), 1 the background and 2.. the shapes.
* :func:`write_coco_shapes` -- ``{train,val}/*.jpg`` and
  ``annotations/instances_{train,val}.json`` with boxes, polygons and areas.

A folder is only written when it is empty, missing, or was written by these functions before
(they leave a ``shapes_manifest.json``); anything else is refused, never overwritten.
"""
import json
import os
import os.path as osp
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

SHAPE_CLASSES = ('circle', 'square', 'triangle')
SEG_CLASSES = ('background', ) + SHAPE_CLASSES
SEG_PALETTE = [[120, 120, 120], [220, 60, 60], [60, 200, 60], [60, 90, 230]]
# Hue centre of each shape class, in degrees (red, green, blue); jittered per shape.
SHAPE_HUES = (0., 120., 240.)
MANIFEST = 'shapes_manifest.json'
FORMAT_VERSION = 1
ADE20K_SPLITS = {'train': 'training', 'val': 'validation'}
COCO_SPLITS = {'train': 'train', 'val': 'val'}
# Seeds of the two splits are far apart so that no validation image repeats a training one.
_SPLIT_SEED_OFFSET = {'train': 0, 'val': 1_000_003}


def _hsv_to_bgr(hue: float, sat: float, val: float) -> Tuple[int, int, int]:
    pixel = np.array([[[hue / 2. % 180., sat * 255., val * 255.]]], dtype=np.float32)
    bgr = cv2.cvtColor(pixel.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(int(c) for c in bgr)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-saturation texture: a base colour, oriented stripes and pixel noise."""
    base = np.array(
        _hsv_to_bgr(rng.uniform(0, 360), rng.uniform(0., .25), rng.uniform(.35, .75)),
        dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 24)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period
    stripes = np.sin(phase)[..., None] * rng.uniform(8, 30)
    noise = rng.normal(0, rng.uniform(4, 14), (size, size, 3))
    return np.clip(base + stripes + noise, 0, 255).astype(np.uint8)


def _outline(rng: np.random.Generator, label: int, center: np.ndarray, radius: float) -> np.ndarray:
    """Polygon (K, 2) of a shape of class ``label`` (index into :data:`SHAPE_CLASSES`)."""
    name = SHAPE_CLASSES[label]
    rotation = rng.uniform(0, 2 * np.pi)
    if name == 'circle':
        angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    elif name == 'square':
        angles = rotation + np.arange(4) * np.pi / 2
    elif name == 'triangle':
        angles = rotation + np.arange(3) * 2 * np.pi / 3
    else:  # pragma: no cover - the class list above is closed
        raise ValueError(f'Unknown shape {name!r}; known: {SHAPE_CLASSES}.')
    return center + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def render_scene(
    rng: np.random.Generator,
    image_size: int = 128,
    max_objects: int = 3,
    radius_range: Tuple[float, float] = (0.12, 0.26)) -> Tuple[np.ndarray, list]:
    """Draw one image with 1..``max_objects`` non-overlapping shapes.

    Args:
        rng (np.random.Generator): Source of randomness.
        image_size (int): Side of the square image in pixels. Defaults to 128.
        max_objects (int): Most shapes per image. Defaults to 3.
        radius_range (tuple[float, float]): Shape radius as a fraction of the image side.
            Defaults to (0.12, 0.26).

    Returns:
        tuple: The BGR uint8 image (H, W, 3) and a list of objects, each a dict with ``label``
        (index into :data:`SHAPE_CLASSES`), ``polygon`` (K, 2) float array in pixels and
        ``mask`` (H, W) bool array.
    """
    image = _background(rng, image_size)
    objects: List[dict] = []
    occupied = np.zeros((image_size, image_size), dtype=bool)
    wanted = int(rng.integers(1, max_objects + 1))
    for _ in range(20 * wanted):
        if len(objects) == wanted:
            break
        label = int(rng.integers(len(SHAPE_CLASSES)))
        radius = rng.uniform(*radius_range) * image_size
        center = rng.uniform(radius * 0.8, image_size - radius * 0.8, size=2)
        polygon = _outline(rng, label, center, radius)
        mask = np.zeros((image_size, image_size), dtype=np.uint8)
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
        mask = mask.astype(bool)
        # Keep shapes apart (a margin of a few pixels) and mostly inside the image.
        grown = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        if mask.sum() < 0.6 * cv2.contourArea(polygon.astype(np.float32)) or \
                (grown & occupied).any():
            continue
        occupied |= grown
        hue = SHAPE_HUES[label] + rng.uniform(-35, 35)
        color = _hsv_to_bgr(hue, rng.uniform(.55, 1.), rng.uniform(.55, 1.))
        shade = rng.normal(0, 6, (image_size, image_size, 3))
        filled = np.clip(np.array(color, np.float32) + shade, 0, 255).astype(np.uint8)
        image[mask] = filled[mask]
        polygon = np.clip(polygon, 0, image_size - 1)
        objects.append(dict(label=label, polygon=polygon, mask=mask))
    return image, objects


def _split_scenes(seed: int, split: str, num_images: int, image_size: int, max_objects: int):
    for index in range(num_images):
        rng = np.random.default_rng([seed, _SPLIT_SEED_OFFSET[split], index])
        yield index, render_scene(rng, image_size, max_objects)


def _prepare_root(root: str, manifest: dict, subdirs: Sequence[str]) -> bool:
    """Check that ``root`` may be written. Returns True when it already holds this data."""
    manifest_path = osp.join(root, MANIFEST)
    if osp.isdir(root) and os.listdir(root):
        if not osp.isfile(manifest_path):
            raise FileExistsError(
                f'{root!r} exists, is not empty and was not written by the shapes generator '
                f'(no {MANIFEST}); refusing to write into it. Choose another folder or empty '
                'it yourself.')
        with open(manifest_path) as f:
            if json.load(f) == manifest:
                return True
        # Data written by this generator with other settings: replace only its own folders.
        for subdir in subdirs:
            shutil.rmtree(osp.join(root, subdir), ignore_errors=True)
        os.remove(manifest_path)
    os.makedirs(root, exist_ok=True)
    return False


def _write_manifest(root: str, manifest: dict) -> None:
    with open(osp.join(root, MANIFEST), 'w') as f:
        json.dump(manifest, f, indent=2)


def _manifest(fmt: str, num_images: Dict[str, int], image_size: int, max_objects: int,
              seed: int) -> dict:
    return dict(
        format=fmt,
        version=FORMAT_VERSION,
        num_images=num_images,
        image_size=image_size,
        max_objects=max_objects,
        seed=seed)


def _check_counts(num_images: Dict[str, int], splits: Dict[str, str]) -> None:
    unknown = sorted(set(num_images) - set(splits))
    if unknown or any(not isinstance(n, int) or n < 1 for n in num_images.values()):
        raise ValueError(f'num_images={num_images!r} must map split names {sorted(splits)} to '
                         'positive ints.')


def write_ade20k_shapes(root: str,
                        num_images: Optional[Dict[str, int]] = None,
                        image_size: int = 128,
                        max_objects: int = 3,
                        seed: int = 0) -> bool:
    """Write the shapes dataset in the ADE20K folder layout and label encoding.

    Args:
        root (str): Dataset folder (``data_root`` of the config).
        num_images (dict, optional): Images per split, keys ``'train'`` and ``'val'``.
            Defaults to ``dict(train=200, val=40)``.
        image_size (int): Image side in pixels. Defaults to 128.
        max_objects (int): Most shapes per image. Defaults to 3.
        seed (int): Seed of the whole dataset. Defaults to 0.

    Returns:
        bool: True when files were written, False when ``root`` already held this data.
    """
    num_images = dict(train=200, val=40) if num_images is None else dict(num_images)
    _check_counts(num_images, ADE20K_SPLITS)
    manifest = _manifest('ade20k', num_images, image_size, max_objects, seed)
    if _prepare_root(root, manifest, ['images', 'annotations']):
        return False
    for split, count in num_images.items():
        folder = ADE20K_SPLITS[split]
        img_dir = osp.join(root, 'images', folder)
        ann_dir = osp.join(root, 'annotations', folder)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for index, (image, objects) in _split_scenes(seed, split, count, image_size, max_objects):
            # 0 stays "unlabelled" (ADE20K); 1 is the background; shapes follow.
            label_map = np.ones(image.shape[:2], dtype=np.uint8)
            for obj in objects:
                label_map[obj['mask']] = obj['label'] + 2
            name = f'shapes_{split}_{index:05d}'
            cv2.imwrite(osp.join(img_dir, name + '.jpg'), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(osp.join(ann_dir, name + '.png'), label_map)
    _write_manifest(root, manifest)
    return True


def write_coco_shapes(root: str,
                      num_images: Optional[Dict[str, int]] = None,
                      image_size: int = 128,
                      max_objects: int = 3,
                      seed: int = 0) -> bool:
    """Write the shapes dataset in the COCO layout (instances with boxes and polygons).

    Args:
        root (str): Dataset folder (``data_root`` of the config).
        num_images (dict, optional): Images per split, keys ``'train'`` and ``'val'``.
            Defaults to ``dict(train=200, val=40)``.
        image_size (int): Image side in pixels. Defaults to 128.
        max_objects (int): Most shapes per image. Defaults to 3.
        seed (int): Seed of the whole dataset. Defaults to 0.

    Returns:
        bool: True when files were written, False when ``root`` already held this data.
    """
    num_images = dict(train=200, val=40) if num_images is None else dict(num_images)
    _check_counts(num_images, COCO_SPLITS)
    manifest = _manifest('coco', num_images, image_size, max_objects, seed)
    subdirs = ['annotations'] + [COCO_SPLITS[s] for s in COCO_SPLITS]
    if _prepare_root(root, manifest, subdirs):
        return False
    categories = [
        dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(SHAPE_CLASSES)
    ]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    for split, count in num_images.items():
        img_dir = osp.join(root, COCO_SPLITS[split])
        os.makedirs(img_dir, exist_ok=True)
        images, annotations = [], []
        for index, (image, objects) in _split_scenes(seed, split, count, image_size, max_objects):
            file_name = f'shapes_{split}_{index:05d}.jpg'
            cv2.imwrite(osp.join(img_dir, file_name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            image_id = index + 1
            images.append(
                dict(id=image_id, file_name=file_name, height=image_size, width=image_size))
            for obj in objects:
                ys, xs = np.nonzero(obj['mask'])
                x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=image_id,
                        category_id=obj['label'] + 1,
                        bbox=[float(x0), float(y0),
                              float(x1 - x0), float(y1 - y0)],
                        area=float(obj['mask'].sum()),
                        segmentation=[np.round(obj['polygon'], 2).reshape(-1).tolist()],
                        iscrowd=0))
        with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    _write_manifest(root, manifest)
    return True
