"""Which checkpoint a resumed training run continues from.

mmengine resumes "automatically" (``resume=True`` with no ``load_from``) from whatever the work
dir's ``last_checkpoint`` file names, and fails when that file is empty or names a missing or
truncated checkpoint. :func:`find_resume_checkpoint` instead takes the file ``last_checkpoint``
names only when it is complete, and otherwise the newest complete checkpoint of the run,
saying which one and why. Both ``tools/train.py`` and
:class:`~mmglnet.engine.hooks.AtomicCheckpointHook` (hence mmdet's and mmseg's own
``tools/train.py``) use it.
"""
import logging
import os
import os.path as osp
import re
from typing import Any, List, Optional, Sequence, Tuple

from mmengine.logging import print_log

from .checkpoint_files import checkpoint_problem

LAST_CHECKPOINT = 'last_checkpoint'
DEFAULT_TEMPLATES = ('iter_{}.pth', 'epoch_{}.pth')


class ResumeCheckpointError(RuntimeError):
    """A checkpoint given to resume from is missing, empty, truncated or damaged."""


def _template_regex(template: str) -> 're.Pattern':
    if template.count('{}') != 1:
        raise ValueError(f'filename_tmpl={template!r} must contain "{{}}" exactly once.')
    before, after = template.split('{}')
    return re.compile('^' + re.escape(before) + r'(\d+)' + re.escape(after) + '$')


def list_checkpoints(folder: str,
                     templates: Sequence[str] = DEFAULT_TEMPLATES) -> List[Tuple[int, str]]:
    """Checkpoints of a folder named by the templates, newest (highest step) first.

    Args:
        folder (str): The folder.
        templates (Sequence[str]): File name templates with one ``{}`` for the epoch or
            iteration, as ``CheckpointHook.filename_tmpl``. Defaults to
            ``('iter_{}.pth', 'epoch_{}.pth')``.

    Returns:
        list[tuple[int, str]]: ``(step, path)`` pairs; ties are broken by modification time.
    """
    if not osp.isdir(folder):
        return []
    patterns = [_template_regex(t) for t in templates]
    found = []
    for name in os.listdir(folder):
        for pattern in patterns:
            match = pattern.match(name)
            if match:
                path = osp.join(folder, name)
                try:
                    found.append((int(match.group(1)), osp.getmtime(path), path))
                except OSError:  # deleted meanwhile
                    pass
                break
    found.sort(reverse=True)
    return [(step, path) for step, _, path in found]


def _read_last_checkpoint(work_dir: str) -> Tuple[Optional[str], str]:
    """(path named by last_checkpoint or None, description of what was found)."""
    record = osp.join(work_dir, LAST_CHECKPOINT)
    if not osp.isfile(record):
        return None, f'{record} does not exist'
    try:
        with open(record, encoding='utf-8') as f:
            named = f.read().strip()
    except (OSError, UnicodeDecodeError) as error:
        return None, f'{record} cannot be read ({error})'
    if not named:
        return None, f'{record} is empty'
    # mmengine writes the path as the run saw it, often relative to the directory the run was
    # started from; a run resumed from elsewhere finds the file beside last_checkpoint.
    if not osp.isabs(named) and not osp.exists(named):
        beside = osp.join(work_dir, osp.basename(named))
        if osp.exists(beside):
            named = beside
    return named, f'{record} names {named}'


def find_resume_checkpoint(work_dir: str,
                           checkpoint_dirs: Optional[Sequence[str]] = None,
                           templates: Sequence[str] = DEFAULT_TEMPLATES,
                           logger: Any = 'current') -> Optional[str]:
    """The newest complete checkpoint to resume the run in ``work_dir`` from.

    1. The file named in ``<work_dir>/last_checkpoint``, when it is complete
       (:func:`~mmglnet.engine.checkpoint_files.checkpoint_problem` finds nothing wrong).
    2. Otherwise the complete checkpoint with the highest epoch or iteration among the files
       of ``checkpoint_dirs`` named by ``templates``.
    3. Otherwise None: nothing to resume from.

    The choice and the reason (which files were skipped and why) are logged.

    Args:
        work_dir (str): The run's work dir (where ``last_checkpoint`` is).
        checkpoint_dirs (Sequence[str], optional): Folders holding the checkpoints. Defaults
            to None, meaning ``[work_dir]``.
        templates (Sequence[str]): Checkpoint file name templates. Defaults to
            ``('iter_{}.pth', 'epoch_{}.pth')``.
        logger (Any): Where to log, as ``mmengine.logging.print_log`` takes it. Defaults to
            ``'current'``.

    Returns:
        str | None: The checkpoint path.
    """
    checkpoint_dirs = list(checkpoint_dirs or [work_dir])
    named, found = _read_last_checkpoint(work_dir)
    if named is not None:
        problem = checkpoint_problem(named)
        if problem is None:
            print_log(f'Resuming from {named}: {found}, a complete checkpoint.', logger=logger)
            return named
        found = f'{found}, which {problem}'
    skipped = []
    for _, path in _unique(p for d in checkpoint_dirs for p in list_checkpoints(d, templates)):
        if named is not None and osp.abspath(path) == osp.abspath(named):
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            note = f'; newer files skipped: {"; ".join(skipped)}' if skipped else ''
            print_log(
                f'Resuming from {path}, the newest complete checkpoint in '
                f'{", ".join(checkpoint_dirs)}: {found}{note}.',
                logger=logger,
                level=logging.WARNING)
            return path
        skipped.append(f'{path} {problem}')
    note = f' ({"; ".join(skipped)})' if skipped else ''
    print_log(
        f'Nothing to resume from: {found}, and {", ".join(checkpoint_dirs)} holds no complete '
        f'checkpoint named like {" or ".join(templates)}{note}. Training starts from the '
        'beginning.',
        logger=logger,
        level=logging.WARNING)
    return None


def _unique(items):
    seen = set()
    for step_path in sorted(items, reverse=True):
        if step_path[1] not in seen:
            seen.add(step_path[1])
            yield step_path


def check_resume_file(path: str) -> None:
    """Check an explicitly given checkpoint to resume from; raise naming it when it is broken.

    Args:
        path (str): A local checkpoint file (remote URLs are left to mmengine).

    Raises:
        ResumeCheckpointError: When the file is missing, empty, truncated or damaged.
    """
    if '://' in path:
        return
    problem = checkpoint_problem(path)
    if problem is None:
        return
    folder = osp.dirname(osp.abspath(path))
    candidates = [
        p for _, p in list_checkpoints(folder)
        if osp.abspath(p) != osp.abspath(path) and checkpoint_problem(p) is None
    ]
    hint = (f'The newest complete checkpoint beside it is {candidates[0]}; give that one, or '
            'give --resume without a path (resume=True, load_from=None) to resume from the '
            'newest complete checkpoint of the work dir.'
            if candidates else 'Give another checkpoint, or --resume without a path (resume=True, '
            'load_from=None) to resume from the newest complete checkpoint of the work dir '
            '(or start from the beginning when there is none).')
    raise ResumeCheckpointError(
        f'The checkpoint to resume from, {path!r}, {problem}; a complete checkpoint written '
        f'by torch.save was expected. {hint}')


def checkpoint_layout(cfg: Any) -> Tuple[List[str], Tuple[str, ...]]:
    """Where a config's training run keeps its checkpoints and how it names them.

    Follows ``CheckpointHook``: ``out_dir`` (then ``<out_dir>/<work dir name>``) or the work
    dir; ``filename_tmpl`` or ``epoch_{}.pth`` / ``iter_{}.pth`` after ``by_epoch`` (True
    unless the config says otherwise).

    Args:
        cfg (Config): A config with ``work_dir`` set.

    Returns:
        tuple[list[str], tuple[str, ...]]: The folders and the file name templates.
    """
    work_dir = cfg.work_dir
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    out_dir = hook.get('out_dir')
    folders = [work_dir]
    if out_dir and '://' not in str(out_dir):
        folders.insert(0, osp.join(str(out_dir), osp.basename(work_dir.rstrip(osp.sep))))
    if hook.get('filename_tmpl'):
        templates = (hook['filename_tmpl'], )
    else:
        templates = ('epoch_{}.pth', ) if hook.get('by_epoch', True) else ('iter_{}.pth', )
    return folders, templates
