# ImageNet-1k evaluation as the official GLNet code evaluates (github.com/rayleizhu/GLMix):
# images decoded with Pillow (EXIF orientation ignored), shorter side resized to 256 (Pillow
# bicubic), centre crop 224, ImageNet mean/std on RGB, batch 128; top-1 and top-5 accuracy.
# Data: the mmpretrain layout, data/imagenet/val/*.JPEG listed in data/imagenet/meta/val.txt.
custom_imports = dict(
    imports=['mmglnet', 'mmglnet.models.classification'], allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(
        num_classes=1000,
        # (0.485, 0.456, 0.406) and (0.229, 0.224, 0.225) on the 0-255 scale.
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        # Images are loaded as BGR; the official pipeline works on RGB.
        to_rgb=True))

dataset_type = 'ImageNet'
data_root = 'data/imagenet'
test_pipeline = [
    # Like torchvision's loader: Pillow decoding, EXIF orientation not applied.
    dict(
        type='LoadImageFromFile', imdecode_backend='pillow', color_type='color_ignore_orientation'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root, split='val', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
val_cfg = dict()
test_cfg = dict()
