# UperNet with a GLNet backbone, ADE20K 512x512, 160k iterations (8 GPUs x 2 images).
# Model, data and schedule come from mmseg's UperNet R-50 ADE20K 160k config (decode head with
# 512 channels, auxiliary FCN head on stage 3, 150 classes, SyncBN in the heads, which a
# single-process run reverts to BN); this file swaps the backbone, the optimizer and the
# learning-rate schedule. The variant configs beside it set arch, drop-path rate, pretrained
# file and the heads' input channels.
_base_ = [
    'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py', '../../_base_/glnet_paramwise_cfg.py'
]

custom_imports = dict(imports=['mmglnet'], allow_failed_imports=False)
# Checkpoints written atomically and resumed from the newest complete one (docs/training.md).
default_hooks = dict(checkpoint=dict(type='mmglnet.AtomicCheckpointHook'))

model = dict(
    # mmseg's base config points the whole model at a ResNet checkpoint; GLNet loads its own
    # through the backbone's init_cfg instead.
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmglnet.GLNet',
        out_indices=(0, 1, 2, 3),
        out_norm_cfg=dict(type='LN2d', eps=1e-6)),
    auxiliary_head=dict(in_index=2))

# AdamW, lr 6e-5, weight decay 0.01 (BiFormer's and Swin's UperNet recipe). No weight decay on
# norm layers, slot temperatures, learned slots and layer scales
# (../../_base_/glnet_paramwise_cfg.py). The plain OptimWrapper runs on any device;
# `tools/train.py --amp` switches to mixed precision.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=_base_.glnet_paramwise_cfg)
del _base_.glnet_paramwise_cfg  # set above; not a key of this config

# 1500 iterations of linear warm-up, then linear (power 1) decay to 0.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]

# 8 GPUs x 2 images = 16 images per iteration.
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
