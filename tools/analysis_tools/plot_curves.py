"""Draw loss and metric curves from mmengine scalar logs into a PNG.

Examples:
    python tools/analysis_tools/plot_curves.py work_dirs/demo/upernet/*/vis_data/scalars.json
    python tools/analysis_tools/plot_curves.py run_a/vis_data/scalars.json \
        run_b/vis_data/scalars.json --names a b --keys loss --metrics mIoU --out curves.png

Each log (a ``vis_data/scalars.json``, or a work dir / run folder holding one) gets a row:
training scalars against the iteration, validation metrics against their own step. By default
every loss key and every metric key is drawn; ``--keys`` picks training keys
(``decode.acc_seg``, ``lr``...) and ``--metrics`` validation keys. Needs only matplotlib.
"""
import argparse
import os
import os.path as osp
import sys

if osp.dirname(osp.dirname(osp.abspath(__file__))) not in sys.path:  # tools/
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmglnet.visualization.curves import plot_curves  # noqa: E402

import known_warnings  # noqa: F401  (tools/known_warnings.py: hides known notices)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Plot loss and metric curves of mmengine scalar logs (vis_data/*.json).')
    parser.add_argument(
        'logs',
        nargs='+',
        metavar='LOG',
        help='vis_data/scalars.json files, or work dirs / run folders holding '
        'one (the newest is used).')
    parser.add_argument(
        '--keys',
        nargs='+',
        default=None,
        help='Training keys to draw (e.g. loss decode.acc_seg lr). Defaults '
        'to every loss key.')
    parser.add_argument(
        '--metrics',
        nargs='+',
        default=None,
        help='Validation keys to draw (e.g. mIoU coco/bbox_mAP). Defaults to '
        'every metric key.')
    parser.add_argument(
        '--names',
        nargs='+',
        default=None,
        help='A name per log for the panel titles. Defaults to the paths.')
    parser.add_argument('--title', default=None, help='Figure title.')
    parser.add_argument('--out', default='curves.png', help='PNG file to write.')
    parser.add_argument('--dpi', type=int, default=100, help='Resolution of the PNG.')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_dir = osp.dirname(osp.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    try:
        drawn = plot_curves(
            args.logs,
            args.out,
            keys=args.keys,
            metrics=args.metrics,
            names=args.names,
            title=args.title,
            dpi=args.dpi)
    except (ValueError, KeyError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) else str(error)
        print(f'plot_curves: {message}', file=sys.stderr)
        return 1
    for name, keys in drawn.items():
        print(f'{name}: training {", ".join(keys["train"]) or "-"}; validation '
              f'{", ".join(keys["val"]) or "-"}')
    print(f'Curves written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
