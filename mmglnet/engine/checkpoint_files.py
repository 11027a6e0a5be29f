"""Checkpoint files on a local disk: written atomically, checked before they are trusted.

:func:`checkpoint_problem` tells a complete ``torch.save`` file from an empty, truncated or
damaged one without unpickling anything. The atomic writing (:func:`commit_file`,
:func:`atomic_output`, ...) is :mod:`mmglnet.utils.atomic_files`'s, importable from here too.
"""
import os.path as osp
import zipfile
from typing import Optional

from mmglnet.utils.atomic_files import (PARTIAL_SUFFIX, atomic_copy_file, atomic_output,
                                        atomic_write_text, commit_file, partial_path,
                                        remove_partial_files, sync_file)

__all__ = [
    'PARTIAL_SUFFIX', 'atomic_copy_file', 'atomic_output', 'atomic_write_text',
    'checkpoint_problem', 'commit_file', 'partial_path', 'remove_partial_files', 'sync_file'
]


def checkpoint_problem(path: str) -> Optional[str]:
    """What is wrong with a checkpoint file, or None when it is a complete ``torch.save`` file.

    The file must be a complete zip archive as ``torch.save`` writes it (its central directory
    is written last, so a truncated file has none), every record must match its CRC-32, and it
    must hold the pickled object (``data.pkl``). Nothing is unpickled.

    Args:
        path (str): A local file.

    Returns:
        str | None: A description of the problem, e.g. ``'is empty (0 bytes)'``.
    """
    if not osp.exists(path):
        return 'does not exist'
    if not osp.isfile(path):
        return 'is not a file'
    size = osp.getsize(path)
    if size == 0:
        return 'is empty (0 bytes)'
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(n == 'data.pkl' or n.endswith('/data.pkl') for n in names):
                return (f'is a zip archive of {size} bytes without the data.pkl record '
                        'torch.save writes')
            damaged = archive.testzip()
    except zipfile.BadZipFile as error:
        return (f'is not a complete torch.save file ({size} bytes: {error}); it was cut '
                'short while being written, or is damaged')
    except (OSError, EOFError, ValueError) as error:
        return f'cannot be read ({size} bytes: {error})'
    if damaged is not None:
        return f'is damaged: its record {damaged!r} fails the CRC-32 check'
    return None
