"""Checkpoint loading stays safe under torch >= 2.6 without switching weights-only off."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint

import mmglnet
from mmglnet.checkpoint import (TRUSTED_ENV, UnloadedObject, UntrustedCheckpointError,
                                read_checkpoint_tensors)
from mmglnet.models import GLNet

from conftest import TINY_ARCH, parity_path


class _Payload:
    """Pickles as a call to exec() that writes a marker file: what a malicious file does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f'open({self.marker!r}, "w").write("ran")', ))


@pytest.fixture
def malicious_release(tmp_path):
    """An official-format release file whose `args` run code when unpickled."""
    marker = tmp_path / 'code_ran'
    model = GLNet(arch=TINY_ARCH, out_indices=(3, ), out_norm_cfg=dict(type='BN'))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / 'evil_release.pth'
    torch.save({'model': weights, 'args': _Payload(marker), 'epoch': 3}, path)
    return path, marker, weights


def test_payload_is_real(malicious_release):
    """Unrestricted unpickling does run it, so the tests below can fail."""
    path, marker, _ = malicious_release
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_restricted_reader_takes_tensors_and_runs_nothing(malicious_release):
    path, marker, weights = malicious_release
    checkpoint = read_checkpoint_tensors(str(path))
    assert not marker.exists()
    assert isinstance(checkpoint['args'], UnloadedObject)
    assert 'builtins.exec' in repr(checkpoint['args'])
    assert checkpoint['epoch'] == 3
    for key, value in weights.items():
        assert torch.equal(checkpoint['model'][key], value)


def test_backbone_init_from_malicious_release_runs_nothing(malicious_release):
    path, marker, weights = malicious_release
    model = GLNet(arch=TINY_ARCH, out_indices=(3, ), out_norm_cfg=dict(type='BN'),
                  init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert not marker.exists()
    assert torch.equal(model.stages[2].blocks[1].mha_op.in_proj_weight,
                       weights['stages.2.blocks.1.mha_op.in_proj_weight'])


def test_mmengine_loader_refuses_with_a_clear_error(malicious_release, monkeypatch):
    path, marker, _ = malicious_release
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    with pytest.raises(UntrustedCheckpointError) as error:
        _load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()
    message = str(error.value)
    assert 'builtins.exec' in message and TRUSTED_ENV in message
    assert 'trust_checkpoint' in message and str(path) in message


def test_trusting_one_file_is_an_explicit_opt_in(malicious_release, tmp_path, monkeypatch):
    path, marker, _ = malicious_release
    other = tmp_path / 'other.pth'
    torch.save({'args': _Payload(tmp_path / 'other_ran')}, other)
    monkeypatch.setenv(TRUSTED_ENV, str(path))
    _load_checkpoint(str(path), map_location='cpu')
    assert marker.exists()
    with pytest.raises(UntrustedCheckpointError):  # trust is per file
        _load_checkpoint(str(other), map_location='cpu')
    assert not (tmp_path / 'other_ran').exists()


def test_official_release_with_args_object_via_mmengine_is_refused():
    """The 4g-like fixture holds an argparse Namespace: refused by the weights-only loader,
    read fine by mmglnet's restricted reader."""
    with pytest.raises(UntrustedCheckpointError, match='argparse.Namespace'):
        _load_checkpoint(parity_path('4g_like.pth'), map_location='cpu')
    assert isinstance(read_checkpoint_tensors(parity_path('4g_like.pth'))['args'], UnloadedObject)


class _ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.backbone = GLNet(arch=TINY_ARCH, out_indices=(3, ))
        self.fc = nn.Linear(128, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        inputs = torch.stack(inputs) if isinstance(inputs, list) else inputs
        score = self.fc(self.backbone(inputs)[0].mean((2, 3))).squeeze(1)
        if mode == 'loss':
            return dict(loss=((score - labels)**2).mean())
        return score


class _ToyData(torch.utils.data.Dataset):

    def __len__(self):
        return 4

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        return dict(inputs=torch.randn(3, 32, 32, generator=generator),
                    labels=torch.tensor(float(index)))


def _runner(work_dir, max_iters, **kwargs):
    return Runner(
        model=_ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=_ToyData(), sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        param_scheduler=dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                             end=max_iters),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        log_level='WARNING',
        **kwargs)


def test_mmengine_checkpoints_load_with_weights_only(tmp_path, monkeypatch):
    """A Runner's own checkpoint (message_hub with HistoryBuffer, numpy) loads and resumes."""
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    runner = _runner(tmp_path / 'run', max_iters=2)
    runner.train()
    path = tmp_path / 'run' / 'iter_2.pth'
    # The file really holds the types that need allow-listing.
    raw = torch.load(path, weights_only=False)
    buffers = raw['message_hub']['log_scalars']
    assert type(next(iter(buffers.values()))).__name__ == 'HistoryBuffer'
    assert any(isinstance(v, np.ndarray) for b in buffers.values() for v in vars(b).values())

    checkpoint = _load_checkpoint(str(path), map_location='cpu')
    assert checkpoint['meta']['iter'] == 2
    model = _ToyModel()
    load_checkpoint(model, str(path), map_location='cpu')
    assert torch.equal(model.fc.weight, raw['state_dict']['fc.weight'])

    resumed = _runner(tmp_path / 'run', max_iters=4, resume=True, load_from=str(path))
    resumed.train()
    assert resumed.iter == 4


def test_import_keeps_torch_default_weights_only(tmp_path):
    """mmglnet allow-lists types; plain torch.load still refuses unknown objects."""
    assert mmglnet is not None
    path = tmp_path / 'payload.pth'
    marker = tmp_path / 'ran'
    torch.save({'x': _Payload(marker)}, path)
    with pytest.raises(Exception, match='exec'):
        torch.load(path)
    assert not marker.exists()


def test_runner_checkpoint_loads_in_a_fresh_process(tmp_path):
    """tools/test.py and --resume load in a new process, where no HistoryBuffer exists yet."""
    import subprocess
    import sys
    runner = _runner(tmp_path / 'run', max_iters=2)
    runner.train()
    script = ('import mmglnet; from mmengine.runner.checkpoint import _load_checkpoint; '
              f"print(_load_checkpoint({str(tmp_path / 'run' / 'iter_2.pth')!r})['meta']['iter'])")
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith('2')
