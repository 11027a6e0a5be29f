"""tools/model_converters/publish_model.py: a trained checkpoint reduced to its weights and meta,
named after its hash, tested by tools/test.py as training validated it."""
import hashlib
import json
import os.path as osp
import re
import signal

import pytest
import torch
from test_atomic_outputs import KILL_AT_FIRST_FSYNC, PREVIOUS, hidden_partials

from conftest import load_script, parity_path
from tool_runs import UPERNET, make_tiny_data, run_tool, write_config

TOOL = 'tools/model_converters/publish_model.py'


def load_publish_tool():
    return load_script(TOOL, 'publish_model')


def _load(path):
    return torch.load(str(path), map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A tiny UperNet trained 3 iterations by tools/train.py, with mmengine's EMAHook (the
    schedule's last iteration has a learning rate of 0: with 2, the average would equal the
    weights)."""
    root = tmp_path_factory.mktemp('publish')
    roots = make_tiny_data(str(root / 'data'))
    config = write_config(
        UPERNET,
        roots['ade'],
        str(root / 'cfg.py'),
        max_iters=3,
        **{'custom_hooks': [dict(type='EMAHook', momentum=0.5)]})
    run_tool(['tools/train.py', config, '--work-dir', str(root / 'work')])
    return dict(root=root, config=config, checkpoint=root / 'work' / 'iter_3.pth')


def test_published_checkpoint_keeps_weights_and_meta_and_tests_alike(trained, tmp_path):
    source = torch.load(str(trained['checkpoint']), map_location='cpu', weights_only=False)
    assert {'optimizer', 'message_hub', 'param_schedulers', 'ema_state_dict'} <= set(source)
    result = run_tool([TOOL, str(trained['checkpoint']), str(tmp_path / 'upernet_tiny.pth')])
    [published] = tmp_path.glob('upernet_tiny-*.pth')
    digest = hashlib.sha256(published.read_bytes()).hexdigest()
    assert published.name == f'upernet_tiny-{digest[:8]}.pth'
    assert f'sha256:   {digest}' in result.stdout and f'written:  {published}' in result.stdout
    assert 'removed:  ema_state_dict' in result.stdout and 'removed:  optimizer' in result.stdout

    checkpoint = _load(published)  # plain weights-only loading, no allow-list needed
    assert list(checkpoint) == ['meta', 'state_dict']
    assert checkpoint['meta'] == source['meta']
    assert checkpoint['state_dict'].keys() == source['state_dict'].keys()
    for key, value in source['state_dict'].items():
        assert torch.equal(checkpoint['state_dict'][key], value), key
    # state_dict holds the EMA weights (the hook swapped them in), not the source model's.
    swapped = [k for k in source['ema_state_dict'] if k.startswith('module.')]
    assert any(not torch.equal(source['ema_state_dict'][k], source['state_dict'][k[7:]])
               for k in swapped)
    assert osp.getsize(published) < 0.5 * osp.getsize(trained['checkpoint'])

    # Published again: the same bytes, the same name, written over the same file.
    run_tool([TOOL, str(trained['checkpoint']), str(tmp_path / 'upernet_tiny.pth')])
    assert [p.name for p in tmp_path.glob('upernet_tiny-*.pth')] == [published.name]

    # tools/test.py takes it, and measures what training's last validation measured (the EMA
    # weights: mmengine's EMAHook swaps them in to validate).
    work_dir = tmp_path / 'test'
    run_tool(['tools/test.py', trained['config'], str(published), '--work-dir', str(work_dir)])
    [record] = work_dir.glob('*/*.json')
    tested = json.loads(record.read_text())
    [scalars] = (trained['root'] / 'work').glob('*/vis_data/scalars.json')
    validated = [json.loads(line) for line in scalars.read_text().splitlines()][-1]
    assert {
        k: tested[k]
        for k in ('aAcc', 'mIoU', 'mAcc')
    } == {
        k: validated[k]
        for k in ('aAcc', 'mIoU', 'mAcc')
    }


def test_publishing_killed_while_writing_leaves_no_cut_file(trained, tmp_path):
    result = run_tool([TOOL, str(trained['checkpoint']), str(tmp_path / 'model.pth')])
    final = tmp_path / re.search(r'written:  \S+/(model-[0-9a-f]{8}\.pth)', result.stdout)[1]
    final.write_bytes(PREVIOUS)
    killed = run_tool(
        ['-c', KILL_AT_FIRST_FSYNC, TOOL,
         str(trained['checkpoint']),
         str(tmp_path / 'model.pth')],
        check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert final.read_bytes() == PREVIOUS
    [partial] = hidden_partials(tmp_path)
    assert partial.startswith(f'.{final.name}.')


def test_publish_refuses_what_it_cannot_publish(trained, tmp_path, capsys):
    tool = load_publish_tool()
    checkpoint = str(trained['checkpoint'])
    (tmp_path / 'cfg_as_folder').write_text('a file where the output folder would be')
    cases = [
        ([str(tmp_path / 'missing.pth'), str(tmp_path / 'out.pth')], 'does not exist'),
        ([checkpoint, str(tmp_path) + '/'], 'is a folder: name the file'),
        ([checkpoint, str(tmp_path / 'cfg_as_folder' / 'out.pth')], 'is a file, not a folder'),
        ([checkpoint, str(tmp_path / 'out.pth'), '--save-keys', 'meta'], 'needs its state_dict'),
        ([checkpoint, str(tmp_path / 'out.pth'), '--save-keys', 'state_dict',
          'ema'], "has no ['ema']; its entries are ['ema_state_dict', 'message_hub', 'meta', "
         "'optimizer', 'param_schedulers', 'state_dict']"),
        ([parity_path('stl_like.pth'), str(tmp_path / 'out.pth')], 'official GLNet release file'),
    ]
    for argv, needle in cases:
        with pytest.raises(tool.PublishError, match=re.escape(needle)):
            tool.main(argv)
    bare = tmp_path / 'weights.pth'
    torch.save({'backbone.x': torch.zeros(1)}, bare)
    with pytest.raises(tool.PublishError, match=r"holds no state_dict \(it holds \['backbone.x'\]"):
        tool.main([str(bare), str(tmp_path / 'out.pth')])
    assert not list(tmp_path.glob('out*'))  # nothing written for any of them

    # Without meta (a checkpoint made by hand), by default: the weights alone.
    torch.save({'state_dict': {'backbone.x': torch.ones(2)}, 'optimizer': {}}, bare)
    published = tool.main([str(bare), str(tmp_path / 'lean.pth')])
    assert list(_load(published)) == ['state_dict']
    capsys.readouterr()

    # A file holding another object: refused by the weights-only loader, from the command line
    # in one line.
    foreign = tmp_path / 'foreign.pth'
    torch.save({'state_dict': {}, 'meta': {'object': signal.Signals.SIGINT}}, foreign)
    result = run_tool([TOOL, str(foreign), str(tmp_path / 'out.pth')], check=False)
    assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr
    assert result.stderr.startswith(f'{TOOL}: error: ') and 'signal' in result.stderr
    assert not list(tmp_path.glob('out*'))

    # The same file trusted on purpose: read, but not published with its object, which the
    # users of the published file could not load weights-only.
    from mmglnet.checkpoint import trust_checkpoint
    trust_checkpoint(str(foreign))
    with pytest.raises(tool.PublishError, match='would hold objects that weights-only loading'):
        tool.main([str(foreign), str(tmp_path / 'out.pth')])
    assert not list(tmp_path.glob('out*')) and not list(tmp_path.glob('.out*'))
    assert list(
        _load(tool.main([str(foreign),
                         str(tmp_path / 'w.pth'), '--save-keys', 'state_dict']))) == ['state_dict']
