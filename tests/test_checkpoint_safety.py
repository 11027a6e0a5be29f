"""Checkpoint loading stays safe without switching weights-only off: with torch's own check
(torch >= 2.6, mmengine's types allow-listed) and with mmglnet's unpickler (older torch)."""
import hashlib
import pickle
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint

import mmglnet
from mmglnet.checkpoint import (TRUSTED_ENV, CheckpointFileError, UnloadedObject,
                                UntrustedCheckpointError, file_sha256, read_checkpoint_tensors,
                                resolve_trusted_env, safe_load, trust_checkpoint)
from mmglnet.models import GLNet

from conftest import TINY_ARCH, parity_path


class _Payload:
    """Pickles as a call to exec() that writes a marker file: what a malicious file does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f'open({self.marker!r}, "w").write("ran")', ))


@pytest.fixture(params=['torch', 'mmglnet'])
def weights_only_check(request, monkeypatch):
    """Which weights-only check loads mmengine checkpoints: torch's, extended with mmengine's
    types (torch >= 2.6), or mmglnet's own unpickler, which an older torch gets. For the
    latter torch's allow-list is emptied, so that nothing passes through torch's check."""
    if request.param == 'torch':
        yield request.param
        return
    monkeypatch.setattr(safe_load, 'extensible_weights_only', lambda: False)
    if not hasattr(torch.serialization, 'clear_safe_globals'):  # torch < 2.4
        yield request.param
        return
    added = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        yield request.param
    finally:
        torch.serialization.add_safe_globals(added)


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
    model = GLNet(
        arch=TINY_ARCH,
        out_indices=(3, ),
        out_norm_cfg=dict(type='BN'),
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert not marker.exists()
    assert torch.equal(model.stages[2].blocks[1].mha_op.in_proj_weight,
                       weights['stages.2.blocks.1.mha_op.in_proj_weight'])


def test_mmengine_loader_refuses_with_a_clear_error(malicious_release, monkeypatch,
                                                    weights_only_check):
    path, marker, _ = malicious_release
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    with pytest.raises(UntrustedCheckpointError) as error:
        _load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()
    message = str(error.value)
    assert 'builtins.exec' in message and TRUSTED_ENV in message
    assert 'trust_checkpoint' in message and str(path) in message


def test_trusting_one_file_is_an_explicit_opt_in(malicious_release, tmp_path, monkeypatch,
                                                 weights_only_check):
    path, marker, _ = malicious_release
    other = tmp_path / 'other.pth'
    torch.save({'args': _Payload(tmp_path / 'other_ran')}, other)
    monkeypatch.setenv(TRUSTED_ENV, str(path))
    _load_checkpoint(str(path), map_location='cpu')
    assert marker.exists()
    with pytest.raises(UntrustedCheckpointError):  # trust is per file
        _load_checkpoint(str(other), map_location='cpu')
    assert not (tmp_path / 'other_ran').exists()


def test_official_release_with_args_object_via_mmengine_is_refused(weights_only_check):
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
        return dict(
            inputs=torch.randn(3, 32, 32, generator=generator), labels=torch.tensor(float(index)))


def _runner(work_dir, max_iters, **kwargs):
    return Runner(
        model=_ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=_ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        param_scheduler=dict(
            type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=max_iters),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        log_level='WARNING',
        **kwargs)


def test_mmengine_checkpoints_load_with_weights_only(tmp_path, monkeypatch, weights_only_check):
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
    """mmglnet allow-lists types; plain torch.load still refuses unknown objects (by default
    from torch 2.6, and with ``weights_only=True`` on any torch)."""
    assert mmglnet is not None
    path = tmp_path / 'payload.pth'
    marker = tmp_path / 'ran'
    torch.save({'x': _Payload(marker)}, path)
    with pytest.raises(Exception, match='exec'):
        torch.load(path, weights_only=True)
    if torch.__version__ >= '2.6':  # weights-only by default
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
    result = subprocess.run([sys.executable, '-c', script],
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith('2')


# ----------------------------------------------------------------------------------------
# Damaged and foreign files: an error naming the file and what is wrong, wherever it is read.
# ----------------------------------------------------------------------------------------
def _bad_files(tmp_path):
    """(path, words the message must hold) for each kind of unusable file."""
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.randn(64, 64)}}, good)
    data = good.read_bytes()
    legacy = tmp_path / 'legacy.pth'
    torch.save({'state_dict': {
        'w': torch.randn(64, 64)
    }},
               legacy,
               _use_new_zipfile_serialization=False)
    files = {
        'empty.pth': (b'', ['empty', '0 bytes']),
        'truncated.pth': (data[:len(data) // 2], ['truncated']),
        'legacy_truncated.pth': (legacy.read_bytes()[:200], ['could not be read', 'truncated']),
        'raw_pickle.pth': (pickle.dumps({'w': [1.0, 2.0]}), ['plain Python pickle']),
        'page.pth': (b'<!DOCTYPE html><html>Not found</html>', ['text file']),
        'notes.pth':
        (b'\x00\x01 some bytes that are nothing in particular', ['not a torch checkpoint']),
    }
    for name, (content, _) in files.items():
        (tmp_path / name).write_bytes(content)
    return {str(tmp_path / name): words for name, (_, words) in files.items()}


def test_damaged_files_are_named_by_every_reader(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    for path, words in _bad_files(tmp_path).items():
        readers = [
            lambda: read_checkpoint_tensors(path),
            lambda: _load_checkpoint(path, map_location='cpu'),
            lambda: GLNet(TINY_ARCH, init_cfg=dict(type='Pretrained', checkpoint=path)).
            init_weights(),
        ]
        for read in readers:
            with pytest.raises(CheckpointFileError) as error:
                read()
            message = str(error.value)
            assert path in message, message
            for word in words:
                assert word in message, message
            # A file that is not a torch checkpoint is not offered the trust opt-in.
            assert TRUSTED_ENV not in message


def test_a_trusted_raw_pickle_is_still_named_as_such(tmp_path, monkeypatch):
    marker = tmp_path / 'ran'
    path = tmp_path / 'raw.pth'
    path.write_bytes(pickle.dumps({'x': _Payload(marker)}))
    trust_checkpoint(str(path))
    with pytest.raises(CheckpointFileError, match='plain Python pickle'):
        _load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


def test_tools_name_damaged_files_before_any_work(tmp_path):
    """tools/test.py (checkpoint) and tools/train.py (init_cfg file): exit 2, no traceback."""
    from tool_runs import UPERNET, make_tiny_data, run_tool, write_config
    bad = _bad_files(tmp_path)
    work = tmp_path / 'work'
    config = write_config(UPERNET,
                          make_tiny_data(str(tmp_path / 'data'))['ade'], str(tmp_path / 'seg.py'))
    for name in ('empty.pth', 'truncated.pth', 'raw_pickle.pth'):
        path = str(tmp_path / name)
        result = run_tool(['tools/test.py', config, path, '--work-dir', str(work)], check=False)
        assert result.returncode == 2, result.stderr[-3000:]
        assert 'Traceback' not in result.stderr
        assert path in result.stderr and bad[path][0] in result.stderr
    path = str(tmp_path / 'empty.pth')
    result = run_tool([
        'tools/train.py', config, '--work-dir',
        str(work), '--cfg-options', 'model.backbone.init_cfg.type=Pretrained',
        f'model.backbone.init_cfg.checkpoint={path}'
    ],
                      check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert path in result.stderr and 'empty' in result.stderr
    assert 'model.backbone.init_cfg.checkpoint' in result.stderr
    assert not work.exists()
    # The image tools: the same message, no traceback.
    image = 'docs/images/slots_demo_upernet_trained.png'
    for command in (['tools/visualize_slots.py', image, 'stl', path, '--out-dir',
                     str(work)], [
                         'tools/image_demo.py', image, config, path, '--out-file',
                         str(work / 'out.jpg'), '--device', 'cpu'
                     ]):
        result = run_tool(command, check=False)
        assert result.returncode == 2, result.stderr[-3000:]
        assert 'Traceback' not in result.stderr, result.stderr[-3000:]
        assert path in result.stderr and 'empty' in result.stderr
    assert not work.exists()


# ----------------------------------------------------------------------------------------
# Trust is bound to the file's contents.
# ----------------------------------------------------------------------------------------
def _evil(path, marker):
    torch.save({'args': _Payload(marker)}, path)
    return path


@pytest.mark.parametrize('how', ['function', 'env'])
def test_a_replaced_trusted_file_is_untrusted_again(tmp_path, monkeypatch, how):
    path = _evil(tmp_path / 'model.pth', tmp_path / 'first_ran')
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    if how == 'function':
        trust_checkpoint(str(path))
    else:  # the variable is resolved when mmglnet first reads it, as trust_checkpoint does
        monkeypatch.setenv(TRUSTED_ENV, str(path))
        resolve_trusted_env()
    digest = file_sha256(str(path))
    _evil(path, tmp_path / 'second_ran')  # replaced after it was trusted
    with pytest.raises(UntrustedCheckpointError) as error:
        _load_checkpoint(str(path), map_location='cpu')
    assert not (tmp_path / 'second_ran').exists()
    message = str(error.value)
    assert digest in message and file_sha256(str(path)) in message
    assert 'replaced' in message and 'untrusted again' in message


def test_a_re_pointed_trusted_symlink_is_untrusted_again(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    first = _evil(tmp_path / 'first.pth', tmp_path / 'first_ran')
    second = _evil(tmp_path / 'second.pth', tmp_path / 'second_ran')
    link = tmp_path / 'latest.pth'
    link.symlink_to(first)
    monkeypatch.setenv(TRUSTED_ENV, str(link))
    _load_checkpoint(str(link), map_location='cpu')
    assert (tmp_path / 'first_ran').exists()
    link.unlink()
    link.symlink_to(second)
    with pytest.raises(UntrustedCheckpointError) as error:
        _load_checkpoint(str(link), map_location='cpu')
    assert not (tmp_path / 'second_ran').exists()
    assert f'now points to {str(second)!r}' in str(error.value)


def test_trust_by_digest(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    path = _evil(tmp_path / 'a.pth', tmp_path / 'a_ran')
    other = _evil(tmp_path / 'b.pth', tmp_path / 'b_ran')
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    # PATH@sha256:HEX in the variable (':' also separates entries) and a bare digest.
    monkeypatch.setenv(TRUSTED_ENV, f'{other}@sha256:{"0" * 64}:{path}@sha256:{digest}')
    _load_checkpoint(str(path), map_location='cpu')
    assert (tmp_path / 'a_ran').exists()
    with pytest.raises(UntrustedCheckpointError, match='untrusted again'):
        _load_checkpoint(str(other), map_location='cpu')
    assert not (tmp_path / 'b_ran').exists()
    copy = tmp_path / 'copy.pth'
    copy.write_bytes(other.read_bytes())
    trust_checkpoint('sha256:' + hashlib.sha256(other.read_bytes()).hexdigest())
    _load_checkpoint(str(copy), map_location='cpu')  # those bytes, wherever they are
    assert (tmp_path / 'b_ran').exists()
    with pytest.raises(ValueError, match='64 hex digits'):
        trust_checkpoint('sha256:abc')


def test_trusted_bytes_are_the_bytes_loaded(tmp_path, monkeypatch):
    """Swapping the file between the hash and the unpickling does not get the new file run."""
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    path = tmp_path / 'model.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'args': _Payload(tmp_path / 'ok_ran')}, path)
    trust_checkpoint(str(path))
    real_load = torch.load

    def swap_then_load(f, *args, **kwargs):
        _evil(path, tmp_path / 'swapped_ran')
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, 'load', swap_then_load)
    checkpoint = _load_checkpoint(str(path), map_location='cpu')
    assert torch.equal(checkpoint['state_dict']['w'], torch.ones(2))
    assert not (tmp_path / 'swapped_ran').exists()


# ----------------------------------------------------------------------------------------
# numpy 2 writes numpy._core.* where numpy 1 writes numpy.core.*.
# ----------------------------------------------------------------------------------------
def _rename_globals(path, old, new):
    """Rewrite the pickle inside a torch zip checkpoint, renaming a module in its GLOBALs
    (protocol 2 GLOBAL opcodes are newline-terminated text, so the rename is exact)."""
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as archive:
        for info, data in entries:
            if info.filename.endswith('/data.pkl'):
                assert b'c' + old + b'\n' in data
                data = data.replace(b'c' + old + b'\n', b'c' + new + b'\n')
            archive.writestr(info.filename, data)


def test_the_other_numpys_module_names_load(tmp_path, monkeypatch, weights_only_check):
    """A file written under numpy 1 (``numpy.core``) loads under numpy 2, and one written under
    numpy 2 (``numpy._core``) under numpy 1: the file's names are rewritten to the other
    numpy's, whichever numpy runs the test."""
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    written, other = b'numpy.core.multiarray', b'numpy._core.multiarray'
    if np.lib.NumpyVersion(np.__version__) >= '2.0.0':
        written, other = other, written
    path = tmp_path / 'other_numpy.pth'
    values = {
        'array': np.arange(6.).reshape(2, 3),
        'scalar': np.float32(2.5),
        'dtype': np.dtype('int16'),
        'kind': type(np.dtype('float64'))
    }
    torch.save({'meta': values, 'state_dict': {'w': torch.ones(1)}}, path)
    _rename_globals(path, written, other)
    with zipfile.ZipFile(path) as archive:
        pickled = [archive.read(n) for n in archive.namelist() if n.endswith('data.pkl')][0]
    assert other + b'\n_reconstruct' in pickled
    assert other + b'\nscalar' in pickled and b'numpy.dtypes\n' in pickled
    loaded = _load_checkpoint(str(path), map_location='cpu')['meta']
    assert np.array_equal(loaded['array'], values['array'])
    assert loaded['scalar'] == values['scalar'] and loaded['dtype'] == values['dtype']
    assert loaded['kind'] is values['kind']
    # The allow-list is by name: a module numpy never had is refused, naming it.
    torch.save({'meta': values}, path)
    _rename_globals(path, written, b'numpy.elsewhere.multiarray')
    with pytest.raises(UntrustedCheckpointError, match='numpy.elsewhere.multiarray'):
        _load_checkpoint(str(path), map_location='cpu')
    # A truly foreign object is still refused, naming it.
    torch.save({'meta': values, 'x': _Payload(tmp_path / 'ran')}, path)
    _rename_globals(path, written, other)
    with pytest.raises(UntrustedCheckpointError, match='builtins.exec'):
        _load_checkpoint(str(path), map_location='cpu')
