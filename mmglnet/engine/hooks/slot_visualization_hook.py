"""Write semantic-slot maps of a few fixed images at every evaluation during training."""
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmglnet.registry import HOOKS
from mmglnet.visualization import (block_panel, check_slot_request, prepare_inputs,
                                   preprocess_tensor, stack_rows, visualize_slots)


@HOOKS.register_module()
class SlotVisualizationHook(Hook):
    """Draw the GLMix slot maps of fixed validation images after each evaluation.

    For every chosen image, one picture is written with one row per GLMix block: the image,
    its per-pixel slot assignment and the heat maps of the ``k`` most representative slots.
    Pictures go to the runner's visualizer (``visualizer.add_image``), hence to every
    configured backend: local files (``vis_data/vis_image/<name>_<iter>.png``), TensorBoard,
    and so on. Only the main process draws; the model's normal forward is untouched.

    Example:
        >>> custom_hooks = [dict(type='mmglnet.SlotVisualizationHook', num_images=2)]

    Args:
        num_images (int): How many images to draw from the start of the validation dataset
            (after its test pipeline). Ignored when ``image_paths`` is given. Defaults to 2.
        image_paths (Sequence[str], optional): Image files to draw instead, resized as
            ``size``/``size_divisor`` say. Defaults to None.
        blocks (str | Sequence[str], optional): GLMix blocks as ``'stage.block'`` names,
            ``'all'``, or None for the last GLMix block of each stage. Defaults to None.
        k (int): Representative slots (k-medoids) per block. Defaults to 4.
        interval (int): Draw at every ``interval``-th evaluation. Defaults to 1.
        size (int | Sequence[int], optional): Network input size for ``image_paths``: the
            shorter side, (H, W), or None to keep the file's size. Defaults to 512.
        size_divisor (int): Sides of ``image_paths`` inputs are rounded to multiples of this.
            Defaults to 32.
        alpha (float): Blending weight of colours and heat maps. Defaults to 0.6.
        panel_height (int): Height of each drawn tile in pixels. Defaults to 256.
        name (str): Prefix of the image names given to the visualizer. Defaults to
            ``'slots'``.
    """

    def __init__(self,
                 num_images: int = 2,
                 image_paths: Optional[Sequence[str]] = None,
                 blocks: Optional[Union[str, Sequence[str]]] = None,
                 k: int = 4,
                 interval: int = 1,
                 size: Optional[Union[int, Sequence[int]]] = 512,
                 size_divisor: int = 32,
                 alpha: float = 0.6,
                 panel_height: int = 256,
                 name: str = 'slots') -> None:
        if isinstance(image_paths, str):
            image_paths = [image_paths]
        if image_paths is None and (not isinstance(num_images, int) or num_images < 1):
            raise ValueError(f'num_images={num_images!r} must be a positive int (or give '
                             'image_paths).')
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval={interval!r} must be a positive int.')
        if not isinstance(k, int) or k < 1:
            raise ValueError(f'k={k!r} must be a positive int (at most the number of slots).')
        self.num_images = num_images
        self.image_paths = list(image_paths) if image_paths is not None else None
        self.blocks = blocks
        self.k = k
        self.interval = interval
        self.size = size
        self.size_divisor = size_divisor
        self.alpha = alpha
        self.panel_height = panel_height
        self.name = name
        self._evaluations = 0
        self._images: Optional[List[Tuple[object, np.ndarray, bool]]] = None

    def before_run(self, runner) -> None:
        """Check the model has a GLNet, the blocks exist and have ``k`` slots, before any
        training."""
        check_slot_request(self._unwrap(runner.model), self.blocks, self.k)

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        """Draw the slot maps of the fixed images and hand them to the visualizer."""
        self._evaluations += 1
        if self._evaluations % self.interval != 0 or not is_main_process():
            return
        model = self._unwrap(runner.model)
        for index, (source, image, is_file) in enumerate(self._fixed_images(runner)):
            if is_file:
                inputs, valid = prepare_inputs(source, model.data_preprocessor, self.size,
                                               self.size_divisor)
            else:
                inputs = preprocess_tensor(source, model.data_preprocessor)
                valid = tuple(source.shape[-2:])
            maps = visualize_slots(model, inputs, [image], [valid], self.blocks, self.k,
                                   self.alpha)[0]
            picture = stack_rows([block_panel(image, m, self.panel_height) for m in maps])
            runner.visualizer.add_image(f'{self.name}_{index}', picture, step=runner.iter)

    @staticmethod
    def _unwrap(model):
        return model.module if is_model_wrapper(model) else model

    def _fixed_images(self, runner) -> List[Tuple[object, np.ndarray, bool]]:
        """(source, RGB image to draw on, whether source is a BGR file image) per image."""
        if self._images is not None:
            return self._images
        images = []
        if self.image_paths is not None:
            import mmcv
            from mmengine.fileio import get
            for path in self.image_paths:
                bgr = mmcv.imfrombytes(get(path), flag='color')
                if bgr is None:
                    raise ValueError(f'SlotVisualizationHook could not read image_paths entry '
                                     f'{path!r} as an image.')
                images.append((bgr, np.ascontiguousarray(bgr[..., ::-1]), True))
        else:
            dataset = runner.val_dataloader.dataset
            if len(dataset) == 0:
                raise ValueError('SlotVisualizationHook found an empty validation dataset; '
                                 'give image_paths instead.')
            for index in range(min(self.num_images, len(dataset))):
                packed = dataset[index]['inputs']
                if not isinstance(packed, torch.Tensor) or packed.ndim != 3 or \
                        packed.shape[0] != 3:
                    raise ValueError(
                        f'Validation sample {index} packs inputs of type '
                        f'{type(packed).__name__} (shape {getattr(packed, "shape", None)}); '
                        'SlotVisualizationHook needs one (3, H, W) image per sample (no '
                        'test-time augmentation). Give image_paths instead.')
                # Dataset pipelines load images as BGR (mmcv's default); draw in RGB.
                rgb = np.ascontiguousarray(packed.permute(1, 2, 0).numpy()[..., ::-1])
                images.append((packed, rgb.astype(np.uint8), False))
        self._images = images
        return images
