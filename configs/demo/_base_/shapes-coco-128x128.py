# The generated shapes dataset in the COCO layout, for the COCO demo configs: mmdet's COCO
# detection data settings (boxes) with the shapes' classes, files and 128x128 images, and
# loaders sized for the CPU. A config that also trains masks sets its own pipelines (with
# ``with_mask=True``) in the loaders and the evaluator's ``segm`` metric.
_base_ = 'mmdet::_base_/datasets/coco_detection.py'
data_preparation = ('The demo data is generated, not downloaded: run "python tools/demo.py '
                    '--data-only" (it writes work_dirs/demo/data/), or point data_root at a '
                    'folder in the COCO layout.')

classes = ('circle', 'square', 'triangle')
image_size = (128, 128)

data_root = 'work_dirs/demo/data/coco/'
metainfo = dict(classes=classes)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
