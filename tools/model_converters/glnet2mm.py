r"""Convert an official GLNet release file (github.com/rayleizhu/GLMix) to an mm checkpoint.

    python tools/model_converters/glnet2mm.py checkpoints/glnet_4g.pth \
        checkpoints/glnet4g_in1k_mm.pth

The output holds ``state_dict`` (``backbone.*``, ``head.fc.*`` and, for token-labeling releases,
``head.aux_fc.*``) laid out like the classifiers of ``configs/classification/``, and ``meta``
naming the source file and the weights entry used. It holds plain tensors, dicts and strings
only, so it loads with ``torch.load(..., weights_only=True)``.

The release file is read with mmglnet's restricted reader: tensors are rebuilt, every other
object in it (training args, optimizer classes) stays an inert placeholder, nothing is executed.
An empty, truncated or foreign file is refused with a message naming it. The backbone keys are
mapped by ``mmglnet.checkpoint.filter_official_checkpoint``, as for ``init_cfg`` loading.
"""
import argparse
import os
import os.path as osp
import sys

import torch

from mmglnet import __version__
from mmglnet.checkpoint import read_checkpoint_tensors
from mmglnet.converters import classification_config_name, convert_official_checkpoint
from mmglnet.utils import atomic_output


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert an official GLNet release file to an mm checkpoint.')
    parser.add_argument('src', help='official file, e.g. checkpoints/glnet_4g.pth')
    parser.add_argument('dst', help='mm checkpoint to write, e.g. checkpoints/glnet4g_in1k_mm.pth')
    parser.add_argument(
        '--key',
        default=None,
        help="entry of the official file holding the weights (default: what the official "
        "evaluation uses: 'model', or 'model_ema' when the weights are the 16G preset)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if osp.exists(args.src) and osp.exists(args.dst) and osp.samefile(args.src, args.dst):
        sys.exit(f'glnet2mm: error: the output {args.dst!r} is the input file; choose another '
                 'path.')
    try:
        checkpoint = read_checkpoint_tensors(args.src)
        state_dict, report = convert_official_checkpoint(checkpoint, args.key)
    except (FileNotFoundError, KeyError, ValueError) as error:
        # CheckpointFileError (empty, truncated, foreign files) is a ValueError.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        if args.key is not None and isinstance(error, KeyError):
            message = f'--key: {message}'
        sys.exit(f'glnet2mm: error: {args.src}: {message}')

    meta = dict(
        source_file=osp.basename(args.src),
        weights_key=report['weights_key'],
        arch=report['arch'],
        token_labeling=report['token_labeling'],
        num_classes=report['num_classes'],
        depths=report['depths'],
        embed_dims=report['embed_dims'],
        converter='tools/model_converters/glnet2mm.py',
        mmglnet_version=__version__)
    out_dir = osp.dirname(osp.abspath(args.dst))
    os.makedirs(out_dir, exist_ok=True)
    with atomic_output(args.dst) as temporary:  # a kill while saving leaves args.dst as it was
        torch.save(dict(meta=meta, state_dict=state_dict), temporary)

    variant = report['arch'] if report['arch'] != 'custom' else (
        f"custom (no preset matches: depths {report['depths']}, widths "
        f"{report['embed_dims']})")
    print(f'source:   {args.src}')
    reason = 'given with --key' if args.key else report['key_reason']
    if 'also holds' in reason:
        reason += ', selected with --key'
    print(f"weights:  '{report['weights_key']}' ({reason})")
    print(f'variant:  {variant}' +
          (', token labeling (tklb_aux_head)' if report['token_labeling'] else ''))
    print(f"tensors:  {report['num_backbone']} backbone, {report['num_head']} head "
          f"({report['num_classes']} classes), {len(state_dict)} in all")
    if report['ignored_entries']:
        print(f"ignored:  top-level entries {report['ignored_entries']} (not converted)")
    print(f'written:  {args.dst}')
    config = classification_config_name(report['arch'], report['token_labeling'])
    if config and report['num_classes'] == 1000:
        print(f'evaluate: python tools/test.py configs/classification/{config} {args.dst}')


if __name__ == '__main__':
    main()
