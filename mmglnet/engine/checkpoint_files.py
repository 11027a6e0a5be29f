"""Checkpoint files on a local disk: written atomically, checked before they are trusted.

A file written by :func:`commit_file` (or :func:`atomic_write_text`, :func:`atomic_copy_file`)
is either absent or complete under its final name: the bytes go to a hidden temporary file in
the same folder, are flushed and synced to the disk, and only then renamed over the final name
(a rename within one folder is atomic on POSIX file systems). :func:`checkpoint_problem` tells
a complete ``torch.save`` file from an empty, truncated or damaged one without unpickling
anything.
"""
import os
import os.path as osp
import re
import shutil
import zipfile
from typing import Iterable, List, Optional

PARTIAL_SUFFIX = '.partial'
_PARTIAL_RE = re.compile(r'^\.(?P<name>.+)\.(?P<pid>\d+)' + re.escape(PARTIAL_SUFFIX) + '$')


def partial_path(path: str) -> str:
    """The temporary name under which ``path`` is written before it is renamed into place.

    A hidden file in the same folder (``.iter_8.pth.<pid>.partial``), so that the rename
    stays within one file system and no pattern that matches checkpoints matches it.

    Args:
        path (str): The final path.

    Returns:
        str: The temporary path.
    """
    folder, name = osp.split(path)
    return osp.join(folder, f'.{name}.{os.getpid()}{PARTIAL_SUFFIX}')


def _fsync_folder(folder: str) -> None:
    """Sync a folder's entries (the rename itself) to the disk where the OS allows it."""
    if not hasattr(os, 'O_DIRECTORY'):
        return  # Windows: folders cannot be opened; os.replace is still atomic there.
    fd = os.open(folder or '.', os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_file(path: str) -> None:
    """Flush a written file's data to the disk (``fsync``).

    Args:
        path (str): The file.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_file(temporary: str, final: str) -> None:
    """Sync a fully written temporary file and rename it over ``final``.

    Until the rename, ``final`` keeps its previous content (or stays absent); afterwards it has
    the new content, complete, and the rename is synced too.

    Args:
        temporary (str): The written file, in the same folder as ``final``.
        final (str): The destination.
    """
    sync_file(temporary)
    os.replace(temporary, final)
    _fsync_folder(osp.dirname(final))


def atomic_write_text(path: str, text: str) -> None:
    """Write a small text file atomically (temporary file, flush, fsync, rename).

    Args:
        path (str): The destination.
        text (str): The content.
    """
    temporary = partial_path(path)
    try:
        with open(temporary, 'w', encoding='utf-8') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if osp.exists(temporary):
            os.remove(temporary)
        raise
    _fsync_folder(osp.dirname(path))


def atomic_copy_file(source: str, path: str) -> None:
    """Copy a file atomically: ``path`` keeps its previous content (or stays absent) until the
    whole copy is on the disk.

    Args:
        source (str): The file to copy.
        path (str): The destination.
    """
    temporary = partial_path(path)
    try:
        shutil.copyfile(source, temporary)
        commit_file(temporary, path)
    except BaseException:
        if osp.exists(temporary):
            os.remove(temporary)
        raise


def remove_partial_files(folders: Iterable[str]) -> List[str]:
    """Delete temporary files that :func:`partial_path` names, left by a killed process.

    Only hidden ``.<name>.<pid>.partial`` files of processes that no longer run are removed.

    Args:
        folders (Iterable[str]): Folders to clean (missing ones are skipped).

    Returns:
        list[str]: The removed files.
    """
    removed = []
    for folder in dict.fromkeys(folders):
        if not osp.isdir(folder):
            continue
        for name in os.listdir(folder):
            match = _PARTIAL_RE.match(name)
            if match is None or _process_alive(int(match.group('pid'))):
                continue
            path = osp.join(folder, name)
            try:
                os.remove(path)
            except FileNotFoundError:
                continue
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process has nothing in flight when it cleans up
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


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
