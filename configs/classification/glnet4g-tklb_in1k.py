# GLNet-4G trained with token labeling, ImageNet-1k evaluation of the official release
# glnet_4g_tklb.pth (84.4 top-1 reported). Scores: fc(mean of tokens) + 0.5 * max over tokens of
# aux_fc(tokens), on the last-stage feature map after the final BatchNorm (no pooling neck).
#   python tools/model_converters/glnet2mm.py \
#       checkpoints/glnet_4g_tklb.pth checkpoints/glnet4g-tklb_in1k_mm.pth
#   python tools/test.py \
#       configs/classification/glnet4g-tklb_in1k.py checkpoints/glnet4g-tklb_in1k_mm.pth
_base_ = './glnet4g_in1k.py'

model = dict(
    neck=None,
    head=dict(
        _delete_=True,
        type='mmglnet.TokenLabelingClsHead',
        num_classes=1000,
        in_channels=512,
        aux_weight=0.5,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
