"""tools/test.py --tta: the config's test-time augmentation, or flips where it has none."""
import copy
import os.path as osp
import pickle

import mmcv
import pytest
import torch

from mmglnet.apis import build_model
from mmglnet.utils import load_config

from _support.test_time_aug import TestTimeAugError, apply_test_time_aug
from conftest import REPO_ROOT
from tool_runs import MASK_RCNN, UPERNET, make_tiny_data, run_tool, write_config

RETINANET_4G = 'configs/detection/retinanet_glnet4g_fpn_1x_coco.py'
CLASSIFIER_4G = 'configs/classification/glnet4g_in1k.py'


def step_types(steps):
    return [step['type'] for step in steps]


def test_tta_uses_the_configs_own_and_flips_where_it_has_none():
    # mmseg's ADE20K base: SegTTAModel, six scales and flips; the model goes inside.
    cfg = load_config(osp.join(REPO_ROOT, UPERNET))
    model, tta_pipeline = cfg.model.to_dict(), cfg.tta_pipeline
    apply_test_time_aug(cfg)
    assert cfg.model.type == 'SegTTAModel' and cfg.model.module.to_dict() == model
    assert cfg.test_dataloader.dataset.pipeline == tta_pipeline

    # mmdet's RetinaNet base has its own (three scales and flips), used as it is.
    cfg = load_config(osp.join(REPO_ROOT, RETINANET_4G))
    tta_pipeline = cfg.tta_pipeline
    apply_test_time_aug(cfg)
    assert cfg.model.type == 'DetTTAModel' and cfg.test_dataloader.dataset.pipeline == tta_pipeline

    # Without them: DetTTAModel, and the test pipeline with both views of each image after
    # the resize, each keeping its flip for the merge.
    cfg = load_config(osp.join(REPO_ROOT, RETINANET_4G))
    cfg.pop('tta_model'), cfg.pop('tta_pipeline')
    test_pipeline = cfg.test_dataloader.dataset.pipeline
    assert step_types(test_pipeline) == [
        'LoadImageFromFile', 'Resize', 'LoadAnnotations', 'PackDetInputs'
    ]
    apply_test_time_aug(cfg)
    assert cfg.model.type == 'DetTTAModel' and cfg.model.module.type == 'RetinaNet'
    assert cfg.model.tta_cfg.nms.iou_threshold == 0.5
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert pipeline[:2] == test_pipeline[:2] and pipeline[2].type == 'TestTimeAug'
    flips, [annotations], [pack] = pipeline[2].transforms
    assert [(f.type, f.prob, f.direction) for f in flips] == [('RandomFlip', 0., 'horizontal'),
                                                              ('RandomFlip', 1., 'horizontal')]
    assert annotations == test_pipeline[2] and pack.type == 'PackDetInputs'
    assert tuple(pack.meta_keys) == tuple(test_pipeline[3].meta_keys) + ('flip', 'flip_direction')

    # mmpretrain: averaged class scores over the image and its mirror.
    cfg = load_config(osp.join(REPO_ROOT, CLASSIFIER_4G))
    test_pipeline = cfg.test_dataloader.dataset.pipeline
    apply_test_time_aug(cfg)
    assert cfg.model.type == 'mmpretrain.AverageClsScoreTTA'
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert pipeline[:-1] == test_pipeline[:-1]
    assert pipeline[-1].transforms[1:] == [[test_pipeline[-1]]]


def test_tta_refuses_masks_and_configs_of_no_codebase():
    cfg = load_config(osp.join(REPO_ROOT, MASK_RCNN))
    with pytest.raises(TestTimeAugError, match='predicts masks.*without --tta'):
        apply_test_time_aug(cfg)
    cfg.default_scope = None
    with pytest.raises(TestTimeAugError, match=r"default_scope=None.*mmdet, mmpretrain, mmseg"):
        apply_test_time_aug(cfg)


def test_tta_replaces_the_pipeline_of_every_wrapped_test_dataset():
    """A ConcatDataset's datasets each get the TTA pipeline (mmseg's own tool stops at the
    wrapper); a wrapper with a pipeline of its own, or a dataset without one, is refused."""
    cfg = load_config(osp.join(REPO_ROOT, RETINANET_4G))
    cfg.pop('tta_model'), cfg.pop('tta_pipeline')
    single = cfg.test_dataloader.dataset
    test_pipeline = single.pipeline
    cfg.test_dataloader.dataset = dict(
        type='ConcatDataset',
        datasets=[single,
                  dict(type='RepeatDataset', times=2, dataset=copy.deepcopy(single))])
    apply_test_time_aug(cfg)
    first, repeated = cfg.test_dataloader.dataset.datasets
    assert first.pipeline == repeated.dataset.pipeline == cfg.tta_pipeline != test_pipeline
    assert cfg.tta_pipeline[2].type == 'TestTimeAug'
    assert 'pipeline' not in cfg.test_dataloader.dataset and 'pipeline' not in repeated

    cfg = load_config(osp.join(REPO_ROOT, RETINANET_4G))
    cfg.test_dataloader.dataset = dict(
        type='MultiImageMixDataset', dataset=cfg.test_dataloader.dataset, pipeline=[])
    with pytest.raises(TestTimeAugError, match=r'MultiImageMixDataset\) wraps its datasets'):
        apply_test_time_aug(cfg)

    cfg.test_dataloader.dataset = dict(type='ConcatDataset', datasets=[])
    with pytest.raises(TestTimeAugError, match='holds no dataset'):
        apply_test_time_aug(cfg)

    cfg = load_config(osp.join(REPO_ROOT, RETINANET_4G))
    cfg.test_dataloader.dataset.pop('pipeline')
    with pytest.raises(TestTimeAugError, match=r'test_dataloader.dataset \(CocoDataset\) has no'):
        apply_test_time_aug(cfg)


def test_tta_segments_an_image_and_its_mirror_alike(tmp_path):
    """Flip TTA averages each image with its mirror, so the prediction for the mirrored image
    is the mirrored prediction (one model alone does not do that); the checkpoint's fit is
    still checked inside the TTA model."""
    roots = make_tiny_data(str(tmp_path / 'data'))
    config = write_config(UPERNET, roots['ade'], str(tmp_path / 'seg.py'))
    torch.manual_seed(0)
    checkpoint = str(tmp_path / 'segmentor.pth')
    torch.save({'state_dict': build_model(config).state_dict(), 'meta': {}}, checkpoint)
    # A validation set of one image and its mirror (PNG: no compression noise).
    mirror = tmp_path / 'mirror'
    image = mmcv.imread(osp.join(roots['ade'], 'images/validation/shapes_val_00000.jpg'))
    labels = mmcv.imread(
        osp.join(roots['ade'], 'annotations/validation/shapes_val_00000.png'), flag='unchanged')
    for name, flip in [('image', False), ('mirror', True)]:
        mmcv.imwrite(image[:, ::-1] if flip else image,
                     str(mirror / f'images/validation/{name}.png'))
        mmcv.imwrite(labels[:, ::-1] if flip else labels,
                     str(mirror / f'annotations/validation/{name}.png'))
    options = [
        '--cfg-options', f'test_dataloader.dataset.data_root={mirror}',
        'test_dataloader.dataset.img_suffix=.png'
    ]
    agreement = {}
    for tta in ([], ['--tta']):
        out = str(tmp_path / f'predictions{len(tta)}.pkl')
        result = run_tool([
            'tools/test.py', config, checkpoint, '--work-dir',
            str(tmp_path / 'work'), '--out', out, *options, *tta
        ])
        assert 'Iter(test) [2/2]' in result.stdout and 'mIoU:' in result.stdout
        with open(out, 'rb') as f:
            predictions = {
                osp.basename(sample['img_path']): sample['pred_sem_seg']['data'][0]
                for sample in pickle.load(f)
            }
        seen, mirrored = predictions['image.png'], predictions['mirror.png']
        assert len(torch.unique(seen)) > 1  # not one class everywhere
        agreement[bool(tta)] = (seen == mirrored.flip(-1)).float().mean().item()
    assert agreement[True] == 1.0 and agreement[False] < 0.99, agreement

    # Another task's checkpoint is refused with --tta too, before testing.
    other = str(tmp_path / 'backbone.pth')
    torch.save({'state_dict': build_model(config).backbone.state_dict()}, other)
    result = run_tool(
        ['tools/test.py', config, other, '--work-dir',
         str(tmp_path / 'work'), '--tta'],
        check=False)
    assert result.returncode == 2 and 'does not fit the model (EncoderDecoder)' in result.stderr
    assert 'Iter(test)' not in result.stdout
