r"""Make a trained checkpoint ready to share: weights and meta only, its hash in its name.

    python tools/model_converters/publish_model.py \
        work_dirs/upernet_glnet4g_160k/iter_160000.pth checkpoints/upernet_glnet4g_ade20k.pth
    # writes checkpoints/upernet_glnet4g_ade20k-<first 8 hex digits of its SHA-256>.pth

As the codebases' own ``publish_model.py``: the checkpoint keeps ``meta`` and ``state_dict``
(``--save-keys`` to choose) and loses the optimizer state, the schedulers' and the message hub's,
which are only for resuming (about two thirds of an AdamW checkpoint). A checkpoint of a run with
mmengine's ``EMAHook`` already holds the averaged weights in ``state_dict`` (the hook swaps them
in when it saves); its ``ema_state_dict`` (the source model's weights) goes too. ``meta`` stays
whole: ``meta.cfg`` is how ``tools/image_demo.py`` tells a segmentor's checkpoint from a
detector's, ``meta.dataset_meta`` names the classes.

The checkpoint is read with mmglnet's weights-only loader (a file holding other objects is refused,
saying how to trust it), the output is hashed before it is written, written atomically under its
final name and read back. Everything that can be checked before reading the checkpoint is.
"""
import argparse
import hashlib
import io
import os
import os.path as osp
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

if osp.dirname(osp.dirname(osp.abspath(__file__))) not in sys.path:  # loaded by path, not run
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import torch

from mmglnet.checkpoint import (CheckpointFileError, UntrustedCheckpointError,
                                load_local_checkpoint, read_checkpoint_tensors)
from mmglnet.utils import atomic_output

from _support.output_paths import output_folder_problem
from _support.quick_exit import skip_final_collection

DEFAULT_SAVE_KEYS = ('meta', 'state_dict')
# Entries of official GLNet release files (github.com/rayleizhu/GLMix).
OFFICIAL_ENTRIES = ('model', 'model_ema')


class PublishError(ValueError):
    """The checkpoint or the output cannot be published as asked; the message says why."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Keep the weights and meta of a trained checkpoint, hash it and name the '
        'file after the hash.')
    parser.add_argument('in_file', help='checkpoint written by training (tools/train.py)')
    parser.add_argument(
        'out_file',
        help='name to publish under, e.g. checkpoints/upernet_glnet4g_ade20k.pth; the file '
        'written is <name>-<8 hex digits of its SHA-256>.pth')
    parser.add_argument(
        '--save-keys',
        nargs='+',
        default=None,
        metavar='KEY',
        help='top-level entries to keep, each of which the checkpoint must have (default: '
        'meta, where there is one, and state_dict)')
    return parser.parse_args(argv)


def tensor_bytes(value: Any) -> int:
    """Bytes of the tensors inside ``value`` (dicts, lists, tuples), shared storage once."""
    seen, total, stack = set(), 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            if (storage.data_ptr(), storage.nbytes()) not in seen:
                seen.add((storage.data_ptr(), storage.nbytes()))
                total += storage.nbytes()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return total


def published_path(out_file: str, sha256: str) -> str:
    """``name.pth`` -> ``name-<first 8 hex digits>.pth`` (OpenMMLab's model-zoo naming)."""
    stem = out_file[:-len('.pth')] if out_file.endswith('.pth') else out_file
    return f'{stem}-{sha256[:8]}.pth'


def check_output_folder(out_file: str) -> None:
    """Refuse, before the checkpoint is read, an output that could not be written."""
    if out_file.endswith(('/', os.sep)) or osp.isdir(out_file):
        raise PublishError(f'{out_file!r} is a folder: name the file to publish, e.g. '
                           f'{osp.join(out_file, "model.pth")!r}.')
    problem = output_folder_problem(osp.dirname(osp.abspath(out_file)))
    if problem:
        raise PublishError(f'{out_file!r}: {problem}; choose another place.')


def _is_official_release(checkpoint: Any) -> bool:
    return isinstance(checkpoint, dict) and 'state_dict' not in checkpoint and any(
        key in checkpoint for key in OFFICIAL_ENTRIES)


def read_training_checkpoint(path: str) -> Dict[str, Any]:
    """The checkpoint at ``path``, read weights-only; an official release file is named so."""
    if not osp.isfile(path):
        raise PublishError(f'{path!r} does not exist: name a checkpoint written by training '
                           '(tools/train.py writes WORK_DIR/iter_<N>.pth or epoch_<N>.pth).')
    try:
        checkpoint = load_local_checkpoint(path, map_location='cpu')
    except UntrustedCheckpointError:
        # Release files hold training arguments (objects); the restricted reader rebuilds
        # tensors only, so the layout can be looked at safely.
        checkpoint = read_checkpoint_tensors(path)
        if not _is_official_release(checkpoint):
            raise
    if _is_official_release(checkpoint):
        raise PublishError(
            f'{path} is an official GLNet release file (entries {sorted(checkpoint)}), not a '
            'checkpoint of training: convert it with tools/model_converters/glnet2mm.py, whose '
            'output holds the weights and meta only already.')
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        entries = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise PublishError(f'{path} holds no state_dict (it holds {entries}): it is not a '
                           'checkpoint written by mmengine (tools/train.py).')
    return checkpoint


def strip_checkpoint(checkpoint: Dict[str, Any],
                     save_keys: Optional[Sequence[str]]) -> Tuple[Dict[str, Any], List[str]]:
    """The entries of ``checkpoint`` named by ``save_keys``, and the names of the others.

    Args:
        checkpoint (dict): The checkpoint of training.
        save_keys (Sequence[str], optional): Entries to keep. None keeps ``meta`` (where the
            checkpoint has one) and ``state_dict``.

    Raises:
        PublishError: ``save_keys`` leaves out ``state_dict`` or names an entry the checkpoint
            does not have.
    """
    if save_keys is None:
        save_keys = [key for key in DEFAULT_SAVE_KEYS if key in checkpoint]
    if 'state_dict' not in save_keys:
        raise PublishError(f'--save-keys {" ".join(save_keys)}: a published checkpoint needs '
                           'its state_dict (the weights); add it.')
    missing = [key for key in save_keys if key not in checkpoint]
    if missing:
        raise PublishError(f'--save-keys: the checkpoint has no {missing}; its entries are '
                           f'{sorted(checkpoint)}.')
    kept = {key: checkpoint[key] for key in checkpoint if key in save_keys}
    return kept, [key for key in checkpoint if key not in save_keys]


def main(argv=None) -> str:
    args = parse_args(argv)
    check_output_folder(args.out_file)
    checkpoint = read_training_checkpoint(args.in_file)
    published, removed = strip_checkpoint(checkpoint, args.save_keys)

    buffer = io.BytesIO()
    torch.save(published, buffer)
    data = buffer.getvalue()
    sha256 = hashlib.sha256(data).hexdigest()
    final = published_path(args.out_file, sha256)
    os.makedirs(osp.dirname(osp.abspath(final)), exist_ok=True)
    with atomic_output(final) as temporary:  # a kill while writing leaves no cut file
        with open(temporary, 'wb') as f:
            f.write(data)
        # Read back before it replaces anything: a failure leaves no file behind.
        try:
            read_back = load_local_checkpoint(temporary, map_location='cpu')
        except UntrustedCheckpointError as error:  # the source was trusted, with its objects
            raise PublishError(
                f'the published checkpoint would hold objects that weights-only loading '
                f'refuses ({error}); its users could not load it without trusting the file. '
                'Keep entries of tensors, numbers and strings only (--save-keys state_dict), '
                'or remove the objects from meta.') from None
        if sorted(read_back['state_dict']) != sorted(published['state_dict']):
            raise PublishError(f'{final}: read back with other weights than were written.')

    state_dict = published['state_dict']
    print(f'source:   {args.in_file} ({osp.getsize(args.in_file) / 2**20:.1f} MiB)')
    for key in removed:
        size = tensor_bytes(checkpoint[key])
        note = ' (the source weights of an EMA run; state_dict holds the averaged ones)' \
            if key == 'ema_state_dict' else ''
        print(f'removed:  {key}' + (f' ({size / 2**20:.1f} MiB of tensors)' if size else '') + note)
    print(f'kept:     {", ".join(published)} ({len(state_dict)} tensors in state_dict)')
    print(f'sha256:   {sha256}')
    print(f'written:  {final} ({len(data) / 2**20:.1f} MiB)')
    return final


if __name__ == '__main__':
    skip_final_collection()
    try:
        main(sys.argv[1:])
    except (FileNotFoundError, PublishError, CheckpointFileError,
            UntrustedCheckpointError) as error:
        print(f'tools/model_converters/publish_model.py: error: {error}', file=sys.stderr)
        sys.exit(2)
