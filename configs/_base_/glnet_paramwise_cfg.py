# GLNet's parameter-wise optimizer settings, shared by the detection and segmentation recipes:
# no weight decay on norm layers, slot temperatures (slot_scale), learned slots (init_slots) and
# layer scales (ls1/ls2.gamma). A recipe lists this file among its bases, sets
# ``paramwise_cfg=_base_.glnet_paramwise_cfg`` in its optim_wrapper and then deletes the
# variable (``del _base_.glnet_paramwise_cfg``), so that it is not a key of its own.
glnet_paramwise_cfg = dict(
    norm_decay_mult=0.,
    custom_keys={
        'slot_scale': dict(decay_mult=0.),
        'init_slots': dict(decay_mult=0.),
        'ls1.gamma': dict(decay_mult=0.),
        'ls2.gamma': dict(decay_mult=0.),
    })
