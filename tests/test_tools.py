"""tools/train.py and tools/test.py on tiny generated data, and their bad-input messages.

Each detector/segmentor trains 2 iterations, saves, resumes to 3 iterations and is evaluated
by tools/test.py, every step in its own process as a user would run it (about 1 minute per
model on 2 cores).
"""
import glob
import json
import os.path as osp
import pickle

import pytest
import torch
from mmengine.config import Config

from mmglnet.apis import build_model

from _support.config_checks import (ConfigPathError, check_dataset_paths, check_evaluator_paths,
                                    check_pretrained_files)
from tool_runs import MASK_RCNN, RETINANET, UPERNET, make_tiny_data, run_tool, write_config

MODELS = {
    'upernet': (UPERNET, 'ade', 'mIoU', {}),
    'mask_rcnn': (MASK_RCNN, 'coco', 'coco/bbox_mAP', {}),
    # After 2 iterations RetinaNet's scores are all near its 0.01 prior: keep them all, so
    # that COCO evaluation has detections to score.
    'retinanet': (RETINANET, 'coco', 'coco/bbox_mAP', {
        'model.test_cfg.score_thr': 0.
    }),
}


@pytest.fixture(scope='module')
def data_roots(tmp_path_factory):
    return make_tiny_data(str(tmp_path_factory.mktemp('shapes')))


def _checkpoint(path):
    from mmengine.runner.checkpoint import _load_checkpoint
    return _load_checkpoint(str(path), map_location='cpu')


def _metrics_file(work_dir):
    """The JSON metrics mmengine's LoggerHook writes after a test run."""
    files = [f for f in glob.glob(osp.join(work_dir, '*', '*.json'))]
    assert len(files) == 1, files
    with open(files[0]) as f:
        return json.load(f)


@pytest.mark.parametrize('name', list(MODELS))
def test_train_resume_test(name, data_roots, tmp_path):
    config_path, layout, metric, options = MODELS[name]
    work_dir = tmp_path / 'work'
    config = write_config(
        config_path, data_roots[layout], str(tmp_path / 'cfg.py'), max_iters=2, **options)

    result = run_tool(['tools/train.py', config, '--work-dir', str(work_dir)])
    first = _checkpoint(work_dir / 'iter_2.pth')
    assert first['meta']['iter'] == 2
    assert 'Iter(val) [4/4]' in result.stdout and metric.split('/')[-1] in result.stdout

    # --resume without a path: the latest checkpoint of the work dir, then one more iteration.
    result = run_tool([
        'tools/train.py', config, '--work-dir',
        str(work_dir), '--resume', '--cfg-options', 'train_cfg.max_iters=3',
        'train_cfg.val_interval=3', 'default_hooks.checkpoint.interval=3'
    ])
    assert 'resumed epoch: 0, iter: 2' in result.stdout
    assert 'Iter(train) [3/3]' in result.stdout and 'Iter(train) [1/3]' not in result.stdout
    resumed = _checkpoint(work_dir / 'iter_3.pth')
    assert resumed['meta']['iter'] == 3
    steps = {int(s['step']) for s in resumed['optimizer']['state'].values()}
    assert steps == {3}, f'AdamW step counts {steps}: the optimizer state did not continue'

    test_dir = tmp_path / 'test'
    out = tmp_path / 'predictions.pkl'
    run_tool([
        'tools/test.py', config,
        str(work_dir / 'iter_3.pth'), '--work-dir',
        str(test_dir), '--out',
        str(out)
    ])
    metrics = _metrics_file(str(test_dir))
    assert metric in metrics, metrics
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 4  # one per held-out image
    if name == 'mask_rcnn':  # mmdet's DumpDetResults prepared them: masks RLE-encoded
        instances = predictions[0]['pred_instances']
        assert len(instances['masks']) == len(instances['bboxes']) > 0
        assert all(isinstance(mask, dict) and 'counts' in mask for mask in instances['masks'])


def test_test_py_writes_label_maps_and_drawings(data_roots, tmp_path):
    """mmseg's --out folder (PNG label maps) and --show-dir drawings."""
    config = write_config(UPERNET, data_roots['ade'], str(tmp_path / 'cfg.py'), max_iters=1)
    model = build_model(config)
    checkpoint = tmp_path / 'random.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), checkpoint)
    run_tool([
        'tools/test.py', config,
        str(checkpoint), '--work-dir',
        str(tmp_path / 'test'), '--out',
        str(tmp_path / 'maps'), '--show-dir',
        str(tmp_path / 'vis')
    ])
    assert len(glob.glob(str(tmp_path / 'maps' / '*.png'))) == 4
    assert len(glob.glob(str(tmp_path / 'vis' / '**' / '*.png'), recursive=True)) == 4


def test_test_py_out_replaces_the_previous_predictions_whole(data_roots, tmp_path):
    """``--out results.pkl`` killed while dumping leaves the previous file as it was."""
    import signal

    from test_atomic_outputs import KILL_AT_FIRST_FSYNC, PREVIOUS, hidden_partials
    config = write_config(UPERNET, data_roots['ade'], str(tmp_path / 'cfg.py'))
    checkpoint = tmp_path / 'random.pth'
    torch.save(dict(state_dict=build_model(config).state_dict(), meta=dict()), checkpoint)
    out = tmp_path / 'out' / 'results.pkl'
    out.parent.mkdir()
    out.write_bytes(PREVIOUS)
    args = ['tools/test.py', config, str(checkpoint), '--work-dir', str(tmp_path / 'test')]

    killed = run_tool(['-c', KILL_AT_FIRST_FSYNC, *args, '--out', str(out)], check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert out.read_bytes() == PREVIOUS
    [partial] = hidden_partials(out.parent)  # complete, never renamed into place
    with open(out.parent / partial, 'rb') as f:
        assert len(pickle.load(f)) == 4

    run_tool([*args, '--out', str(out)])
    assert hidden_partials(out.parent) == []  # the killed run's file cleared
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len({p['img_path'] for p in predictions}) == 4  # one per held-out image


# ----------------------------------------------------------------------------------------
# Bad input: a message naming the path and what to do, before any runner is built.
# ----------------------------------------------------------------------------------------
def _load(config, data_root):
    path = write_config(config, data_root, osp.join(osp.dirname(data_root), 'cfg_check.py'))
    return Config.fromfile(path)


def test_missing_data_root_message(data_roots, tmp_path):
    cfg = _load(UPERNET, data_roots['ade'])
    missing = str(tmp_path / 'nowhere') + '/'
    cfg.train_dataloader.dataset.data_root = missing
    with pytest.raises(ConfigPathError) as error:
        check_dataset_paths(cfg)
    message = str(error.value)
    assert missing in message and 'train_dataloader.dataset' in message
    assert 'tools/demo.py --data-only' in message  # the config's data_preparation hint


def test_missing_annotation_file_message(data_roots):
    cfg = _load(MASK_RCNN, data_roots['coco'])
    cfg.val_dataloader.dataset.ann_file = 'annotations/instances_missing.json'
    with pytest.raises(ConfigPathError, match='instances_missing.json') as error:
        check_dataset_paths(cfg)
    assert 'val_dataloader.dataset.ann_file' in str(error.value)
    cfg = _load(MASK_RCNN, data_roots['coco'])
    cfg.test_evaluator.ann_file = '/no/such/instances_val.json'
    with pytest.raises(ConfigPathError, match='test_evaluator.ann_file'):
        check_evaluator_paths(cfg)


def test_dataset_layout_help_for_coco_and_ade(tmp_path):
    coco = dict(
        test_dataloader=dict(
            dataset=dict(type='CocoDataset', data_root=str(tmp_path / 'coco'), ann_file='a.json')))
    with pytest.raises(ConfigPathError, match='cocodataset.org') as error:
        check_dataset_paths(coco)
    assert 'instances_train2017.json' in str(error.value)
    ade = dict(
        train_dataloader=dict(
            dataset=dict(
                type='RepeatDataset',
                times=2,
                dataset=dict(type='ADE20KDataset', data_root=str(tmp_path / 'ade')))))
    with pytest.raises(ConfigPathError, match='ADEChallengeData2016.zip') as error:
        check_dataset_paths(ade)
    assert 'train_dataloader.dataset.dataset' in str(error.value)


def test_missing_pretrained_message(tmp_path):
    cfg = dict(
        model=dict(
            backbone=dict(
                type='mmglnet.GLNet',
                init_cfg=dict(type='Pretrained', checkpoint='checkpoints/glnet_4g.pth'))))
    with pytest.raises(ConfigPathError) as error:
        check_pretrained_files(cfg)
    message = str(error.value)
    assert 'checkpoints/glnet_4g.pth' in message and 'rayleizhu/GLMix' in message
    assert '--cfg-options model.backbone.init_cfg=None' in message
    # URLs are the codebases' business; existing files pass.
    cfg['model']['backbone']['init_cfg']['checkpoint'] = 'https://example.org/w.pth'
    check_pretrained_files(cfg)
    existing = tmp_path / 'w.pth'
    torch.save({'model': {}}, existing)
    cfg['model']['backbone']['init_cfg']['checkpoint'] = str(existing)
    check_pretrained_files(cfg)
    # An existing file that is no checkpoint is named before any work starts.
    existing.write_bytes(b'')
    with pytest.raises(ConfigPathError, match='empty'):
        check_pretrained_files(cfg)


def _assert_clean_failure(result, *needles):
    assert result.returncode == 2, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    for needle in needles:
        assert needle in result.stderr, result.stderr[-3000:]


def test_tools_stop_at_once_on_bad_input(data_roots, tmp_path):
    """The tools exit with the message (no stack trace) before building a runner."""
    seg = write_config(UPERNET, data_roots['ade'], str(tmp_path / 'seg.py'))
    det = write_config(MASK_RCNN, data_roots['coco'], str(tmp_path / 'det.py'))
    work = ['--work-dir', str(tmp_path / 'work')]

    missing_root = str(tmp_path / 'no_data') + '/'
    result = run_tool([
        'tools/train.py', seg, *work, '--cfg-options',
        f'train_dataloader.dataset.data_root={missing_root}'
    ],
                      check=False)
    _assert_clean_failure(result, missing_root, 'does not exist')

    result = run_tool([
        'tools/train.py', det, *work, '--cfg-options', 'model.backbone.init_cfg.type=Pretrained',
        'model.backbone.init_cfg.checkpoint=checkpoints/glnet_4g.pth'
    ],
                      check=False)
    _assert_clean_failure(result, 'checkpoints/glnet_4g.pth', 'rayleizhu/GLMix')

    result = run_tool(['tools/test.py', det, str(tmp_path / 'missing.pth'), *work], check=False)
    _assert_clean_failure(result, 'missing.pth', 'tools/train.py')

    if not torch.cuda.is_available():
        result = run_tool(['tools/train.py', det, *work, '--amp'], check=False)
        _assert_clean_failure(result, '--amp', 'GPU')
    assert not (tmp_path / 'work').exists()  # no runner was built

    # Types and arguments the codebases do not know, found as the runner builds the model
    # (before any data is read): the message names the config key.
    building = ['--work-dir', str(tmp_path / 'building')]
    result = run_tool(
        ['tools/train.py', seg, *building, '--cfg-options', 'model.decode_head.type=UPerHeadd'],
        check=False)
    _assert_clean_failure(result, "model.decode_head.type='UPerHeadd'",
                          'not in the mmseg::model registry', 'Check the spelling')
    checkpoint = tmp_path / 'any.pth'
    torch.save(dict(state_dict={}), checkpoint)
    result = run_tool([
        'tools/test.py', det,
        str(checkpoint), *building, '--cfg-options', 'model.neck.typo_arg=1'
    ],
                      check=False)
    _assert_clean_failure(result, 'model.neck.typo_arg', "unexpected keyword argument 'typo_arg'")
