"""Reading the files a user hands to the tools (configs, images), with errors that say what is
wrong with which file and what to do.

mmengine reports a syntax error in a config as ``File "<unknown>", line 2`` (it parses the
text without its file name), and ``mmcv.imread`` returns None both for a missing file and for
one it cannot decode.
"""
import ast
import os
import os.path as osp
from collections import Counter
from typing import Any, List, Optional, Sequence

import numpy as np

IMAGE_FORMATS = 'JPEG, PNG, BMP, TIFF, WebP (what OpenCV decodes)'
# The file name extensions taken as images in a folder (any case).
IMAGE_EXTENSIONS = ('.bmp', '.jpeg', '.jpg', '.png', '.tif', '.tiff', '.webp')


class ConfigFileError(ValueError):
    """A config file that cannot be parsed; the message names the file, line and error."""


class ImageFileError(ValueError):
    """An image file that exists but cannot be decoded; the message names it."""


def _syntax_problem(path: str) -> str:
    """``'<path>, line N, column C: <msg>\\n    <text>'`` for a Python file that fails to parse,
    '' when it parses."""
    try:
        with open(path, encoding='utf-8') as f:
            source = f.read()
    except UnicodeDecodeError as error:
        return f'{path}: not UTF-8 text ({error})'
    try:
        ast.parse(source, filename=path)
    except SyntaxError as error:
        where = f'{path}, line {error.lineno}'
        if error.offset:
            where += f', column {error.offset}'
        text = (error.text or '').rstrip('\n')
        return f'{where}: {error.msg}' + (f'\n    {text}' if text.strip() else '')
    return ''


def _local_bases(path: str, seen: Optional[set] = None) -> List[str]:
    """The local ``_base_`` files a config inherits, depth first (``pkg::`` ones skipped)."""
    seen = set() if seen is None else seen
    try:
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    found = []
    for node in tree.body:
        if not (isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == '_base_' for t in node.targets)):
            continue
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            continue
        for base in [value] if isinstance(value, str) else list(value):
            if not isinstance(base, str) or '::' in base:
                continue
            base_path = osp.normpath(osp.join(osp.dirname(path), base))
            if base_path in seen or not osp.isfile(base_path):
                continue
            seen.add(base_path)
            found.append(base_path)
            found.extend(_local_bases(base_path, seen))
    return found


def load_config(path: str) -> Any:
    """``mmengine.Config.fromfile`` that names the file and line of a syntax error.

    Args:
        path (str): The config file.

    Returns:
        Config: The config.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
        ConfigFileError: When the config, or a ``_base_`` file it inherits, is not valid
            Python: the message names the file, the line and column, and shows the line.
    """
    from mmengine.config import Config
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'Config file {path!r} does not exist; give the path of a .py config (e.g. one of '
            'configs/*/*.py).')
    try:
        return Config.fromfile(path)
    except SyntaxError as error:
        for candidate in [path] + _local_bases(path):
            problem = _syntax_problem(candidate)
            if problem:
                inherited = '' if candidate == path else f' (a _base_ of {path})'
                raise ConfigFileError(
                    f'The config {candidate}{inherited} is not valid Python: {problem}\n'
                    'A config is a Python file of assignments such as '
                    "`model = dict(type='...')`; fix that line (an unclosed bracket or "
                    'quote often shows on the next line).') from error
        raise


def read_image(path: str) -> np.ndarray:
    """Read an image file as a BGR ``uint8`` array, telling a missing file from a bad one.

    Args:
        path (str): The image file.

    Returns:
        np.ndarray: ``(H, W, 3)`` BGR image.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
        ImageFileError: When it exists but cannot be decoded (empty, truncated, not an image).
    """
    import mmcv
    if not osp.exists(path):
        raise FileNotFoundError(
            f'Image file {path!r} does not exist; give the path of an existing image '
            f'({IMAGE_FORMATS}).')
    if not osp.isfile(path):
        raise ImageFileError(f'{path!r} is a folder, not an image file; give one image file.')
    size = osp.getsize(path)
    try:
        image = mmcv.imread(path, flag='color')
        reason = ''
    except Exception as error:  # OpenCV raises on empty input, returns None on bad input
        image, reason = None, f' ({type(error).__name__}: {str(error).strip()[:200]})'
    if image is None:
        raise ImageFileError(
            f'Image file {path!r} exists ({size} bytes) but cannot be decoded as an image{reason}'
            f': it is empty, truncated or not an image. Expected one of {IMAGE_FORMATS}; check '
            'the file (e.g. open it in an image viewer) or give another one.')
    return image


def list_images(path: str) -> List[str]:
    """The image files a tool runs on: ``path`` itself, or the images in the folder ``path``.

    A folder gives its files whose extension is one of :data:`IMAGE_EXTENSIONS` (any case),
    sorted by name; sub-folders and other files are left out. Whether the files decode is
    :func:`read_image`'s check.

    Args:
        path (str): An image file or a folder of images.

    Returns:
        list[str]: ``[path]`` for a file, the folder's image files otherwise.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
        ImageFileError: When the folder holds no image file.
    """
    if not osp.exists(path):
        raise FileNotFoundError(
            f'{path!r} does not exist; give the path of an existing image ({IMAGE_FORMATS}) '
            'or of a folder of images.')
    if not osp.isdir(path):
        return [path]
    names = sorted(os.listdir(path))
    images = [
        osp.join(path, name) for name in names
        if osp.splitext(name)[1].lower() in IMAGE_EXTENSIONS and osp.isfile(osp.join(path, name))
    ]
    if not images:
        shown = ', '.join(names[:5]) + (f' and {len(names) - 5} more' if len(names) > 5 else '')
        raise ImageFileError(
            f'The folder {path!r} holds no image file (names ending in '
            f'{", ".join(IMAGE_EXTENSIONS)}); it holds {shown or "nothing"}. Give a folder of '
            'images, or one image file.')
    return images


def image_stems(paths: Sequence[str]) -> List[str]:
    """Names for each image's output files: its file name without the extension, or with it
    where two images share that name (``a.jpg`` and ``a.png`` give ``a.jpg``, ``a.png``).

    Args:
        paths (Sequence[str]): Image files, as :func:`list_images` gives them.

    Returns:
        list[str]: One name per image, all different when the file names are (as in one
        folder).
    """
    names = [osp.basename(path) for path in paths]
    stems = [osp.splitext(name)[0] for name in names]
    counts = Counter(stems)
    chosen = [stem if counts[stem] == 1 else name for stem, name in zip(stems, names)]
    # A stem kept may equal a name taken in full ('a.jpg.png' beside 'a.jpg' and 'a.png').
    return chosen if len(set(chosen)) == len(chosen) else names
