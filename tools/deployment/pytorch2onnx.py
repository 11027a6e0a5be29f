"""Export a GLNet model to ONNX and check the file with ONNX Runtime.

Examples:
    python tools/deployment/pytorch2onnx.py 4g checkpoints/glnet_4g.pth --out glnet_4g.onnx \
        --shape 224 224 --dynamic
    python tools/deployment/pytorch2onnx.py configs/segmentation/upernet_glnet4g_160k.py \
        work_dirs/upernet/iter_160000.pth --out upernet.onnx --shape 512 512 --dynamic

A preset name exports the backbone's raw stage outputs; a segmentation config the segmentor's
logits (``mode='tensor'``); a detection config the backbone, neck and (RPN) head's raw outputs;
a classification config the class scores.
The graph takes the image batch as the model's data preprocessor leaves it (RGB, normalised).
Before it reports success, the tool runs the file with ONNX Runtime beside PyTorch on random
inputs at the traced size and, with ``--dynamic``, at another size, and prints the largest
difference; it exits with status 1 if a difference exceeds ``--rtol`` times the largest output.
"""
import argparse
import os
import os.path as osp
import sys

if osp.dirname(osp.dirname(osp.abspath(__file__))) not in sys.path:  # tools/
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmengine.config import DictAction  # noqa: E402
from mmengine.runner import set_random_seed  # noqa: E402

import mmglnet  # noqa: F401,E402  (registers GLNet; safe checkpoint loading)
from mmglnet.apis import build_model, load_checkpoint  # noqa: E402
from mmglnet.checkpoint import (CheckpointFileError, CheckpointMismatchError,
                                UntrustedCheckpointError)
from mmglnet.deployment import default_check_shape, export_and_check  # noqa: E402
from mmglnet.models import ARCH_SETTINGS  # noqa: E402
from mmglnet.visualization import find_glnet  # noqa: E402

import known_warnings  # noqa: F401  (tools/known_warnings.py: hides known notices)
from _support.quick_exit import skip_final_collection


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export a GLNet backbone, segmentor or detector to ONNX and check it '
        'with ONNX Runtime.')
    parser.add_argument(
        'config',
        metavar='ARCH_OR_CONFIG',
        help=f'A preset ({", ".join(sorted(ARCH_SETTINGS))}: the bare backbone, raw stage '
        'outputs) or a config whose model has a GLNet backbone.')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        default=None,
        help='An mm checkpoint, or an official GLNet release file for a preset. Without one '
        'the weights are random.')
    parser.add_argument('--out', required=True, help='The .onnx file to write.')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        default=[224, 224],
        metavar=('H', 'W'),
        help='Input height and width of the traced graph.')
    parser.add_argument(
        '--dynamic',
        action='store_true',
        help='Make batch, height and width free axes of the graph.')
    parser.add_argument(
        '--check-shape',
        type=int,
        nargs=2,
        action='append',
        metavar=('H', 'W'),
        help='Further size(s) to compare ONNX Runtime with PyTorch at (with --dynamic; '
        'repeatable). Defaults to 24 rows fewer and 40 columns more than --shape.')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset version.')
    parser.add_argument(
        '--rtol',
        type=float,
        default=1e-4,
        help='Largest accepted difference, relative to the largest output.')
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='Seed of the random weights (where no checkpoint is given).')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='Override config settings, key=value.')
    args = parser.parse_args(argv)
    if args.check_shape and not args.dynamic:
        parser.error('--check-shape needs --dynamic: a static graph holds at --shape only.')
    if min(args.shape) < 1:
        parser.error(f'--shape {args.shape[0]} {args.shape[1]}: sizes must be positive.')
    return args


def main(argv=None):
    args = parse_args(argv)
    set_random_seed(args.seed)
    model = build_model(args.config, args.cfg_options)
    glnet = find_glnet(model)
    if args.checkpoint is not None:
        try:
            load_checkpoint(model, args.checkpoint)
        except (FileNotFoundError, CheckpointFileError, CheckpointMismatchError,
                UntrustedCheckpointError) as error:
            print(f'tools/deployment/pytorch2onnx.py: error: {error}', file=sys.stderr)
            return 2
    else:
        print('No checkpoint given: exporting random weights.')
    out_dir = osp.dirname(osp.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    check_shapes = args.check_shape
    if args.dynamic and not check_shapes:
        check_shapes = [default_check_shape(args.shape, glnet.min_input_size)]
    record, comparisons = export_and_check(
        model,
        args.out,
        shape=args.shape,
        dynamic=args.dynamic,
        check_shapes=check_shapes,
        opset_version=args.opset,
        in_channels=glnet.in_channels)
    axes = 'batch, height and width free' if args.dynamic else 'fixed size'
    print(f'Exported {record["wrapper"].kind} to {args.out} (opset {args.opset}, traced at '
          f'{args.shape[0]}x{args.shape[1]}, {axes}); outputs: '
          f'{", ".join(record["output_names"])}.')
    failed = False
    for result in comparisons:
        height, width = result['shape']
        ok = result['relative'] <= args.rtol
        failed = failed or not ok
        print(f'ONNX Runtime vs PyTorch at {height}x{width}: max abs diff '
              f'{result["max_abs_diff"]:.3g} (largest output {result["max_abs"]:.3g}, relative '
              f'{result["relative"]:.2g}) {"OK" if ok else "FAILED"}')
    if failed:
        print(
            f'The exported graph differs from PyTorch by more than --rtol {args.rtol}.',
            file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    skip_final_collection()  # exit in a fraction of a second, not 2-3 s
    sys.exit(main())
