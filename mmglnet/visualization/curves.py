"""Loss and metric curves from mmengine's scalar logs (``vis_data/scalars.json``).

mmengine's ``LocalVisBackend`` appends one JSON object per line: a training record (losses,
``lr``, ``time``... with the ``iter`` it was logged at) every logging interval, and a
validation record (the evaluator's metrics) after every validation, each with the ``step`` it
belongs to (the iteration, or the epoch for metrics logged by epoch).
"""
import json
import math
import os.path as osp
from glob import glob
from typing import Dict, List, Optional, Sequence, Tuple

from mmglnet.utils import atomic_output

# Keys of mmengine's records that are bookkeeping, not curves.
BOOKKEEPING_KEYS = ('step', 'iter', 'epoch', 'time', 'data_time', 'lr', 'memory', 'base_lr')

Series = Dict[str, Tuple[List[float], List[float]]]


def find_scalars_file(path: str) -> str:
    """``path`` itself if it is a file, else the newest ``vis_data/scalars.json`` below it.

    Args:
        path (str): A scalars log, a run folder (``work_dir/<timestamp>``) or a work dir.

    Returns:
        str: The log file.
    """
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise FileNotFoundError(f'{path!r} does not exist: give an mmengine scalars log '
                                '(work_dir/<timestamp>/vis_data/scalars.json) or a work dir.')
    candidates = glob(osp.join(path, 'vis_data', 'scalars.json')) or glob(
        osp.join(path, '*', 'vis_data', 'scalars.json'))
    if not candidates:
        raise FileNotFoundError(
            f'No vis_data/scalars.json in {path!r} or its run folders: was it written by an '
            'mmengine Runner with the LocalVisBackend '
            "(vis_backends=[dict(type='LocalVisBackend')])?")
    return max(candidates, key=osp.getmtime)


def load_scalars(path: str) -> Tuple[List[dict], List[dict]]:
    """Read an mmengine scalars log into training and validation records.

    Args:
        path (str): ``vis_data/scalars.json`` (or a ``vis_data/<timestamp>.json``).

    Returns:
        tuple[list[dict], list[dict]]: Training records (those with an ``iter``) and
        validation records (the others), in file order.

    Raises:
        ValueError: If the file is not an mmengine scalars log: every line must be a JSON
            object with a numeric ``step``.
    """
    train, val = [], []
    hint = ('an mmengine scalars log has one JSON object per line, each with a numeric '
            '"step" (work_dir/<timestamp>/vis_data/scalars.json)')
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f'{path} is not an mmengine scalars log: line {number} is not '
                                 f'JSON ({error.msg}); {hint}.') from None
            if not isinstance(record, dict) or not isinstance(record.get('step'), (int, float)):
                raise ValueError(f'{path} is not an mmengine scalars log: line {number} has no '
                                 f'numeric "step" ({line[:80]!r}); {hint}.')
            (train if 'iter' in record else val).append(record)
    if not train and not val:
        raise ValueError(f'{path} is empty: {hint}.')
    return train, val


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def collect_series(records: Sequence[dict],
                   keys: Optional[Sequence[str]],
                   default,
                   skip_value: Optional[float] = None) -> Series:
    """``{key: (steps, values)}`` for ``keys``, or for every key ``default(key)`` accepts.

    Args:
        records (Sequence[dict]): Training or validation records.
        keys (Sequence[str], optional): Keys to keep; None picks them with ``default``.
        default (callable): ``key -> bool`` used when ``keys`` is None.
        skip_value (float, optional): A value that means "not computed" (COCO's -1 for a
            size range without objects), left out. Defaults to None.

    Returns:
        dict: Steps and values per key, in the order of ``keys``, or else in the order the
        keys first appear.
    """
    series: Series = {}
    for record in records:
        for key, value in record.items():
            wanted = key in keys if keys is not None else (key not in BOOKKEEPING_KEYS
                                                           and default(key))
            if wanted and _is_number(value) and value != skip_value:
                steps, values = series.setdefault(key, ([], []))
                steps.append(record['step'])
                values.append(float(value))
    if keys is not None:
        series = {key: series[key] for key in keys if key in series}
    return series


def is_loss_key(key: str) -> bool:
    """Whether a training key is a loss (``loss``, ``decode.loss_ce``, ``loss_rpn_cls``...)."""
    return 'loss' in key.split('.')[-1]


def plot_curves(logs: Sequence[str],
                out_file: str,
                keys: Optional[Sequence[str]] = None,
                metrics: Optional[Sequence[str]] = None,
                names: Optional[Sequence[str]] = None,
                title: Optional[str] = None,
                dpi: int = 100) -> Dict[str, Dict[str, List[str]]]:
    """Draw training-loss and validation-metric curves of one or more runs into a PNG.

    Each log gets a row: its training scalars against the iteration on the left, its
    validation metrics against their own step (the iteration, or the epoch where metrics are
    logged by epoch) on the right. COCO's -1 ("no object of this size") is not drawn.

    Args:
        logs (Sequence[str]): mmengine scalars logs (see :func:`find_scalars_file` for the
            folders accepted).
        out_file (str): The image to write (``.png``).
        keys (Sequence[str], optional): Training keys to draw; None draws every loss key.
            Defaults to None.
        metrics (Sequence[str], optional): Validation keys to draw; None draws every metric.
            Defaults to None.
        names (Sequence[str], optional): A name per log for the titles. Defaults to the
            logs' paths.
        title (str, optional): Figure title. Defaults to None.
        dpi (int): Resolution. Defaults to 100.

    Returns:
        dict: Per log name, the ``train`` and ``val`` keys drawn.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not logs:
        raise ValueError('No log given: pass one or more vis_data/scalars.json files.')
    if names is not None and len(names) != len(logs):
        raise ValueError(f'{len(names)} names for {len(logs)} logs: give one name per log.')
    files = [find_scalars_file(log) for log in logs]
    names = list(names) if names is not None else files
    runs, available = [], dict(train=set(), val=set())
    for name, path in zip(names, files):
        train, val = load_scalars(path)
        for kind, records in (('train', train), ('val', val)):
            available[kind].update(
                key for record in records for key in record if key not in ('step', 'iter', 'epoch'))
        runs.append((name, collect_series(train, keys, is_loss_key),
                     collect_series(val, metrics, lambda key: True, skip_value=-1)))
    drawn = {name: dict(train=list(t), val=list(v)) for name, t, v in runs}
    for kind, wanted, option in (('train', keys, 'keys'), ('val', metrics, 'metrics')):
        missing = [key for key in wanted or () if key not in available[kind]]
        if missing:
            what = 'training' if kind == 'train' else 'validation'
            raise KeyError(f'--{option} {missing} are in no {what} record of the logs; '
                           f'available {what} keys: {sorted(available[kind])}.')

    figure = Figure(figsize=(12, 3.6 * len(runs)), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(runs), 2, squeeze=False)
    for row, (name, train_series, val_series) in enumerate(runs):
        for ax, series, label, kind in ((axes[row][0], train_series, 'iteration', 'training'),
                                        (axes[row][1], val_series, 'step (iteration, or epoch)',
                                         'validation')):
            for key, (steps, values) in series.items():
                lines = ax.plot(
                    steps, values, marker='o' if len(steps) < 20 else None, markersize=4, label=key)
                if kind == 'validation':  # the last value, written beside its point
                    ax.annotate(
                        f'{values[-1]:.4g}', (steps[-1], values[-1]),
                        textcoords='offset points',
                        xytext=(6, 0),
                        va='center',
                        fontsize=8,
                        color=lines[0].get_color())
            ax.set_title(f'{name}: {kind}', fontsize=9)
            ax.set_xlabel(label)
            ax.grid(alpha=0.3)
            if series:
                ax.legend(fontsize=8)
            else:
                ax.text(
                    0.5,
                    0.5,
                    f'no {kind} values',
                    ha='center',
                    va='center',
                    transform=ax.transAxes,
                    color='gray')
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    # The format from the final name: the temporary one ends in '.partial'.
    with atomic_output(out_file) as temporary:
        figure.savefig(temporary, format=osp.splitext(out_file)[1][1:].lower() or 'png')
    return drawn
