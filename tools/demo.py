"""The main job: train and evaluate GLNet detectors and segmentors on the CPU, from nothing.

On a fresh machine (after ``bash tools/setup_env.sh``) this

1. generates a small shapes dataset in the ADE20K layout and in the COCO layout;
2. trains a GLNet UperNet and a GLNet Mask R-CNN on it with ``tools/train.py`` (the real
   mmseg/mmdet pipelines, configs in ``configs/demo/``), evaluating at the end;
3. re-tests each saved checkpoint with ``tools/test.py`` on the validation images, which
   training never saw, beside the untrained (randomly initialised) model on the same images;
4. prints the metrics, draws slot maps with ``tools/visualize_slots.py`` when present, and the
   loss and metric curves of both training runs (``curves.png``, with
   ``tools/analysis_tools/plot_curves.py``).

Usage::

    .venv/bin/python tools/demo.py                    # everything, into work_dirs/demo
    .venv/bin/python tools/demo.py --work-dir DIR     # somewhere else
    .venv/bin/python tools/demo.py --data-only        # only generate the datasets
    .venv/bin/python tools/demo.py --tasks seg        # only the segmentation part
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import sys
import time

if osp.dirname(osp.abspath(__file__)) not in sys.path:  # loaded by path, not run
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import known_warnings  # noqa: F401  (tools/known_warnings.py: hides known notices)
from _support.quick_exit import skip_final_collection
from _support.runs import run_tool, write_shrunk_config

# Idle OpenMP threads sleep instead of spinning: on a CPU shared with other jobs, spinning
# threads slow training several times over; on an idle machine the difference is small.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MARKER = '.mmglnet-demo'
TASKS = {
    'seg':
    dict(
        title='UperNet + GLNet (semantic segmentation, ADE20K layout)',
        config='configs/demo/upernet_glnet-tiny_shapes-ade-128x128.py',
        data='ade',
        metrics=[('mIoU', 'mIoU', 1.0), ('aAcc', 'aAcc', 1.0)],
        target=('mIoU', 50.0)),
    'det':
    dict(
        title='Mask R-CNN + GLNet (instance segmentation, COCO layout)',
        config='configs/demo/mask-rcnn_glnet-tiny_fpn_shapes-coco-128x128.py',
        data='coco',
        metrics=[('bbox mAP', 'coco/bbox_mAP', 1.0), ('bbox mAP50', 'coco/bbox_mAP_50', 1.0),
                 ('mask mAP', 'coco/segm_mAP', 1.0)],
        target=('bbox mAP', 0.20)),
}
# Lines of the training log shown while a tool runs (the full log is in the work dir).
PROGRESS_KEYS = ('Iter(train)', 'Iter(val)', 'Iter(test)', 'Saving checkpoint',
                 'ReplicaCheckHook: world size', 'Error', 'error:')


def parse_args():
    parser = argparse.ArgumentParser(
        description='Generate a shapes dataset, train GLNet UperNet and Mask R-CNN on the '
        'CPU, re-test the checkpoints and compare them with the untrained models.')
    parser.add_argument(
        '--work-dir',
        default='work_dirs/demo',
        help='where data, logs, checkpoints and results go (default: work_dirs/demo)')
    parser.add_argument(
        '--tasks',
        nargs='+',
        choices=list(TASKS),
        default=list(TASKS),
        help='which parts to run (default: seg det)')
    parser.add_argument('--data-only', action='store_true', help='only generate the datasets')
    parser.add_argument(
        '--train-images',
        type=int,
        default=240,
        help='generated training images per dataset (default: 240)')
    parser.add_argument(
        '--val-images',
        type=int,
        default=40,
        help='generated held-out images per dataset (default: 40)')
    parser.add_argument(
        '--seg-iters',
        type=int,
        default=None,
        help='training iterations of the segmentor (default: the config\'s)')
    parser.add_argument(
        '--det-iters',
        type=int,
        default=None,
        help='training iterations of the detector (default: the config\'s)')
    return parser.parse_args()


def say(message: str = '') -> None:
    print(message, flush=True)


def shown(path: str) -> str:
    """A path relative to the repository when inside it, else absolute."""
    path = osp.abspath(path)
    inside = path.startswith(REPO_ROOT + os.sep)
    return osp.relpath(path, REPO_ROOT) if inside else path


def prepare_work_dir(work_dir: str) -> None:
    """Use ``work_dir`` only if it is new, empty, or was made by this demo."""
    if osp.isdir(work_dir) and os.listdir(work_dir) and \
            not osp.isfile(osp.join(work_dir, MARKER)):
        sys.exit(f'tools/demo.py: error: {work_dir!r} exists and holds files that this demo '
                 'did not write; nothing there is touched. Choose another folder with '
                 '--work-dir, or empty it yourself.')
    if osp.isfile(osp.join(work_dir, MARKER)):
        say(f'Reusing {work_dir} from an earlier demo run: its outputs are replaced.')
    os.makedirs(work_dir, exist_ok=True)
    with open(osp.join(work_dir, MARKER), 'w') as f:
        f.write('Written by tools/demo.py; the demo may replace anything in this folder.\n')


def generate_data(work_dir: str, train_images: int, val_images: int) -> dict:
    from _support.shapes_data import write_ade20k_shapes, write_coco_shapes
    roots = dict(ade=osp.join(work_dir, 'data', 'ade'), coco=osp.join(work_dir, 'data', 'coco'))
    counts = dict(train=train_images, val=val_images)
    for name, writer in (('ade', write_ade20k_shapes), ('coco', write_coco_shapes)):
        start = time.time()
        written = writer(roots[name], num_images=counts, seed=0)
        state = f'written in {time.time() - start:.1f} s' if written else 'already there'
        say(f'  {name:5s} {roots[name]}: {train_images} training + {val_images} held-out '
            f'images, 128x128 ({state})')
    return roots


def shorten_log_line(text: str, width: int = 160) -> str:
    """``text`` if it fits in ``width`` characters, else the whole fields that fit and " ...".

    A field is a ``key: value`` pair of mmengine's log lines (``decode.acc_seg: 42.4402``) or
    a single word; a line is never cut inside one, so every value shown is complete.
    """
    if len(text) <= width:
        return text
    kept = ''
    for field in re.findall(r'\s*(?:\S+: \S+|\S+)', text):
        if len(kept) + len(field) + len(' ...') > width:
            break
        kept += field
    return (kept or text[:width - len(' ...')]) + ' ...'


def show_progress(line: str) -> None:
    """Show a tool's progress lines, without mmengine's date/logger prefix."""
    if any(key in line for key in PROGRESS_KEYS):
        if ' - mmengine - INFO - ' in line:
            line = line.split(' - mmengine - INFO - ', 1)[1]
        say('    ' + shorten_log_line(line))


def run_demo_tool(args: list, log_path: str, progress: bool = True) -> None:
    """Run a tool; show its progress lines, keep its whole output in ``log_path``."""
    result = run_tool(
        args, check=False, log_path=log_path, on_line=show_progress if progress else None)
    if result.returncode != 0:
        with open(log_path) as f:
            tail = f.read().splitlines()[-40:]
        say('\n'.join('    | ' + line for line in tail))
        sys.exit(f'tools/demo.py: error: {" ".join(args[:2])} failed (exit code '
                 f'{result.returncode}); its full output is in {log_path}.')


def latest_metrics(work_dir: str) -> dict:
    """Metrics of the last test run in ``work_dir`` (mmengine writes them as JSON)."""
    files = sorted(glob.glob(osp.join(work_dir, '*', '*.json')), key=osp.getmtime)
    if not files:
        raise FileNotFoundError(f'No metrics file was written under {work_dir}.')
    with open(files[-1]) as f:
        return json.load(f)


def write_task_config(task: dict, data_root: str, out_dir: str, iters) -> str:
    """The task's config on the generated data; ``iters`` stretches its schedule."""
    return write_shrunk_config(
        task['config'], data_root, osp.join(out_dir, osp.basename(task['config'])), max_iters=iters)


def save_untrained(config_path: str, out_path: str) -> None:
    """Save the randomly initialised model (the training run's seed) as a checkpoint."""
    import torch
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.runner import set_random_seed

    from mmglnet.apis import build_model

    # A quiet current logger: init_weights would list every parameter at INFO level.
    name = f'mmglnet_demo_{osp.basename(config_path)}'
    if not MMLogger.check_instance_created(name):
        MMLogger.get_instance(name, log_level='WARNING')
    cfg = Config.fromfile(config_path)
    set_random_seed(cfg.get('randomness', {}).get('seed', 0))
    model = build_model(cfg)
    model.init_weights()
    torch.save(
        dict(meta=dict(note='untrained, random initialisation'), state_dict=model.state_dict()),
        out_path)


def run_task(name: str, task: dict, data_root: str, work_dir: str, iters) -> dict:
    task_dir = osp.abspath(osp.join(work_dir, name))
    os.makedirs(task_dir, exist_ok=True)
    config = write_task_config(task, data_root, task_dir, iters)
    say(f'\n== {task["title"]}')
    say(f'  config: {shown(config)}')

    start = time.time()
    say('  training with tools/train.py (log lines below; full log in the work dir):')
    run_demo_tool(['tools/train.py', config, '--work-dir', task_dir],
                  osp.join(task_dir, 'train_output.txt'))
    train_time = time.time() - start
    with open(osp.join(task_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    during_training = latest_metrics_in_train(task_dir)

    untrained = osp.join(task_dir, 'untrained.pth')
    save_untrained(config, untrained)
    results = dict(train_time=train_time, checkpoint=checkpoint, during=during_training)
    for label, ckpt in (('trained', checkpoint), ('untrained', untrained)):
        say(f'  re-testing the {label} model with tools/test.py on the held-out images')
        test_dir = osp.join(task_dir, f'test_{label}')
        run_demo_tool(['tools/test.py', config, ckpt, '--work-dir', test_dir],
                      osp.join(task_dir, f'test_{label}_output.txt'),
                      progress=False)
        results[label] = latest_metrics(test_dir)
    results['config'] = config
    return results


def latest_metrics_in_train(task_dir: str) -> dict:
    """The validation metrics logged at the end of training (vis_data/scalars.json)."""
    files = sorted(glob.glob(osp.join(task_dir, '*', 'vis_data', 'scalars.json')), key=osp.getmtime)
    found = {}
    if files:
        with open(files[-1]) as f:
            for line in f:
                record = json.loads(line)
                if 'lr' not in record:  # training lines carry the learning rate
                    found.update(record)
    return found


def metric_value(metrics: dict, key: str, scale: float):
    value = metrics.get(key)
    return None if value is None else float(value) * scale


def report(results: dict) -> bool:
    say('\n== Results on the held-out images (never used for training)')
    say('  mIoU and aAcc in %, COCO mAP in [0, 1]; "trained" re-tests the saved checkpoint with '
        'tools/test.py,\n  "at train end" is the evaluation the training run did itself.')
    header = f'  {"model":<28}{"metric":<13}{"untrained":>11}{"trained":>11}' \
             f'{"at train end":>14}'
    say(header)
    say('  ' + '-' * (len(header) - 2))
    ok = True
    for name, result in results.items():
        task = TASKS[name]
        for label, key, scale in task['metrics']:
            values = [
                metric_value(result[k], key, scale) for k in ('untrained', 'trained', 'during')
            ]
            cells = ''.join(f'{v:>11.3f}' if v is not None else f'{"n/a":>11}' for v in values[:2])
            cells += f'{values[2]:>14.3f}' if values[2] is not None else f'{"n/a":>14}'
            model = 'UperNet-GLNet' if name == 'seg' else 'Mask R-CNN-GLNet'
            say(f'  {model:<28}{label:<13}{cells}')
        target_label, target = task['target']
        key, scale = next((k, s) for lbl, k, s in task['metrics'] if lbl == target_label)
        trained = metric_value(result['trained'], key, scale)
        untrained = metric_value(result['untrained'], key, scale) or 0.
        passed = trained is not None and trained >= target and trained > untrained
        ok &= passed
        say(f'  -> {target_label} {trained if trained is not None else float("nan"):.3f} '
            f'(target >= {target}, untrained {untrained:.3f}): '
            f'{"reached" if passed else "NOT reached"}; trained in {result["train_time"]:.0f} s; '
            f'checkpoint {shown(result["checkpoint"])}')
    return ok


def visualize_slots(results: dict, data_roots: dict, work_dir: str) -> None:
    tool = osp.join(REPO_ROOT, 'tools', 'visualize_slots.py')
    if 'seg' not in results or not osp.isfile(tool):
        return
    images = sorted(glob.glob(osp.join(data_roots['ade'], 'images', 'validation', '*.jpg')))
    out_dir = osp.abspath(osp.join(work_dir, 'slots'))
    say('\n== Slot maps of the trained UperNet (tools/visualize_slots.py)')
    run_demo_tool([
        'tools/visualize_slots.py', images[0], results['seg']['config'],
        results['seg']['checkpoint'], '--out-dir', out_dir
    ],
                  osp.join(work_dir, 'visualize_slots_output.txt'),
                  progress=False)
    pngs = sorted(glob.glob(osp.join(out_dir, '**', '*.png'), recursive=True))
    say(f'  {len(pngs)} PNG file(s) in {out_dir}')


def draw_curves(results: dict, work_dir: str) -> None:
    """Loss and metric curves of the training runs (tools/analysis_tools/plot_curves.py)."""
    logs, names = [], []
    for name in results:
        found = sorted(
            glob.glob(osp.join(work_dir, name, '*', 'vis_data', 'scalars.json')), key=osp.getmtime)
        if found:
            logs.append(osp.abspath(found[-1]))
            names.append('UperNet-GLNet' if name == 'seg' else 'Mask R-CNN-GLNet')
    if not logs:
        return
    out = osp.abspath(osp.join(work_dir, 'curves.png'))
    say('\n== Training curves (tools/analysis_tools/plot_curves.py)')
    # The metrics of the results table; every loss.
    metrics = [key for name in results for _, key, _ in TASKS[name]['metrics']]
    run_demo_tool([
        'tools/analysis_tools/plot_curves.py', *logs, '--names', *names, '--metrics', *metrics,
        '--out', out
    ],
                  osp.join(work_dir, 'plot_curves_output.txt'),
                  progress=False)
    say(f'  {shown(out)}')


def main():
    args = parse_args()
    start = time.time()
    work_dir = args.work_dir
    prepare_work_dir(work_dir)
    say(f'== Generating the shapes datasets in {osp.join(work_dir, "data")}')
    data_roots = generate_data(work_dir, args.train_images, args.val_images)
    if args.data_only:
        return
    results = {}
    for name in args.tasks:
        iters = args.seg_iters if name == 'seg' else args.det_iters
        results[name] = run_task(name, TASKS[name], data_roots[TASKS[name]['data']], work_dir,
                                 iters)
    ok = report(results)
    visualize_slots(results, data_roots, work_dir)
    draw_curves(results, work_dir)
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1, default=str)
    say(f'\nWhole demo: {time.time() - start:.0f} s. Results: {osp.join(work_dir, "results.json")}')
    if not ok:
        sys.exit(1)


if __name__ == '__main__':
    skip_final_collection()  # exit in a fraction of a second, not 2-3 s
    main()
