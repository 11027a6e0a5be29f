# Mask R-CNN with a tiny GLNet on the generated shapes dataset (COCO layout), trained on the
# CPU by tools/demo.py in a few minutes: the parts of mmdet's Mask R-CNN R-50 1x config, with
# the shapes data in place of COCO's. Generate the data with:
#   python tools/demo.py --data-only
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py', './_base_/shapes-coco-128x128.py',
    'mmdet::_base_/schedules/schedule_1x.py', 'mmdet::_base_/default_runtime.py',
    './_base_/glnet-tiny.py'
]

neck_channels = 64

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmglnet.GLNet',
        arch={{_base_.glnet_tiny}},
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.),
    neck=dict(in_channels=[32, 64, 96, 128], out_channels=neck_channels),
    rpn_head=dict(in_channels=neck_channels, feat_channels=neck_channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=neck_channels),
        bbox_head=dict(
            in_channels=neck_channels, fc_out_channels=256, num_classes=len(_base_.classes)),
        mask_roi_extractor=dict(out_channels=neck_channels),
        mask_head=dict(
            num_convs=2,
            in_channels=neck_channels,
            conv_out_channels=neck_channels,
            num_classes=len(_base_.classes))),
    # Few objects per small image: fewer proposals and RoI samples than on COCO.
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=100), rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100)))

# Masks as well as boxes: annotations, and the segm metric.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=_base_.image_size, ratio_range=(0.8, 1.25), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=_base_.image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator

max_iters = 120
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
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
