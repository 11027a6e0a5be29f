"""Files the tools write are replaced whole or not at all: a crash or a kill while one is
written leaves the previous file as it was."""
import os
import os.path as osp
import signal

import mmcv
import numpy as np
import pytest

from mmglnet.utils import atomic_output
from mmglnet.utils.atomic_files import PARTIAL_SUFFIX, remove_partial_files

from conftest import parity_path
from tool_runs import run_tool

# Runs a tool and kills it (SIGKILL) when it first syncs a file to the disk: the moment an
# atomic write has written all its bytes, just before the rename. A tool that writes its output
# in place syncs nothing and runs to its end, over the previous file.
KILL_AT_FIRST_FSYNC = """
import os
import runpy
import signal
import sys


def killed(fd):
    os.kill(os.getpid(), signal.SIGKILL)


os.fsync = killed
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""
PREVIOUS = b'the previous file, which must survive'


def hidden_partials(folder):
    return [name for name in os.listdir(folder) if name.endswith(PARTIAL_SUFFIX)]


def test_atomic_output_replaces_the_file_whole_or_not_at_all(tmp_path):
    path = tmp_path / 'out.bin'
    path.write_bytes(PREVIOUS)
    with pytest.raises(RuntimeError, match='failed half-way'):
        with atomic_output(str(path)) as temporary:
            with open(temporary, 'wb') as f:
                f.write(b'half')
            raise RuntimeError('failed half-way')
    assert path.read_bytes() == PREVIOUS and hidden_partials(tmp_path) == []

    with atomic_output(str(path)) as temporary:
        assert osp.dirname(temporary) == str(tmp_path) and not osp.exists(temporary)
        with open(temporary, 'wb') as f:
            f.write(b'new')
        assert path.read_bytes() == PREVIOUS  # not yet
    assert path.read_bytes() == b'new' and hidden_partials(tmp_path) == []


@pytest.mark.parametrize(
    'tool', ['glnet2mm', 'pytorch2onnx', 'image_demo', 'visualize_slots', 'plot_curves'])
def test_a_tool_killed_while_writing_leaves_the_previous_file(tmp_path, tool):
    from test_visualization import save_random_model, segmentor_config
    image = str(tmp_path / 'image.png')
    mmcv.imwrite(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8), image)
    out = tmp_path / 'out'
    out.mkdir()
    if tool == 'glnet2mm':
        target = out / 'converted.pth'
        args = ['tools/model_converters/glnet2mm.py', parity_path('stl_like.pth'), str(target)]
    elif tool == 'pytorch2onnx':
        target = out / 'glnet.onnx'
        args = [
            'tools/deployment/pytorch2onnx.py', 'stl', '--out',
            str(target), '--shape', '64', '64'
        ]
    elif tool == 'image_demo':
        config, checkpoint, _ = save_random_model(tmp_path, 'seg', segmentor_config(),
                                                  ('a', 'b', 'c', 'd'))
        target = out / 'result.png'
        args = [
            'tools/image_demo.py', image, config, checkpoint, '--out-file',
            str(target), '--device', 'cpu'
        ]
    elif tool == 'plot_curves':
        from test_plot_curves import write_scalars
        scalars = write_scalars(tmp_path / 'run' / 'vis_data' / 'scalars.json')
        target = out / 'curves.png'
        args = ['tools/analysis_tools/plot_curves.py', str(scalars), '--out', str(target)]
    else:
        target = out / 'image_input.png'  # the first file it writes
        args = ['tools/visualize_slots.py', image, 'stl', '--size', '64', '--out-dir', str(out)]
    target.write_bytes(PREVIOUS)

    result = run_tool(['-c', KILL_AT_FIRST_FSYNC, *args], check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert target.read_bytes() == PREVIOUS
    # The new file was complete beside it, hidden, and is cleared as a dead process's.
    [partial] = hidden_partials(out)
    assert partial.startswith(f'.{target.name}.') and osp.getsize(out / partial) > 0
    assert remove_partial_files([str(out)]) == [str(out / partial)]
