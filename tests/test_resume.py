"""A training run killed with SIGKILL resumes from its last checkpoint with --resume.

About 1 minute on 2 cores: UperNet trains 2 iterations at a time between checkpoints, is
killed right after its first checkpoint, then resumes and finishes 16 iterations.
"""
import os
import re
import signal
import subprocess
import sys
import time

from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint, load_checkpoint

from mmglnet.apis import build_model

from tool_runs import REPO_ROOT, UPERNET, lr_after, make_tiny_data, run_tool, write_config

MAX_ITERS = 16


def _iter_of(path) -> int:
    return int(re.search(r'iter_(\d+)\.pth', str(path)).group(1))


def test_sigkill_then_resume(tmp_path):
    roots = make_tiny_data(str(tmp_path / 'data'))
    work_dir = tmp_path / 'work'
    config = write_config(
        UPERNET, roots['ade'], str(tmp_path / 'cfg.py'), max_iters=MAX_ITERS, checkpoint_interval=2)
    # A learning rate that changes every iteration: warm-up, then poly decay.
    cfg = Config.fromfile(config)
    cfg.param_scheduler[0].end = 6
    cfg.param_scheduler[1].begin = 6
    cfg.param_scheduler[1].end = MAX_ITERS + 4  # never reaches zero
    cfg.dump(config)

    command = [sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir)]
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with open(tmp_path / 'killed_run.txt', 'w') as log:
        proc = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while not (work_dir / 'last_checkpoint').exists():
            assert proc.poll() is None, (tmp_path / 'killed_run.txt').read_text()[-3000:]
            assert time.time() < deadline, 'no checkpoint within 5 minutes'
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before_kill = sorted(work_dir.glob('iter_*.pth'), key=_iter_of)
    last = (work_dir / 'last_checkpoint').read_text().strip()
    killed_at = _iter_of(last)
    assert 2 <= killed_at < MAX_ITERS, f'the run was not killed mid-way ({last})'
    # Only checkpoints that last_checkpoint vouches for count as written before the kill.
    before_kill = [p for p in before_kill if _iter_of(p) <= killed_at]

    result = run_tool(['tools/train.py', config, '--work-dir', str(work_dir), '--resume'])
    assert f'resumed epoch: 0, iter: {killed_at}' in result.stdout
    trained = re.findall(r'Iter\(train\) \[\s*(\d+)/' + str(MAX_ITERS), result.stdout)
    assert int(trained[0]) == killed_at + 1, trained[:3]
    assert int(trained[-1]) == MAX_ITERS

    final = _load_checkpoint(str(work_dir / f'iter_{MAX_ITERS}.pth'), map_location='cpu')
    assert final['meta']['iter'] == MAX_ITERS
    # AdamW counted every step: its state came from the checkpoint, not a fresh optimizer.
    steps = {int(s['step']) for s in final['optimizer']['state'].values()}
    assert steps == {MAX_ITERS}, steps
    # The learning rate followed the schedule through the kill.
    lrs = {g['lr'] for g in final['optimizer']['param_groups']}
    expected = lr_after(cfg, MAX_ITERS)
    assert all(abs(lr - expected) <= 1e-12 + 1e-6 * expected for lr in lrs), (lrs, expected)
    resumed_from = _load_checkpoint(last, map_location='cpu')
    lr_then = resumed_from['optimizer']['param_groups'][0]['lr']
    assert abs(lr_then - lr_after(cfg, killed_at)) <= 1e-6 * lr_then

    # Every checkpoint written before the kill still loads, strictly, into the model.
    model = build_model(cfg)
    for path in before_kill:
        checkpoint = load_checkpoint(model, str(path), map_location='cpu', strict=True)
        assert checkpoint['meta']['iter'] == _iter_of(path)
