from .checkpoint_files import atomic_copy_file, atomic_write_text, checkpoint_problem, commit_file
from .hooks import *  # noqa: F401,F403
from .hooks import __all__ as _hooks_all
from .resume import (ResumeCheckpointError, check_resume_file, checkpoint_layout,
                     find_resume_checkpoint, list_checkpoints)

__all__ = list(_hooks_all) + [
    'ResumeCheckpointError', 'atomic_copy_file', 'atomic_write_text', 'check_resume_file',
    'checkpoint_layout', 'checkpoint_problem', 'commit_file', 'find_resume_checkpoint',
    'list_checkpoints'
]
