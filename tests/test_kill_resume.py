"""Training killed with SIGKILL at every moment of the checkpoint save sequence resumes right.

The demo UperNet (tiny data, a checkpoint after every iteration) is run again and again with
``tools/train.py --resume``, and each run is killed once:

* from inside, at a chosen moment of the save sequence (``kill_points.py``): with the
  temporary file half written, complete but not renamed, renamed before ``last_checkpoint``
  names it, ``last_checkpoint`` half rewritten, rewritten before the obsolete checkpoint is
  deleted, and after that deletion;
* from outside, as soon as the log says a checkpoint is being saved, or in mid-iteration.

Every kill must land (the run dies by SIGKILL, it does not finish); after each one, every file
under a checkpoint name is complete, ``last_checkpoint`` names a complete checkpoint no older
than the one the run had resumed from, and no complete checkpoint is lost (with
``max_keep_ckpts=1``: the one kept is deleted only once a newer one is complete and named).
The next run resumes from that checkpoint; the last one finishes the schedule with the right
iteration, optimizer and learning-rate state. Two chains of runs (``max_keep_ckpts`` -1 and
1), 12 training processes: 3.2 minutes one after the other on 2 idle cores (4 and 8 processes:
70 and 123 s, measured 2026-11-30).
"""
import os
import os.path as osp
import re
import signal
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mmglnet.engine import checkpoint_problem
from mmglnet.engine.checkpoint_files import PARTIAL_SUFFIX

from tool_runs import REPO_ROOT, UPERNET, lr_after, make_tiny_data, write_config

TESTS_DIR = osp.dirname(osp.abspath(__file__))
MAX_ITERS = 8
# (how the run is killed, a kill-point moment with its count or an outside trigger). The
# moments of last_checkpoint's rewrite and the outside kill while saving are the same with
# every checkpoint kept: the keep-one chain alone takes them.
KEEP_ALL_CHAIN = ['partial:2', 'renamed:1', 'outside:Iter(train)']
KEEP_ONE_CHAIN = [
    'partial:2', 'written:1', 'renamed:1', 'record_partial:1', 'recorded:1', 'removed:1',
    'outside:Saving checkpoint'
]


def _iter_of(name: str) -> int:
    return int(re.search(r'iter_(\d+)\.pth$', name).group(1))


def _checkpoints(work_dir: str) -> dict:
    """{iteration: path} of the files under a checkpoint name."""
    return {
        _iter_of(n): osp.join(work_dir, n)
        for n in os.listdir(work_dir) if re.fullmatch(r'iter_\d+\.pth', n)
    }


def _named(work_dir: str) -> str:
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def _train(config: str, work_dir: str, kill: str, log_path: str) -> subprocess.Popen:
    """One run of tools/train.py --resume, killed as ``kill`` says (None: not killed)."""
    env = dict(
        os.environ,
        PYTHONUNBUFFERED='1',
        PYTHONPATH=os.pathsep.join([TESTS_DIR, os.environ.get('PYTHONPATH', '')]))
    env.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    env.setdefault('OMP_NUM_THREADS', '1')  # tiny model: threads only add start-up and contention
    env.pop('MMGLNET_TEST_KILL_AT', None)
    trigger = None
    if kill is not None and kill.startswith('outside:'):
        trigger = kill.split(':', 1)[1]
    elif kill is not None:
        env['MMGLNET_TEST_KILL_AT'] = kill
    command = [sys.executable, 'tools/train.py', config, '--work-dir', work_dir, '--resume']
    proc = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if trigger is not None and trigger in line and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            trigger = None
    proc.wait(timeout=300)
    proc.output = ''.join(lines)
    with open(log_path, 'w') as f:
        f.write(proc.output)
    return proc


def _check_after_kill(work_dir: str, kill: str, resumed_from: int, before: dict,
                      keep_one: bool) -> None:
    files = _checkpoints(work_dir)
    for step, path in files.items():
        assert checkpoint_problem(path) is None, (kill, path, checkpoint_problem(path))
        meta = torch.load(path, map_location='cpu', weights_only=False)['meta']
        assert meta['iter'] == step, (kill, path, meta)
    named = _named(work_dir)
    assert checkpoint_problem(named) is None, (kill, named)
    assert _iter_of(named) >= resumed_from, (kill, named, resumed_from)
    if keep_one:
        # The kept checkpoint goes only once a newer one is complete and named.
        assert resumed_from in files or _iter_of(named) > resumed_from, (kill, files, named)
    else:
        assert set(before) <= set(files), (kill, sorted(before), sorted(files))
    # The kill landed where it was aimed.
    moment = kill.split(':')[0]
    partials = [n for n in os.listdir(work_dir) if n.endswith(PARTIAL_SUFFIX)]
    if moment in ('partial', 'written'):
        assert any(n.startswith('.iter_') for n in partials), (kill, partials)
        assert _iter_of(named) == resumed_from or resumed_from == 0, (kill, named)
    if moment == 'renamed':
        assert max(files) > _iter_of(named), (kill, files, named)
    if moment == 'record_partial':
        assert any(n.startswith('.last_checkpoint') for n in partials), (kill, partials)
    if moment == 'recorded' and keep_one:
        assert len(files) == 2 and max(files) == _iter_of(named), (kill, files, named)


@pytest.mark.parametrize('keep', [-1, 1], ids=['keep_all', 'keep_one'])
def test_killed_at_every_save_moment_resumes(tmp_path, keep):
    roots = make_tiny_data(str(tmp_path / 'data'))
    work_dir = str(tmp_path / 'work')
    config = write_config(
        UPERNET,
        roots['ade'],
        str(tmp_path / 'cfg.py'),
        max_iters=MAX_ITERS,
        checkpoint_interval=1,
        **{
            'default_hooks.checkpoint.type': 'KillPointCheckpointHook',
            'default_hooks.checkpoint.max_keep_ckpts': keep,
            'custom_imports.imports': ['mmglnet', 'mmglnet.engine', 'kill_points'],
        })
    cfg = Config.fromfile(config)
    # A learning rate that changes at every iteration, never reaching zero.
    cfg.param_scheduler[0].end = 3
    cfg.param_scheduler[1].begin = 3
    cfg.param_scheduler[1].end = MAX_ITERS + 4
    cfg.dump(config)

    chain = KEEP_ONE_CHAIN if keep == 1 else KEEP_ALL_CHAIN
    resumed_from = 0
    expected_resume = None
    for index, kill in enumerate(chain + [None]):
        before = _checkpoints(work_dir) if osp.isdir(work_dir) else {}
        proc = _train(config, work_dir, kill, str(tmp_path / f'run{index}.log'))
        tail = proc.output[-3000:]
        if index > 0:
            # Resumed from the checkpoint the previous kill left named (all complete).
            assert f'resumed epoch: 0, iter: {resumed_from}' in proc.output, tail
            assert f'Resuming from {expected_resume}' in proc.output, tail
        if kill is None:
            assert proc.returncode == 0, tail
            break
        assert proc.returncode == -signal.SIGKILL, (kill, proc.returncode, tail)
        _check_after_kill(work_dir, kill, resumed_from, before, keep == 1)
        expected_resume = _named(work_dir)
        resumed_from = _iter_of(expected_resume)
        assert resumed_from < MAX_ITERS, (kill, expected_resume)

    # No temporary file is left, and every checkpoint is complete.
    assert not [n for n in os.listdir(work_dir) if n.endswith(PARTIAL_SUFFIX)]
    files = _checkpoints(work_dir)
    assert all(checkpoint_problem(p) is None for p in files.values())
    if keep == 1:
        assert sorted(files) == [MAX_ITERS]
    assert _named(work_dir) == osp.join(work_dir, f'iter_{MAX_ITERS}.pth')
    final = torch.load(files[MAX_ITERS], map_location='cpu', weights_only=False)
    assert final['meta']['iter'] == MAX_ITERS
    # AdamW counted every iteration once: its state went through every kill.
    steps = {int(s['step']) for s in final['optimizer']['state'].values()}
    assert steps == {MAX_ITERS}, steps
    expected_lr = lr_after(cfg, MAX_ITERS)
    lrs = {g['lr'] for g in final['optimizer']['param_groups']}
    assert all(abs(lr - expected_lr) <= 1e-6 * expected_lr for lr in lrs), (lrs, expected_lr)
