"""The generated shapes dataset: deterministic, consistent between layouts, read by codebases."""
import filecmp
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from _support.runs import redirect_data_root
from _support.shapes_data import SHAPE_CLASSES, write_ade20k_shapes, write_coco_shapes
from tool_runs import MASK_RCNN, REPO_ROOT, UPERNET

SPLITS = dict(train=5, val=3)


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes')
    ade, coco = str(root / 'ade'), str(root / 'coco')
    assert write_ade20k_shapes(ade, num_images=SPLITS, image_size=64, seed=3)
    assert write_coco_shapes(coco, num_images=SPLITS, image_size=64, seed=3)
    return dict(ade=ade, coco=coco)


def _files(root):
    return sorted(osp.relpath(osp.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_same_arguments_same_files(roots, tmp_path):
    again = str(tmp_path / 'ade')
    write_ade20k_shapes(again, num_images=SPLITS, image_size=64, seed=3)
    files = _files(roots['ade'])
    assert files == _files(again)
    match, mismatch, errors = filecmp.cmpfiles(roots['ade'], again, files, shallow=False)
    assert not mismatch and not errors
    other = str(tmp_path / 'other_seed')
    write_ade20k_shapes(other, num_images=SPLITS, image_size=64, seed=4)
    _, mismatch, _ = filecmp.cmpfiles(roots['ade'], other, files, shallow=False)
    assert 'images/training/shapes_train_00000.jpg' in mismatch


def test_ade20k_encoding_and_layout(roots):
    names = sorted(os.listdir(osp.join(roots['ade'], 'images', 'training')))
    assert len(names) == SPLITS['train'] and all(n.endswith('.jpg') for n in names)
    assert len(os.listdir(osp.join(roots['ade'], 'annotations', 'validation'))) == SPLITS['val']
    for name in names:
        label = cv2.imread(
            osp.join(roots['ade'], 'annotations', 'training', name[:-4] + '.png'),
            cv2.IMREAD_UNCHANGED)
        assert label.dtype == np.uint8 and label.shape == (64, 64)
        # 0 is ADE20K's "unlabelled" and is never used; 1 background; 2.. the shapes.
        values = set(np.unique(label).tolist())
        assert values <= set(range(1, len(SHAPE_CLASSES) + 2)) and values & {2, 3, 4}


def test_coco_matches_the_ade20k_masks(roots):
    """Both layouts draw the same scenes: COCO boxes equal the ADE20K shape regions."""
    with open(osp.join(roots['coco'], 'annotations', 'instances_train.json')) as f:
        coco = json.load(f)
    assert [c['name'] for c in coco['categories']] == list(SHAPE_CLASSES)
    for image in coco['images']:
        index = int(image['file_name'][-9:-4])
        label = cv2.imread(
            osp.join(roots['ade'], 'annotations', 'training', f'shapes_train_{index:05d}.png'),
            cv2.IMREAD_UNCHANGED)
        count, components, stats, _ = cv2.connectedComponentsWithStats((label > 1).astype(np.uint8))
        shapes = {
            tuple(int(v) for v in stats[k]): int(label[components == k][0])
            for k in range(1, count)
        }
        anns = [a for a in coco['annotations'] if a['image_id'] == image['id']]
        assert len(anns) == len(shapes)  # shapes never touch
        for ann in anns:
            box_and_area = tuple(int(v) for v in ann['bbox']) + (int(ann['area']), )
            assert shapes.get(box_and_area) == ann['category_id'] + 1, (box_and_area, shapes)


def test_refuses_foreign_folders_and_reuses_its_own(roots, tmp_path):
    foreign = tmp_path / 'mine'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('user data')
    with pytest.raises(FileExistsError, match='refusing'):
        write_coco_shapes(str(foreign), num_images=SPLITS)
    assert (foreign / 'notes.txt').read_text() == 'user data'
    # Same settings: nothing rewritten; other settings: its own folders replaced.
    assert not write_coco_shapes(roots['coco'], num_images=SPLITS, image_size=64, seed=3)
    copy = str(tmp_path / 'coco')
    write_coco_shapes(copy, num_images=SPLITS, image_size=64, seed=3)
    assert write_coco_shapes(copy, num_images=dict(train=2, val=1), image_size=64, seed=3)
    assert len(os.listdir(osp.join(copy, 'train'))) == 2


def test_codebases_read_both_layouts(roots):
    from mmdet.utils import register_all_modules as register_mmdet
    from mmengine.registry import DATASETS, init_default_scope
    from mmseg.utils import register_all_modules as register_mmseg

    register_mmseg(init_default_scope=False)
    cfg = Config.fromfile(osp.join(REPO_ROOT, UPERNET))
    redirect_data_root(cfg, roots['ade'] + '/')
    init_default_scope('mmseg')
    seg = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(seg) == SPLITS['train']
    sample = seg[0]
    labels = set(np.unique(sample['data_samples'].gt_sem_seg.data.numpy()).tolist())
    assert labels <= {0, 1, 2, 3, 255} and 0 in labels  # background is class 0 after the shift

    register_mmdet(init_default_scope=False)
    cfg = Config.fromfile(osp.join(REPO_ROOT, MASK_RCNN))
    redirect_data_root(cfg, roots['coco'] + '/')
    assert cfg.val_evaluator.ann_file.startswith(roots['coco'])
    init_default_scope('mmdet')
    det = DATASETS.build(cfg.val_dataloader.dataset)
    assert len(det) == SPLITS['val']
    sample = det[0]['data_samples']
    assert len(sample.gt_instances) > 0
    assert sample.gt_instances.labels.max() < len(SHAPE_CLASSES)
