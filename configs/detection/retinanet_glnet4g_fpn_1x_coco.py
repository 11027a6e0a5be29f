# RetinaNet 1x with a GLNet-4G backbone on COCO 2017.
# Recipe: _base_/retinanet_glnet_fpn_1x_coco.py. FPN takes stages 1-3 (GLNet-4G widths).
_base_ = './_base_/retinanet_glnet_fpn_1x_coco.py'

# Drop-path 0.2, as BiFormer-S detectors (the same stage widths).
model = dict(
    backbone=dict(
        arch='4g',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/glnet_4g.pth')),
    neck=dict(in_channels=[128, 256, 512]))
