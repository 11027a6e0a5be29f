"""Atomic checkpoint files and the resume that picks the newest complete checkpoint.

mmengine's own Runner on a toy model (a few seconds): the files AtomicCheckpointHook writes,
what it deletes and when, and which checkpoint a resumed run continues from when
``last_checkpoint`` is empty, stale or names a truncated file; iteration- and epoch-based
loops, ``max_keep_ckpts`` and ``save_best``.
"""
import glob
import os
import os.path as osp
import uuid

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.hooks import CheckpointHook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import mmglnet  # noqa: F401
from mmglnet.engine import (AtomicCheckpointHook, ResumeCheckpointError, atomic_copy_file,
                            atomic_write_text, check_resume_file, checkpoint_layout,
                            checkpoint_problem, find_resume_checkpoint)
from mmglnet.engine.checkpoint_files import partial_path


class ToyDataset(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return dict(inputs=torch.full((2, ), float(index)), labels=torch.tensor([index % 2.]))


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((out - labels)**2).mean())
        return [dict(pred=o) for o in out]


class IncreasingMetric(BaseMetric):
    """A score that improves at every evaluation: every evaluation makes a new best."""

    def __init__(self):
        super().__init__()
        self.evaluations = 0

    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        self.evaluations += 1
        return dict(acc=float(self.evaluations))


def make_runner(work_dir,
                max_iters=None,
                max_epochs=None,
                interval=2,
                hook='atomic',
                resume=False,
                load_from=None,
                **hook_options):
    by_epoch = max_epochs is not None
    loader = dict(
        dataset=ToyDataset(),
        sampler=dict(type='DefaultSampler', shuffle=False),
        batch_size=2,
        num_workers=0,
        collate_fn=dict(type='default_collate'))
    checkpoint = dict(
        type='mmglnet.AtomicCheckpointHook' if hook == 'atomic' else 'CheckpointHook',
        interval=interval,
        by_epoch=by_epoch,
        **hook_options)
    train_cfg = dict(by_epoch=True, max_epochs=max_epochs) if by_epoch else \
        dict(by_epoch=False, max_iters=max_iters)
    val = {}
    if 'save_best' in hook_options:
        train_cfg['val_interval'] = interval
        val = dict(
            val_dataloader=loader, val_cfg=dict(), val_evaluator=Evaluator([IncreasingMetric()]))
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=loader,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=100),
        train_cfg=train_cfg,
        default_hooks=dict(checkpoint=checkpoint, logger=dict(type='LoggerHook', interval=1)),
        resume=resume,
        load_from=load_from,
        experiment_name=f'toy_{uuid.uuid4().hex}',
        **val)


def files(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith('.pth') or n.startswith('.'))


def last_named(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def truncate(path, fraction=0.5):
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * fraction)])


def test_checkpoint_problem(tmp_path):
    path = str(tmp_path / 'ckpt.pth')
    torch.save({'meta': {'iter': 2}, 'state_dict': {'w': torch.randn(256)}}, path)
    assert checkpoint_problem(path) is None
    assert checkpoint_problem(str(tmp_path / 'absent.pth')) == 'does not exist'
    open(tmp_path / 'empty.pth', 'wb').close()
    assert checkpoint_problem(str(tmp_path / 'empty.pth')) == 'is empty (0 bytes)'
    with open(path, 'rb') as f:
        data = bytearray(f.read())
    for cut in (1, len(data) // 3, len(data) - 1):
        with open(tmp_path / 'cut.pth', 'wb') as f:
            f.write(data[:cut])
        assert 'cut short' in checkpoint_problem(str(tmp_path / 'cut.pth'))
    # One flipped bit inside the tensor data: the zip structure is intact, the CRC is not.
    data[data.find(b'data/0') + 100] ^= 1
    with open(tmp_path / 'flipped.pth', 'wb') as f:
        f.write(data)
    assert 'CRC-32' in checkpoint_problem(str(tmp_path / 'flipped.pth'))


def test_atomic_write_text_replaces_whole_file(tmp_path):
    path = str(tmp_path / 'last_checkpoint')
    atomic_write_text(path, 'a' * 100)
    atomic_write_text(path, 'b')
    assert open(path).read() == 'b'
    assert os.listdir(tmp_path) == ['last_checkpoint']


def test_atomic_copy_file_keeps_the_old_file_until_the_copy_is_whole(tmp_path, monkeypatch):
    source, path = tmp_path / 'new.json', tmp_path / 'run.json'
    source.write_text('new' * 1000)
    path.write_text('old')

    def copy_half(src, dst):  # a copy cut short by a full disk or a signal
        with open(dst, 'w') as f:
            f.write(open(src).read()[:100])
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr('shutil.copyfile', copy_half)
    with pytest.raises(OSError, match='No space'):
        atomic_copy_file(str(source), str(path))
    assert path.read_text() == 'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['new.json', 'run.json']
    monkeypatch.undo()
    atomic_copy_file(str(source), str(path))
    assert path.read_text() == 'new' * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ['new.json', 'run.json']


def _write_ckpt(path, step):
    torch.save({'meta': {'iter': step, 'epoch': 0}, 'state_dict': {}}, path)


@pytest.mark.parametrize('record', ['missing', 'empty', 'truncated', 'deleted', 'good'])
def test_find_resume_checkpoint(tmp_path, record):
    for step in (2, 4, 6):
        _write_ckpt(str(tmp_path / f'iter_{step}.pth'), step)
    truncate(str(tmp_path / 'iter_6.pth'))  # the newest file is cut short
    (tmp_path / 'iter_8.pth').write_bytes(b'')  # and an even newer one is empty
    if record == 'empty':
        (tmp_path / 'last_checkpoint').write_text('')
    elif record == 'truncated':
        (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_6.pth'))
    elif record == 'deleted':
        (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_10.pth'))
    elif record == 'good':
        # last_checkpoint wins over newer files when it names a complete one.
        (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    chosen = find_resume_checkpoint(str(tmp_path), templates=('iter_{}.pth', ))
    expected = 'iter_2.pth' if record == 'good' else 'iter_4.pth'
    assert chosen == str(tmp_path / expected)


def test_find_resume_checkpoint_nothing_complete(tmp_path):
    (tmp_path / 'iter_2.pth').write_bytes(b'PK\x03\x04 cut')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    assert find_resume_checkpoint(str(tmp_path)) is None


def test_find_resume_checkpoint_relative_record_from_elsewhere(tmp_path):
    # mmengine records the path relative to where the run started.
    _write_ckpt(str(tmp_path / 'epoch_3.pth'), 3)
    (tmp_path / 'last_checkpoint').write_text('work_dirs/run/epoch_3.pth')
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_3.pth')


def test_explicit_broken_checkpoint_is_named(tmp_path):
    _write_ckpt(str(tmp_path / 'iter_2.pth'), 2)
    _write_ckpt(str(tmp_path / 'iter_4.pth'), 4)
    truncate(str(tmp_path / 'iter_4.pth'))
    with pytest.raises(ResumeCheckpointError) as error:
        check_resume_file(str(tmp_path / 'iter_4.pth'))
    message = str(error.value)
    assert str(tmp_path / 'iter_4.pth') in message and 'cut short' in message
    assert str(tmp_path / 'iter_2.pth') in message  # what to give instead
    check_resume_file(str(tmp_path / 'iter_2.pth'))


def test_iteration_loop_max_keep_one(tmp_path):
    runner = make_runner(tmp_path, max_iters=6, interval=2, max_keep_ckpts=1)
    hooks = [h for h in runner.hooks if isinstance(h, CheckpointHook)]
    assert len(hooks) == 1 and type(hooks[0]) is AtomicCheckpointHook
    runner.train()
    assert files(tmp_path) == ['iter_6.pth']
    assert last_named(tmp_path) == str(tmp_path / 'iter_6.pth')


def test_resume_skips_truncated_last_checkpoint(tmp_path):
    make_runner(tmp_path, max_iters=6, interval=2).train()
    assert files(tmp_path) == ['iter_2.pth', 'iter_4.pth', 'iter_6.pth']
    truncate(str(tmp_path / 'iter_6.pth'))  # e.g. a power loss without fsync
    runner = make_runner(tmp_path, max_iters=8, interval=2, resume=True)
    runner.train()
    # Resumed from iter_4 (the newest complete one): iterations 5-8 trained again.
    assert runner.iter == 8
    final = torch.load(str(tmp_path / 'iter_8.pth'), weights_only=False)
    assert final['meta']['iter'] == 8
    assert final['param_schedulers'][0]['last_step'] == 8
    assert checkpoint_problem(str(tmp_path / 'iter_6.pth')) is None  # rewritten, complete


def test_resume_with_empty_last_checkpoint_epochs(tmp_path):
    make_runner(tmp_path, max_epochs=2, interval=1).train()
    assert files(tmp_path) == ['epoch_1.pth', 'epoch_2.pth']
    (tmp_path / 'last_checkpoint').write_text('')
    runner = make_runner(tmp_path, max_epochs=3, interval=1, resume=True)
    runner.train()
    assert runner.epoch == 3 and runner.iter == 12
    state = torch.load(str(tmp_path / 'epoch_3.pth'), weights_only=False)
    assert state['meta']['epoch'] == 3 and state['meta']['iter'] == 12


def test_resume_explicit_broken_checkpoint_stops(tmp_path):
    make_runner(tmp_path, max_iters=4, interval=2).train()
    truncate(str(tmp_path / 'iter_4.pth'))
    runner = make_runner(tmp_path, max_iters=6, resume=True, load_from=str(tmp_path / 'iter_4.pth'))
    with pytest.raises(ResumeCheckpointError, match='iter_4.pth'):
        runner.train()


def test_resume_with_nothing_complete_starts_over(tmp_path):
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    (tmp_path / 'iter_2.pth').write_bytes(b'')
    runner = make_runner(tmp_path, max_iters=2, interval=2, resume=True)
    runner.train()
    assert runner.iter == 2 and checkpoint_problem(str(tmp_path / 'iter_2.pth')) is None


def test_save_best_keeps_one_best(tmp_path):
    runner = make_runner(tmp_path, max_iters=6, interval=2, max_keep_ckpts=2, save_best='acc')
    hook = next(h for h in runner.hooks if isinstance(h, AtomicCheckpointHook))
    commit = hook._commit
    present_at_commit = {}

    def recording_commit(temporary, final):
        present_at_commit[osp.basename(final)] = files(tmp_path)
        commit(temporary, final)

    hook._commit = recording_commit
    runner.train()
    # The previous best is still there when the new best is put in place.
    assert 'best_acc_iter_2.pth' in present_at_commit['best_acc_iter_4.pth']
    assert 'best_acc_iter_4.pth' in present_at_commit['best_acc_iter_6.pth']
    assert files(tmp_path) == ['best_acc_iter_6.pth', 'iter_4.pth', 'iter_6.pth']
    best = torch.load(str(tmp_path / 'best_acc_iter_6.pth'), weights_only=False)
    assert 'optimizer' not in best and best['meta']['iter'] == 6


def test_killed_before_deleting_obsolete_checkpoint(tmp_path):
    """A kill between the new last_checkpoint and the deletion: the resumed run deletes."""

    class KilledBeforeRemoving(Exception):
        pass

    runner = make_runner(tmp_path, max_iters=6, interval=2, max_keep_ckpts=1)
    hook = next(h for h in runner.hooks if isinstance(h, AtomicCheckpointHook))

    def remove(runner, path):
        raise KilledBeforeRemoving(path)

    hook._remove_checkpoint = remove
    with pytest.raises(KilledBeforeRemoving):
        runner.train()
    # iter_4 is complete and named; iter_2 (obsolete) is still there.
    assert files(tmp_path) == ['iter_2.pth', 'iter_4.pth']
    assert last_named(tmp_path) == str(tmp_path / 'iter_4.pth')
    # A partial file of a process that no longer exists is cleaned up too.
    (tmp_path / '.iter_6.pth.999999999.partial').write_bytes(b'cut')
    runner = make_runner(tmp_path, max_iters=6, interval=2, max_keep_ckpts=1, resume=True)
    runner.train()
    assert files(tmp_path) == ['iter_6.pth']


def test_temporary_name_is_hidden_beside_the_file(tmp_path):
    temporary = partial_path(str(tmp_path / 'iter_8.pth'))
    assert osp.dirname(temporary) == str(tmp_path)
    assert osp.basename(temporary).startswith('.iter_8.pth.')


def test_plain_checkpoint_hook_unchanged(tmp_path):
    """Configs that do not ask for it keep mmengine's CheckpointHook."""
    runner = make_runner(tmp_path, max_iters=2, interval=2, hook='plain')
    assert type(next(h for h in runner.hooks if isinstance(h, CheckpointHook))) is \
        CheckpointHook


def test_every_config_saves_atomically():
    """Every training config of the repository switches the hook on."""
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    configs = sorted(
        p for p in glob.glob(osp.join(root, 'configs', '*', '*.py'))
        if osp.basename(osp.dirname(p)) != '_base_')
    assert len(configs) >= 20
    for path in configs:
        hook = Config.fromfile(path).default_hooks.checkpoint
        assert hook.type == 'mmglnet.AtomicCheckpointHook', (path, hook)


def test_out_dir_layout_and_resume(tmp_path):
    """With out_dir, checkpoints go to <out_dir>/<work dir name>; resuming finds them there."""
    work_dir, out_dir = tmp_path / 'run', tmp_path / 'store'
    make_runner(work_dir, max_iters=4, interval=2, out_dir=str(out_dir)).train()
    folder = out_dir / 'run'
    assert files(folder) == ['iter_2.pth', 'iter_4.pth']
    assert last_named(work_dir) == str(folder / 'iter_4.pth')
    cfg = Config(
        dict(
            work_dir=str(work_dir),
            default_hooks=dict(
                checkpoint=dict(
                    type='mmglnet.AtomicCheckpointHook', by_epoch=False, out_dir=str(out_dir)))))
    folders, templates = checkpoint_layout(cfg)
    assert folders[0] == str(folder) and templates == ('iter_{}.pth', )
    truncate(str(folder / 'iter_4.pth'))
    assert find_resume_checkpoint(str(work_dir), folders, templates) == str(folder / 'iter_2.pth')
    runner = make_runner(work_dir, max_iters=6, interval=2, out_dir=str(out_dir), resume=True)
    runner.train()
    assert runner.iter == 6 and files(folder) == ['iter_2.pth', 'iter_4.pth', 'iter_6.pth']
