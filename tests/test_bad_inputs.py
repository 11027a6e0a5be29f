"""Bad input files stop the tools with messages that name the file and say what to do."""
import copy
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
from test_visualization import (detector_config, load_tool, record_checkpoint_reads,
                                save_random_model, segmentor_config)

from mmglnet.checkpoint import CheckpointMismatchError
from mmglnet.utils import (ConfigFileError, ImageFileError, image_stems, list_images, load_config,
                           read_image)

from tool_runs import REPO_ROOT


def test_config_syntax_error_names_file_and_line(tmp_path):
    config = tmp_path / 'broken.py'
    config.write_text("model = dict(type='EncoderDecoder')\nx = dict(a=1,, b=2)\n")
    with pytest.raises(ConfigFileError) as error:
        load_config(str(config))
    message = str(error.value)
    assert f'{config}, line 2' in message and 'x = dict(a=1,, b=2)' in message
    assert '<unknown>' not in message


def test_config_syntax_error_in_base_names_the_base(tmp_path):
    (tmp_path / 'base.py').write_text('a = 1\nb = [1, 2\n')
    child = tmp_path / 'child.py'
    child.write_text("_base_ = './base.py'\nc = 3\n")
    with pytest.raises(ConfigFileError) as error:
        load_config(str(child))
    message = str(error.value)
    assert str(tmp_path / 'base.py') in message and f'a _base_ of {child}' in message
    assert 'line 2' in message


def test_train_tool_reports_config_syntax_error(tmp_path):
    config = tmp_path / 'broken.py'
    config.write_text("default_scope = 'mmseg'\nmodel = dict(type='EncoderDecoder'\n")
    result = subprocess.run(
        [sys.executable, 'tools/train.py', str(config)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f'{config}, line 2' in result.stderr and 'Traceback' not in result.stderr


def test_undecodable_image_is_not_reported_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        read_image(str(tmp_path / 'absent.jpg'))
    for name, content in [('empty.jpg', b''), ('text.png', b'not an image at all'),
                          ('cut.jpg', b'\xff\xd8\xff\xe0\x00\x10JFIF')]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ImageFileError) as error:
            read_image(str(path))
        assert not isinstance(error.value, FileNotFoundError)
        message = str(error.value)
        assert str(path) in message and 'cannot be decoded' in message
        assert f'({len(content)} bytes)' in message


@pytest.mark.parametrize('task', ['segmentation', 'detection'])
def test_image_demo_on_a_one_pixel_image(tmp_path, task):
    cfg_dict = segmentor_config() if task == 'segmentation' else detector_config()
    config, checkpoint, _ = save_random_model(tmp_path, task, cfg_dict, ('a', 'b', 'c', 'd'))
    image = str(tmp_path / 'pixel.png')
    mmcv.imwrite(np.full((1, 1, 3), 200, np.uint8), image)
    out_file = str(tmp_path / 'result.png')
    load_tool('image_demo').main([
        image, config, checkpoint, '--out-file', out_file, '--device', 'cpu', '--with-slots',
        '--slot-size', '64', '--score-thr', '0'
    ])
    assert mmcv.imread(out_file) is not None


def test_image_demo_refuses_a_checkpoint_of_another_task(tmp_path):
    seg_config, _, _ = save_random_model(tmp_path, 'seg', segmentor_config(), ('a', 'b'))
    _, det_checkpoint, _ = save_random_model(tmp_path, 'det', detector_config(), ('a', 'b'))
    image = str(tmp_path / 'image.png')
    mmcv.imwrite(np.zeros((32, 32, 3), np.uint8), image)
    tool = load_tool('image_demo')
    with pytest.raises(CheckpointMismatchError) as error:
        tool.main([
            image, seg_config, det_checkpoint, '--device', 'cpu', '--out-file',
            str(tmp_path / 'out.png')
        ])
    message = str(error.value)
    assert det_checkpoint in message and 'decode_head' in message and seg_config in message

    # A checkpoint written by a training run records its config: its codebase is named.
    written = torch.load(det_checkpoint, weights_only=False)
    written['meta']['cfg'] = "default_scope = 'mmdet'\nmodel = dict(type='RetinaNet')\n"
    torch.save(written, det_checkpoint)
    with pytest.raises(CheckpointMismatchError, match=r'is a detection \(mmdet\) checkpoint'):
        tool.main([
            image, seg_config, det_checkpoint, '--device', 'cpu', '--out-file',
            str(tmp_path / 'out.png')
        ])

    # From the command line: a message, no traceback.
    result = subprocess.run([
        sys.executable, 'tools/image_demo.py', image, seg_config, det_checkpoint, '--device', 'cpu',
        '--out-file',
        str(tmp_path / 'out.png')
    ],
                            cwd=REPO_ROOT,
                            capture_output=True,
                            text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert 'is a detection (mmdet) checkpoint' in result.stderr
    assert 'Traceback' not in result.stderr


def test_image_demo_reads_the_checkpoint_once_and_refuses_weights_that_do_not_fit(
        tmp_path, monkeypatch):
    cfg_dict = segmentor_config()
    config, checkpoint, _ = save_random_model(tmp_path, 'seg', cfg_dict, ('a', 'b', 'c', 'd'))
    seven_classes = copy.deepcopy(cfg_dict)
    seven_classes['model']['decode_head']['num_classes'] = 7
    _, other_head, _ = save_random_model(tmp_path, 'seg7', seven_classes, tuple('abcdefg'))
    image = str(tmp_path / 'image.png')
    mmcv.imwrite(np.zeros((32, 32, 3), np.uint8), image)
    out_file = tmp_path / 'out.png'
    tool = load_tool('image_demo')

    reads = record_checkpoint_reads(monkeypatch)
    tool.main([image, config, checkpoint, '--device', 'cpu', '--out-file', str(out_file)])
    assert reads == [checkpoint] and mmcv.imread(str(out_file)) is not None

    # Every part has weights, but the head's classifier has another shape: refused before the
    # image is run, naming the weights and the way to draw anyway.
    out_file.unlink()
    with pytest.raises(CheckpointMismatchError) as error:
        tool.main([image, config, other_head, '--device', 'cpu', '--out-file', str(out_file)])
    message = str(error.value)
    assert other_head in message and 'decode_head.conv_seg.weight' in message
    assert '--allow-partial-checkpoint' in message and not out_file.exists()
    tool.main([
        image, config, other_head, '--device', 'cpu', '--out-file',
        str(out_file), '--allow-partial-checkpoint'
    ])
    assert mmcv.imread(str(out_file)) is not None


def test_a_folder_gives_its_images_by_name_and_each_output_a_name_of_its_own(tmp_path):
    for name in ['b.png', 'a.JPG', 'a.png', 'c.webp', 'notes.txt']:
        (tmp_path / name).write_bytes(b'')
    (tmp_path / 'sub.png').mkdir()  # a folder, whatever its name
    images = list_images(str(tmp_path))
    assert images == [str(tmp_path / name) for name in ['a.JPG', 'a.png', 'b.png', 'c.webp']]
    assert list_images(images[0]) == [images[0]]
    # A shared stem ('a') takes the whole name.
    assert image_stems(images) == ['a.JPG', 'a.png', 'b', 'c']
    # Then 'x/a.JPG.png' would be 'a.JPG' twice: every image keeps its whole name.
    assert image_stems(['x/a.JPG', 'x/a.JPG.png', 'x/a.png']) == ['a.JPG', 'a.JPG.png', 'a.png']
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'notes.txt').write_text('x')
    with pytest.raises(ImageFileError, match=r"holds no image file .*it holds notes\.txt"):
        list_images(str(empty))
    with pytest.raises(FileNotFoundError, match='folder of images'):
        list_images(str(tmp_path / 'absent'))


def test_image_tools_refuse_to_write_over_the_images(tmp_path, capsys):
    seg_config, checkpoint, _ = save_random_model(tmp_path, 'seg', segmentor_config(), ('a', 'b'))
    folder = tmp_path / 'photos'
    folder.mkdir()
    image = str(folder / 'image.png')
    mmcv.imwrite(np.full((32, 32, 3), 7, np.uint8), image)
    before = (folder / 'image.png').read_bytes()
    image_demo, visualize_slots = load_tool('image_demo'), load_tool('visualize_slots')
    refused = [
        (image_demo, [image, seg_config, checkpoint, '--out-file', image], 'would replace'),
        (image_demo, [image, seg_config, checkpoint, '--out-dir',
                      str(folder)], 'would replace'),
        (image_demo, [str(folder), seg_config, checkpoint, '--out-dir',
                      str(folder)], 'is the folder of the images'),
        (image_demo, [str(folder), seg_config, checkpoint, '--out-file',
                      str(tmp_path / 'x.png')], 'give --out-dir'),
        (visualize_slots, [str(folder), 'stl', '--out-dir',
                           str(folder)], 'is the folder of the images'),
    ]
    for tool, argv, message in refused:
        with pytest.raises(SystemExit) as exited:  # argparse's usage error: exit status 2
            tool.main([*argv, '--device', 'cpu'])
        stderr = capsys.readouterr().err
        assert exited.value.code == 2 and message in stderr, (argv, stderr)
    assert (folder / 'image.png').read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ['image.png']

    # One image of a folder that does not decode: refused, naming it, before the model is built.
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0\x00\x10JFIF')
    for tool, argv in [(image_demo, [seg_config, checkpoint, '--out-dir',
                                     str(tmp_path / 'out')]),
                       (visualize_slots, ['stl', '--out-dir',
                                          str(tmp_path / 'out')])]:
        with pytest.raises(ImageFileError, match='broken.jpg'):
            tool.main([str(folder), *argv, '--device', 'cpu'])
    assert not (tmp_path / 'out').exists()


def test_visualize_slots_reports_a_bad_image_or_config_without_a_traceback(tmp_path):
    image = str(tmp_path / 'cut.jpg')
    with open(image, 'wb') as f:
        f.write(b'\xff\xd8\xff\xe0\x00\x10JFIF')
    config = tmp_path / 'broken.py'
    config.write_text("model = dict(type='mmglnet.GLNet'\n")
    good_image = str(tmp_path / 'image.png')
    mmcv.imwrite(np.zeros((32, 32, 3), np.uint8), good_image)
    for argv, message in [([image, 'stl'], 'cannot be decoded'),
                          ([good_image, str(config)], f'{config}, line 1')]:
        result = subprocess.run(
            [sys.executable, 'tools/visualize_slots.py', *argv, '--out-dir',
             str(tmp_path / 'out')],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120)
        assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
        assert 'Traceback' not in result.stderr
    assert not (tmp_path / 'out').exists()


def test_a_device_the_machine_lacks_is_refused_before_any_work(monkeypatch, tmp_path, capsys):
    import torch

    from _support.runtime import check_device
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert check_device('cpu') == 'cpu'
    with pytest.raises(ValueError, match=r"'gpu' is not a device name torch knows. Give cpu"):
        check_device('gpu')
    with pytest.raises(ValueError, match='--device cuda: this machine has no CUDA device.*cpu'):
        check_device('cuda')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    assert check_device('cuda:1') == 'cuda:1'
    with pytest.raises(ValueError, match='2 CUDA device.*cuda:0 to cuda:1'):
        check_device('cuda:2')

    # The image tools, as a usage error before any model is built.
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    image = str(tmp_path / 'image.png')
    mmcv.imwrite(np.zeros((16, 16, 3), np.uint8), image)
    for tool, argv in [('image_demo', [image, 'config.py', 'model.pth']),
                       ('visualize_slots', [image, 'stl'])]:
        with pytest.raises(SystemExit) as exited:
            load_tool(tool).main([*argv, '--device', 'cuda:0'])
        assert exited.value.code == 2
        assert '--device cuda:0: this machine has no CUDA device' in capsys.readouterr().err


def test_a_glnet_setting_the_model_cannot_take_is_one_line_from_the_tools(tmp_path):
    from tool_runs import UPERNET, make_tiny_data, write_config
    roots = make_tiny_data(str(tmp_path / 'data'))
    config = write_config(UPERNET, roots['ade'], str(tmp_path / 'seg.py'))
    checkpoint = str(tmp_path / 'any.pth')
    torch.save({'state_dict': {}}, checkpoint)
    for tool, extra, setting, message in [
        ('tools/train.py', [], 'model.backbone.arch=5g', "Unknown GLNet arch '5g'; choose one of"),
        ('tools/test.py', [checkpoint], 'model.backbone.drop_path_rate=1.5',
         'drop_path_rate=1.5 must be in [0, 1)'),
    ]:
        result = subprocess.run([
            sys.executable, tool, config, *extra, '--work-dir',
            str(tmp_path / 'work'), '--cfg-options', setting
        ],
                                cwd=REPO_ROOT,
                                capture_output=True,
                                text=True,
                                timeout=300)
        assert result.returncode == 2, result.stderr[-3000:]
        assert f'{tool}: error: {config}: {message}' in result.stderr
        assert 'Traceback' not in result.stderr


def test_test_py_refuses_an_out_it_could_not_write(tmp_path, capsys, monkeypatch):
    """``tools/test.py --out``: a place the predictions cannot go is refused before testing."""
    tool = load_tool('test')
    folder = tmp_path / 'results.pkl'  # a folder, whatever its name says
    folder.mkdir()
    a_file = tmp_path / 'a_file'
    a_file.write_text('not a folder')
    cases = [
        (str(folder), 'mmdet', 'is a folder: name the file'),
        (str(a_file), 'mmseg', 'is a file: mmseg writes its label maps into a folder'),
        (str(a_file / 'results.pkl'), 'mmdet', 'is a file, not a folder'),
        (str(tmp_path / 'maps'), 'mmpretrain', 'must end with .pkl'),
    ]
    for out, scope, needle in cases:
        with pytest.raises(SystemExit) as stop:
            tool.check_out_path(out, scope)
        assert stop.value.code == 2
        message = capsys.readouterr().err
        assert needle in message and repr(out) in message, message

    writable = {str(tmp_path): False}  # as a user who may not write there (tests run as root)
    monkeypatch.setattr(tool.os, 'access', lambda path, mode: writable.get(path, True))
    with pytest.raises(SystemExit):
        tool.check_out_path(str(tmp_path / 'new' / 'deeper' / 'results.pkl'), 'mmdet')
    assert f'no permission to write in {str(tmp_path)!r}' in capsys.readouterr().err
    writable[str(tmp_path)] = True
    tool.check_out_path(str(tmp_path / 'new' / 'deeper' / 'results.pkl'), 'mmdet')
    tool.check_out_path(str(tmp_path), 'mmseg')  # an existing folder for label maps
    assert not (tmp_path / 'new').exists()  # checking makes nothing


@pytest.mark.parametrize('tool_name, dataloader', [('test', 'test_dataloader'),
                                                   ('train', 'val_dataloader')])
def test_tools_warn_where_a_glnet_detector_is_evaluated_in_batches(tmp_path, monkeypatch, capsys,
                                                                   tool_name, dataloader):
    """mmdet pads a batch to its largest image; GLNet's slots pool over the padding. test.py
    warns of its test batches, train.py of its validation batches (not of its training ones,
    batched in every case here), as they read the config."""
    from tool_runs import MASK_RCNN, UPERNET, make_tiny_data, write_config
    roots = make_tiny_data(str(tmp_path / 'data'))
    checkpoint = tmp_path / 'model.pth'
    torch.save(dict(state_dict={}), checkpoint)
    tool = load_tool(tool_name)
    cases = [(MASK_RCNN, 'coco', 2, {}, True), (MASK_RCNN, 'coco', 1, {}, False),
             (UPERNET, 'ade', 2, {}, False),
             (MASK_RCNN, 'coco', 2, {
                 'model.backbone': dict(type='mmdet.ResNet', depth=18)
             }, False)]
    for index, (config, data, batch_size, options, warned) in enumerate(cases):
        path = write_config(
            config,
            roots[data],
            str(tmp_path / f'cfg{index}.py'),
            batch_size=2,
            **{f'{dataloader}.batch_size': batch_size},
            **options)
        argv = [path, str(checkpoint)] if tool_name == 'test' else [path]
        monkeypatch.setattr(sys, 'argv',
                            [f'tools/{tool_name}.py', *argv, '--work-dir',
                             str(tmp_path / 'work')])
        tool.prepare_config(tool.parse_args())
        message = capsys.readouterr().err
        assert (f'tools/{tool_name}.py: warning: {dataloader}.batch_size=2: mmdet pads'
                in message) == warned, (config, options, message)


def test_build_errors_name_the_config_keys():
    """mmengine's registries say which type they lack or which argument a class refused, not
    where the config gave it: the message names every key that matches, or none is made."""
    sys.path.insert(0, f'{REPO_ROOT}/tools')
    try:
        from _support.config_checks import build_error_message
    finally:
        sys.path.remove(f'{REPO_ROOT}/tools')
    cfg = dict(
        model=dict(
            type='EncoderDecoder',
            decode_head=dict(type='mmseg.UPerHeadd', foo=1),
            auxiliary_head=[dict(type='FCNHead'),
                            dict(type='UPerHeadd', foo=2)]),
        train_dataloader=dict(foo=3),  # no type: not an object a registry builds
        default_hooks=dict(checkpoint=dict(type='CheckpointHook')))
    unknown = KeyError('UPerHeadd is not in the mmseg::model registry. Please check.')
    assert build_error_message(cfg, unknown) == (
        "model.decode_head.type='mmseg.UPerHeadd', model.auxiliary_head[1].type='UPerHeadd': "
        'UPerHeadd is not in the mmseg::model registry. Please check. Check the spelling; a '
        "class of another codebase needs its scope (type='mmdet.FPN') and the codebase in "
        'custom_imports.')
    refused = TypeError("BaseDecodeHead.__init__() got an unexpected keyword argument 'foo'")
    message = build_error_message(cfg, refused)
    assert message.startswith('model.decode_head.foo, model.auxiliary_head[1].foo: '), message
    # Not a registry's error, or nothing in the config matches: left to raise as it is.
    assert build_error_message(cfg, KeyError('foo')) is None
    assert build_error_message(cfg, TypeError("got an unexpected keyword argument 'bar'")) is None
    assert build_error_message(cfg, KeyError('Absent is not in the mmseg::model registry')) is None
    assert build_error_message(cfg, ValueError("got an unexpected keyword argument 'foo'")) is None
