# UperNet with a GLNet-STL backbone on ADE20K 512x512, 160k iterations.
# Recipe: _base_/upernet_glnet_160k.py. Head inputs: the GLNet-STL stage widths.
_base_ = './_base_/upernet_glnet_160k.py'

# Drop-path 0.25: 4G's 0.3 lowered by the gap between their ImageNet rates (0.1 vs 0.15).
model = dict(
    backbone=dict(
        arch='stl',
        drop_path_rate=0.25,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/glnet_stl.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
