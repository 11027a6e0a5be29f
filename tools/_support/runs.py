"""Running the tools on generated data: configs pointed at the data and shortened, and a runner.

``tools/demo.py`` and the tests share these: :func:`write_shrunk_config` writes a config with
another data root and a shorter schedule, :func:`run_tool` runs ``python tools/...`` (or
``bash tools/...sh``) from the repository root and returns what it printed.
"""
import os
import os.path as osp
import subprocess
import sys
import threading
from typing import Any, Callable, List, Optional

from .config_checks import DATALOADERS, iter_dataset_cfgs

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


class ToolRunError(RuntimeError):
    """A tool exited with a non-zero status; the message holds the end of its output."""


def redirect_data_root(cfg: Any, new_root: str) -> None:
    """Point every dataset and evaluator of a loaded config at another data root.

    Each dataset's ``data_root`` and every path under the dataloaders and evaluators that
    starts with it are rewritten in place, so derived paths (a ``CocoMetric`` ``ann_file``
    built as ``data_root + ...``) follow.

    Args:
        cfg (Config): A loaded config.
        new_root (str): The new data root.

    Raises:
        ValueError: When no dataset of the config has a ``data_root``.
    """
    old_roots = set()
    for loader_key in DATALOADERS:
        loader = cfg.get(loader_key)
        if loader is None or loader.get('dataset') is None:
            continue
        for _, dataset in iter_dataset_cfgs(loader['dataset'], loader_key):
            if isinstance(dataset.get('data_root'), str) and dataset['data_root']:
                old_roots.add(dataset['data_root'])
    if not old_roots:
        raise ValueError('The config has no dataset with a data_root to redirect; set the '
                         'paths of its datasets instead.')

    def rewrite(node: Any) -> Any:
        if isinstance(node, str):
            for old in old_roots:
                if node.startswith(old):
                    return osp.join(new_root, node[len(old):].lstrip('/'))
            return node
        if isinstance(node, (list, tuple)):
            return type(node)(rewrite(item) for item in node)
        if hasattr(node, 'items'):
            for k in list(node.keys()):
                node[k] = rewrite(node[k])
        return node

    for key in DATALOADERS + ('val_evaluator', 'test_evaluator'):
        if cfg.get(key) is not None:
            cfg[key] = rewrite(cfg[key])


def shrink_schedule(cfg: Any, max_iters: int) -> None:
    """Give an iteration-based config ``max_iters`` iterations, its schedule stretched to fit.

    Validation runs and a checkpoint is saved at the end; the learning-rate schedulers (warm-up
    included) keep their shape over the new length.

    Args:
        cfg (Config): A loaded config with an ``IterBasedTrainLoop``; changed in place.
        max_iters (int): The new number of training iterations.
    """
    if max_iters < 1:
        raise ValueError(f'max_iters={max_iters}: give at least one training iteration.')
    scale = max_iters / cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters
    schedulers = cfg.get('param_scheduler') or []
    for scheduler in [schedulers] if hasattr(schedulers, 'items') else schedulers:
        scheduler.begin = round(scheduler.get('begin', 0) * scale)
        if 'end' in scheduler:  # else the scheduler runs to the end of training
            scheduler.end = max(round(scheduler.end * scale), scheduler.begin + 1)
        if 'T_max' in scheduler and 'end' in scheduler:
            scheduler.T_max = scheduler.end - scheduler.begin


def write_shrunk_config(config: str,
                        data_root: str,
                        out_path: str,
                        max_iters: Optional[int] = None,
                        batch_size: Optional[int] = None,
                        checkpoint_interval: Optional[int] = None,
                        log_interval: Optional[int] = None,
                        **options) -> str:
    """Write a config pointed at ``data_root``, optionally with a shorter schedule.

    Args:
        config (str): Config file, absolute or relative to the repository.
        data_root (str): The data folder (see :func:`redirect_data_root`).
        out_path (str): Where the resolved config is written.
        max_iters (int, optional): Training iterations (see :func:`shrink_schedule`); None
            keeps the config's. Defaults to None.
        batch_size (int, optional): Training images per process and iteration. None keeps
            the config's. Defaults to None.
        checkpoint_interval (int, optional): Iterations between checkpoints. Defaults to
            ``max_iters`` when that is given, else the config's.
        log_interval (int, optional): Iterations between log lines. None keeps the config's.
            Defaults to None.
        **options: Further ``key=value`` settings merged as with ``--cfg-options``.

    Returns:
        str: ``out_path``.
    """
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    redirect_data_root(cfg, osp.abspath(data_root).rstrip('/') + '/')
    if max_iters is not None:
        shrink_schedule(cfg, max_iters)
    settings = {
        'train_dataloader.batch_size': batch_size,
        'default_hooks.checkpoint.interval': checkpoint_interval or max_iters,
        'default_hooks.logger.interval': log_interval,
    }
    cfg.merge_from_dict({k: v for k, v in settings.items() if v is not None})
    cfg.merge_from_dict(options)
    cfg.dump(out_path)
    return out_path


def run_tool(args: List[str],
             timeout: Optional[float] = None,
             env: Optional[dict] = None,
             check: bool = True,
             log_path: Optional[str] = None,
             on_line: Optional[Callable[[str], None]] = None) -> subprocess.CompletedProcess:
    """Run ``python tools/...`` (or ``bash tools/...sh``) from the repository root.

    The tool runs with this Python, unbuffered output and sleeping (not spinning) OpenMP
    threads, which keeps runs fast on a CPU other jobs share.

    Args:
        args (list[str]): The tool and its arguments (``['tools/train.py', CONFIG, ...]``), or
            ``['bash', 'tools/dist_train.sh', ...]``.
        timeout (float, optional): Seconds before the tool is killed and
            ``subprocess.TimeoutExpired`` raised. Defaults to None (no limit).
        env (dict, optional): Environment variables set for the tool. Defaults to None.
        check (bool): Raise :class:`ToolRunError` when the tool fails. Defaults to True.
        log_path (str, optional): File that receives every line the tool prints (standard
            output and error, in arrival order). Defaults to None.
        on_line (callable, optional): Called with each line of standard output and error
            as it arrives (for progress displays). Defaults to None.

    Returns:
        subprocess.CompletedProcess: With ``returncode``, ``stdout`` and ``stderr`` (text).
    """
    command = args if args[0] == 'bash' else [sys.executable] + list(args)
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', PYTHON=sys.executable)
    full_env.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    full_env.update(env or {})
    outputs = dict(stdout=[], stderr=[])
    lock = threading.Lock()
    log = open(log_path, 'w') if log_path else None

    def drain(stream, name):
        for line in stream:
            with lock:
                outputs[name].append(line)
                if log is not None:
                    log.write(line)
                if on_line is not None:
                    on_line(line.rstrip('\n'))

    try:
        with subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=full_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True) as proc:
            readers = [
                threading.Thread(target=drain, args=(getattr(proc, name), name)) for name in outputs
            ]
            for reader in readers:
                reader.start()
            try:
                returncode = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
            finally:
                for reader in readers:
                    reader.join()
    finally:
        if log is not None:
            log.close()
    result = subprocess.CompletedProcess(command, returncode, ''.join(outputs['stdout']),
                                         ''.join(outputs['stderr']))
    if check and returncode != 0:
        raise ToolRunError(f'{" ".join(args)} exited with {returncode}:\n'
                           f'{result.stdout[-4000:]}\n{result.stderr[-6000:]}')
    return result
