# The tiny GLNet shared by the demo configs: small enough to train on the CPU, with every block
# type of the G series (GLMix in stages 1-3, MHSA in stage 4). Children use it as
# ``arch={{_base_.glnet_tiny}}``.
custom_imports = dict(imports=['mmglnet', 'mmglnet.engine'], allow_failed_imports=False)
glnet_tiny = dict(
    depth=[1, 1, 2, 1],
    embed_dim=[32, 64, 96, 128],
    mlp_ratios=[3, 3, 3, 3],
    mixing_modes=['glmix', 'glmix', 'glmix.mha_nchw', 'mha_nchw'],
    slot_init='ada_avgpool',
    num_slots=16,
    cpe_ks=3,
    downsample_style='ovlp',
    mlp_dw=True,
    norm_layer='bn')
