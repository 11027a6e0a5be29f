"""Turn a photograph into a network input the way a model's own data preprocessor does."""
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn as nn
from mmengine.model import ImgDataPreprocessor

# ImageNet statistics (RGB, 0-255) used by every GLNet release.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def imagenet_data_preprocessor() -> ImgDataPreprocessor:
    """The preprocessing of the GLNet ImageNet models: BGR to RGB, ImageNet mean and std."""
    return ImgDataPreprocessor(mean=IMAGENET_MEAN, std=IMAGENET_STD, bgr_to_rgb=True)


def network_size(shape: Tuple[int, int],
                 size: Optional[Union[int, Sequence[int]]] = 512,
                 size_divisor: int = 32) -> Tuple[int, int]:
    """The (H, W) an image of ``shape`` is resized to before the backbone.

    Args:
        shape (tuple[int, int]): (H, W) of the image.
        size (int | Sequence[int], optional): An int sets the shorter side (keeping the aspect
            ratio), two ints set (H, W), None keeps the image's size. Defaults to 512.
        size_divisor (int): Both sides are rounded to the nearest multiple of this (at least
            one multiple). 1 keeps them exact. Defaults to 32.

    Returns:
        tuple[int, int]: The network input size.
    """
    height, width = shape
    if not isinstance(size_divisor, int) or size_divisor < 1:
        raise ValueError(f'size_divisor={size_divisor!r} must be a positive int.')
    if size is None:
        target = (height, width)
    elif isinstance(size, int) or (isinstance(size, Sequence) and len(size) == 1):
        short = int(size if isinstance(size, int) else size[0])
        if short <= 0:
            raise ValueError(f'size={size!r}: the shorter side must be positive.')
        scale = short / min(height, width)
        target = (height * scale, width * scale)
    elif isinstance(size, Sequence) and len(size) == 2 and all(int(s) > 0 for s in size):
        target = tuple(size)
    else:
        raise ValueError(f'size={size!r} is not valid: give one int (shorter side), two ints '
                         '(height, width) or None (keep the image size).')
    return tuple(max(size_divisor, int(round(s / size_divisor)) * size_divisor) for s in target)


def prepare_inputs(image: np.ndarray,
                   data_preprocessor: Optional[nn.Module] = None,
                   size: Optional[Union[int, Sequence[int]]] = 512,
                   size_divisor: int = 32) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Resize a BGR image and run it through a model's data preprocessor.

    The preprocessor applies the model's own channel order, mean, std and padding, as in its
    test pipeline.

    Args:
        image (np.ndarray): (H, W, 3) uint8 BGR image (as ``mmcv.imread`` gives).
        data_preprocessor (nn.Module, optional): The model's ``data_preprocessor``; None uses
            :func:`imagenet_data_preprocessor`. Defaults to None.
        size (int | Sequence[int], optional): See :func:`network_size`. Defaults to 512.
        size_divisor (int): See :func:`network_size`. Defaults to 32.

    Returns:
        tuple[Tensor, tuple[int, int]]: The (1, 3, H, W) input on the preprocessor's device and
        the (H, W) of the resized image inside it (preprocessors may pad bottom and right).
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'Expected an (H, W, 3) BGR image array, got '
                         f'{getattr(image, "shape", type(image).__name__)}.')
    height, width = network_size(image.shape[:2], size, size_divisor)
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    tensor = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1)
    return preprocess_tensor(tensor, data_preprocessor), (height, width)


def preprocess_tensor(image: torch.Tensor,
                      data_preprocessor: Optional[nn.Module] = None) -> torch.Tensor:
    """Run one (3, H, W) image tensor, as a dataset pipeline packs it, through a preprocessor.

    Args:
        image (Tensor): (3, H, W) image in the pipeline's channel order (BGR for mmcv loading).
        data_preprocessor (nn.Module, optional): None uses
            :func:`imagenet_data_preprocessor`. Defaults to None.

    Returns:
        Tensor: (1, 3, H', W') normalised input.
    """
    if data_preprocessor is None:
        data_preprocessor = imagenet_data_preprocessor()
    return data_preprocessor(dict(inputs=[image]), False)['inputs']
