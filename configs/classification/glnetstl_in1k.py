# GLNet-STL, ImageNet-1k evaluation of the official release glnet_stl.pth (82.5 top-1 reported).
#   python tools/model_converters/glnet2mm.py \
#       checkpoints/glnet_stl.pth checkpoints/glnetstl_in1k_mm.pth
#   python tools/test.py configs/classification/glnetstl_in1k.py checkpoints/glnetstl_in1k_mm.pth
_base_ = './glnet4g_in1k.py'

model = dict(backbone=dict(arch='stl'), head=dict(in_channels=768))
