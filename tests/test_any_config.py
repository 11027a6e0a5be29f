"""GLNet in configs written on the codebases' own model bases, as users write them."""
import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope

from mmglnet.apis import build_model
from mmglnet.models import GLNet
from mmglnet.models.glnet import pretrained_to_init_cfg

SIZE = 64


def test_pretrained_path_becomes_init_cfg(tiny_arch):
    with pytest.warns(UserWarning, match='deprecated'):
        model = GLNet(arch=tiny_arch, pretrained='checkpoints/glnet_4g.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='checkpoints/glnet_4g.pth')
    assert GLNet(arch=tiny_arch, pretrained=None).init_cfg is None


def test_pretrained_and_init_cfg_together_refused():
    init_cfg = dict(type='Pretrained', checkpoint='a.pth')
    with pytest.raises(ValueError, match='both pretrained'):
        pretrained_to_init_cfg('b.pth', init_cfg)
    assert pretrained_to_init_cfg(None, init_cfg) is init_cfg


@pytest.mark.parametrize('name', ['open-mmlab://resnet50_v1c', 'torchvision://resnet50'])
def test_model_zoo_resnet_refused_with_the_fix(name):
    with pytest.raises(ValueError, match=r'model\.pretrained=None') as error:
        pretrained_to_init_cfg(name, None)
    assert name in str(error.value)


def _seg_config(tiny_arch, **model):
    cfg = Config.fromstring(
        "_base_ = ['mmseg::_base_/models/fpn_r50.py']\n"
        "custom_imports = dict(imports=['mmglnet'], allow_failed_imports=False)\n", '.py')
    cfg.merge_from_dict(
        dict(
            model=dict(
                # As every mmseg config sets it from its crop size.
                data_preprocessor=dict(size=(SIZE, SIZE)),
                backbone=dict(_delete_=True, type='mmglnet.GLNet', arch=tiny_arch),
                neck=dict(in_channels=list(tiny_arch['embed_dim']), out_channels=32),
                decode_head=dict(in_channels=[32] * 4, channels=32, num_classes=5),
                **model)))
    return cfg


def _build(cfg, scope):
    cfg.default_scope = scope  # the model bases leave it to the runtime base
    # One process: SyncBN (in these bases) becomes BN.
    return revert_sync_batchnorm(build_model(cfg))


def _train_step(model, data):
    torch.manual_seed(0)
    params = {name: p.detach().clone() for name, p in model.backbone.named_parameters()}
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    model.train()
    losses = model.train_step(data, optim_wrapper)
    assert losses and all(torch.isfinite(v).all() for v in losses.values()), losses
    moved = [n for n, p in model.backbone.named_parameters() if not torch.equal(p, params[n])]
    assert 'stages.0.blocks.0.relation_mha.in_proj_weight' in moved, \
        'the training step did not update the GLNet backbone'
    return losses


def test_mmseg_fpn_r50_base_refuses_resnet_pretrained(tiny_arch):
    cfg = _seg_config(tiny_arch)
    assert cfg.model.pretrained == 'open-mmlab://resnet50_v1c'  # from the ResNet base
    with pytest.raises(ValueError, match=r'ResNet.*model\.pretrained=None'):
        _build(cfg, 'mmseg')


@pytest.mark.parametrize('option', [None, 'compile_blocks', 'compile_backbone'])
def test_mmseg_fpn_r50_base_trains_a_step(tiny_arch, option):
    """Also with the backbone's blocks or the whole backbone compiled from the config (dynamo
    and autograd as in real compilation; the aot_eager backend generates no kernels)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    from torch._dynamo.utils import counters
    cfg = _seg_config(tiny_arch, pretrained=None)
    if option:
        cfg.model.backbone[option] = dict(backend='aot_eager')
    model = _build(cfg, 'mmseg')
    assert isinstance(model.backbone, GLNet)
    torch._dynamo.reset()
    counters.clear()
    samples = []
    for _ in range(2):
        sample = SegDataSample(
            metainfo=dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, SIZE, SIZE)))
        samples.append(sample)
    data = dict(
        inputs=[torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8)] * 2,
        data_samples=samples)
    losses = _train_step(model, data)
    assert 'decode.loss_ce' in losses
    assert (counters['stats']['unique_graphs'] > 0) == bool(option)


def test_mmdet_faster_rcnn_base_trains_a_step(tiny_arch):
    """A base mmglnet ships no config for; unscoped ``type='GLNet'`` in mmdet's scope."""
    from mmdet.testing import demo_mm_inputs
    cfg = Config.fromstring(
        "_base_ = ['mmdet::_base_/models/faster-rcnn_r50_fpn.py']\n"
        "custom_imports = dict(imports=['mmglnet'], allow_failed_imports=False)\n", '.py')
    cfg.merge_from_dict(
        dict(
            model=dict(
                backbone=dict(_delete_=True, type='GLNet', arch=tiny_arch),
                neck=dict(in_channels=list(tiny_arch['embed_dim']), out_channels=32),
                rpn_head=dict(in_channels=32, feat_channels=32),
                roi_head=dict(
                    bbox_roi_extractor=dict(out_channels=32),
                    bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes=3)))))
    model = _build(cfg, 'mmdet')
    assert isinstance(model.backbone, GLNet)
    data = demo_mm_inputs(
        batch_size=2, image_shapes=[(3, SIZE, SIZE)] * 2, num_items=[3, 2], num_classes=3)
    losses = _train_step(model, data)
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox'} <= set(losses)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_unscoped_name_resolves_in_codebase_scopes(scope, tiny_arch):
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    assert registry.get('GLNet') is GLNet
    assert registry.get('mmglnet.GLNet') is GLNet
