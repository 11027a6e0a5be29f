# UperNet with a GLNet-4G backbone on ADE20K 512x512, 160k iterations.
# Recipe: _base_/upernet_glnet_160k.py. Head inputs: the GLNet-4G stage widths.
_base_ = './_base_/upernet_glnet_160k.py'

# Drop-path 0.3, as BiFormer-S UperNet (the same stage widths).
model = dict(
    backbone=dict(
        arch='4g',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/glnet_4g.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
