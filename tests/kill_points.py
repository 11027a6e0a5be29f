"""Test-only: an AtomicCheckpointHook that SIGKILLs its own process at a chosen moment.

The environment variable ``MMGLNET_TEST_KILL_AT=<moment>:<n>`` makes the training process
kill itself (SIGKILL, no clean-up of any kind) the ``n``-th time it reaches ``<moment>`` of the
checkpoint save sequence:

* ``save``: a checkpoint is due, nothing written yet;
* ``partial``: the temporary file is half written (it is cut to half its size first);
* ``written``: the temporary file is complete, not yet synced and renamed;
* ``renamed``: the checkpoint is in place, ``last_checkpoint`` still names the previous one;
* ``record_partial``: the new ``last_checkpoint`` is half written to its temporary file;
* ``recorded``: ``last_checkpoint`` names the new checkpoint, the obsolete one still exists;
* ``removed``: the obsolete checkpoint (``max_keep_ckpts``) was deleted.

A config uses it as ``default_hooks.checkpoint.type='KillPointCheckpointHook'`` with this
module in ``custom_imports`` (``tests/`` on ``PYTHONPATH``).
"""
import os
import signal
from collections import Counter

from mmengine.registry import HOOKS

from mmglnet.engine import AtomicCheckpointHook
from mmglnet.engine.checkpoint_files import partial_path

KILL_ENV = 'MMGLNET_TEST_KILL_AT'
MOMENTS = ('save', 'partial', 'written', 'renamed', 'record_partial', 'recorded', 'removed')


def _target():
    value = os.environ.get(KILL_ENV)
    if not value:
        return None, 0
    moment, count = value.rsplit(':', 1)
    if moment not in MOMENTS:
        raise ValueError(f'{KILL_ENV}={value!r}: the moment must be one of {MOMENTS}.')
    return moment, int(count)


@HOOKS.register_module()
class KillPointCheckpointHook(AtomicCheckpointHook):
    """AtomicCheckpointHook that kills its process at ``MMGLNET_TEST_KILL_AT``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._moment, self._count = _target()
        self._seen = Counter()

    def _reached(self, moment, before_kill=None):
        self._seen[moment] += 1
        if moment == self._moment and self._seen[moment] == self._count:
            if before_kill is not None:
                before_kill()
            os.kill(os.getpid(), signal.SIGKILL)

    def _save_checkpoint_with_step(self, runner, step, meta):
        self._reached('save')
        return super()._save_checkpoint_with_step(runner, step, meta)

    def _commit(self, temporary, final):

        def cut_in_half():
            size = os.path.getsize(temporary)
            with open(temporary, 'r+b') as f:
                f.truncate(size // 2)

        self._reached('partial', cut_in_half)
        self._reached('written')
        super()._commit(temporary, final)
        self._reached('renamed')

    def _write_last_checkpoint(self, runner):
        record = os.path.join(runner.work_dir, 'last_checkpoint')

        def half_written():
            with open(partial_path(record), 'w') as f:
                f.write(self.last_ckpt[:len(self.last_ckpt) // 2])

        self._reached('record_partial', half_written)
        super()._write_last_checkpoint(runner)
        self._reached('recorded')

    def _remove_checkpoint(self, runner, path):
        super()._remove_checkpoint(runner, path)
        self._reached('removed')
