# Mask R-CNN multi-scale 3x with a GLNet-4G backbone on COCO 2017.
# Recipe: _base_/mask-rcnn_glnet_fpn_ms-3x_coco.py. FPN takes all four stages (GLNet-4G widths).
_base_ = './_base_/mask-rcnn_glnet_fpn_ms-3x_coco.py'

# Drop-path 0.2, as BiFormer-S detectors (the same stage widths).
model = dict(
    backbone=dict(
        arch='4g',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/glnet_4g.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
