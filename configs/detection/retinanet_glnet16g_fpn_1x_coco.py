# RetinaNet 1x with a GLNet-16G backbone on COCO 2017.
# Recipe: _base_/retinanet_glnet_fpn_1x_coco.py. FPN takes stages 1-3 (GLNet-16G widths).
_base_ = './_base_/retinanet_glnet_fpn_1x_coco.py'

# Drop-path 0.4: 9G's 0.3 raised by the gap between their ImageNet rates (0.3 vs 0.4).
model = dict(
    backbone=dict(
        arch='16g',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/glnet_16g.pth')),
    neck=dict(in_channels=[256, 512, 1024]))
