# GLNet-4G, ImageNet-1k evaluation of the official release glnet_4g.pth (83.7 top-1 reported).
# Convert the release first:
#   python tools/model_converters/glnet2mm.py \
#       checkpoints/glnet_4g.pth checkpoints/glnet4g_in1k_mm.pth
#   python tools/test.py configs/classification/glnet4g_in1k.py checkpoints/glnet4g_in1k_mm.pth
_base_ = [
    'mmpretrain::_base_/default_runtime.py',
    './_base_/imagenet_bs128_glnet_eval.py',
]
default_scope = 'mmpretrain'
# Checkpoints written atomically and resumed from the newest complete one (docs/training.md).
default_hooks = dict(checkpoint=dict(type='mmglnet.AtomicCheckpointHook'))

model = dict(
    type='ImageClassifier',
    # The official final BatchNorm is the backbone's output norm of the last stage.
    backbone=dict(type='mmglnet.GLNet', arch='4g', out_indices=(3, ), out_norm_cfg=dict(type='BN')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
