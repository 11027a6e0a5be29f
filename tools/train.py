"""Train a model from an mmdet, mmseg or mmpretrain config.

The codebase comes from the config's ``default_scope``; mmglnet is imported here, and the
configs also import it through ``custom_imports`` (so the codebases' own tools run them too).

Examples::

    python tools/train.py configs/segmentation/upernet_glnet4g_160k.py
    python tools/train.py CONFIG --work-dir work_dirs/run1 --resume      # latest checkpoint
    python tools/train.py CONFIG --amp                                   # mixed precision (GPU)
    bash tools/dist_train.sh CONFIG 8                                    # 8 processes
"""
import argparse
import os
import os.path as osp
import sys

if osp.dirname(osp.abspath(__file__)) not in sys.path:  # loaded by path, not run
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from mmengine.config import Config, DictAction

import mmglnet  # noqa: F401  (registers GLNet, safe checkpoint loading)
from mmglnet.engine import check_resume_file, checkpoint_layout, find_resume_checkpoint
from mmglnet.models import GLNetConfigError
from mmglnet.utils import ConfigFileError

import known_warnings  # noqa: F401  (tools/known_warnings.py: hides known notices)
from _support.config_checks import (ConfigBuildError, ConfigPathError, batched_detection_warning,
                                    check_checkpoint_file, check_dataset_paths,
                                    check_evaluator_paths, check_pretrained_files)
from _support.quick_exit import skip_final_collection
from _support.runtime import (build_runner, enable_amp, finish_distributed, load_run_config,
                              prepare_runtime)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a detector, segmentor or classifier')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and checkpoints')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint; without a path, from the latest checkpoint in '
        'the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed-precision training (needs a GPU)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual batch size (config auto_scale_lr)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value (e.g. train_cfg.max_iters=100 '
        'model.backbone.init_cfg=None); lists as key="[a,b]"')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def fail(message: str) -> None:
    print(f'tools/train.py: error: {message}', file=sys.stderr)
    sys.exit(2)


def prepare_config(args) -> Config:
    try:
        cfg = load_run_config(args)
    except ConfigFileError as error:
        fail(str(error))

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if cfg.get('resume') and not cfg.get('load_from'):
        # Resume from the newest complete checkpoint (logged), not blindly from whatever
        # last_checkpoint names; with none, train from the beginning.
        folders, templates = checkpoint_layout(cfg)
        # Every process decides the same (the work dir is not written yet); one says so.
        rank = os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0'))
        cfg.load_from = find_resume_checkpoint(
            cfg.work_dir, folders, templates, logger='current' if rank == '0' else 'silent')
        cfg.resume = cfg.load_from is not None

    if args.auto_scale_lr:
        if cfg.get('auto_scale_lr') is None:
            fail('--auto-scale-lr needs auto_scale_lr=dict(enable=False, base_batch_size=N) '
                 'in the config; this config has none.')
        cfg.auto_scale_lr.enable = True

    try:
        if args.amp:
            enable_amp(cfg)
        check_dataset_paths(cfg, ['train_dataloader', 'val_dataloader'])
        check_evaluator_paths(cfg, ['val_evaluator'])
        # Resuming restores every weight, so the pretrained file is not needed then.
        if not cfg.get('resume'):
            check_pretrained_files(cfg)
        if cfg.get('load_from'):
            if cfg.resume:
                # Missing, empty, truncated or damaged: named, with the checkpoint to use.
                check_resume_file(cfg.load_from)
            check_checkpoint_file(cfg.load_from,
                                  'checkpoint to resume from' if cfg.resume else 'load_from')
    except (ConfigPathError, RuntimeError) as error:
        fail(str(error))
    warning = batched_detection_warning(cfg, 'val_dataloader')
    if warning:
        print(f'tools/train.py: warning: {warning}', file=sys.stderr)
    return cfg


def main():
    args = parse_args()
    cfg = prepare_config(args)
    try:
        prepare_runtime(cfg, args.launcher)
    except (ImportError, RuntimeError) as error:
        fail(str(error))

    try:
        runner = build_runner(cfg)
    except (GLNetConfigError, ConfigBuildError) as error:  # before any work: the model first
        fail(f'{args.config}: {error}')
    runner.train()
    finish_distributed()


if __name__ == '__main__':
    skip_final_collection()  # exit in a fraction of a second, not 2-3 s
    main()
