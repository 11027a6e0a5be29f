"""Two processes on the CPU (torchrun, gloo) through tools/dist_train.sh and dist_test.sh.

About 30 s on 2 cores: two processes train UperNet (its SyncBN heads turned into BN) for 2
iterations on 8 images, 2 images per process per iteration; two processes then test it.
"""
import json
import os
import pickle
import re
import socket

from mmglnet.engine import parameter_digest

from tool_runs import UPERNET, make_tiny_data, run_tool, write_config


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_dist_train_two_processes(tmp_path):
    roots = make_tiny_data(str(tmp_path / 'data'))
    work_dir = tmp_path / 'work'
    config = write_config(UPERNET, roots['ade'], str(tmp_path / 'cfg.py'), max_iters=2)
    env = dict(OMP_NUM_THREADS='1')
    result = run_tool(['bash', 'tools/dist_train.sh', config, '2', '--work-dir',
                       str(work_dir)],
                      env=dict(env, PORT=str(_free_port())),
                      timeout=600)
    log = result.stdout + result.stderr
    assert 'ReplicaCheckHook: world size 2' in log
    assert 'SyncBN layer config(s) changed to BN' in log

    reports = list(work_dir.glob('*/replica_check.json'))
    assert len(reports) == 1, reports
    with open(reports[0]) as f:
        report = json.load(f)
    assert report['world_size'] == 2
    ranks = {r['rank']: r for r in report['ranks']}
    assert sorted(ranks) == [0, 1]
    # Each process trained on its own half: 2 iterations x 2 images, none shared.
    seen = [set(ranks[r]['samples']) for r in (0, 1)]
    assert [len(ranks[r]['samples']) for r in (0, 1)] == [4, 4]
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == 8
    # Both processes ended with bit-identical parameters, which the checkpoint holds.
    assert ranks[0]['digest'] == ranks[1]['digest']
    from mmengine.runner.checkpoint import _load_checkpoint
    state = _load_checkpoint(str(work_dir / 'iter_2.pth'), map_location='cpu')['state_dict']
    from mmglnet.apis import build_model
    names = [n for n, _ in build_model(config).named_parameters()]
    assert parameter_digest({n: state[n] for n in names}) == ranks[0]['digest']

    # Two processes evaluate the checkpoint, 2 of the 4 held-out images each; the main process
    # dumps the predictions of both.
    predictions = tmp_path / 'out' / 'predictions.pkl'
    result = run_tool([
        'bash', 'tools/dist_test.sh', config,
        str(work_dir / 'iter_2.pth'), '2', '--work-dir',
        str(tmp_path / 'test'), '--out',
        str(predictions)
    ],
                      env=dict(env, PORT=str(_free_port())),
                      timeout=600)
    assert 'Iter(test) [2/2]' in result.stdout and 'mIoU' in result.stdout
    with open(predictions, 'rb') as f:
        assert len({p['img_path'] for p in pickle.load(f)}) == 4
    assert os.listdir(predictions.parent) == ['predictions.pkl']  # no temporary file left

    # With test-time augmentation (the TTA model inside DDP, the checkpoint checked inside
    # both): the metrics of one process.
    metrics = {}
    for processes in (2, 1):
        command = ['tools/test.py'] if processes == 1 else ['bash', 'tools/dist_test.sh']
        command += [config, str(work_dir / 'iter_2.pth')] + (['2'] if processes == 2 else [])
        result = run_tool(
            command +
            ['--tta', '--work-dir', str(tmp_path / f'tta{processes}')],
            env=dict(env, PORT=str(_free_port())),
            timeout=600)
        metrics[processes] = re.search(r'aAcc: \S+ +mIoU: \S+ +mAcc: \S+', result.stdout).group()
    assert metrics[2] == metrics[1], metrics


def test_dist_train_with_the_backbone_compiled(tmp_path):
    """DDP around a backbone compiled as one graph (dynamo and autograd as in real
    compilation, no kernels generated): the gradients of the compiled backward are all-reduced
    and both processes end with the same parameters."""
    roots = make_tiny_data(str(tmp_path / 'data'))
    work_dir = tmp_path / 'work'
    config = write_config(
        UPERNET,
        roots['ade'],
        str(tmp_path / 'cfg.py'),
        max_iters=2,
        **{'model.backbone.compile_backbone': dict(backend='aot_eager')})
    result = run_tool(['bash', 'tools/dist_train.sh', config, '2', '--work-dir',
                       str(work_dir)],
                      env=dict(OMP_NUM_THREADS='1', PORT=str(_free_port())),
                      timeout=600)
    assert 'ReplicaCheckHook: world size 2' in result.stdout + result.stderr
    with open(next(work_dir.glob('*/replica_check.json'))) as f:
        ranks = {r['rank']: r for r in json.load(f)['ranks']}
    assert ranks[0]['digest'] == ranks[1]['digest']
    from mmengine.config import Config
    assert Config.fromfile(config).model.backbone.compile_backbone == dict(backend='aot_eager')


def test_finish_distributed_destroys_the_process_group(tmp_path):
    """The tools end their process group themselves (a gloo group left to the interpreter's
    exit sometimes aborted the process after the results were printed); without one it does
    nothing."""
    import torch.distributed as dist

    from _support.runtime import finish_distributed
    finish_distributed()
    dist.init_process_group(
        'gloo', init_method=f'file://{tmp_path / "store"}', rank=0, world_size=1)
    try:
        assert dist.is_initialized()
        finish_distributed()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
