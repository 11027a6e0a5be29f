# GLNet-16G, ImageNet-1k evaluation of the official release glnet_16g.pth (85.0 top-1 reported).
# The official evaluation of this release reads its 'model_ema' weights; the converter picks them.
#   python tools/model_converters/glnet2mm.py \
#       checkpoints/glnet_16g.pth checkpoints/glnet16g_in1k_mm.pth
#   python tools/test.py configs/classification/glnet16g_in1k.py checkpoints/glnet16g_in1k_mm.pth
_base_ = './glnet4g_in1k.py'

model = dict(backbone=dict(arch='16g'), head=dict(in_channels=1024))
