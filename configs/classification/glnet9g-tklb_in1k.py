# GLNet-9G trained with token labeling, ImageNet-1k evaluation of the official release
# glnet_9g_tklb.pth (85.3 top-1 reported).
#   python tools/model_converters/glnet2mm.py \
#       checkpoints/glnet_9g_tklb.pth checkpoints/glnet9g-tklb_in1k_mm.pth
#   python tools/test.py \
#       configs/classification/glnet9g-tklb_in1k.py checkpoints/glnet9g-tklb_in1k_mm.pth
_base_ = './glnet4g-tklb_in1k.py'

model = dict(backbone=dict(arch='9g'), head=dict(in_channels=768))
