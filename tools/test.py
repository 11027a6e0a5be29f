"""Test (and evaluate) a checkpoint with an mmdet, mmseg or mmpretrain config.

Examples::

    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --out results.pkl      # dump predictions
    python tools/test.py CONFIG CHECKPOINT --show-dir vis         # draw predictions
    python tools/test.py CONFIG CHECKPOINT --tta                  # test-time augmentation
    bash tools/dist_test.sh CONFIG CHECKPOINT 8

``--out`` takes a ``.pkl`` file for every codebase (predictions as mmengine's ``DumpResults``,
or mmdet's ``DumpDetResults`` with masks RLE-encoded), written atomically: a previous file stays
whole until the new one is complete. With an mmseg config it may instead name a folder, where
the predicted label maps are written as PNG files (mmseg's behaviour). A place that cannot be
written to is refused before testing.

The checkpoint must fit the model: a file that leaves weights of the model unloaded, or holds
weights it lacks (another config's checkpoint, an unconverted release file), is refused before
testing, listing a few; ``--allow-partial-checkpoint`` tests with the matching weights anyway.

``--tta`` tests with the config's ``tta_model`` and ``tta_pipeline`` (mmseg's ADE20K base: six
scales and flips), or with flip TTA where the config has none (``_support/test_time_aug.py``).
"""
import argparse
import os
import os.path as osp
import pickle
import sys
from typing import Optional

if osp.dirname(osp.abspath(__file__)) not in sys.path:  # loaded by path, not run
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.hooks import Hook

import mmglnet  # noqa: F401  (registers GLNet, safe checkpoint loading)
from mmglnet.checkpoint import (CheckpointFileError, CheckpointMismatchError,
                                check_checkpoint_fits_model)
from mmglnet.models import GLNetConfigError
from mmglnet.utils import ConfigFileError

import known_warnings  # noqa: F401  (tools/known_warnings.py: hides known notices)
from _support.config_checks import (ConfigBuildError, ConfigPathError, batched_detection_warning,
                                    check_checkpoint_file, check_dataset_paths,
                                    check_evaluator_paths)
from _support.output_paths import output_folder_problem
from _support.quick_exit import skip_final_collection
from _support.runtime import build_runner, finish_distributed, load_run_config, prepare_runtime
from _support.test_time_aug import TestTimeAugError, apply_test_time_aug

PICKLE_SUFFIXES = ('.pkl', '.pickle')  # what mmengine's dump metrics accept


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the log and the file with the metrics')
    parser.add_argument(
        '--out',
        help='dump predictions to this .pkl file (mmseg configs: or to this folder as PNG '
        'label maps)')
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    parser.add_argument('--show-dir', help='save images with the predictions drawn to this folder')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds each image is shown (--show)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value; lists as key="[a,b]"')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--allow-partial-checkpoint',
        action='store_true',
        help='test even if the checkpoint leaves weights of the model unloaded, holds weights '
        'the model lacks or with other shapes (by default such a checkpoint is refused: '
        'its metrics would be those of partly untrained weights)')
    parser.add_argument(
        '--tta',
        action='store_true',
        help="test-time augmentation: the config's tta_model and tta_pipeline, or horizontal "
        'flips where it has none (not for instance segmentation: mmdet merges boxes only)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def fail(message: str) -> None:
    print(f'tools/test.py: error: {message}', file=sys.stderr)
    sys.exit(2)


def _metrics(evaluator) -> list:
    if evaluator is None:
        return []
    return list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]


def check_out_path(out: str, scope: Optional[str]) -> None:
    """Refuse, before testing, an ``--out`` that the predictions could not be written to."""
    to_folder = not out.endswith(PICKLE_SUFFIXES)
    if to_folder and scope != 'mmseg':
        fail(f'--out {out!r}: the file to dump predictions to must end with .pkl '
             '(a folder is accepted for mmseg configs only).')
    if not to_folder and osp.isdir(out):
        fail(f'--out {out!r} is a folder: name the file to write, e.g. '
             f'{osp.join(out, "results.pkl")!r}.')
    if to_folder and osp.exists(out) and not osp.isdir(out):
        fail(f'--out {out!r} is a file: mmseg writes its label maps into a folder; name one.')
    problem = output_folder_problem(out if to_folder else osp.dirname(osp.abspath(out)))
    if problem:
        fail(f'--out {out!r}: {problem}; choose another place.')


def add_dump(cfg: Config, out: str) -> None:
    """Make the test evaluator also write the predictions to ``out``.

    A ``.pkl`` file is written by ``mmglnet.AtomicDumpResults``, which replaces a previous file
    whole (mmengine's ``DumpResults`` writes in place: a kill while dumping left a cut file).
    """
    scope = cfg.get('default_scope')
    check_out_path(out, scope)
    if not out.endswith(PICKLE_SUFFIXES):
        for metric in _metrics(cfg.get('test_evaluator')):
            metric['output_dir'] = out
            metric['keep_results'] = True
        return
    dumper = dict(type='mmdet.DumpDetResults' if scope == 'mmdet' else 'mmengine.DumpResults')
    cfg.test_evaluator = _metrics(cfg.get('test_evaluator')) + [
        ConfigDict(type='mmglnet.AtomicDumpResults', out_file_path=out, dumper=dumper)
    ]


def add_visualization(cfg: Config, args) -> None:
    """Switch the config's visualization hook on, drawing to ``--show-dir``."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        fail('--show/--show-dir need default_hooks.visualization in the config (the '
             "codebase's visualization hook); this config has none.")
    hook['draw'] = True
    hook['interval'] = 1  # every test image (mmseg's hook draws every 50th by default)
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        scope = cfg.get('default_scope')
        if scope == 'mmdet':
            hook['test_out_dir'] = args.show_dir
        elif scope == 'mmpretrain':
            hook['out_dir'] = args.show_dir
        else:  # mmseg draws through the visualizer's save_dir
            cfg.setdefault('visualizer', ConfigDict())['save_dir'] = args.show_dir


def prepare_config(args) -> Config:
    try:
        cfg = load_run_config(args)
    except ConfigFileError as error:
        fail(str(error))

    try:
        check_checkpoint_file(args.checkpoint)
        check_dataset_paths(cfg, ['test_dataloader'])
        check_evaluator_paths(cfg, ['test_evaluator'])
    except ConfigPathError as error:
        fail(str(error))
    # Runner.test() loads this checkpoint and never reads the pretrained files.
    cfg.load_from = args.checkpoint

    if args.tta:
        try:
            apply_test_time_aug(cfg)
        except TestTimeAugError as error:
            fail(str(error))

    if args.show or args.show_dir:
        add_visualization(cfg, args)
    if args.out is not None:
        add_dump(cfg, args.out)
    warning = batched_detection_warning(cfg, 'test_dataloader')
    if warning:
        print(f'tools/test.py: warning: {warning}', file=sys.stderr)
    return cfg


class CheckpointFitHook(Hook):
    """Refuses the checkpoint, as the runner loads it, if it does not fit the model.

    mmengine's Runner loads ``load_from`` non-strictly and only logs what did not match. This hook
    sees what the runner read before any other hook (an EMA hook, say) and before the weights go
    into the model, so the file is read once and nothing is tested with the wrong weights.

    Args:
        path (str): The checkpoint, as the error message names it.
    """
    priority = 'HIGHEST'

    def __init__(self, path: str):
        self.path = path

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        check_checkpoint_fits_model(runner.model, checkpoint, self.path)


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
    if not args.allow_partial_checkpoint:
        runner.register_hook(CheckpointFitHook(args.checkpoint))  # at its own priority
    try:
        runner.test()
    except CheckpointMismatchError as error:
        fail(f'{error} To test with the matching weights only, on purpose, pass '
             '--allow-partial-checkpoint.')
    except (CheckpointFileError, pickle.UnpicklingError) as error:  # damaged or untrusted file
        fail(str(error))
    finish_distributed()


if __name__ == '__main__':
    skip_final_collection()  # exit in a fraction of a second, not 2-3 s
    main()
