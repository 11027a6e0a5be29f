# UperNet with a GLNet-16G backbone on ADE20K 512x512, 160k iterations.
# Recipe: _base_/upernet_glnet_160k.py. Head inputs: the GLNet-16G stage widths.
_base_ = './_base_/upernet_glnet_160k.py'

# Drop-path 0.5: 9G's 0.4 raised by the gap between their ImageNet rates (0.3 vs 0.4).
model = dict(
    backbone=dict(
        arch='16g',
        drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/glnet_16g.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
