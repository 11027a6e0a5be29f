"""Semantic-slot visualization: extraction, k-medoids, drawing, tools and the training hook.

Runs on photographs that scikit-image ships (astronaut, coffee, chelsea), cropped to odd sizes.
The assignment weights are checked against the paper's formula computed here by hand from each
block's input (itself recomputed without hooks) and its parameters.
"""
import glob
import math
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.model import BaseModel
from mmengine.runner import Runner
from skimage import data as skdata
from torch.utils.data import DataLoader, Dataset

import mmglnet  # noqa: F401  (registers GLNet; safe checkpoint loading)
from mmglnet.apis import build_model, init_model
from mmglnet.models import GLNet
from mmglnet.visualization import (cosine_distances, extract_slot_weights, find_glnet, glmix_blocks,
                                   k_medoids, select_blocks, visualize_image_slots)

from conftest import TINY_ARCH, load_cases, load_script, parity_path
from tool_runs import run_tool

IMAGENET_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
# Odd crops of the shipped photographs (H, W).
PHOTOS = dict(astronaut=(333, 255), coffee=(211, 399), chelsea=(300, 451))


def photo_rgb(name, shape=None):
    image = getattr(skdata, name)()
    if shape is not None:
        image = image[:shape[0], :shape[1]]
    return np.ascontiguousarray(image)


def load_tool(name):
    """``tools/<name>.py`` as a module."""
    return load_script(f'tools/{name}.py', f'tool_{name}')


def randomize(backbone, seed=0):
    """Non-trivial slot temperatures, norms and BN statistics, as in trained models."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in glmix_blocks(backbone).values():
            block.slot_scale.fill_(float(torch.empty(1).uniform_(2, 8, generator=generator)))
            block.norm1.weight.copy_(1 + 0.5 *
                                     torch.randn(block.norm1.weight.shape, generator=generator))
            block.norm1.bias.copy_(0.2 * torch.randn(block.norm1.bias.shape, generator=generator))
        for module in backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 2, generator=generator)
    return backbone


def normalized_batch(*images):
    batch = torch.stack([torch.from_numpy(image).permute(2, 0, 1).float() for image in images])
    return (batch - IMAGENET_MEAN) / IMAGENET_STD


def block_input_by_hand(backbone, inputs, name):
    """The input of block ``name`` by running the stem, stages and blocks before it."""
    stage_index, block_index = map(int, name.split('.'))
    x = inputs
    for i in range(stage_index + 1):
        x = backbone.downsample_layers[i](x)
        if i < stage_index:
            x = backbone.stages[i](x)
    for block in backbone.stages[stage_index].blocks[:block_index]:
        x = block(x)
    return x


def paper_dispatch_weights(block, x, num_slots):
    """Dispatching weights from the paper's definition, in float64.

    Initial slots: 8x8 average pooling of the block input (or the learned slots); pixels:
    the LayerNorm (eps 1e-6) of the input after its depth-wise conv position encoding;
    logits: slot_scale x cosine similarity; weights: softmax over the slots.
    """
    x = x.double()
    batch, channels, height, width = x.shape
    if getattr(block, 'init_slots', None) is not None:
        slots = block.init_slots.double().expand(batch, -1, -1)
    else:
        side = math.isqrt(num_slots)
        slots = F.adaptive_avg_pool2d(x, side).flatten(2).transpose(1, 2)
    if block.pos_conv is not None:
        conv = block.pos_conv
        x = x + F.conv2d(
            x,
            conv.weight.double(),
            conv.bias.double(),
            padding=conv.kernel_size[0] // 2,
            groups=channels)
    mean = x.mean(dim=1, keepdim=True)
    var = x.var(dim=1, unbiased=False, keepdim=True)
    normed = (x - mean) / torch.sqrt(var + 1e-6)
    normed = normed * block.norm1.weight.double().view(1, -1, 1, 1) + \
        block.norm1.bias.double().view(1, -1, 1, 1)
    pixels = normed.flatten(2)  # (N, C, L)
    cosine = (slots / slots.norm(dim=-1, keepdim=True)) @ \
        (pixels / pixels.norm(dim=1, keepdim=True))  # (N, S, L)
    logits = block.slot_scale.double() * cosine
    return logits.softmax(dim=1).reshape(batch, -1, height, width)


def paramslot_backbone():
    """The official-format STL paramslot fixture (learned slots, random trained-like weights)."""
    case = load_cases()['stl_paramslot_like']
    return GLNet(
        arch=case['official_kwargs'],
        out_norm_cfg=None,
        init_cfg=dict(type='Pretrained', checkpoint=parity_path('stl_paramslot_like.pth')))


def hook_snapshot(model):
    return {
        name: (list(module._forward_pre_hooks), list(module._forward_hooks))
        for name, module in model.named_modules()
    }


# ------------------------------------------------------------------------------------------
# k-medoids
# ------------------------------------------------------------------------------------------
def test_k_medoids_finds_groups_with_distinct_medoids():
    generator = torch.Generator().manual_seed(0)
    centres = torch.rand(3, 50, generator=generator)
    maps = torch.cat([centre + 0.05 * torch.rand(7, 50, generator=generator) for centre in centres])
    medoids, labels = k_medoids(cosine_distances(maps), 3)
    assert len(set(medoids.tolist())) == 3
    # Every group of 7 ends up in one cluster around a medoid of that group.
    for group in range(3):
        members = labels[group * 7:(group + 1) * 7]
        assert (members == members[0]).all()
        assert group * 7 <= int(medoids[members[0]]) < (group + 1) * 7
    # Deterministic.
    again, _ = k_medoids(cosine_distances(maps), 3)
    assert torch.equal(medoids, again)


def test_k_medoids_distinct_even_for_identical_items_and_checks_k():
    medoids, labels = k_medoids(cosine_distances(torch.ones(6, 10)), 4)
    assert len(set(medoids.tolist())) == 4
    assert labels[medoids].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match='1 <= k <= 6'):
        k_medoids(cosine_distances(torch.ones(6, 10)), 7)


# ------------------------------------------------------------------------------------------
# Extraction: exact weights, hooks removed, forward unchanged
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize('variant', ['g_series', 'stl_paramslot'])
def test_weights_equal_the_paper_formula_and_sum_to_one(variant):
    if variant == 'g_series':
        backbone = randomize(GLNet(arch=TINY_ARCH)).eval()
    else:
        backbone = paramslot_backbone()
        backbone.init_weights()
        backbone.eval()
    # Two photographs of the same odd size as one batch.
    inputs = normalized_batch(photo_rgb('chelsea', (75, 113)), photo_rgb('coffee', (75, 113)))
    weights = extract_slot_weights(backbone, inputs, 'all')
    assert list(weights) == list(glmix_blocks(backbone))
    for name, block in glmix_blocks(backbone).items():
        with torch.no_grad():
            x = block_input_by_hand(backbone, inputs, name)
            expected = paper_dispatch_weights(block, x, backbone.num_slots)
        got = weights[name]
        assert got.shape == (2, backbone.num_slots) + tuple(x.shape[-2:])
        torch.testing.assert_close(got.double(), expected, rtol=0, atol=2e-5)
        torch.testing.assert_close(got.sum(dim=1), torch.ones(got[:, 0].shape), rtol=0, atol=1e-5)
        # The maps are not trivial: the weights vary over the pixels.
        assert float((got.amax(dim=(2, 3)) - got.amin(dim=(2, 3))).max()) > 1e-3


def test_visualizing_leaves_no_hook_and_does_not_change_the_model():
    backbone = randomize(GLNet(arch=TINY_ARCH))
    user_hook = backbone.stages[0].blocks[0].register_forward_pre_hook(lambda m, a: None)
    image = photo_rgb('astronaut', (97, 131))
    inputs = normalized_batch(image)
    backbone.eval()
    with torch.no_grad():
        before = backbone(inputs)
    hooks = hook_snapshot(backbone)
    buffers = {k: v.clone() for k, v in backbone.state_dict().items()}

    backbone.train()  # a training model: visualizing must not move BN statistics
    modes = {name: m.training for name, m in backbone.named_modules()}
    maps = visualize_image_slots(backbone, image[..., ::-1], size=None, blocks='all', k=3)
    assert [m.name for m in maps] == list(glmix_blocks(backbone))

    # A forward that fails half-way (after block 1.0, before block 2.0) removes them too.

    def fail(module, args, output):
        raise KeyboardInterrupt

    failing = backbone.stages[1].blocks[0].register_forward_hook(fail)
    with pytest.raises(KeyboardInterrupt):
        extract_slot_weights(backbone, inputs, 'all')
    failing.remove()

    assert hook_snapshot(backbone) == hooks
    assert {name: m.training for name, m in backbone.named_modules()} == modes
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, buffers[key]), key
    backbone.eval()
    with torch.no_grad():
        after = backbone(inputs)
    for old, new in zip(before, after):
        assert torch.equal(old, new)
    user_hook.remove()


def test_block_selection_errors_name_the_choices():
    backbone = GLNet(arch=TINY_ARCH)
    assert select_blocks(backbone) == ['0.0', '1.0', '2.0']  # the last GLMix block per stage
    assert select_blocks(backbone, ['2.0', '0.0']) == ['0.0', '2.0']
    with pytest.raises(ValueError, match=r"\['0.0', '1.0', '2.0'\]"):
        select_blocks(backbone, ['2.1'])  # an attention block
    with pytest.raises(ValueError, match='no mmglnet GLNet'):
        find_glnet(nn.Sequential(nn.Conv2d(3, 3, 1)))


def test_slot_requests_are_checked_before_any_image_or_training(tmp_path):
    from types import SimpleNamespace

    from mmglnet.engine import SlotVisualizationHook
    from mmglnet.visualization import SlotSelectionError, check_slot_request
    backbone = GLNet(arch=TINY_ARCH)  # 16 slots per GLMix block
    assert check_slot_request(backbone, ['2.0'], k=16) == ['2.0']
    for blocks, k, message in [(None, 17, r'1 <= k <= 16'), (['1.0'], 0, r'1 <= k <= 16'),
                               (['2.1'], 2, r"from \['0.0', '1.0', '2.0'\]")]:
        with pytest.raises(SlotSelectionError, match=message):
            check_slot_request(backbone, blocks, k)
    with pytest.raises(SlotSelectionError, match='no mmglnet GLNet'):
        check_slot_request(nn.Conv2d(3, 3, 1))
    # The training hook refuses before the first iteration, not at the first evaluation.
    with pytest.raises(SlotSelectionError, match=r'k=17 .*1 <= k <= 16'):
        SlotVisualizationHook(k=17).before_run(SimpleNamespace(model=backbone))

    # The tools: exit status 2 and the message, before any image is run or file written.
    image = str(tmp_path / 'image.png')
    mmcv.imwrite(photo_rgb('coffee', (40, 48))[..., ::-1], image)
    out_dir = tmp_path / 'maps'
    config = tmp_path / 'glnet_tiny.py'
    Config(dict(model=dict(type='mmglnet.GLNet', arch=TINY_ARCH))).dump(str(config))
    result = run_tool(
        ['tools/visualize_slots.py', image,
         str(config), '--k', '17', '--out-dir',
         str(out_dir)],
        check=False)
    assert result.returncode == 2 and '1 <= k <= 16' in result.stderr, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr and not out_dir.exists()
    seg_config, checkpoint, _ = save_random_model(tmp_path, 'seg', segmentor_config(), ('a', 'b'))
    with pytest.raises(SlotSelectionError, match='1 <= k <= 16'):
        load_tool('image_demo').main([
            image, seg_config, checkpoint, '--with-slots', '--k', '17', '--device', 'cpu',
            '--out-file',
            str(out_dir / 'result.png')
        ])
    assert not out_dir.exists()


# ------------------------------------------------------------------------------------------
# tools/visualize_slots.py
# ------------------------------------------------------------------------------------------
def check_written_maps(out_dir, prefix, shape, blocks, k):
    for name in ['input'] + [f'block{b}_assignment' for b in blocks]:
        image = mmcv.imread(osp.join(out_dir, f'{prefix}{name}.png'))
        assert image.shape == tuple(shape) + (3, ), name
    for block in blocks:
        slot_files = glob.glob(osp.join(out_dir, f'{prefix}block{block}_slot*.png'))
        slots = {int(osp.basename(f)[len(f'{prefix}block{block}_slot'):-4]) for f in slot_files}
        assert len(slot_files) == k and len(slots) == k  # distinct medoid slots
        for path in slot_files:
            assert mmcv.imread(path).shape == tuple(shape) + (3, )
        assert osp.isfile(osp.join(out_dir, f'{prefix}block{block}_panel.png'))
    assert osp.isfile(osp.join(out_dir, f'{prefix}overview.png'))


def write_photo_folder(folder):
    """The photographs at odd sizes in ``folder``, beside a text file and a sub-folder."""
    folder.mkdir()
    for name, shape in PHOTOS.items():
        mmcv.imwrite(photo_rgb(name, shape)[..., ::-1], str(folder / f'{name}.png'))
    (folder / 'notes.txt').write_text('not an image')
    (folder / 'more').mkdir()
    mmcv.imwrite(np.zeros((8, 8, 3), np.uint8), str(folder / 'more' / 'inner.png'))
    return str(folder)


def test_tool_official_file_on_a_folder_of_photographs_of_odd_sizes(tmp_path):
    """A config with the official-format paramslot fixture, on a folder of three odd-size
    photographs: each image's maps, named after it; other files and sub-folders left alone."""
    case = load_cases()['stl_paramslot_like']
    config = tmp_path / 'glnet_paramslot.py'
    Config(dict(
        model=dict(type='mmglnet.GLNet', arch=case['official_kwargs'], out_norm_cfg=None))).dump(
            str(config))
    folder = write_photo_folder(tmp_path / 'photos')
    out_dir = str(tmp_path / 'out')
    written = load_tool('visualize_slots').main([
        folder,
        str(config),
        parity_path('stl_paramslot_like.pth'), '--blocks', 'all', '--k', '3', '--size', '96',
        '--out-dir', out_dir
    ])
    for name, shape in PHOTOS.items():
        check_written_maps(out_dir, f'{name}_', shape, ['0.0', '1.0', '2.0', '2.1'], 3)
    assert sorted(set(osp.basename(path).split('_')[0] for path in written)) == sorted(PHOTOS)


def test_tool_exact_odd_network_size_and_mm_checkpoint(tmp_path):
    """--size 0 --size-divisor 1 feeds the odd image as it is; an mm checkpoint loads."""
    backbone = randomize(GLNet(arch=TINY_ARCH))
    checkpoint = str(tmp_path / 'glnet.pth')
    torch.save(
        dict(state_dict={
            f'backbone.{k}': v
            for k, v in backbone.state_dict().items()
        }), checkpoint)
    config = tmp_path / 'glnet_tiny.py'
    Config(dict(model=dict(type='mmglnet.GLNet', arch=TINY_ARCH))).dump(str(config))
    model = init_model(str(config), checkpoint)
    for key, value in backbone.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key

    shape = (67, 93)
    path = str(tmp_path / 'coffee.png')
    mmcv.imwrite(photo_rgb('coffee', shape)[..., ::-1], path)
    load_tool('visualize_slots').main([
        path,
        str(config), checkpoint, '--blocks', '1.0', '--k', '5', '--size', '0', '--size-divisor',
        '1', '--out-dir',
        str(tmp_path / 'out'), '--prefix', 'c_'
    ])
    check_written_maps(str(tmp_path / 'out'), 'c_', shape, ['1.0'], 5)


def test_tool_preset_without_checkpoint_warns(tmp_path):
    path = str(tmp_path / 'chelsea.png')
    mmcv.imwrite(photo_rgb('chelsea')[..., ::-1], path)
    tool = load_tool('visualize_slots')
    with pytest.warns(UserWarning, match='random weights'):
        tool.main([
            path, '4g', '--blocks', '0.0', '2.16', '--k', '2', '--size', '64', '--out-dir',
            str(tmp_path)
        ])
    check_written_maps(str(tmp_path), 'chelsea_', (300, 451), ['0.0', '2.16'], 2)
    with pytest.raises(FileNotFoundError, match="'stl_paramslot'"):
        tool.main([path, '5g', '--out-dir', str(tmp_path)])


# ------------------------------------------------------------------------------------------
# Detection and segmentation models: tools/image_demo.py and tools/visualize_slots.py
# ------------------------------------------------------------------------------------------
MEAN_STD = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True)


def segmentor_config():
    return dict(
        default_scope='mmseg',
        custom_imports=dict(imports=['mmglnet'], allow_failed_imports=False),
        model=dict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor', size_divisor=32, **MEAN_STD),
            backbone=dict(type='mmglnet.GLNet', arch=TINY_ARCH),
            decode_head=dict(
                type='FCNHead',
                in_channels=128,
                in_index=3,
                channels=32,
                num_convs=1,
                num_classes=4,
                norm_cfg=dict(type='BN', requires_grad=True),
                loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
            train_cfg=dict(),
            test_cfg=dict(mode='whole')),
        test_dataloader=dict(
            dataset=dict(
                type='ADE20KDataset',
                pipeline=[
                    dict(type='LoadImageFromFile'),
                    dict(type='Resize', scale=(160, 96), keep_ratio=True),
                    dict(type='PackSegInputs')
                ])),
        visualizer=dict(type='SegLocalVisualizer', name='seg_demo_visualizer'))


def detector_config():
    return dict(
        default_scope='mmdet',
        custom_imports=dict(imports=['mmglnet'], allow_failed_imports=False),
        model=dict(
            type='RetinaNet',
            data_preprocessor=dict(type='DetDataPreprocessor', pad_size_divisor=32, **MEAN_STD),
            backbone=dict(type='mmglnet.GLNet', arch=TINY_ARCH, out_indices=(1, 2, 3)),
            neck=dict(type='FPN', in_channels=[64, 96, 128], out_channels=32, num_outs=3),
            bbox_head=dict(
                type='RetinaHead',
                num_classes=3,
                in_channels=32,
                stacked_convs=1,
                feat_channels=32,
                anchor_generator=dict(
                    type='AnchorGenerator',
                    octave_base_scale=4,
                    scales_per_octave=1,
                    ratios=[1.0],
                    strides=[8, 16, 32]),
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder', target_means=[0.] * 4, target_stds=[1.] * 4),
                loss_cls=dict(type='FocalLoss', use_sigmoid=True, loss_weight=1.0),
                loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
            test_cfg=dict(
                nms_pre=100,
                min_bbox_size=0,
                score_thr=0.05,
                nms=dict(type='nms', iou_threshold=0.5),
                max_per_img=20)),
        test_dataloader=dict(
            dataset=dict(
                type='CocoDataset',
                pipeline=[
                    dict(type='LoadImageFromFile'),
                    dict(type='Resize', scale=(160, 128), keep_ratio=True),
                    dict(type='PackDetInputs')
                ])),
        visualizer=dict(type='DetLocalVisualizer', name='det_demo_visualizer'))


def save_random_model(tmp_path, name, cfg_dict, classes):
    config = str(tmp_path / f'{name}.py')
    Config(cfg_dict).dump(config)
    model = build_model(config)
    randomize(find_glnet(model))
    checkpoint = str(tmp_path / f'{name}.pth')
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=dict(classes=classes, palette=[(255, 0, 0)] * len(classes)))),
        checkpoint)
    return config, checkpoint, model


@pytest.mark.parametrize('task', ['segmentation', 'detection'])
def test_image_demo_draws_result_beside_slots(tmp_path, task):
    cfg_dict = segmentor_config() if task == 'segmentation' else detector_config()
    config, checkpoint, _ = save_random_model(tmp_path, task, cfg_dict, ('a', 'b', 'c', 'd'))
    shape = PHOTOS['coffee']
    image = str(tmp_path / 'coffee.png')
    mmcv.imwrite(photo_rgb('coffee', shape)[..., ::-1], image)
    out_file = str(tmp_path / 'result.png')
    load_tool('image_demo').main([
        image, config, checkpoint, '--out-file', out_file, '--device', 'cpu', '--with-slots',
        '--slot-size', '96', '--k', '2', '--score-thr', '0'
    ])
    drawn = mmcv.imread(out_file)
    # The prediction and three assignment maps side by side, each the image's height.
    assert drawn.shape[0] > shape[0] and drawn.shape[1] > 4 * shape[1]
    check_written_maps(str(tmp_path / 'result_slots'), '', shape, ['0.0', '1.0', '2.0'], 2)


def record_checkpoint_reads(monkeypatch) -> list:
    """A list that gets each file mmengine's checkpoint loader reads, from now on."""
    from mmengine.runner.checkpoint import CheckpointLoader
    reads = []
    load = CheckpointLoader.load_checkpoint.__func__

    def counted(cls, filename, *args, **kwargs):
        reads.append(filename)
        return load(cls, filename, *args, **kwargs)

    monkeypatch.setattr(CheckpointLoader, 'load_checkpoint', classmethod(counted))
    return reads


def test_image_demo_takes_the_configs_classes_where_the_checkpoint_has_none(tmp_path):
    """The inferencers would fall back to Cityscapes' (mmseg) or COCO's (mmdet) classes."""
    from mmdet.datasets import CocoDataset
    from mmseg.datasets import ADE20KDataset
    tool = load_tool('image_demo')
    detector = detector_config()
    detector['test_dataloader']['dataset']['metainfo'] = dict(classes=('a', 'b', 'c'))
    for name, cfg_dict, expected in [
        ('seg', segmentor_config(), ADE20KDataset.METAINFO),
        ('det', detector, dict(classes=('a', 'b', 'c'), palette=CocoDataset.METAINFO['palette']))
    ]:
        config, recorded, model = save_random_model(tmp_path, name, cfg_dict, ('x', 'y'))
        bare = str(tmp_path / f'{name}_bare.pth')
        torch.save({'state_dict': model.state_dict()}, bare)
        inferencer, _ = tool.build_inferencer(config, bare, 'cpu')
        assert inferencer.model.dataset_meta['classes'] == tuple(expected['classes'])
        assert [tuple(c) for c in inferencer.model.dataset_meta['palette']
                ] == [tuple(c) for c in expected['palette']]
        # A checkpoint that records its classes keeps them.
        inferencer, _ = tool.build_inferencer(config, recorded, 'cpu')
        assert tuple(inferencer.model.dataset_meta['classes']) == ('x', 'y')


def test_image_demo_takes_the_classes_of_a_wrapped_test_dataset():
    """A wrapper's classes are its first dataset's, as mmengine's ConcatDataset has them."""
    from mmdet.datasets import CocoDataset
    tool = load_tool('image_demo')
    first = dict(type='CocoDataset', metainfo=dict(classes=('a', 'b')))
    cfg = Config(
        dict(
            default_scope='mmdet',
            test_dataloader=dict(
                dataset=dict(
                    type='ConcatDataset',
                    datasets=[
                        dict(type='RepeatDataset', times=2, dataset=first),
                        dict(type='CocoDataset')
                    ]))))
    meta = tool.config_dataset_meta(cfg)
    assert meta['classes'] == ('a', 'b') and meta['palette'] == CocoDataset.METAINFO['palette']
    cfg.test_dataloader.dataset = dict(type='ConcatDataset', datasets=[])
    assert tool.config_dataset_meta(cfg) is None  # nothing to take: the inferencer's own


def test_image_demo_on_a_folder_builds_the_model_once(tmp_path, monkeypatch):
    config, checkpoint, _ = save_random_model(tmp_path, 'seg', segmentor_config(),
                                              ('a', 'b', 'c', 'd'))
    folder = write_photo_folder(tmp_path / 'photos')
    reads = record_checkpoint_reads(monkeypatch)
    out_dir = tmp_path / 'drawn'
    written = load_tool('image_demo').main([
        folder, config, checkpoint, '--out-dir',
        str(out_dir), '--device', 'cpu', '--with-slots', '--slot-size', '64', '--k', '2',
        '--blocks', '1.0'
    ])
    assert reads == [checkpoint]
    assert written == [str(out_dir / f'{name}.png') for name in sorted(PHOTOS)]
    for name, shape in PHOTOS.items():
        drawn = mmcv.imread(str(out_dir / f'{name}.png'))
        # The prediction beside one assignment map, each the image's height.
        assert drawn.shape[0] > shape[0] and drawn.shape[1] > 2 * shape[1]
        check_written_maps(str(out_dir / f'{name}_slots'), '', shape, ['1.0'], 2)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([f'{name}.png' for name in PHOTOS] +
                                                               [f'{name}_slots' for name in PHOTOS])


def test_tool_on_a_segmentor_uses_its_preprocessor(tmp_path):
    config, checkpoint, model = save_random_model(tmp_path, 'seg', segmentor_config(),
                                                  ('a', 'b', 'c', 'd'))
    image = photo_rgb('astronaut', (101, 77))
    loaded = init_model(config, checkpoint)
    assert type(loaded).__name__ == 'EncoderDecoder'
    maps = visualize_image_slots(loaded, image[..., ::-1], size=64, k=2)
    # The segmentor's preprocessor (BGR->RGB, ImageNet statistics) gives the same weights as
    # normalising by hand.
    expected = extract_slot_weights(
        find_glnet(model).eval(), normalized_batch(mmcv.imresize(image, (64, 96))), ['0.0'])['0.0']
    got = extract_slot_weights(
        find_glnet(loaded),
        loaded.data_preprocessor(
            dict(inputs=[
                torch.from_numpy(mmcv.imresize(image, (64, 96))[..., ::-1].copy()).permute(2, 0, 1)
            ]), False)['inputs'], ['0.0'])['0.0']
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert [m.assignment.shape for m in maps] == [(101, 77, 3)] * 3
    assert all(len(set(m.slots)) == 2 for m in maps)


# ------------------------------------------------------------------------------------------
# SlotVisualizationHook in a real (tiny) mmengine run
# ------------------------------------------------------------------------------------------
class PhotoDataset(Dataset):
    """Photographs packed as dataset pipelines pack them: uint8 (3, H, W) BGR tensors."""

    def __init__(self):
        self.images = [mmcv.imresize(photo_rgb(name), (96, 64))[..., ::-1] for name in PHOTOS]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = torch.from_numpy(np.ascontiguousarray(self.images[index])).permute(2, 0, 1)
        return dict(inputs=image, data_samples=index % 2)


class TinyClassifier(BaseModel):

    def __init__(self):
        super().__init__(data_preprocessor=dict(type='ImgDataPreprocessor', **MEAN_STD))
        self.backbone = GLNet(arch=TINY_ARCH, out_indices=(3, ))
        self.head = nn.Linear(128, 2)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        logits = self.head(self.backbone(inputs)[0].mean(dim=(2, 3)))
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, torch.as_tensor(data_samples)))
        return logits


class CountMetric(BaseMetric):

    def process(self, data_batch, data_samples):
        self.results.append(len(data_samples))

    def compute_metrics(self, results):
        return dict(count=sum(results))


def test_hook_writes_slot_maps_through_the_visualizer(tmp_path):
    photo = str(tmp_path / 'chelsea.png')
    mmcv.imwrite(photo_rgb('chelsea', (123, 157))[..., ::-1], photo)
    loader = dict(batch_size=2, collate_fn=pseudo_collate)
    runner = Runner(
        model=TinyClassifier(),
        work_dir=str(tmp_path / 'work'),
        train_dataloader=DataLoader(PhotoDataset(), shuffle=False, **loader),
        val_dataloader=DataLoader(PhotoDataset(), shuffle=False, **loader),
        val_evaluator=Evaluator([CountMetric()]),
        train_cfg=dict(by_epoch=True, max_epochs=2, val_interval=1),
        val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(checkpoint=None),
        custom_hooks=[
            dict(type='mmglnet.SlotVisualizationHook', num_images=2, k=2),
            dict(
                type='mmglnet.SlotVisualizationHook',
                image_paths=[photo],
                size=64,
                k=3,
                blocks=['1.0'],
                name='file',
                interval=2),
        ],
        visualizer=dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')]))
    runner.train()

    written = sorted(glob.glob(str(tmp_path / 'work' / '*' / 'vis_data' / 'vis_image' / '*.png')))
    names = sorted(osp.basename(path) for path in written)
    iters_per_epoch = 2  # 3 images, batch 2
    # Two evaluations for the dataset images, the second only (interval 2) for the file.
    assert names == sorted([f'slots_{i}_{e * iters_per_epoch}.png' for i in (0, 1)
                            for e in (1, 2)] + [f'file_0_{2 * iters_per_epoch}.png'])
    rows = {
        name: mmcv.imread(path)
        for name, path in zip((osp.basename(p) for p in written), written)
    }
    # Three GLMix blocks (three rows of 256-pixel tiles) for the default blocks, one row for
    # '1.0'; tiles side by side: image, assignment and k heat maps.
    slots = rows['slots_0_2.png']
    assert slots.shape[0] > 3 * 256 and slots.shape[1] > 4 * 256
    single = rows[f'file_0_{2 * iters_per_epoch}.png']
    assert 256 < single.shape[0] < 2 * 256 and single.shape[1] > 5 * 256
    assert not np.array_equal(rows['slots_0_2.png'], rows['slots_1_2.png'])
    assert all(not m._forward_pre_hooks for m in runner.model.modules())
