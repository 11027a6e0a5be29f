# RetinaNet 1x with a GLNet-STL backbone on COCO 2017.
# Recipe: _base_/retinanet_glnet_fpn_1x_coco.py. FPN takes stages 1-3 (GLNet-STL widths).
_base_ = './_base_/retinanet_glnet_fpn_1x_coco.py'

# Drop-path 0.15: 4G's 0.2 lowered by the gap between their ImageNet rates (0.1 vs 0.15).
model = dict(
    backbone=dict(
        arch='stl',
        drop_path_rate=0.15,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/glnet_stl.pth')),
    neck=dict(in_channels=[192, 384, 768]))
