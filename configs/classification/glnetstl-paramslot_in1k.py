# GLNet-STL-paramslot, ImageNet-1k evaluation of the official release glnet_stl_paramslot.pth (82.1
# top-1 reported).
#   python tools/model_converters/glnet2mm.py \
#       checkpoints/glnet_stl_paramslot.pth checkpoints/glnetstl-paramslot_in1k_mm.pth
#   python tools/test.py \
#       configs/classification/glnetstl-paramslot_in1k.py checkpoints/glnetstl-paramslot_in1k_mm.pth
_base_ = './glnet4g_in1k.py'

model = dict(backbone=dict(arch='stl_paramslot'), head=dict(in_channels=768))
