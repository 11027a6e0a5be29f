from .shapes import (SEG_CLASSES, SEG_PALETTE, SHAPE_CLASSES, render_scene, write_ade20k_shapes,
                     write_coco_shapes)

__all__ = [
    'SEG_CLASSES', 'SEG_PALETTE', 'SHAPE_CLASSES', 'render_scene', 'write_ade20k_shapes',
    'write_coco_shapes'
]
