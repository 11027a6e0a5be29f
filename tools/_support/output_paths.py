"""Whether a tool could write a file where it is asked to, checked before any work."""
import os
import os.path as osp
from typing import Optional


def output_folder_problem(folder: str) -> Optional[str]:
    """What would stop a tool from writing into ``folder`` (made if missing), or None.

    The nearest existing folder on the way up must be a folder, and writable where the folder
    has to be made or written.

    Args:
        folder (str): The folder the output goes in.

    Returns:
        str | None: e.g. ``"'/data/x' is a file, not a folder"``, or None when it can be written.
    """
    existing = osp.abspath(folder)
    while not osp.exists(existing):  # where the missing folders would be made
        existing = osp.dirname(existing)
    if not osp.isdir(existing):
        return f'{existing!r} is a file, not a folder'
    if not os.access(existing, os.W_OK | os.X_OK):
        return f'no permission to write in {existing!r}'
    return None
