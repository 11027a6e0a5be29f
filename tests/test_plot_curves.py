"""tools/analysis_tools/plot_curves.py on synthetic mmengine scalar logs."""
import importlib.util
import json
import os.path as osp

import numpy as np
from PIL import Image

from tool_runs import REPO_ROOT, run_tool

TOOL = 'tools/analysis_tools/plot_curves.py'


def plot_main(argv, capsys):
    """Run the tool's ``main`` in this process; returns (exit code, stdout, stderr)."""
    spec = importlib.util.spec_from_file_location('plot_curves', osp.join(REPO_ROOT, TOOL))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    code = tool.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_scalars(path, iters=(10, 20, 30, 40), val_steps=(20, 40)):
    """A scalars.json as mmengine's LocalVisBackend writes it for an iteration-based run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w') as f:
        for it in iters:
            f.write(
                json.dumps({
                    'lr': 1e-3,
                    'data_time': 0.01,
                    'loss': 3.0 / it,
                    'decode.loss_ce': 2.0 / it,
                    'aux.loss_ce': 1.0 / it,
                    'decode.acc_seg': 50.0 + it,
                    'time': 0.4,
                    'iter': it,
                    'memory': 0,
                    'step': it
                }) + '\n')
            if it in val_steps:
                # -1: COCO's "no object of this size", not drawn.
                f.write(
                    json.dumps({
                        'aAcc': 80.0 + it / 10,
                        'mIoU': 40.0 + it,
                        'mAP_l': -1.0,
                        'data_time': 0.01,
                        'time': 0.1,
                        'step': it
                    }) + '\n')
    return path


def test_default_keys_every_loss_and_metric(tmp_path):
    seg = write_scalars(tmp_path / 'seg' / '20260101_000000' / 'vis_data' / 'scalars.json')
    out = tmp_path / 'curves.png'
    # A run folder works as well as the file.
    result = run_tool(
        [TOOL, str(seg),
         str(tmp_path / 'seg'), '--names', 'a', 'b', '--out',
         str(out)])
    assert 'a: training loss, decode.loss_ce, aux.loss_ce; validation aAcc, mIoU' \
        in result.stdout
    assert 'b: training loss, decode.loss_ce, aux.loss_ce; validation aAcc, mIoU' \
        in result.stdout
    image = np.asarray(Image.open(out).convert('RGB'))
    assert image.shape[0] > 500 and image.shape[1] > 1000  # two rows of two panels
    assert image.std() > 10  # not blank


def test_selected_keys(tmp_path, capsys):
    log = write_scalars(tmp_path / 'scalars.json')
    out = tmp_path / 'acc.png'
    code, stdout, _ = plot_main(
        [str(log), '--keys', 'decode.acc_seg', 'lr', '--metrics', 'mIoU', '--out',
         str(out)], capsys)
    assert code == 0 and 'training decode.acc_seg, lr; validation mIoU' in stdout
    assert out.is_file()
    code, _, stderr = plot_main([str(log), '--metrics', 'bbox_mAP', '--out', str(out)], capsys)
    assert code == 1
    assert "--metrics ['bbox_mAP'] are in no validation record" in stderr
    assert "['aAcc', 'data_time', 'mAP_l', 'mIoU', 'time']" in stderr
    code, _, stderr = plot_main([str(log), '--keys', 'mIoU', '--out', str(out)], capsys)
    assert code == 1 and "--keys ['mIoU'] are in no training record" in stderr


def test_refuses_files_that_are_not_scalars_logs(tmp_path, capsys):
    annotations = tmp_path / 'instances.json'  # a COCO file: JSON, but not a scalars log
    annotations.write_text(json.dumps({'images': [], 'annotations': []}))
    text = tmp_path / 'train.log'
    text.write_text('2026/01/01 00:00:00 - mmengine - INFO - Iter(train) [10/100]\n')
    for path, reason in ((annotations, 'line 1 has no numeric "step"'), (text,
                                                                         'line 1 is not JSON')):
        out = tmp_path / 'x.png'
        code, _, stderr = plot_main([str(path), '--out', str(out)], capsys)
        assert code == 1
        assert f'{path} is not an mmengine scalars log: {reason}' in stderr
        assert not out.exists()
