"""Run a GLNet detector or segmentor on one image and save the drawn result.

Examples:
    python tools/image_demo.py demo.jpg configs/.../retinanet_glnet-4g_fpn_1x_coco.py \
        work_dirs/.../epoch_12.pth --out-file result.jpg
    python tools/image_demo.py demo.jpg configs/.../upernet_glnet-4g_512x512_160k_ade20k.py \
        work_dirs/.../iter_160000.pth --with-slots --device cpu

Uses the codebase's own inferencer (``mmdet.apis.DetInferencer`` for configs with
``default_scope='mmdet'``, ``mmseg.apis.MMSegInferencer`` for ``'mmseg'``). With
``--with-slots`` the result is saved beside the GLMix slot assignment maps of the same model.
"""
import argparse
import os.path as osp
import sys

import mmcv
import torch
from mmengine.config import Config

import mmglnet  # noqa: F401  (registers GLNet; safe checkpoint loading)
from mmglnet.visualization import (make_panel, save_slot_maps, visualize_image_slots,
                                   write_image)

TASKS = ('mmdet', 'mmseg')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Detection or segmentation of one image with a GLNet model.')
    parser.add_argument('image', help='Image file.')
    parser.add_argument('config', help='mmdet or mmseg config of a model with a GLNet.')
    parser.add_argument('checkpoint', help='Checkpoint of that model.')
    parser.add_argument('--out-file', default='result.jpg', help='Where to save the drawing.')
    parser.add_argument('--with-slots', action='store_true',
                        help='Put the GLMix slot assignment maps beside the result and save '
                        'the full slot maps in --slots-dir.')
    parser.add_argument('--slots-dir', default=None,
                        help='Folder for the full slot maps (with --with-slots). Defaults to '
                        '<out-file name>_slots beside --out-file.')
    parser.add_argument('--blocks', nargs='+', default=None,
                        help="GLMix blocks for --with-slots, as stage.block or 'all'. "
                        'Defaults to the last GLMix block of each stage.')
    parser.add_argument('--k', type=int, default=4,
                        help='Representative slots per block in the full slot maps.')
    parser.add_argument('--slot-size', type=int, default=512,
                        help='Shorter side of the network input for the slot maps.')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='Detection: minimum score of drawn boxes.')
    parser.add_argument('--opacity', type=float, default=0.6,
                        help='Segmentation: opacity of the drawn mask.')
    parser.add_argument('--device', default=None,
                        help='Device, e.g. cpu or cuda:0. Defaults to cuda:0 when available.')
    return parser.parse_args(argv)


def build_inferencer(config: str, checkpoint: str, device: str):
    """The inferencer of the config's codebase, chosen by its ``default_scope``."""
    cfg = Config.fromfile(config)
    scope = cfg.get('default_scope', None)
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer
        return DetInferencer(model=cfg, weights=checkpoint, device=device,
                             show_progress=False), scope
    if scope == 'mmseg':
        from mmseg.apis import MMSegInferencer
        return MMSegInferencer(model=cfg, weights=checkpoint, device=device), scope
    raise ValueError(
        f'{config} has default_scope={scope!r}; image_demo.py draws detection ({TASKS[0]}) or '
        f'segmentation ({TASKS[1]}) results, so the config must set one of {TASKS}. For a '
        'classification model use tools/visualize_slots.py.')


def main(argv=None):
    args = parse_args(argv)
    image = mmcv.imread(args.image, flag='color')
    if image is None:
        raise FileNotFoundError(f'Cannot read image {args.image!r}.')
    device = args.device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    inferencer, scope = build_inferencer(args.config, args.checkpoint, device)
    options = dict(pred_score_thr=args.score_thr, no_save_vis=True) if scope == 'mmdet' \
        else dict(opacity=args.opacity)
    # A path (not the array): the inferencers draw arrays as RGB but feed them to the model as
    # BGR; from a path they load and draw the image consistently.
    drawn = inferencer([args.image], return_vis=True, **options)['visualization']
    # RGB, the image's size; MMSegInferencer unwraps single results, DetInferencer does not.
    drawn = drawn[0] if isinstance(drawn, list) else drawn

    if args.with_slots:
        maps = visualize_image_slots(inferencer.model, image, size=args.slot_size,
                                     blocks=args.blocks, k=args.k)
        height = min(drawn.shape[0], 512)
        drawn = make_panel([drawn] + [m.assignment for m in maps],
                           ['prediction'] + [f'slots of block {m.name}' for m in maps], height)
        slots_dir = args.slots_dir or osp.splitext(args.out_file)[0] + '_slots'
        written = save_slot_maps(slots_dir, mmcv.bgr2rgb(image), maps)
        print(f'Wrote {len(written)} slot map files to {slots_dir}')
    write_image(args.out_file, drawn)
    print(f'Saved the result to {args.out_file}')
    return args.out_file


if __name__ == '__main__':
    main(sys.argv[1:])
