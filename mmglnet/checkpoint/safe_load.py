"""Safe reading of checkpoint files: format checks, allow-list, trust bound to contents.

Two kinds of files reach mmglnet:

* **mmengine checkpoints** (written by the Runner). They are loaded weights-only, whatever
  torch's default: tensors and plain containers, plus a few trusted mmengine and numpy objects
  (``message_hub`` history buffers, numpy arrays and dtypes, under numpy 1 or numpy 2 module
  names), which :func:`allow_mmengine_types` allow-lists (torch >= 2.6; an older torch gets
  the same allow-list from mmglnet's own unpickler). Anything else in such a file raises
  :class:`UntrustedCheckpointError`, naming the object and the per-file opt-in
  (:func:`trust_checkpoint` or ``MMGLNET_TRUSTED_CHECKPOINTS``).
* **official GLNet release files**, which also hold training ``args`` (argparse or OmegaConf
  objects) and optimizer state. :func:`read_checkpoint_tensors` reads them with a restricted
  unpickler: tensors and plain containers are rebuilt, every other object becomes an inert
  :class:`UnloadedObject`, and nothing the file asks to call is called.

Before either, :func:`check_checkpoint_format` looks at the file itself and raises
:class:`CheckpointFileError` for an empty, truncated or foreign file (a plain pickle, a text
file), naming the file and what is wrong with it.

The opt-in trusts **bytes, not paths**: trusting a file records its SHA-256 (or takes one given
as ``PATH@sha256:HEX`` or ``sha256:HEX``), and a file is unpickled without restriction only if
the bytes read for loading have a trusted digest. A file replaced after it was trusted, or a
symlink re-pointed, is untrusted again. The bytes are read once, hashed, and loaded from memory,
so what is checked is what is loaded.
"""
import codecs
import functools
import hashlib
import io
import os
import os.path as osp
import pickle
import re
import types
import zipfile
from collections import OrderedDict
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import _compat_pickle
import torch

TRUSTED_ENV = 'MMGLNET_TRUSTED_CHECKPOINTS'
DIGEST_PREFIX = 'sha256:'

# torch.save's legacy (pre-1.6, non-zip) format starts with its magic number pickled with
# protocol 2: PROTO 2, LONG1 of 10 bytes, then 0x1950a86a20f9469cfc6c little-endian.
_TORCH_LEGACY_HEADER = b'\x80\x02\x8a\x0a' + (0x1950a86a20f9469cfc6c).to_bytes(10, 'little')
_ZIP_HEADER = b'PK\x03\x04'


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds an object that is not allow-listed for safe loading."""


class CheckpointFileError(ValueError):
    """A checkpoint file that cannot be read: empty, truncated, or not a torch checkpoint.

    The message names the file and says what is wrong with it.
    """


# --------------------------------------------------------------------------------------------
# What kind of file is it?
# --------------------------------------------------------------------------------------------
def _describe_foreign(head: bytes) -> str:
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:  # PROTO 2..5
        return ('a plain Python pickle (pickle.dump), not a torch checkpoint (torch.save). '
                'mmglnet does not unpickle plain pickles: they can run code and hold no '
                'tensors torch can map. Re-save the weights with torch.save')
    if head.lstrip()[:1] in (b'{', b'[', b'<') or head[:7] == b'version':
        return ('a text file (JSON, HTML or a Git LFS pointer?), not a torch checkpoint: was '
                'the download an error page or an LFS pointer? Download the file itself')
    if head[:2] == b'\x1f\x8b':
        return 'a gzip archive, not a torch checkpoint: unpack it first'
    return ('not a torch checkpoint: it is neither a zip archive (torch.save since torch 1.6) '
            "nor torch's legacy format")


def check_checkpoint_format(file: Any, name: Optional[str] = None) -> None:
    """Check that a file is a complete torch checkpoint, before any model work.

    Reads the first bytes and, for zip checkpoints, the zip directory (at the end of the file),
    so a truncated download is found at once. Nothing is unpickled.

    Args:
        file (str | file object): A path, or a seekable binary file object (read from its
            start; its position is restored).
        name (str, optional): How to call the file in messages. Defaults to the path.

    Raises:
        FileNotFoundError: When the path does not exist.
        CheckpointFileError: When the file is empty, truncated or not a torch checkpoint.
    """
    if isinstance(file, (str, os.PathLike)):
        path = os.fspath(file)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'Checkpoint file {path!r} does not exist. Check the path (a release file: see '
                'the README, "Pretrained weights").')
        with open(path, 'rb') as f:
            return check_checkpoint_format(f, name or path)
    name = name or getattr(file, 'name', '<checkpoint>')
    start = file.tell()
    try:
        file.seek(0, io.SEEK_END)
        size = file.tell()
        file.seek(0)
        head = file.read(64)
        if size == 0:
            raise CheckpointFileError(
                f'Checkpoint file {name!r} is empty (0 bytes): an interrupted download or copy? '
                'Download or copy it again.')
        if head.startswith(_ZIP_HEADER):
            file.seek(0)
            if not zipfile.is_zipfile(file):
                raise CheckpointFileError(
                    f'Checkpoint file {name!r} ({size} bytes) is truncated or damaged: it starts '
                    'as a torch checkpoint (zip archive) but its end, the zip directory, is '
                    'missing. Download or copy it again.')
            file.seek(0)
            with zipfile.ZipFile(file) as archive:
                names = archive.namelist()
            if not any(n == 'data.pkl' or n.endswith('/data.pkl') for n in names):
                raise CheckpointFileError(
                    f'Checkpoint file {name!r} is a zip archive but not a torch checkpoint (no '
                    f'data.pkl; it holds {names[:5]}). Give the .pth file written by '
                    'torch.save.')
            return
        if head.startswith(_TORCH_LEGACY_HEADER):
            return
        raise CheckpointFileError(
            f'Checkpoint file {name!r} ({size} bytes) is {_describe_foreign(head)}.')
    finally:
        file.seek(start)


def _load_failed(name: str, error: BaseException) -> CheckpointFileError:
    return CheckpointFileError(
        f'Checkpoint file {name!r} could not be read: {type(error).__name__}: {error}. It is '
        'probably truncated or damaged; download or copy it again.')


# --------------------------------------------------------------------------------------------
# Restricted reading of release files: tensors only, everything else inert.
# --------------------------------------------------------------------------------------------
class UnloadedObject:
    """Inert stand-in for an object a checkpoint wanted to build (or a call it asked for).

    It records only the qualified name; constructor arguments and state are dropped.
    """
    qualified_name = '?'

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass

    def __repr__(self):
        return f'<unloaded {self.qualified_name}>'


def _placeholder(module: str, name: str) -> type:
    return type(name, (UnloadedObject, ), {'qualified_name': f'{module}.{name}'})


_SAFE_GLOBALS = {
    ('collections', 'OrderedDict'): OrderedDict,
    ('torch._utils', '_rebuild_tensor'): torch._utils._rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): torch._utils._rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): torch._utils._rebuild_parameter,
    ('torch', 'Size'): torch.Size,
    ('torch', 'device'): torch.device,
    ('builtins', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    ('builtins', 'slice'): slice,
    ('builtins', 'complex'): complex,
}
for _name in ('_rebuild_tensor_v3', '_rebuild_parameter_with_state'):
    if hasattr(torch._utils, _name):
        _SAFE_GLOBALS[('torch._utils', _name)] = getattr(torch._utils, _name)


class _TensorOnlyUnpickler(pickle.Unpickler):
    """Resolves only tensor-building globals; any other global becomes a placeholder class."""

    def find_class(self, module: str, name: str) -> Any:
        # What pickle.Unpickler.find_class does for protocol < 3 (Python 2 names).
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == 'torch' and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return self.other_global(module, name)

    def other_global(self, module: str, name: str) -> Any:
        """What any other global becomes: an inert placeholder."""
        return _placeholder(module, name)


def _pickle_module(unpickler: type, name: str) -> types.SimpleNamespace:
    """A ``pickle_module`` for :func:`torch.load` that unpickles with ``unpickler``."""
    return types.SimpleNamespace(
        __name__=name,
        Unpickler=unpickler,
        load=lambda file, **kwargs: unpickler(file, **kwargs).load())


_TENSOR_ONLY_PICKLE = _pickle_module(_TensorOnlyUnpickler, 'mmglnet_tensor_only_pickle')


def read_checkpoint_tensors(path: str, map_location: str = 'cpu') -> Any:
    """Read any checkpoint file without executing code from it.

    Tensors, dicts, lists and numbers are rebuilt; any other object (argparse namespaces,
    OmegaConf configs, numpy scalars, functions a malicious file names) becomes an inert
    :class:`UnloadedObject`.

    Args:
        path (str): Local file.
        map_location (str): Where tensors go. Defaults to ``'cpu'``.

    Returns:
        The file's top-level object (usually a dict).

    Raises:
        FileNotFoundError: When ``path`` does not exist.
        CheckpointFileError: When the file is empty, truncated or not a torch checkpoint.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'Checkpoint file {path!r} does not exist. Download the release file (see the '
            'README, "Pretrained weights") and put it there, or fix the path in your config.')
    check_checkpoint_format(path)
    try:
        return torch.load(
            path, map_location=map_location, pickle_module=_TENSOR_ONLY_PICKLE, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise _load_failed(path, error) from error


# --------------------------------------------------------------------------------------------
# mmengine checkpoints: an allow-list for weights-only loading.
# --------------------------------------------------------------------------------------------
NUMPY_MULTIARRAY_MODULES = ('numpy.core.multiarray', 'numpy._core.multiarray')


def _numpy_globals() -> list:
    """numpy objects mmengine checkpoints hold, under numpy 1 and numpy 2 names alike."""
    import numpy as np
    try:
        multiarray = np._core.multiarray
    except AttributeError:
        multiarray = np.core.multiarray
    found = [np.ndarray, np.dtype]
    # numpy 2 writes numpy._core.multiarray, numpy 1 numpy.core.multiarray: allow both names.
    for function in ('_reconstruct', 'scalar'):
        for module in NUMPY_MULTIARRAY_MODULES:
            found.append((getattr(multiarray, function), f'{module}.{function}'))
    # The concrete dtype classes (numpy >= 1.25): ``numpy.dtypes.Float64DType`` and friends.
    classes = {type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDGUSVOMm'}
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        classes |= {getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')}
    for cls in sorted(classes, key=lambda c: c.__name__):
        found.append(cls)
        if cls.__module__ != 'numpy.dtypes':
            found.append((cls, f'numpy.dtypes.{cls.__name__}'))
    return found


HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_statistic(owner: Any, name: str) -> Any:
    """Stands in for ``getattr`` while unpickling: resolves only HistoryBuffer statistics.

    A ``HistoryBuffer`` pickles its statistics methods as ``getattr(HistoryBuffer, 'min')``;
    allow-listing ``getattr`` itself would allow attribute access on any allowed object.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    # The built-in statistics, plus any registered since (the class table fills only once a
    # buffer exists, so a fresh process has it empty).
    known = set(HISTORY_BUFFER_STATISTICS) | set(HistoryBuffer._statistics_methods)
    if owner is HistoryBuffer and name in known:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'Refusing getattr({owner!r}, {name!r}) while loading a checkpoint: only '
        'HistoryBuffer statistics are resolved.')


@functools.lru_cache(maxsize=None)
def _mmengine_types() -> Tuple[Tuple[Any, str], ...]:
    """The objects mmengine writes into checkpoints, each with the name a pickle gives it."""
    from mmengine.logging.history_buffer import HistoryBuffer
    found = [(HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
             (_history_buffer_statistic, 'builtins.getattr'),
             (_history_buffer_statistic, '__builtin__.getattr')]
    for entry in _numpy_globals():
        obj, name = entry if isinstance(
            entry, tuple) else (entry, f'{entry.__module__}.{entry.__qualname__}')
        found.append((obj, name))
    return tuple(found)


def extensible_weights_only() -> bool:
    """Whether torch's own weights-only loading can take mmengine's types.

    That needs ``torch.serialization.add_safe_globals`` with explicit names (torch >= 2.6), for
    the numpy functions whose module differs between numpy 1 and 2. With an older torch,
    :func:`load_local_checkpoint` applies the same allow-list itself
    (:class:`_AllowListUnpickler`).
    """
    return torch.__version__ >= '2.6'


def allow_mmengine_types() -> None:
    """Allow-list the objects mmengine itself writes into checkpoints for weights-only loading.

    These are mmengine's ``HistoryBuffer`` (``message_hub``) with its statistics methods, and
    numpy arrays, scalars and dtypes (under numpy 1's ``numpy.core`` and numpy 2's
    ``numpy._core`` names). Called when mmglnet is imported; does not switch the weights-only
    check off. A torch whose check cannot be extended (:func:`extensible_weights_only`) is left
    as it is: :func:`load_local_checkpoint` then applies the same allow-list itself.
    """
    if extensible_weights_only():
        torch.serialization.add_safe_globals(list(_mmengine_types()))


# What torch's weights-only loading allows by default and mmengine checkpoints use, by name.
_WEIGHTS_ONLY_DEFAULTS = {
    'torch.Tensor': torch.Tensor,
    'torch.nn.parameter.Parameter': torch.nn.Parameter,
    'torch._tensor._rebuild_from_type_v2': torch._tensor._rebuild_from_type_v2,
    '_codecs.encode': codecs.encode,  # bytes, as pickle protocol 2 (torch.save's) writes them
}


class _AllowListUnpickler(_TensorOnlyUnpickler):
    """Weights-only unpickling for a torch whose own check cannot take mmengine's types.

    Resolves tensors, plain containers, torch dtypes and devices, and :func:`_mmengine_types`;
    any other global stops the load with torch's "Weights only load failed" wording, which
    :func:`load_local_checkpoint` turns into :class:`UntrustedCheckpointError`.
    """

    def other_global(self, module: str, name: str) -> Any:
        qualified = f'{module}.{name}'
        if qualified in _WEIGHTS_ONLY_DEFAULTS:
            return _WEIGHTS_ONLY_DEFAULTS[qualified]
        for obj, allowed in _mmengine_types():
            if allowed == qualified:
                return obj
        raise pickle.UnpicklingError(
            f'Weights only load failed: GLOBAL {qualified} is not an allowed global.')


_ALLOW_LIST_PICKLE = _pickle_module(_AllowListUnpickler, 'mmglnet_allow_list_pickle')


def _load_weights_only(file: Any, map_location: Any) -> Any:
    """``torch.load`` with weights-only checks that take mmengine's types, on any torch."""
    if extensible_weights_only():
        return torch.load(file, map_location=map_location, weights_only=True)
    return torch.load(
        file, map_location=map_location, pickle_module=_ALLOW_LIST_PICKLE, weights_only=False)


# --------------------------------------------------------------------------------------------
# Per-file trust, bound to the file's SHA-256.
# --------------------------------------------------------------------------------------------
class TrustedCheckpoint(NamedTuple):
    """One opt-in: the bytes with ``sha256`` (at ``path``, or anywhere when path is None)."""
    sha256: str
    path: Optional[str]
    real_path: Optional[str]
    source: str


_trusted: List[TrustedCheckpoint] = []
_env_entries: Dict[str, TrustedCheckpoint] = {}


def file_sha256(path: str) -> str:
    """SHA-256 of a file's contents, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _parse_digest(text: str, spec: str) -> str:
    digest = text[len(DIGEST_PREFIX):].strip().lower()
    if not re.fullmatch(r'[0-9a-f]{64}', digest):
        raise ValueError(
            f'{spec!r}: a SHA-256 digest is 64 hex digits after "sha256:" (got {digest!r}). '
            'Compute it with `sha256sum FILE`.')
    return digest


def _resolve_trust(spec: str, source: str) -> TrustedCheckpoint:
    """Turn ``PATH``, ``PATH@sha256:HEX`` or ``sha256:HEX`` into a trusted digest."""
    spec = os.fspath(spec)
    if spec.lower().startswith(DIGEST_PREFIX):
        return TrustedCheckpoint(_parse_digest(spec, spec), None, None, source)
    path, marker, digest = spec.rpartition('@' + DIGEST_PREFIX)
    if marker:
        digest = _parse_digest(DIGEST_PREFIX + digest, spec)
    else:
        path, digest = spec, None
    path = osp.abspath(osp.expanduser(path))
    if digest is None:
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'Cannot trust {spec!r} ({source}): the file does not exist, so there are no '
                'bytes to record. Trust it once it is there, or give its digest as '
                'PATH@sha256:HEX.')
        digest = file_sha256(path)
    return TrustedCheckpoint(digest, path, osp.realpath(path), source)


def trust_checkpoint(spec: str) -> str:
    """Opt in to full (unrestricted) unpickling of one checkpoint file you trust.

    Trust is bound to the file's contents: ``spec`` is a path (its SHA-256 is recorded now),
    ``PATH@sha256:HEX`` (those bytes at that path) or ``sha256:HEX`` (those bytes wherever they
    are). A file replaced later, or a symlink re-pointed, is untrusted again. The same as
    listing ``spec`` in the ``MMGLNET_TRUSTED_CHECKPOINTS`` environment variable, whose
    entries are resolved the same way when mmglnet first reads them. Unpickling can run
    arbitrary code: only do this for files from a source you trust.

    Args:
        spec (str): ``PATH``, ``PATH@sha256:HEX`` or ``sha256:HEX``.

    Returns:
        str: The trusted SHA-256 digest.
    """
    entry = _resolve_trust(spec, 'trust_checkpoint()')
    _trusted.append(entry)
    return entry.sha256


def _split_env(value: str) -> List[str]:
    # Entries are separated by os.pathsep, which may also separate "sha256" from its digest.
    parts, entries = value.split(os.pathsep), []
    for part in parts:
        if entries and (entries[-1].lower().endswith('@sha256') or entries[-1].lower() == 'sha256'):
            entries[-1] += ':' + part
        elif part:
            entries.append(part)
    return entries


def resolve_trusted_env() -> None:
    """Record the digests of the ``MMGLNET_TRUSTED_CHECKPOINTS`` entries not yet seen.

    Each entry is resolved once, the first time mmglnet reads it (at import, or at the first
    load after the variable changed), exactly as :func:`trust_checkpoint` resolves its
    argument. A listed file that does not exist yet is resolved when it first does.
    """
    for spec in _split_env(os.environ.get(TRUSTED_ENV, '')):
        if spec in _env_entries:
            continue
        try:
            _env_entries[spec] = _resolve_trust(spec, TRUSTED_ENV)
        except FileNotFoundError:
            continue


def _trust_entries() -> List[TrustedCheckpoint]:
    resolve_trusted_env()
    active = set(_split_env(os.environ.get(TRUSTED_ENV, '')))
    return _trusted + [e for s, e in _env_entries.items() if s in active]


def _entries_for(path: str) -> List[TrustedCheckpoint]:
    absolute, real = osp.abspath(path), osp.realpath(path)
    return [
        e for e in _trust_entries()
        if e.path is None or e.path in (absolute, real) or e.real_path in (absolute, real)
    ]


def is_trusted(path: str) -> bool:
    """Whether the current contents of ``path`` were opted in to unrestricted unpickling."""
    entries = _entries_for(path)
    return bool(entries) and file_sha256(path) in {e.sha256 for e in entries}


def _read_if_trusted(path: str) -> Tuple[Optional[bytes], Optional[str]]:
    """The file's bytes if they are trusted, else a note on a broken trust (or None)."""
    entries = _entries_for(path)
    if not entries:
        return None, None
    with open(path, 'rb') as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest in {e.sha256 for e in entries}:
        return data, None
    named = [e for e in entries if e.path is not None]
    if not named:
        return None, None
    entry = named[-1]
    where = (f'{entry.path!r} then pointed to {entry.real_path!r}'
             if entry.real_path != entry.path else repr(entry.path))
    now = osp.realpath(path)
    moved = f' and now points to {now!r}' if now != entry.real_path else ''
    return None, (
        f'It was trusted ({entry.source}) with SHA-256 {entry.sha256} ({where}), but its '
        f'contents now hash to {digest}{moved}: the file was replaced or the link re-pointed '
        'since, so it is untrusted again. If you trust the new file, trust it again.')


# --------------------------------------------------------------------------------------------
# mmengine's loader for local files.
# --------------------------------------------------------------------------------------------
def load_local_checkpoint(filename: str, map_location=None) -> Any:
    """mmengine's local-file checkpoint loader, with weights-only loading kept on.

    Registered for local paths when mmglnet is imported, so every mmengine loader (Runner
    ``load_from``/``--resume``, ``load_checkpoint``, ``Pretrained`` init) goes through it. The
    file's format is checked first (:func:`check_checkpoint_format`). A trusted file (see
    :func:`trust_checkpoint`) is read once, hashed, and unpickled from those same bytes.

    Args:
        filename (str): Local path.
        map_location (str | torch.device, optional): Where tensors go. Defaults to None.

    Returns:
        The file's top-level object.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    data, broken_trust = _read_if_trusted(filename)
    if data is not None:
        buffer = io.BytesIO(data)
        check_checkpoint_format(buffer, filename)
        try:
            return torch.load(buffer, map_location=map_location, weights_only=False)
        except (RuntimeError, EOFError, zipfile.BadZipFile) as error:
            raise _load_failed(filename, error) from error
    check_checkpoint_format(filename)
    try:
        return _load_weights_only(filename, map_location)
    except pickle.UnpicklingError as error:
        match = re.search(r'GLOBAL ([\w\.]+)', str(error))
        if not match and 'Weights only load failed' not in str(error):
            raise _load_failed(filename, error) from error
        what = match.group(1) if match else 'an object that is not allow-listed'
        if match and '.' not in what:  # torch names builtins without their module
            what = f'builtins.{what}'
        opt_in = (
            broken_trust
            or 'If you trust this file, opt in for its current contents alone with the '
            f'environment variable {TRUSTED_ENV}={filename} or '
            'mmglnet.checkpoint.trust_checkpoint(path) (README, "Checkpoint safety").')
        raise UntrustedCheckpointError(
            f'Checkpoint {filename!r} holds {what}, which is not a tensor or one of the types '
            f'mmengine writes, so it is not loaded: unpickling it could run code. {opt_in} An '
            'official GLNet release file can instead be converted with '
            'tools/model_converters/glnet2mm.py or given to the backbone init_cfg directly.'
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile) as error:
        raise _load_failed(filename, error) from error


def register_safe_local_loader() -> None:
    """Install :func:`load_local_checkpoint` as mmengine's loader for local paths.

    Also records the digests of the files ``MMGLNET_TRUSTED_CHECKPOINTS`` lists now.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
    resolve_trusted_env()
