"""Parameters and FLOPs of the model of an mmdet, mmseg or mmpretrain config.

Counts one multiply-add as one FLOP (the OpenMMLab convention) and, unlike mmengine's plain
counter, includes the attention products of ``scaled_dot_product_attention``. The model is built
from the config alone: no dataset, no checkpoint. Example::

    python tools/analysis_tools/get_flops.py configs/segmentation/upernet_glnet4g_160k.py \
        --shape 512 2048
"""
import argparse
import os.path as osp
import sys

if osp.dirname(osp.dirname(osp.abspath(__file__))) not in sys.path:  # tools/
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmengine.config import Config, DictAction

from mmglnet.analysis import config_complexity

import known_warnings  # noqa: F401  (tools/known_warnings.py: hides known notices)
from _support.quick_exit import skip_final_collection

# Default input sizes, those the codebases' papers report at: (height, width).
DEFAULT_SHAPES = {'mmdet': (1280, 800), 'mmseg': (512, 2048), 'mmpretrain': (224, 224)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Count the parameters and FLOPs (attention products included) of the '
        'model of a config.')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=None,
        help='input size: "H W", or one value for a square image. Defaults to 1280 800 for '
        'mmdet, 512 2048 for mmseg and 224 for mmpretrain configs.')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        metavar='KEY=VALUE',
        help='override config settings, e.g. model.backbone.arch=9g')
    args = parser.parse_args(argv)
    if args.shape is not None and (len(args.shape) not in (1, 2) or min(args.shape) <= 0):
        parser.error(f'--shape takes one or two positive sizes (H W), got {args.shape}.')
    return args


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.config):
        sys.exit(f'Config file {args.config!r} does not exist; give the path to a config '
                 '(e.g. configs/segmentation/upernet_glnet4g_160k.py).')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.shape is not None:
        shape = tuple(args.shape) * (2 if len(args.shape) == 1 else 1)
    else:
        scope = cfg.get('default_scope')
        if scope not in DEFAULT_SHAPES:
            sys.exit(f'No default input size for a config of scope {scope!r}; pass --shape H W.')
        shape = DEFAULT_SHAPES[scope]

    result = config_complexity(cfg, shape)
    print(f'Input shape: {tuple(result["input_shape"])}')
    print(f'Params: {result["params"] / 1e6:.2f} M')
    print(f'FLOPs: {result["flops"] / 1e9:.2f} G')
    print('(one multiply-add = one FLOP; attention products counted; element-wise operators '
          'and data preprocessing not counted)')


if __name__ == '__main__':
    skip_final_collection()  # exit in a fraction of a second, not 2-3 s
    main()
