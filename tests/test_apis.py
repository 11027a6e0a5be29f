"""mmglnet.apis: models from config files, Configs, presets and arch dicts; loading weights."""
import logging
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger

from mmglnet.apis import build_model, init_model
from mmglnet.checkpoint import CheckpointMismatchError
from mmglnet.models import GLNet

from conftest import REPO_ROOT, TINY_ARCH, load_cases, parity_path

UPERNET = f'{REPO_ROOT}/configs/demo/upernet_glnet-tiny_shapes-ade-128x128.py'
CLASSIFIER = f'{REPO_ROOT}/configs/classification/glnet4g_in1k.py'


def test_import_mmglnet_only_registers_and_secures_loading():
    """The package import registers GLNet and makes loading safe; nothing else is imported."""
    code = ('import sys, torch, mmglnet\n'
            'from mmengine.registry import MODELS\n'
            'assert MODELS.get("GLNet") is mmglnet.GLNet\n'
            'print(sorted(m for m in sys.modules if m.startswith(("mmglnet", "mmdet", "mmseg", '
            '"mmpretrain"))))\n')
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True,
                            text=True,
                            cwd=REPO_ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    modules = eval(result.stdout.strip().splitlines()[-1])
    for unwanted in ('mmglnet.apis', 'mmglnet.engine', 'mmglnet.visualization', 'mmglnet.utils',
                     'mmglnet.analysis', 'mmglnet.deployment', 'mmdet', 'mmseg', 'mmpretrain'):
        assert unwanted not in modules, modules
    assert 'mmglnet.checkpoint.safe_load' in modules


def test_preset_and_arch_dict_build_the_bare_backbone():
    backbone = build_model('stl')
    assert isinstance(backbone, GLNet) and backbone.training
    assert backbone.arch_name == 'stl'
    # Raw stage outputs, as the official model has them: no output norms.
    assert not any(key.startswith('norm') for key in backbone.state_dict())
    last = build_model(dict(TINY_ARCH), cfg_options={'model.out_indices': (3, )})
    assert last.out_indices == (3, ) and list(last.embed_dims) == TINY_ARCH['embed_dim']
    with pytest.raises(FileNotFoundError, match=r"'4g'.*'stl'"):
        build_model('5g')


def test_config_file_and_config_object_build_the_same_model():
    cfg = Config.fromfile(UPERNET)
    torch.manual_seed(0)
    from_file = build_model(UPERNET, cfg_options={'model.decode_head.channels': 16})
    torch.manual_seed(0)
    from_object = build_model(cfg, cfg_options={'model.decode_head.channels': 16})
    assert type(from_file).__name__ == 'EncoderDecoder' and from_file.training
    assert from_file.decode_head.channels == 16
    assert cfg.model.decode_head.channels != 16  # the given Config is not changed
    for (name, a), (_, b) in zip(from_file.state_dict().items(), from_object.state_dict().items()):
        assert torch.equal(a, b), name


def test_top_level_data_preprocessor_completes_the_model_as_the_runner_does():
    """mmpretrain's configs give the preprocessor at the top level; Runner.from_cfg moves it
    into the model unless the model has its own."""
    cfg = Config.fromfile(CLASSIFIER)
    cfg.data_preprocessor = cfg.model.pop('data_preprocessor')
    cfg.data_preprocessor.mean = [1., 2., 3.]
    options = {'model.backbone.arch': dict(TINY_ARCH, _delete_=True), 'model.head.in_channels': 128}
    preprocessor = build_model(cfg, options).data_preprocessor
    assert type(preprocessor).__name__ == 'ClsDataPreprocessor' and preprocessor.to_rgb
    torch.testing.assert_close(preprocessor.mean, torch.tensor([1., 2., 3.]).view(-1, 1, 1))

    own = dict(type='ClsDataPreprocessor', mean=[4., 5., 6.], std=[1., 1., 1.])
    preprocessor = build_model(cfg, dict(options, **{'model.data_preprocessor': own}))
    torch.testing.assert_close(preprocessor.data_preprocessor.mean,
                               torch.tensor([4., 5., 6.]).view(-1, 1, 1))


def test_init_model_loads_an_official_release_file():
    case = load_cases()['4g_like']
    expected = torch.load(parity_path('4g_like.expected.pth'), weights_only=True)
    model = init_model(case['official_kwargs'], parity_path('4g_like.pth'))
    assert not model.training
    with torch.no_grad():
        outputs = model(expected['input'])
    for output, reference in zip(outputs, expected['eval_stage_outputs']):
        assert (output - reference).abs().max() <= 1e-4 * reference.abs().max()


def test_init_model_loads_a_whole_model_and_refuses_another(tmp_path):
    torch.manual_seed(1)
    trained = build_model(UPERNET)
    path = str(tmp_path / 'segmentor.pth')
    torch.save(dict(state_dict=trained.state_dict(), meta=dict()), path)
    loaded = init_model(UPERNET, path)
    assert not loaded.training
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    # Another model's checkpoint (a decode head of another width) is refused, naming what
    # differs; with allow_partial the matching weights load.
    other = build_model(UPERNET, {'model.decode_head.channels': 16}).state_dict()
    other_path = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict=other), other_path)
    with pytest.raises(CheckpointMismatchError, match='decode_head') as error:
        init_model(UPERNET, other_path)
    assert other_path in str(error.value)
    partial = init_model(UPERNET, other_path, allow_partial=True).state_dict()
    backbone_keys = [key for key in partial if key.startswith('backbone.')]
    assert backbone_keys and all(torch.equal(partial[k], other[k]) for k in backbone_keys)


def test_official_file_into_a_whole_model_loads_the_backbone_and_warns(tmp_path):
    case = load_cases()['4g_like']
    cfg = Config.fromfile(UPERNET)
    cfg.model.backbone.arch = case['official_kwargs']
    logger = MMLogger.get_current_instance()
    messages = []
    handler = _ListHandler(messages)
    logger.addHandler(handler)
    try:
        model = init_model(cfg, parity_path('4g_like.pth'))
    finally:
        logger.removeHandler(handler)
    reference = init_model(case['official_kwargs'], parity_path('4g_like.pth'))
    for key, value in reference.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    assert any('initialised the backbone (backbone) only' in m for m in messages), messages


class _ListHandler(logging.Handler):

    def __init__(self, messages):
        super().__init__()
        self.messages = messages

    def emit(self, record):
        self.messages.append(record.getMessage())
