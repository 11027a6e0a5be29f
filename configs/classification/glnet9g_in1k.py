# GLNet-9G, ImageNet-1k evaluation of the official release glnet_9g.pth (84.5 top-1 reported).
#   python tools/model_converters/glnet2mm.py \
#       checkpoints/glnet_9g.pth checkpoints/glnet9g_in1k_mm.pth
#   python tools/test.py configs/classification/glnet9g_in1k.py checkpoints/glnet9g_in1k_mm.pth
_base_ = './glnet4g_in1k.py'

model = dict(backbone=dict(arch='9g'), head=dict(in_channels=768))
