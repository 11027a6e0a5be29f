# RetinaNet with a GLNet backbone and FPN, COCO 2017, 1x schedule (12 epochs, 8 GPUs x 2
# images). Model, data and schedule come from mmdet's RetinaNet R-50 1x config; this file swaps
# the backbone and the optimizer. FPN gets only the stages it uses (strides 8, 16, 32), so no
# parameter goes unused; the variant configs beside it set arch, drop-path rate, pretrained file
# and FPN input channels.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '../../_base_/glnet_paramwise_cfg.py']

custom_imports = dict(imports=['mmglnet'], allow_failed_imports=False)
# Checkpoints written atomically and resumed from the newest complete one (docs/training.md).
default_hooks = dict(checkpoint=dict(type='mmglnet.AtomicCheckpointHook'))

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmglnet.GLNet',
        out_indices=(1, 2, 3),
        out_norm_cfg=dict(type='LN2d', eps=1e-6)),
    # The first given stage is already the first pyramid level (P3); P6 and P7 come from extra
    # convolutions on it as in mmdet's RetinaNet.
    neck=dict(start_level=0, num_outs=5))

# AdamW, lr 1e-4, weight decay 1e-4 (BiFormer's RetinaNet recipe). No weight decay on norm
# layers, slot temperatures, learned slots and layer scales (../../_base_/glnet_paramwise_cfg.py).
# The plain OptimWrapper runs on any device; `tools/train.py --amp` switches to mixed precision.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4),
    paramwise_cfg=_base_.glnet_paramwise_cfg)
del _base_.glnet_paramwise_cfg  # set above; not a key of this config
