"""mmengine's CheckpointHook, made safe against a kill at any moment."""
import os
import os.path as osp
from typing import List, Optional

from mmengine.dist import broadcast_object_list, get_dist_info, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from mmglnet.registry import HOOKS

from ..checkpoint_files import atomic_write_text, commit_file, partial_path, remove_partial_files
from ..resume import (LAST_CHECKPOINT, ResumeCheckpointError, check_resume_file,
                      find_resume_checkpoint)

# message_hub key: checkpoints (steps) the run decided to delete once their successor was
# complete; a run resumed after a kill finishes deleting them.
REMOVED_CKPT_IDS = 'mmglnet_removed_ckpt_ids'


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose files survive a kill at any moment, with a resume that checks.

    Takes every argument of mmengine's ``CheckpointHook`` and saves the same files at the same
    moments, with these differences on a local disk:

    * every checkpoint (periodic, last, best) and ``last_checkpoint`` is written to a hidden
      temporary file in the same folder (``.iter_8.pth.<pid>.partial``), flushed and synced,
      and then renamed over its final name; a file under a final name is always complete;
    * ``last_checkpoint`` is rewritten only after the checkpoint it names is complete;
    * a checkpoint that ``max_keep_ckpts`` makes obsolete is deleted only after its successor
      is complete and ``last_checkpoint`` names it (when the run is killed in between, the
      resumed run deletes it); a best checkpoint (``save_best``) only after the new best is
      complete;
    * when the run resumes without an explicit checkpoint (``resume=True`` and no
      ``load_from``, as mmdet's and mmseg's ``tools/train.py --resume`` do), it continues from
      the file ``last_checkpoint`` names only if that file is complete, and otherwise from the
      newest complete checkpoint (see :func:`~mmglnet.engine.resume.find_resume_checkpoint`);
      an explicit checkpoint that is incomplete stops the run with an error naming it;
    * temporary files left by a killed run are deleted when the next run starts.

    Use it in any config (after ``custom_imports=dict(imports=['mmglnet'])``) with::

        default_hooks = dict(checkpoint=dict(type='mmglnet.AtomicCheckpointHook'))

    which keeps the other ``checkpoint`` settings of the config. With a remote ``out_dir``
    (``s3://...``), the deprecated ``file_client_args``, or under ``FlexibleRunner``
    (checkpoints are folders there), it logs a warning and behaves exactly as
    ``CheckpointHook``.

    Args:
        **kwargs: The arguments of ``mmengine.hooks.CheckpointHook`` (``interval``,
            ``by_epoch``, ``max_keep_ckpts``, ``save_best``, ``out_dir``, ``filename_tmpl``,
            ...), with the same defaults.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._atomic = True
        self._removed_ckpt_ids: List[int] = []

    # ------------------------------------------------------------------------------ set-up
    def _checkpoint_dir(self, runner) -> str:
        """The folder CheckpointHook.before_train will settle on (known before it runs)."""
        if self.out_dir is None or self.out_dir == runner.work_dir:
            return runner.work_dir
        return osp.join(self.out_dir, osp.basename(runner.work_dir.rstrip(osp.sep)))

    def _supports_atomic(self, runner) -> Optional[str]:
        """Why files cannot be written atomically here, or None when they can."""
        if type(runner).__name__ == 'FlexibleRunner':
            return 'FlexibleRunner saves checkpoints as folders'
        if self.file_client_args is not None:
            return 'file_client_args is set (deprecated; use backend_args)'
        from mmengine.fileio import get_file_backend
        backend = get_file_backend(self._checkpoint_dir(runner), backend_args=self.backend_args)
        if not isinstance(backend, LocalBackend):
            return f'checkpoints go to {type(backend).__name__}, not a local disk'
        return None

    def before_run(self, runner) -> None:
        """Pick the checkpoint a resuming run loads (Runner.load_or_resume comes next)."""
        reason = self._supports_atomic(runner)
        if reason is not None:
            self._atomic = False
            runner.logger.warning(
                f'AtomicCheckpointHook: {reason}, so checkpoints are written as mmengine\'s '
                'CheckpointHook writes them (not atomically), and resuming is left to mmengine.')
            return
        folder = self._checkpoint_dir(runner)
        # Runner.load_or_resume reads these two attributes after before_run.
        if not getattr(runner, '_resume', False):
            return
        load_from = getattr(runner, '_load_from', None)
        choice = [None, None]  # [checkpoint, error]
        if is_main_process():
            if load_from is None:
                choice[0] = find_resume_checkpoint(
                    runner.work_dir, [folder], (self.filename_tmpl, ), logger=runner.logger)
            else:
                try:
                    check_resume_file(str(load_from))
                except ResumeCheckpointError as error:
                    choice[1] = str(error)
                choice[0] = load_from
        if get_dist_info()[1] > 1:
            broadcast_object_list(choice)
        if choice[1] is not None:
            raise ResumeCheckpointError(choice[1])
        if choice[0] is None:
            # Nothing complete to resume from: start from the beginning, as mmengine does
            # when a work dir has no last_checkpoint.
            runner._resume = False
            runner._load_from = None
        else:
            runner._load_from = choice[0]

    def before_train(self, runner) -> None:
        """As CheckpointHook; also deletes what a killed run left: temporary files, and
        checkpoints it had made obsolete."""
        super().before_train(runner)
        if not self._atomic:
            return
        if is_main_process():
            for path in remove_partial_files([self.out_dir, runner.work_dir]):
                runner.logger.info(
                    f'AtomicCheckpointHook: deleted {path}, an incomplete file left by a run '
                    'that was killed while writing it.')
        pending = list(runner.message_hub.runtime_info.get(REMOVED_CKPT_IDS, []))
        kept = set(getattr(self, 'keep_ckpt_ids', []))
        self._removed_ckpt_ids = []
        if is_main_process():
            for step in pending:
                if step not in kept:
                    self._remove_checkpoint(runner,
                                            osp.join(self.out_dir, self.filename_tmpl.format(step)))
        runner.message_hub.update_info(REMOVED_CKPT_IDS, [])

    # ------------------------------------------------------------------- writing, removing
    def _commit(self, temporary: str, final: str) -> None:
        """Sync the written temporary file and rename it into place."""
        commit_file(temporary, final)

    def _write_checkpoint(self, runner, filename: str, **kwargs) -> None:
        """``runner.save_checkpoint`` into a temporary file, then rename it to ``filename``."""
        final = osp.join(self.out_dir, filename)
        temporary = partial_path(final)
        try:
            runner.save_checkpoint(
                self.out_dir, osp.basename(temporary), backend_args=self.backend_args, **kwargs)
            if is_main_process():
                self._commit(temporary, final)
        except BaseException:
            if osp.exists(temporary):
                os.remove(temporary)
            raise

    def _write_last_checkpoint(self, runner) -> None:
        """Point ``last_checkpoint`` at the (complete) newest checkpoint, atomically."""
        atomic_write_text(osp.join(runner.work_dir, LAST_CHECKPOINT), self.last_ckpt)

    def _remove_checkpoint(self, runner, path: str) -> None:
        """Delete an obsolete checkpoint (its successor is complete)."""
        if osp.isfile(path):
            os.remove(path)
            runner.logger.info(f'AtomicCheckpointHook: deleted the obsolete checkpoint {path}.')

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._atomic:
            return super()._save_checkpoint_with_step(runner, step, meta)
        obsolete = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                obsolete.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        # Saved inside the new checkpoint: a run resumed from it deletes these if a kill came
        # before this run did.
        self._removed_ckpt_ids = sorted(set(self._removed_ckpt_ids) | set(obsolete))
        runner.message_hub.update_info(REMOVED_CKPT_IDS, list(self._removed_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        self._write_checkpoint(
            runner,
            ckpt_filename,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            **self.args)
        if not is_main_process():
            return
        self._write_last_checkpoint(runner)
        for old_step in self._removed_ckpt_ids:
            if old_step != step:
                self._remove_checkpoint(runner,
                                        osp.join(self.out_dir, self.filename_tmpl.format(old_step)))
        self._removed_ckpt_ids = []

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not self._atomic:
            return super()._save_best_checkpoint(runner, metrics)
        if not self.save_best:
            return
        if self.by_epoch:
            ckpt_filename = self.filename_tmpl.format(runner.epoch)
            cur_type, cur_time = 'epoch', runner.epoch
        else:
            ckpt_filename = self.filename_tmpl.format(runner.iter)
            cur_type, cur_time = 'iter', runner.iter
        meta = dict(epoch=runner.epoch, iter=runner.iter)
        if 'auto' in self.key_indicators:
            self._init_rule(self.rules, [list(metrics.keys())[0]])

        best_ckpt_updated = False
        for key_indicator, rule in zip(self.key_indicators, self.rules):
            key_score = metrics[key_indicator]
            single = len(self.key_indicators) == 1
            best_score_key = 'best_score' if single else f'best_score_{key_indicator}'
            runtime_best_ckpt_key = 'best_ckpt' if single else f'best_ckpt_{key_indicator}'
            previous = self.best_ckpt_path if single else \
                self.best_ckpt_path_dict[key_indicator]
            best_score = runner.message_hub.runtime_info.get(best_score_key,
                                                             self.init_value_map[rule])
            if key_score is None or not self.is_better_than[key_indicator](key_score, best_score):
                continue
            best_ckpt_updated = True
            best_score = key_score
            runner.message_hub.update_info(best_score_key, best_score)

            best_ckpt_name = f'best_{key_indicator}_{ckpt_filename}'.replace('/', '_')
            best_path = osp.join(self.out_dir, best_ckpt_name)
            if single:
                self.best_ckpt_path = best_path
            else:
                self.best_ckpt_path_dict[key_indicator] = best_path
            runner.message_hub.update_info(runtime_best_ckpt_key, best_path)
            # The new best first; the previous one is deleted only once this one is complete.
            self._write_checkpoint(
                runner,
                best_ckpt_name,
                save_optimizer=False,
                save_param_scheduler=False,
                meta=meta,
                by_epoch=False)
            runner.logger.info(f'The best checkpoint with {best_score:0.4f} {key_indicator} '
                               f'at {cur_time} {cur_type} is saved to {best_ckpt_name}.')
            if previous and previous != best_path and is_main_process() and \
                    osp.isfile(previous):
                os.remove(previous)
                runner.logger.info(f'The previous best checkpoint {previous} is removed')

        # As CheckpointHook: save the latest checkpoint again so that it records the new best.
        if best_ckpt_updated and self.last_ckpt is not None:
            self._save_checkpoint_with_step(runner, cur_time, meta)
