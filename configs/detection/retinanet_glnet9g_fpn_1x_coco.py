# RetinaNet 1x with a GLNet-9G backbone on COCO 2017.
# Recipe: _base_/retinanet_glnet_fpn_1x_coco.py. FPN takes stages 1-3 (GLNet-9G widths).
_base_ = './_base_/retinanet_glnet_fpn_1x_coco.py'

# Drop-path 0.3, as BiFormer-B detectors (the same stage widths).
model = dict(
    backbone=dict(
        arch='9g',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/glnet_9g.pth')),
    neck=dict(in_channels=[192, 384, 768]))
