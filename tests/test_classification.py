"""ImageNet classification through mmpretrain: configs, the token-labeling head, end to end.

From an official-format file (a parity fixture standing in for a release file) through the
converter to mmpretrain's classifier, ``tools/test.py``, mmpretrain's own ``tools/test.py`` and
its ``ImageClassificationInferencer``; every figure is checked against the official model's
outputs or against the official evaluation transform written out with Pillow and torch.
"""
import importlib.util
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config

from mmglnet.models.classification import token_labeling_logits
from mmglnet.models.glnet import resolve_arch
from mmglnet.registry import MODELS

from conftest import REPO_ROOT, load_cases, parity_path

CASES = load_cases()
CONFIG_DIR = osp.join(REPO_ROOT, 'configs', 'classification')
# Config variant -> (GLNet preset, token labeling), one per official release.
VARIANTS = {
    'stl': ('stl', False),
    'stl-paramslot': ('stl_paramslot', False),
    '4g': ('4g', False),
    '9g': ('9g', False),
    '16g': ('16g', False),
    '4g-tklb': ('4g', True),
    '9g-tklb': ('9g', True),
}
# Official evaluation transform (github.com/rayleizhu/GLMix, timm's ImageNet constants).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE, CROP_PCT = 224, 224 / 256


def config_path(variant):
    return osp.join(CONFIG_DIR, f'glnet{variant}_in1k.py')


def fixture_config(case):
    """The config of the fixture's kind (plain or token labeling), set to the fixture's arch."""
    token_labeling = CASES[case].get('token_labeling', False)
    cfg = Config.fromfile(config_path('4g-tklb' if token_labeling else '4g'))
    cfg.model.backbone.arch = CASES[case]['official_kwargs']
    last = CASES[case]['official_kwargs']['embed_dim'][-1]
    cfg.model.head.update(num_classes=CASES[case]['num_classes'], in_channels=last)
    cfg.model.data_preprocessor.num_classes = CASES[case]['num_classes']
    return cfg


def relative_error(actual, expected):
    return ((actual - expected).abs().max() / expected.abs().max()).item()


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """Parity cases converted with the tool's main() (16g_like with its EMA weights).

    In this process to save time; tests/test_converter.py runs the tool as a subprocess.
    """
    spec = importlib.util.spec_from_file_location(
        'glnet2mm', osp.join(REPO_ROOT, 'tools', 'model_converters', 'glnet2mm.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out_dir = tmp_path_factory.mktemp('cls_converted')
    done = {}

    def _convert(case):
        if case not in done:
            dst = str(out_dir / f'{case}.pth')
            key = ['--key', 'model_ema'] if case == '16g_like' else []
            tool.main([parity_path(f'{case}.pth'), dst] + key)
            done[case] = dst
        return done[case]

    return _convert


# --------------------------------------------------------------------------------------------
# Everywhere (no mmpretrain models needed)
# --------------------------------------------------------------------------------------------
def test_import_mmglnet_does_not_import_mmpretrain_models_or_torchvision():
    code = ('import sys, mmglnet, mmglnet.converters, mmglnet.models.classification; '
            "bad = [m for m in ('mmpretrain.models', 'torchvision') if m in sys.modules]; "
            'assert not bad, bad')
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True,
                            text=True,
                            cwd=REPO_ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr


def test_token_labeling_logits_is_the_official_formula():
    torch.manual_seed(0)
    feats = torch.randn(3, 16, 4, 5)
    fc, aux_fc = nn.Linear(16, 7), nn.Linear(16, 7)
    # Written out token by token: head(mean token) + 0.5 * max_token aux_head(token).
    expected = []
    for sample in feats:
        tokens = [sample[:, i, j] for i in range(4) for j in range(5)]
        mean = sum(tokens) / len(tokens)
        aux = torch.stack([aux_fc(t) for t in tokens]).max(dim=0).values
        expected.append(fc(mean) + 0.5 * aux)
    with torch.no_grad():
        actual = token_labeling_logits(feats, fc, aux_fc)
        assert torch.allclose(actual, torch.stack(expected), atol=1e-6)
        weighted = token_labeling_logits(feats, fc, aux_fc, aux_weight=0.)
        assert torch.allclose(weighted, fc(feats.mean(dim=(2, 3))), atol=1e-6)


def test_token_labeling_logits_refuses_pooled_features():
    with pytest.raises(ValueError, match='neck=None'):
        token_labeling_logits(torch.randn(2, 16), nn.Linear(16, 3), nn.Linear(16, 3))


def test_head_without_mmpretrain_models_says_what_to_install(monkeypatch):
    # As on a machine without torchvision: importing mmpretrain.models fails.
    monkeypatch.setitem(sys.modules, 'mmpretrain.models', None)
    with pytest.raises(ImportError) as error:
        MODELS.build(dict(type='mmglnet.TokenLabelingClsHead', num_classes=10, in_channels=8))
    message = str(error.value)
    assert 'torchvision' in message and 'pip install -e .[cls]' in message
    assert torch.__version__ in message


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_config_is_the_official_evaluation(variant):
    preset, token_labeling = VARIANTS[variant]
    cfg = Config.fromfile(config_path(variant))
    assert cfg.default_scope == 'mmpretrain'
    assert 'mmglnet' in cfg.custom_imports['imports']

    # Data: mmpretrain's ImageNet layout, the official transform, batch 128, top-1/top-5.
    loader = cfg.test_dataloader
    assert loader.batch_size == 128
    assert loader.sampler == dict(type='DefaultSampler', shuffle=False)
    assert (loader.dataset.type, loader.dataset.data_root,
            loader.dataset.split) == ('ImageNet', 'data/imagenet', 'val')
    steps = {step['type']: step for step in loader.dataset.pipeline}
    assert list(steps) == ['LoadImageFromFile', 'ResizeEdge', 'CenterCrop', 'PackInputs']
    assert steps['LoadImageFromFile']['imdecode_backend'] == 'pillow'
    resize = steps['ResizeEdge']
    assert resize['scale'] == int(INPUT_SIZE / CROP_PCT)
    assert (resize['edge'], resize['interpolation'], resize['backend']) == ('short', 'bicubic',
                                                                            'pillow')
    assert steps['CenterCrop']['crop_size'] == INPUT_SIZE
    preprocessor = cfg.model.data_preprocessor
    assert preprocessor.to_rgb is True
    assert preprocessor.mean == pytest.approx([255 * m for m in IMAGENET_MEAN])
    assert preprocessor.std == pytest.approx([255 * s for s in IMAGENET_STD])
    assert cfg.test_evaluator == dict(type='Accuracy', topk=(1, 5))
    assert cfg.val_dataloader == cfg.test_dataloader

    # Model: the preset, the final BatchNorm as output norm, the right head.
    backbone, head = cfg.model.backbone, cfg.model.head
    assert (backbone.type, backbone.arch) == ('mmglnet.GLNet', preset)
    assert tuple(backbone.out_indices) == (3, ) and backbone.out_norm_cfg == dict(type='BN')
    assert head.num_classes == 1000
    assert head.in_channels == resolve_arch(preset)['embed_dim'][-1]
    if token_labeling:
        assert cfg.model.neck is None
        assert (head.type, head.aux_weight) == ('mmglnet.TokenLabelingClsHead', 0.5)
    else:
        assert cfg.model.neck == dict(type='GlobalAveragePooling')
        assert head.type == 'LinearClsHead'


def config_logits(cfg, checkpoint_path, inputs):
    """The config's classifier computed without mmpretrain: GLNet + its neck/head arithmetic.

    ``GlobalAveragePooling`` + ``LinearClsHead`` is the mean over positions then the linear
    layer; ``mmglnet.TokenLabelingClsHead`` is :func:`token_labeling_logits`.
    """
    state = torch.load(checkpoint_path, weights_only=True)['state_dict']
    backbone = MODELS.build(cfg.model.backbone)
    own = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    backbone.load_state_dict(own, strict=True)
    backbone.eval()
    head_keys = {k for k in state if k.startswith('head.')}

    def linear(prefix):
        layer = nn.Linear(cfg.model.head.in_channels, cfg.model.head.num_classes)
        layer.load_state_dict(
            {k[len(prefix):]: state[k]
             for k in head_keys if k.startswith(prefix)}, strict=True)
        return layer

    with torch.no_grad():
        feature = backbone(inputs)[-1]
        if cfg.model.head.type == 'mmglnet.TokenLabelingClsHead':
            assert head_keys == {
                'head.fc.weight', 'head.fc.bias', 'head.aux_fc.weight', 'head.aux_fc.bias'
            }
            return token_labeling_logits(feature, linear('head.fc.'), linear('head.aux_fc.'),
                                         cfg.model.head.aux_weight)
        assert cfg.model.neck.type == 'GlobalAveragePooling'
        assert head_keys == {'head.fc.weight', 'head.fc.bias'}
        return linear('head.fc.')(F.adaptive_avg_pool2d(feature, 1).flatten(1))


@pytest.mark.parametrize('case', sorted(CASES))
def test_config_classifier_with_converted_fixture_gives_official_logits(case, converted):
    reference = torch.load(parity_path(f'{case}.expected.pth'), weights_only=True)
    logits = config_logits(fixture_config(case), converted(case), reference['input'])
    assert relative_error(logits, reference['eval_logits']) <= 1e-4


# --------------------------------------------------------------------------------------------
# The real mmpretrain classifier, tools and inferencer
# --------------------------------------------------------------------------------------------
def build_classifier(cfg):
    from mmglnet.apis import build_model
    return build_model(cfg)


@pytest.mark.parametrize('case', sorted(CASES))
def test_mmpretrain_classifier_from_config_gives_official_logits(case, converted):
    cfg = fixture_config(case)
    model = build_classifier(cfg)
    from mmengine.runner import load_checkpoint
    load_checkpoint(model, converted(case), map_location='cpu', strict=True)
    model.eval()
    reference = torch.load(parity_path(f'{case}.expected.pth'), weights_only=True)
    with torch.no_grad():
        logits = model(reference['input'], mode='tensor')
        predictions = model(reference['input'], mode='predict')
    assert relative_error(logits, reference['eval_logits']) <= 1e-4
    labels = torch.cat([p.pred_label for p in predictions])
    assert torch.equal(labels, reference['eval_logits'].argmax(dim=1))


def test_mmpretrain_token_labeling_head_is_built_with_its_fc_layers():
    from mmpretrain.models.heads import ClsHead
    head = MODELS.build(dict(type='mmglnet.TokenLabelingClsHead', num_classes=5, in_channels=8))
    assert isinstance(head, ClsHead)
    assert {k
            for k, _ in head.named_parameters()
            } == {'fc.weight', 'fc.bias', 'aux_fc.weight', 'aux_fc.bias'}
    feats = (torch.randn(2, 8, 3, 3), )
    with torch.no_grad():
        assert torch.equal(head(feats), token_labeling_logits(feats[0], head.fc, head.aux_fc))
    with pytest.raises(ValueError, match='num_classes'):
        MODELS.build(dict(type='mmglnet.TokenLabelingClsHead', num_classes=0, in_channels=8))


def official_transform(path):
    """The official evaluation transform, written with Pillow and torch alone."""
    import numpy as np
    from PIL import Image
    with open(path, 'rb') as f:
        image = Image.open(f).convert('RGB')
    width, height = image.size
    size = int(INPUT_SIZE / CROP_PCT)
    if width <= height:
        new_size = (size, int(size * height / width))
    else:
        new_size = (int(size * width / height), size)
    image = image.resize(new_size, Image.BICUBIC)
    top = int(round((new_size[1] - INPUT_SIZE) / 2.))
    left = int(round((new_size[0] - INPUT_SIZE) / 2.))
    image = image.crop((left, top, left + INPUT_SIZE, top + INPUT_SIZE))
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (array - mean) / std


# Fixture case -> the classification config it stands in for (the README's path uses glnet4g).
END_TO_END = {'4g_like': '4g', '4g_tklb_like': '4g-tklb'}


def run_python(args, cwd):
    """Run a Python script as a user runs it from the repository root; the combined output."""
    result = subprocess.run(
        [sys.executable] + args, cwd=cwd, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


@pytest.fixture(scope='module', params=sorted(END_TO_END))
def tiny_imagenet(request, tmp_path_factory):
    """A release-file stand-in converted with the README's command, a tiny ImageNet-layout
    folder, its config, and the scores the official computation gives on it.

    Labels are chosen from the official logits (the official transform written with Pillow and
    torch, the official classifier arithmetic): two images right, one whose label is the
    second-best class, one whose label is the worst class -> top-1 50 %, top-5 75 %.
    """
    import numpy as np
    from PIL import Image

    case = request.param
    root = tmp_path_factory.mktemp(f'imagenet_{case}')
    checkpoint = root / 'checkpoints' / f'{case}_in1k_mm.pth'
    checkpoint.parent.mkdir()
    run_python([
        osp.join('tools', 'model_converters', 'glnet2mm.py'),
        parity_path(f'{case}.pth'),
        str(checkpoint)
    ],
               cwd=REPO_ROOT)

    data_root = root / 'imagenet'
    (data_root / 'val').mkdir(parents=True)
    (data_root / 'meta').mkdir()
    rng = np.random.default_rng(0)
    images = []
    for index, (height, width) in enumerate([(300, 260), (260, 400), (256, 256), (480, 320)]):
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        # PNG: lossless, so every decoder (Pillow in the config, OpenCV in the inferencer)
        # sees the same pixels.
        path = data_root / 'val' / f'ILSVRC2012_val_{index + 1:08d}.png'
        Image.fromarray(pixels).save(path)
        images.append(path)

    cfg = fixture_config(case)
    inputs = torch.stack([official_transform(path) for path in images])
    logits = config_logits(cfg, str(checkpoint), inputs)
    ranking = logits.argsort(dim=1, descending=True).tolist()
    labels = [ranking[0][0], ranking[1][0], ranking[2][1], ranking[3][-1]]
    (data_root / 'meta' / 'val.txt').write_text(''.join(f'{path.name} {label}\n'
                                                        for path, label in zip(images, labels)))

    # The released config with the fixture's (small) arch and class count.
    config = root / f'glnet{END_TO_END[case]}_fixture.py'
    arch = CASES[case]['official_kwargs']
    num_classes = CASES[case]['num_classes']
    config.write_text(
        f'_base_ = [{config_path(END_TO_END[case])!r}]\n'
        f'model = dict(backbone=dict(arch=dict(_delete_=True, **{arch!r})),\n'
        f'             head=dict(num_classes={num_classes}, in_channels={arch["embed_dim"][-1]}),\n'
        f'             data_preprocessor=dict(num_classes={num_classes}))\n'
        f'test_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,\n'
        f'                       dataset=dict(data_root={str(data_root)!r}))\n')
    return dict(
        case=case,
        root=root,
        config=str(config),
        checkpoint=str(checkpoint),
        images=images,
        logits=logits)


def test_tools_test_prints_the_official_top1_and_top5(tiny_imagenet):
    output = run_python([
        osp.join('tools', 'test.py'), tiny_imagenet['config'], tiny_imagenet['checkpoint'],
        '--work-dir',
        str(tiny_imagenet['root'] / 'work')
    ],
                        cwd=REPO_ROOT)
    assert 'accuracy/top1: 50.0000' in output, output[-3000:]
    assert 'accuracy/top5: 75.0000' in output, output[-3000:]


def test_tools_test_tta_averages_each_image_with_its_mirror(tiny_imagenet):
    """``--tta`` on a config without TTA settings: the class scores of the image and of its
    mirror, averaged (the official arithmetic on both views, mirrored with torch)."""
    out = tiny_imagenet['root'] / 'tta_predictions.pkl'
    output = run_python([
        osp.join('tools', 'test.py'), tiny_imagenet['config'], tiny_imagenet['checkpoint'],
        '--work-dir',
        str(tiny_imagenet['root'] / 'work_tta'), '--tta', '--out',
        str(out)
    ],
                        cwd=REPO_ROOT)
    assert 'accuracy/top1:' in output, output[-3000:]
    cfg = fixture_config(tiny_imagenet['case'])
    inputs = torch.stack([official_transform(path) for path in tiny_imagenet['images']])
    mirrored = config_logits(cfg, tiny_imagenet['checkpoint'], inputs.flip(-1))
    expected = (tiny_imagenet['logits'].softmax(dim=1) + mirrored.softmax(dim=1)) / 2
    with open(out, 'rb') as f:
        samples = pickle.load(f)
    assert len(samples) == len(expected)
    scores = torch.stack([torch.as_tensor(sample['pred_score']) for sample in samples])
    alone = tiny_imagenet['logits'].softmax(dim=1)
    # Relative: the scores are far apart in size. Measured: 6e-7 off (the two decoders), where
    # the image's own scores are 4-35% off.
    assert torch.allclose(scores, expected, rtol=1e-4, atol=1e-9)
    assert not torch.allclose(alone, expected, rtol=1e-2, atol=1e-9)


def test_mmpretrain_own_test_tool_runs_the_config(tiny_imagenet):
    """The config under mmpretrain's ``tools/test.py`` (shipped in the package's ``.mim``)."""
    import mmpretrain
    tool = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools', 'test.py')
    assert osp.isfile(tool), f'mmpretrain {mmpretrain.__version__} ships no {tool}'
    output = run_python([
        tool, tiny_imagenet['config'], tiny_imagenet['checkpoint'], '--work-dir',
        str(tiny_imagenet['root'] / 'work_mmpretrain')
    ],
                        cwd=REPO_ROOT)
    assert 'accuracy/top1: 50.0000' in output, output[-3000:]
    assert 'accuracy/top5: 75.0000' in output, output[-3000:]


def test_image_classification_inferencer_with_our_config(tiny_imagenet):
    from mmpretrain.apis import ImageClassificationInferencer
    inferencer = ImageClassificationInferencer(
        model=tiny_imagenet['config'], pretrained=tiny_imagenet['checkpoint'], device='cpu')
    results = inferencer([str(path) for path in tiny_imagenet['images']], batch_size=2)
    expected = tiny_imagenet['logits'].softmax(dim=1)
    for result, scores in zip(results, expected):
        assert result['pred_label'] == int(scores.argmax())
        assert torch.allclose(torch.as_tensor(result['pred_scores']), scores, atol=1e-5)
