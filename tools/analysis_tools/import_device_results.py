"""Bring the files of a GPU-suite run into the repository and regenerate docs/benchmark.md.

``gpu_suite.sh`` writes, per comparison, ``gpu_<name>.json`` (and ``gpu_<name>_profile.txt``
with ``--profile``), the part's log ``suite_<part>.log`` and the compile cache in parts,
``compile_cache.tar.gz.part00``, ``part01``, ... This puts them where the benchmark page and the
next device session read them:

- ``gpu_<name>.json`` -> ``docs/benchmarks/<gpu>_<name>.json``, ``<gpu>`` from the device the
  run recorded (``h100`` for "NVIDIA H100 80GB HBM3"), its profile beside it with the record's
  ``profile_file`` renamed to match;
- ``suite_<part>.log`` -> ``docs/benchmarks/<gpu>_suite_<part>.log``;
- the cache's parts (or a whole ``compile_cache.tar.gz``) -> ``.compile_cache/`` (git-ignored),
  which the suite unpacks before its next run, in place of the cache there; parts that do not
  join into a whole archive (a call cut off while it wrote them) are left out, with a warning;

then runs ``render_benchmark_docs.py``. A file of the same name is replaced (a newer run of the
same comparison; git keeps the older), atomically: an import cut short leaves every file whole,
old or new. A run measured on the CPU (a dry run) is refused.

Example::

    python tools/analysis_tools/import_device_results.py /path/to/returned/files
"""
import argparse
import glob
import io
import json
import os
import os.path as osp
import re
import shutil
import sys
import tarfile
from typing import List, Optional, Tuple

if osp.dirname(osp.abspath(__file__)) not in sys.path:  # loaded by path, not run
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import render_benchmark_docs  # noqa: E402 (it puts the checkout on sys.path)

from mmglnet.engine.checkpoint_files import atomic_copy_file, atomic_write_text  # noqa: E402

REPO_ROOT = render_benchmark_docs.REPO_ROOT
DOCS_DIR = osp.join(REPO_ROOT, 'docs', 'benchmarks')
CACHE_DIR = osp.join(REPO_ROOT, '.compile_cache')
CACHE_FILE = 'compile_cache.tar.gz'


def returned_cache(folder: str) -> List[str]:
    """The compile cache a run brought back: its parts in order, else the whole archive (an
    older suite's), else nothing."""
    parts = sorted(glob.glob(osp.join(folder, CACHE_FILE + '.part[0-9][0-9]')))
    if parts:
        return parts
    whole = osp.join(folder, CACHE_FILE)
    return [whole] if osp.isfile(whole) else []


def unreadable_cache(paths: List[str]) -> Optional[str]:
    """Why the ``paths``, joined, are not a whole gzip-compressed tar archive; None if they
    are."""
    data = bytearray()
    for path in paths:
        with open(path, 'rb') as f:
            data += f.read()
    try:
        with tarfile.open(fileobj=io.BytesIO(bytes(data)), mode='r:gz') as archive:
            archive.getmembers()
    except (tarfile.TarError, EOFError, OSError) as error:
        return f'{type(error).__name__}: {error}'
    return None


def install_cache(paths: List[str], cache_dir: str) -> None:
    """Puts the cache ``paths`` in ``cache_dir`` in place of what it held. Staged beside it and
    swapped in by renames: a cut leaves the old cache, the new one, or none, never a mix."""
    staged, previous = cache_dir + '.incoming', cache_dir + '.previous'
    for leftover in (staged, previous):
        shutil.rmtree(leftover, ignore_errors=True)
    os.makedirs(staged)
    for path in paths:
        atomic_copy_file(path, osp.join(staged, osp.basename(path)))
    if osp.isdir(cache_dir):
        os.rename(cache_dir, previous)
    os.rename(staged, cache_dir)
    shutil.rmtree(previous, ignore_errors=True)


class ResultFileError(ValueError):
    """A returned file that cannot be imported as it is."""


def gpu_prefix(device: str) -> str:
    """``'h100'`` for ``'NVIDIA H100 80GB HBM3'``: the model number of a GPU's name."""
    match = re.search(r'\b([A-Z]{1,2}\d{2,4})\b', device)
    if match is None:
        raise ResultFileError(f'cannot tell a GPU model in the device name {device!r}; pass '
                              '--prefix (e.g. h100)')
    return match.group(1).lower()


def load_device_run(path: str, prefix: Optional[str]) -> Tuple[dict, str]:
    """A ``gpu_<name>.json`` checked for import, and the stem of its names here
    (``h100_<name>``)."""
    with open(path) as f:
        record = json.load(f)
    device = record['environment'].get('device') or ''
    if render_benchmark_docs.run_device(record) != 'cuda':
        raise ResultFileError(f'{path} was not measured on a GPU ({device or "no device"} '
                              'recorded): a dry run? Only device runs belong on the page.')
    profile = record.get('profile_file')
    if profile and not osp.isfile(osp.join(osp.dirname(path), profile)):
        raise ResultFileError(f'{path} names the profile {profile}, which is not beside it: '
                              'fetch it too.')
    name = osp.splitext(osp.basename(path))[0][len('gpu_'):]
    return record, f'{prefix or gpu_prefix(device)}_{name}'


def import_run(path: str, record: dict, stem: str, docs_dir: str) -> List[str]:
    """Writes a run checked by :func:`load_device_run` (and its profile) into ``docs_dir``
    as ``<stem>.json``; returns the names written."""
    written = []
    if record.get('profile_file'):
        profile = osp.join(osp.dirname(path), record['profile_file'])
        record = dict(record, profile_file=f'{stem}_profile.txt')
        atomic_copy_file(profile, osp.join(docs_dir, record['profile_file']))
        written.append(record['profile_file'])
    atomic_write_text(osp.join(docs_dir, f'{stem}.json'), json.dumps(record, indent=1))
    return [f'{stem}.json'] + written


def log_prefix(path: str) -> str:
    """The GPU prefix of a suite log, from its header's torch line (``torch 2.11.0+cu130 cuda
    13.0 NVIDIA H100 80GB HBM3``)."""
    with open(path) as f:
        torch_line = next((line for line in f if line.startswith('torch ')), '')
    if not torch_line or torch_line.rstrip().endswith('no GPU'):
        found = torch_line.strip() or "no 'torch' line in its header"
        raise ResultFileError(f'{path} is not the log of a device run ({found}): a dry run?')
    return gpu_prefix(torch_line.split(' cuda ', 1)[-1])


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Import the files of a GPU-suite run and regenerate docs/benchmark.md.')
    parser.add_argument('files', help='the folder holding the returned files')
    parser.add_argument(
        '--prefix',
        help='GPU prefix of the names, e.g. h100 (default: from '
        'the device each run recorded)')
    parser.add_argument('--docs-dir', default=DOCS_DIR, help='where the runs go')
    parser.add_argument('--cache-dir', default=CACHE_DIR, help='where the compile cache goes')
    parser.add_argument('--no-render', action='store_true', help='do not regenerate the page')
    args = parser.parse_args(argv)
    if not osp.isdir(args.files):
        parser.error(f'{args.files} is not a folder: give the folder of the returned files')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    runs = sorted(glob.glob(osp.join(args.files, 'gpu_*.json')))
    logs = sorted(glob.glob(osp.join(args.files, 'suite_*.log')))
    cache = returned_cache(args.files)
    if not runs and not logs and not cache:
        print(f'{args.files} holds no gpu_*.json, suite_*.log or compile cache '
              f'({CACHE_FILE}.part00, ...): nothing imported')
        return 1
    try:  # every file is checked before any is written
        checked = [(path, *load_device_run(path, args.prefix)) for path in runs]
        log_names = [(path, f'{args.prefix or log_prefix(path)}_{osp.basename(path)}')
                     for path in logs]
    except ResultFileError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    os.makedirs(args.docs_dir, exist_ok=True)
    imported = [name for run in checked for name in import_run(*run, args.docs_dir)]
    for path, name in log_names:
        atomic_copy_file(path, osp.join(args.docs_dir, name))
        imported.append(name)
    for name in imported:
        print(osp.join(args.docs_dir, name))
    broken = unreadable_cache(cache) if cache else None
    if broken:
        print(
            f'warning: the compile cache {", ".join(map(osp.basename, cache))} is not a '
            f'whole archive ({broken}); {args.cache_dir} is left as it was',
            file=sys.stderr)
    elif cache:
        install_cache(cache, args.cache_dir)
        print(f'{args.cache_dir}: {", ".join(map(osp.basename, cache))} (carry it to the next '
              'device call)')
    if not args.no_render and runs:  # the page beside the runs' folder
        return render_benchmark_docs.main([
            '--inputs',
            osp.join(args.docs_dir, '*.json'), '--out',
            osp.join(osp.dirname(osp.abspath(args.docs_dir)), 'benchmark.md')
        ])
    return 0


if __name__ == '__main__':
    sys.exit(main())
