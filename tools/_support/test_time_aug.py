"""Test-time augmentation for ``tools/test.py --tta``, as each codebase's own ``tools/test.py``
does it.

The config's ``tta_model`` wraps its model (``module=``) and its ``tta_pipeline`` replaces the
test pipeline. mmseg's ADE20K and Cityscapes bases define both (multi-scale and flip: the "MS"
mIoU that papers report beside the single-scale one), and so does mmdet's RetinaNet base. A
config without them gets horizontal flip TTA, like the one mmdet's and mmpretrain's tools give:
every test image is also seen mirrored,
and the wrapper averages the two (class scores; segmentation probabilities, mirrored back) or
merges them (boxes, mirrored back, then NMS).
"""
import copy
from typing import List

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from .config_checks import config_has, iter_dataset_cfgs, type_name

# The codebases' own defaults (their tools/test.py; mmseg's ADE20K base for SegTTAModel).
DEFAULT_TTA_MODELS = dict(
    mmdet=dict(
        type='DetTTAModel', tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)),
    mmseg=dict(type='SegTTAModel'),
    mmpretrain=dict(type='mmpretrain.AverageClsScoreTTA'))
# What the TTA models need in each view's meta information to map it back.
FLIP_META_KEYS = ('flip', 'flip_direction')


class TestTimeAugError(ValueError):
    """``--tta`` asked for a config it cannot augment; the message says why and what to do."""


def _datasets_with_pipelines(dataset: dict) -> List[dict]:
    """The test dataset configs whose pipelines TTA replaces: the dataset, or every dataset a
    wrapper holds (``ConcatDataset``'s ``datasets``, ``RepeatDataset``'s ``dataset``, ...).

    Raises:
        TestTimeAugError: A wrapper applies a pipeline of its own (``MultiImageMixDataset``),
            or a dataset has no pipeline to replace.
    """
    key = 'test_dataloader.dataset'
    leaves = list(iter_dataset_cfgs(dataset, key))
    if not leaves:
        raise TestTimeAugError(f'--tta: {key} holds no dataset to augment the images of.')
    if leaves[0][1] is not dataset and 'pipeline' in dataset:
        raise TestTimeAugError(
            f'--tta: {key} ({dataset.get("type")}) wraps its datasets and applies a pipeline of '
            'its own; test-time augmentation replaces the test pipeline of the images\' own '
            'dataset. Test this config without --tta, or with a plain test dataset.')
    for leaf_key, leaf in leaves:
        if 'pipeline' not in leaf:
            raise TestTimeAugError(
                f'--tta: {leaf_key} ({leaf.get("type")}) has no pipeline for test-time '
                'augmentation to replace. Give it its test pipeline, or test without --tta.')
    return [leaf for _, leaf in leaves]


def flip_tta_pipeline(pipeline: List[dict]) -> List[dict]:
    """The test pipeline with every image also seen mirrored horizontally.

    The steps up to the annotations (or up to the last step, the packing, when none are
    loaded) run once; then a ``TestTimeAug`` makes the two views, the image as it is first,
    and runs the remaining steps on each. Loading the annotations after the flip keeps them
    unmirrored (mmseg's ``SegTTAModel`` takes the ground truth of the first view). The packing
    step keeps the flip in each view's meta information.

    Args:
        pipeline (list[dict]): The test pipeline.

    Returns:
        list[dict]: The TTA pipeline.
    """
    steps = copy.deepcopy(list(pipeline))
    split = next(
        (i for i, step in enumerate(steps) if type_name(step).startswith('LoadAnnotations')),
        len(steps) - 1)
    pack = steps[-1]
    if 'meta_keys' in pack:
        pack['meta_keys'] = tuple(pack['meta_keys']) + tuple(
            key for key in FLIP_META_KEYS if key not in pack['meta_keys'])
    flips = [
        dict(type='RandomFlip', prob=0., direction='horizontal'),
        dict(type='RandomFlip', prob=1., direction='horizontal')
    ]
    return steps[:split] + [
        dict(type='TestTimeAug', transforms=[flips] + [[step] for step in steps[split:]])
    ]


def apply_test_time_aug(cfg: Config) -> None:
    """Make ``cfg`` test with TTA: its model wrapped by ``tta_model``, its test images
    augmented by ``tta_pipeline`` (where the config lacks one: the codebase's TTA model of
    :data:`DEFAULT_TTA_MODELS`, :func:`flip_tta_pipeline`).

    Args:
        cfg (Config): The test config, changed in place.

    Raises:
        TestTimeAugError: The config's codebase has no TTA model, its model is an instance
            segmentation detector (mmdet's ``DetTTAModel`` merges boxes only), or its test
            dataset has no pipeline to replace (see :func:`_datasets_with_pipelines`).
    """
    scope = cfg.get('default_scope')
    if scope not in DEFAULT_TTA_MODELS:
        raise TestTimeAugError(
            f'--tta: the config has default_scope={scope!r}; test-time augmentation is there '
            f'for {", ".join(sorted(DEFAULT_TTA_MODELS))} configs. Test without --tta.')
    if scope == 'mmdet' and config_has(cfg.model, lambda node: 'mask_head' in node):
        raise TestTimeAugError(
            "--tta: the model predicts masks, and mmdet's DetTTAModel merges boxes only (it "
            'stops at the first image: "TTA of instance segmentation does not support now"). '
            'Test this config without --tta.')
    datasets = _datasets_with_pipelines(cfg.test_dataloader.dataset)
    defaults = []
    if 'tta_model' not in cfg:
        cfg.tta_model = ConfigDict(copy.deepcopy(DEFAULT_TTA_MODELS[scope]))
        defaults.append(f'tta_model={cfg.tta_model.type}')
    if 'tta_pipeline' not in cfg:
        # The first dataset's, as a ConcatDataset takes its metainfo from the first one.
        cfg.tta_pipeline = flip_tta_pipeline(datasets[0].pipeline)
        defaults.append('tta_pipeline=the test pipeline with horizontal flips')
    if defaults:
        print_log(
            f'--tta: not set in the config, so the defaults: {"; ".join(defaults)}.',
            logger='current')
    for dataset in datasets:
        dataset.pipeline = cfg.tta_pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
