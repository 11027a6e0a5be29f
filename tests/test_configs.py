"""The detection and segmentation configs: inheritance, recipes, and models that build and run.

Every config under configs/detection and configs/segmentation is loaded through mmengine's
inheritance from the installed mmdet / mmseg configs. Its model is built with a tiny GLNet arch
(heads at full size) and runs a forward; the real arch is built for a parameter count on two.
"""
import copy
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.structures import InstanceData, PixelData

from mmglnet.apis import build_model
from mmglnet.models import resolve_arch

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DET_DIR = osp.join(REPO_ROOT, 'configs', 'detection')
SEG_DIR = osp.join(REPO_ROOT, 'configs', 'segmentation')
VARIANTS = ('stl', '4g', '9g', '16g')

# The recipes (../shared/NOTES.md: BiFormer-S ~ 4G, BiFormer-B ~ 9G; stl and 16g extrapolated
# by their ImageNet drop-path gaps, see docs/configs.md).
DET_DROP_PATH = {'stl': 0.15, '4g': 0.2, '9g': 0.3, '16g': 0.4}
SEG_DROP_PATH = {'stl': 0.25, '4g': 0.3, '9g': 0.4, '16g': 0.5}
OPTIMIZERS = {  # (lr, weight decay)
    'retinanet': (1e-4, 1e-4),
    'mask-rcnn': (1e-4, 0.05),
    'upernet': (6e-5, 0.01),
}
NO_DECAY_KEYS = {'slot_scale', 'init_slots', 'ls1.gamma', 'ls2.gamma'}
IMAGE_SIZE = (64, 96)  # height, width of the synthetic images


def expected_names():
    names = []
    for v in VARIANTS:
        names += [
            f'detection/retinanet_glnet{v}_fpn_1x_coco.py',
            f'detection/mask-rcnn_glnet{v}_fpn_1x_coco.py',
            f'detection/mask-rcnn_glnet{v}_fpn_ms-3x_coco.py',
            f'segmentation/upernet_glnet{v}_160k.py',
        ]
    return sorted(names)


def config_paths():
    paths = glob.glob(osp.join(DET_DIR, '*.py')) + glob.glob(osp.join(SEG_DIR, '*.py'))
    return sorted(osp.relpath(p, osp.join(REPO_ROOT, 'configs')) for p in paths)


CONFIGS = config_paths()


def describe(name):
    """(task, variant) of a config name."""
    match = re.match(r'.*/(retinanet|mask-rcnn|upernet)_glnet(stl|4g|9g|16g)_', name)
    assert match, f'{name} does not follow the naming scheme'
    return match.group(1), match.group(2)


def load(name):
    return Config.fromfile(osp.join(REPO_ROOT, 'configs', name))


def set_backbone_widths(cfg, dims):
    """Point the neck / heads of ``cfg.model`` at a backbone of stage widths ``dims``."""
    model = cfg.model
    if 'neck' in model:
        model.neck.in_channels = [dims[i] for i in model.backbone.out_indices]
    if model.get('decode_head') is not None:
        model.decode_head.in_channels = [dims[i] for i in model.decode_head.in_index]
        model.auxiliary_head.in_channels = dims[model.auxiliary_head.in_index]


def test_exactly_the_expected_configs():
    assert CONFIGS == expected_names()


@pytest.mark.parametrize('name', CONFIGS)
def test_config_inherits_the_recipe(name):
    task, variant = describe(name)
    cfg = load(name)
    assert cfg.custom_imports == dict(imports=['mmglnet'], allow_failed_imports=False)
    assert cfg.default_scope == ('mmseg' if task == 'upernet' else 'mmdet')

    backbone = cfg.model.backbone
    # _delete_ dropped every ResNet key of the base config.
    assert set(backbone) <= {
        'type', 'arch', 'out_indices', 'out_norm_cfg', 'drop_path_rate', 'init_cfg'
    }, sorted(backbone)
    assert backbone.type == 'mmglnet.GLNet'
    assert backbone.arch == variant
    assert backbone.init_cfg == dict(
        type='Pretrained', checkpoint=f'checkpoints/glnet_{variant}.pth')
    dims = list(resolve_arch(variant)['embed_dim'])

    if task == 'upernet':
        assert backbone.drop_path_rate == SEG_DROP_PATH[variant]
        assert cfg.model.get('pretrained') is None
        assert backbone.out_indices == (0, 1, 2, 3)
        head, aux = cfg.model.decode_head, cfg.model.auxiliary_head
        assert head.type == 'UPerHead' and head.channels == 512 and head.num_classes == 150
        assert head.in_channels == [dims[i] for i in head.in_index]
        assert aux.type == 'FCNHead' and aux.in_index == 2 and aux.num_classes == 150
        assert aux.in_channels == dims[2]
        assert cfg.train_cfg.max_iters == 160000
        assert cfg.train_dataloader.batch_size == 2
        assert cfg.train_dataloader.dataset.data_root == 'data/ade/ADEChallengeData2016'
        assert [s.type for s in cfg.param_scheduler] == ['LinearLR', 'PolyLR']
        assert cfg.param_scheduler[0].end == cfg.param_scheduler[1].begin == 1500
    else:
        assert backbone.drop_path_rate == DET_DROP_PATH[variant]
        neck = cfg.model.neck
        assert neck.type == 'FPN'
        assert neck.in_channels == [dims[i] for i in backbone.out_indices]
        if task == 'retinanet':
            # Only the stages FPN uses: P3-P5 from the backbone, P6-P7 extra convs.
            assert backbone.out_indices == (1, 2, 3)
            assert neck.start_level == 0 and neck.num_outs == 5
        else:
            assert backbone.out_indices == (0, 1, 2, 3)
            assert cfg.model.roi_head.mask_head.num_classes == 80
        assert cfg.train_dataloader.dataset.data_root == 'data/coco/'
        resize = [t for t in cfg.train_dataloader.dataset.pipeline if 'Resize' in t.type]
        if 'ms-3x' in name:
            assert cfg.train_cfg.max_epochs == 36
            assert resize[0].type == 'RandomResize'
            assert resize[0].scale == [(1333, 640), (1333, 800)]
            assert cfg.param_scheduler[-1].milestones == [27, 33]
            assert cfg.param_scheduler[-1].end == 36
        else:
            assert cfg.train_cfg.max_epochs == 12
            assert resize[0].type == 'Resize' and resize[0].scale == (1333, 800)

    optim = cfg.optim_wrapper
    assert optim.type == 'OptimWrapper'  # runs on the CPU; --amp switches to mixed precision
    assert optim.optimizer.type == 'AdamW'
    assert (optim.optimizer.lr, optim.optimizer.weight_decay) == OPTIMIZERS[task]
    assert set(optim.optimizer) == {'type', 'lr', 'betas', 'weight_decay'}  # no SGD leftovers
    assert optim.paramwise_cfg.norm_decay_mult == 0
    assert {k
            for k, v in optim.paramwise_cfg.custom_keys.items()
            if v == dict(decay_mult=0.)} == NO_DECAY_KEYS


def _batch(task, size, with_targets, num_images=1):
    """Synthetic images and their data samples for mmdet or mmseg."""
    height, width = size
    meta = dict(img_shape=size, ori_shape=size, pad_shape=size, scale_factor=(1., 1.))
    images, samples = [], []
    for _ in range(num_images):
        images.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8))
        if task == 'upernet':
            from mmseg.structures import SegDataSample
            sample = SegDataSample(metainfo=meta)
            if with_targets:
                sample.gt_sem_seg = PixelData(
                    data=torch.randint(0, 150, (1, height, width), dtype=torch.long))
        else:
            from mmdet.structures import DetDataSample
            from mmdet.structures.mask import BitmapMasks
            sample = DetDataSample(metainfo=meta)
            if with_targets:
                boxes = torch.tensor([[4., 6., 40., 50.], [20., 10., 60., 30.]])
                masks = torch.zeros(2, height, width, dtype=torch.uint8)
                for i, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
                    masks[i, y1:y2, x1:x2] = 1
                sample.gt_instances = InstanceData(
                    bboxes=boxes,
                    labels=torch.tensor([3, 7]),
                    masks=BitmapMasks(masks.numpy(), height, width))
        samples.append(sample)
    return dict(inputs=images, data_samples=samples)


def tiny_model(name, arch):
    """The config's model with a tiny GLNet (the heads keep their real size)."""
    cfg = load(name)
    if cfg.model.data_preprocessor.get('size') is not None:
        cfg.model.data_preprocessor.size = IMAGE_SIZE  # mmseg pads training batches to it
    cfg.model.backbone.arch = arch
    cfg.model.backbone.init_cfg = None
    set_backbone_widths(cfg, arch['embed_dim'])
    if cfg.model.get('roi_head') is not None:
        # Few proposals keep the RoI heads cheap (the mask head costs ~0.5 GFLOPs per RoI).
        cfg.model.test_cfg.rpn.max_per_img = 10
        cfg.model.train_cfg.rpn_proposal.max_per_img = 100
        cfg.model.train_cfg.rcnn.sampler.num = 64
    torch.manual_seed(0)
    return revert_sync_batchnorm(build_model(cfg)).eval()


@pytest.mark.parametrize('name', CONFIGS)
def test_model_builds_and_runs_with_a_tiny_backbone(name, tiny_arch):
    task, _ = describe(name)
    model = tiny_model(name, tiny_arch)
    # Inference: the mode='tensor' forward (backbone, neck, heads).
    data = model.data_preprocessor(_batch(task, IMAGE_SIZE, with_targets=False), False)
    with torch.no_grad():
        outputs = model(data['inputs'], data['data_samples'], mode='tensor')
    flat = [t for t in torch.utils._pytree.tree_leaves(outputs) if isinstance(t, torch.Tensor)]
    assert flat and all(torch.isfinite(t).all() for t in flat)


# With a tiny backbone the four variants of a task are the same model: one training step each.
@pytest.mark.parametrize('name', [
    'detection/retinanet_glnet4g_fpn_1x_coco.py', 'detection/mask-rcnn_glnet4g_fpn_1x_coco.py',
    'segmentation/upernet_glnet4g_160k.py'
])
def test_training_step_uses_every_backbone_parameter(name, tiny_arch):
    task, _ = describe(name)
    model = tiny_model(name, tiny_arch).train()
    data = model.data_preprocessor(_batch(task, IMAGE_SIZE, with_targets=True, num_images=2), True)
    losses = model(data['inputs'], data['data_samples'], mode='loss')
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    total.backward()
    # No unused parameters (DDP would fail on them), e.g. norms of stages FPN does not take.
    unused = [n for n, p in model.backbone.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused


@pytest.mark.parametrize(
    'name', ['detection/mask-rcnn_glnet4g_fpn_1x_coco.py', 'segmentation/upernet_glnet4g_160k.py'])
def test_paramwise_rules_reach_the_glnet_parameters(name, tiny_arch):
    """No decay on norms, slot temperatures, learned slots and layer scales; decay elsewhere."""
    cfg = load(name)
    # Learned slots and layer scales, which the 4G preset lacks, to check every rule.
    cfg.model.backbone.arch = dict(tiny_arch, slot_init='param', layerscale=1e-4)
    cfg.model.backbone.init_cfg = None
    set_backbone_widths(cfg, tiny_arch['embed_dim'])
    model = build_model(cfg)
    optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    decay = {}
    for group in optim.optimizer.param_groups:
        for param in group['params']:
            decay[id(param)] = group['weight_decay']
    base_decay = cfg.optim_wrapper.optimizer.weight_decay
    seen = set()
    for pname, param in model.named_parameters():
        module_name = pname.rsplit('.', 1)[0]
        module = model.get_submodule(module_name)
        is_norm = isinstance(
            module, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm))
        special = next((k for k in NO_DECAY_KEYS if k in pname), None)
        expected = 0. if (is_norm or special) else base_decay
        assert decay[id(param)] == expected, pname
        seen.add(special or ('norm' if is_norm else 'other'))
    assert seen == NO_DECAY_KEYS | {'norm', 'other'}


def test_real_arch_parameter_counts():
    """Full-size models against the published sizes (../shared/NOTES.md)."""
    upernet = build_model(load('segmentation/upernet_glnet4g_160k.py')).eval()
    params = sum(p.numel() for p in upernet.parameters())
    assert round(params / 1e6, 2) == 56.80  # UperNet-GLNet-4G, paper 56.8M
    # The real widths run end to end (heads fed by the real stage outputs).
    data = upernet.data_preprocessor(_batch('upernet', (64, 64), False), False)
    with torch.no_grad():
        logits = upernet(data['inputs'], data['data_samples'], mode='tensor')
    assert logits.shape == (1, 150, 16, 16)

    retinanet = build_model(load('detection/retinanet_glnet4g_fpn_1x_coco.py'))
    params = sum(p.numel() for p in retinanet.parameters())
    assert round(params / 1e6) == 37  # RetinaNet-GLNet-4G, paper 37M


def test_codebase_registries_build_the_configs(tiny_arch):
    """The way mmdet's and mmseg's own tools build models: their registry, their scope."""
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.utils import register_all_modules as register_det
    from mmseg.registry import MODELS as SEG_MODELS
    from mmseg.utils import register_all_modules as register_seg

    from mmglnet import GLNet

    for name, register, registry in [
        ('detection/retinanet_glnet4g_fpn_1x_coco.py', register_det, DET_MODELS),
        ('segmentation/upernet_glnet4g_160k.py', register_seg, SEG_MODELS),
    ]:
        cfg = load(name)
        cfg.model.backbone.arch = tiny_arch
        set_backbone_widths(cfg, tiny_arch['embed_dim'])
        register(init_default_scope=True)
        model = registry.build(cfg.model)
        assert isinstance(model.backbone, GLNet)
