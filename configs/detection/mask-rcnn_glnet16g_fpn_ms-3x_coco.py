# Mask R-CNN multi-scale 3x with a GLNet-16G backbone on COCO 2017.
# Recipe: _base_/mask-rcnn_glnet_fpn_ms-3x_coco.py. FPN takes all four stages (GLNet-16G widths).
_base_ = './_base_/mask-rcnn_glnet_fpn_ms-3x_coco.py'

# Drop-path 0.4: 9G's 0.3 raised by the gap between their ImageNet rates (0.3 vs 0.4).
model = dict(
    backbone=dict(
        arch='16g',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/glnet_16g.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
