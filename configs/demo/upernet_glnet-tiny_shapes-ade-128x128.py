# UperNet with a tiny GLNet on the generated shapes dataset (ADE20K layout), trained on the
# CPU by tools/demo.py in about two minutes. Generate the data with:
#   python tools/demo.py --data-only
_base_ = [
    'mmseg::_base_/models/upernet_r50.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', './_base_/glnet-tiny.py'
]
data_preparation = ('The demo data is generated, not downloaded: run "python tools/demo.py '
                    '--data-only" (it writes work_dirs/demo/data/), or point data_root at a '
                    'folder in the ADE20K layout.')

classes = ('background', 'circle', 'square', 'triangle')
palette = [[120, 120, 120], [220, 60, 60], [60, 200, 60], [60, 90, 230]]
crop_size = (128, 128)

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmglnet.GLNet',
        arch={{_base_.glnet_tiny}},
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.),
    decode_head=dict(
        in_channels=[32, 64, 96, 128],
        channels=64,
        pool_scales=(1, 2, 3, 6),
        num_classes=len(classes)),
    auxiliary_head=dict(in_channels=96, channels=32, num_classes=len(classes)))

dataset_type = 'BaseSegDataset'
data_root = 'work_dirs/demo/data/ade/'
metainfo = dict(classes=classes, palette=palette)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label comes from the dataset
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations'),  # reduce_zero_label comes from the dataset
    dict(type='PackSegInputs')
]
# ADE20K's encoding: .jpg images, .png label maps with 0 = unlabelled (reduce_zero_label).
dataset = dict(
    type=dataset_type,
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True)
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        dataset,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        dataset,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 100
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', power=1.0, eta_min=0., by_epoch=False, begin=20, end=max_iters)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Written atomically; --resume takes the newest complete checkpoint (docs/training.md).
    checkpoint=dict(type='mmglnet.AtomicCheckpointHook', by_epoch=False, interval=max_iters),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
custom_hooks = [dict(type='mmglnet.ReplicaCheckHook')]
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
