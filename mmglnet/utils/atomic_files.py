"""Files written atomically on a local disk: either absent (or as they were) or complete under
their final name, whenever the writing process crashes or is killed.

The bytes go to a hidden temporary file in the same folder (:func:`partial_path`), are flushed
and synced to the disk, and only then renamed over the final name (a rename within one folder
is atomic on POSIX file systems). :func:`atomic_output` gives any writer (``torch.save``,
``torch.onnx.export``, an image encoder) the temporary path; :func:`remove_partial_files` clears
what a killed process left.
"""
import os
import os.path as osp
import re
import shutil
from contextlib import contextmanager
from typing import Iterable, Iterator, List

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
    """Write a small text file atomically (see :func:`atomic_output`).

    Args:
        path (str): The destination.
        text (str): The content.
    """
    with atomic_output(path) as temporary, open(temporary, 'w', encoding='utf-8') as f:
        f.write(text)


def atomic_copy_file(source: str, path: str) -> None:
    """Copy a file atomically: ``path`` keeps its previous content (or stays absent) until the
    whole copy is on the disk.

    Args:
        source (str): The file to copy.
        path (str): The destination.
    """
    with atomic_output(path) as temporary:
        shutil.copyfile(source, temporary)


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


@contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Write ``path`` atomically through a temporary file.

    Examples:
        >>> with atomic_output('converted.pth') as temporary:
        ...     torch.save(checkpoint, temporary)

    The block writes the temporary path it is given; when it ends without an exception the
    file is synced and renamed over ``path``. Until then ``path`` keeps its previous content
    (or stays absent); if the block raises, the temporary file is removed, and if the process
    is killed, it stays hidden until :func:`remove_partial_files` clears it.

    Args:
        path (str): The destination (its folder must exist).

    Yields:
        str: The temporary path to write.
    """
    temporary = partial_path(path)
    try:
        yield temporary
        commit_file(temporary, path)
    except BaseException:
        if osp.exists(temporary):
            os.remove(temporary)
        raise
