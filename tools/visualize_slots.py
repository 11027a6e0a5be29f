"""Draw the semantic slots of GLMix blocks for an image, or for each image of a folder.

Examples:
    python tools/visualize_slots.py demo.jpg 4g checkpoints/glnet_4g.pth --out-dir slots/
    python tools/visualize_slots.py demo.jpg configs/detection/retinanet_glnet4g_fpn_1x_coco.py \
        work_dirs/retinanet_glnet4g_fpn_1x_coco/epoch_12.pth --blocks 0.3 2.8 --k 6 \
        --out-dir slots/
    python tools/visualize_slots.py photos/ 4g checkpoints/glnet_4g.pth --out-dir slots/

The model is built and its checkpoint loaded by :func:`mmglnet.apis.init_model`, once for all
images.

Writes, per chosen GLMix block, the input, the per-pixel slot assignment blended over it and
the heat maps of the k most representative slots (k-medoids), plus titled panels and an
overview (see docs/visualization.md).
"""
import argparse
import os.path as osp
import sys

if osp.dirname(osp.abspath(__file__)) not in sys.path:  # loaded by path, not run
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import mmcv
from mmengine.config import DictAction
from mmengine.runner import set_random_seed

import mmglnet  # noqa: F401  (registers GLNet; safe checkpoint loading)
from mmglnet.apis import init_model
from mmglnet.checkpoint import (CheckpointFileError, CheckpointMismatchError,
                                UntrustedCheckpointError)
from mmglnet.models import ARCH_SETTINGS
from mmglnet.utils import ConfigFileError, ImageFileError, image_stems, list_images, read_image
from mmglnet.visualization import (SlotSelectionError, check_slot_request, save_slot_maps,
                                   visualize_image_slots)

import known_warnings  # noqa: F401  (tools/known_warnings.py: hides known notices)
from _support.quick_exit import skip_final_collection
from _support.runtime import check_device


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Draw GLNet semantic-slot assignment maps and representative slots.')
    parser.add_argument(
        'image', help='Image file, or a folder: every image in it (by name; not its sub-folders).')
    parser.add_argument(
        'config',
        metavar='CONFIG_OR_PRESET',
        help='A config whose model contains a GLNet (classification, detection, '
        f'segmentation), or a preset name for the bare backbone: {sorted(ARCH_SETTINGS)}.')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        default=None,
        help='An mm checkpoint or an official GLNet release file. Without one the weights are '
        'random (a warning says so).')
    parser.add_argument(
        '--blocks',
        nargs='+',
        default=None,
        help="GLMix blocks as stage.block (e.g. 0.0 2.4), or 'all'. Defaults to the last "
        'GLMix block of each stage.')
    parser.add_argument('--out-dir', default='slot_maps', help='Output folder.')
    parser.add_argument(
        '--k', type=int, default=4, help='Number of representative slots (k-medoids) per block.')
    parser.add_argument(
        '--size',
        type=int,
        nargs='+',
        default=[512],
        help='Network input size: one value sets the shorter side, two set H W; 0 keeps the '
        'image size. Sides are then rounded to multiples of --size-divisor.')
    parser.add_argument(
        '--size-divisor',
        type=int,
        default=32,
        help='Round the network input sides to multiples of this (1: exact).')
    parser.add_argument(
        '--alpha',
        type=float,
        default=0.6,
        help='Blending weight of colours and heat maps over the image.')
    parser.add_argument(
        '--panel-height',
        type=int,
        default=256,
        help='Tile height in the panel and overview images.')
    parser.add_argument(
        '--prefix',
        default=None,
        help='File name prefix. Defaults to the image name and "_"; for a folder of images, '
        'each image\'s files begin with this prefix, then the image name and "_".')
    parser.add_argument('--device', default='cpu', help='Device, e.g. cpu or cuda:0.')
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='Seed of the random initialisation (used where no checkpoint '
        'gives every weight).')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='Override config settings, key=value.')
    args = parser.parse_args(argv)
    if len(args.size) > 2 or any(s < 0 for s in args.size) or \
            (0 in args.size and args.size != [0]):
        parser.error(f'--size {" ".join(map(str, args.size))}: give one value (shorter side), '
                     'two values (H W), or 0 to keep the image size.')
    try:
        check_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    if osp.isdir(args.image) and osp.realpath(args.out_dir) == osp.realpath(args.image):
        parser.error(f'--out-dir {args.out_dir} is the folder of the images: the slot maps would '
                     'be written among them (and taken for images by the next run). Give another '
                     'folder.')
    return args


def file_prefixes(args, images: list) -> list:
    """The file name prefix of each image's slot maps, as ``--prefix`` asks."""
    names = [f'{stem}_' for stem in image_stems(images)]
    if not osp.isdir(args.image):
        return [names[0] if args.prefix is None else args.prefix]
    return [(args.prefix or '') + name for name in names]


def main(argv=None):
    args = parse_args(argv)
    images = list_images(args.image)
    for image in images:  # every image decodes, before the model is built
        read_image(image)
    set_random_seed(args.seed)
    model = init_model(args.config, args.checkpoint, args.device, args.cfg_options)
    check_slot_request(model, args.blocks, args.k)  # before any image is run
    size = None if args.size == [0] else (args.size[0] if len(args.size) == 1 else args.size)
    written = []
    for path, prefix in zip(images, file_prefixes(args, images)):
        image = read_image(path)
        maps = visualize_image_slots(
            model,
            image,
            size=size,
            size_divisor=args.size_divisor,
            blocks=args.blocks,
            k=args.k,
            alpha=args.alpha)
        files = save_slot_maps(args.out_dir, mmcv.bgr2rgb(image), maps, prefix, args.panel_height)
        if osp.isdir(args.image):
            print(f'{path}:')
        for block in maps:
            print(f'block {block.name}: representative slots {block.slots} '
                  f'(group sizes {block.group_sizes})')
        print(f'Wrote {len(files)} files to {args.out_dir}, overview: {files[-1]}')
        written.extend(files)
    return written


if __name__ == '__main__':
    skip_final_collection()  # exit in a fraction of a second, not 2-3 s
    try:
        main(sys.argv[1:])
    except (FileNotFoundError, ImageFileError, ConfigFileError, CheckpointFileError,
            CheckpointMismatchError, UntrustedCheckpointError, SlotSelectionError) as error:
        # A missing or undecodable image, a config with a syntax error, a missing, damaged or
        # untrusted checkpoint, weights of another arch, blocks or k the model cannot give:
        # the message names the file or value and what to do.
        print(f'tools/visualize_slots.py: error: {error}', file=sys.stderr)
        sys.exit(2)
