# Mask R-CNN with a GLNet backbone and FPN, COCO 2017, 1x schedule (12 epochs, 8 GPUs x 2
# images). Model, data and schedule come from mmdet's Mask R-CNN R-50 1x config; this file swaps
# the backbone and the optimizer. The variant configs beside it set arch, drop-path rate,
# pretrained file and FPN input channels.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', '../../_base_/glnet_paramwise_cfg.py']

custom_imports = dict(imports=['mmglnet'], allow_failed_imports=False)
# Checkpoints written atomically and resumed from the newest complete one (docs/training.md).
default_hooks = dict(checkpoint=dict(type='mmglnet.AtomicCheckpointHook'))

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmglnet.GLNet',
        out_indices=(0, 1, 2, 3),
        # LayerNorm on every output feature, as BiFormer and Swin detectors have.
        out_norm_cfg=dict(type='LN2d', eps=1e-6)))

# AdamW, lr 1e-4, weight decay 0.05 (BiFormer's Mask R-CNN recipe). No weight decay on norm
# layers, slot temperatures, learned slots and layer scales (../../_base_/glnet_paramwise_cfg.py).
# The plain OptimWrapper runs on any device; `tools/train.py --amp` switches to mixed precision.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=_base_.glnet_paramwise_cfg)
del _base_.glnet_paramwise_cfg  # set above; not a key of this config
