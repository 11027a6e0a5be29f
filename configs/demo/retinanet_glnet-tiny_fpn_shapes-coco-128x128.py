# RetinaNet with a tiny GLNet on the generated shapes dataset (COCO layout): the parts of
# mmdet's RetinaNet R-50 1x config, with the shapes data in place of COCO's. Generate the data
# with:
#   python tools/demo.py --data-only
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py', './_base_/shapes-coco-128x128.py',
    'mmdet::_base_/schedules/schedule_1x.py', 'mmdet::_base_/default_runtime.py',
    'mmdet::retinanet/retinanet_tta.py', './_base_/glnet-tiny.py'
]

# RetinaNet uses strides 8-32 (and two extra levels): the FPN gets only stages 1-3.
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmglnet.GLNet',
        arch={{_base_.glnet_tiny}},
        out_indices=(1, 2, 3),
        drop_path_rate=0.),
    neck=dict(in_channels=[64, 96, 128], out_channels=64, start_level=0, num_outs=5),
    bbox_head=dict(
        in_channels=64, feat_channels=64, stacked_convs=2, num_classes=len(_base_.classes)))

max_iters = 300
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0.),
    clip_grad=dict(max_norm=10., norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=30),
    dict(
        type='CosineAnnealingLR',
        T_max=max_iters - 30,
        eta_min=1e-5,
        by_epoch=False,
        begin=30,
        end=max_iters)
]
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=10),
    # Written atomically; --resume takes the newest complete checkpoint (docs/training.md).
    checkpoint=dict(type='mmglnet.AtomicCheckpointHook', by_epoch=False, interval=max_iters))
custom_hooks = [dict(type='mmglnet.ReplicaCheckHook')]
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=8)
