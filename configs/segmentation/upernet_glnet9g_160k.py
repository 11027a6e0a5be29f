# UperNet with a GLNet-9G backbone on ADE20K 512x512, 160k iterations.
# Recipe: _base_/upernet_glnet_160k.py. Head inputs: the GLNet-9G stage widths.
_base_ = './_base_/upernet_glnet_160k.py'

# Drop-path 0.4, as BiFormer-B UperNet (the same stage widths).
model = dict(
    backbone=dict(
        arch='9g',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/glnet_9g.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
