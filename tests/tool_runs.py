"""Running tools/*.py on tiny generated data: shared by the tool, resume and dist tests."""
import os
import os.path as osp
import subprocess
import sys
from typing import List, Optional

from mmengine.config import Config

from mmglnet.datasets import write_ade20k_shapes, write_coco_shapes
from mmglnet.utils import redirect_data_root

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
UPERNET = 'configs/demo/upernet_glnet-tiny_shapes-ade-128x128.py'
MASK_RCNN = 'configs/demo/mask-rcnn_glnet-tiny_fpn_shapes-coco-128x128.py'
RETINANET = 'configs/demo/retinanet_glnet-tiny_fpn_shapes-coco-128x128.py'
# Tiny splits: 8 training images (4 per process in the two-process test), 4 held out.
TINY_SPLITS = dict(train=8, val=4)


def make_tiny_data(root: str) -> dict:
    """Write the shapes dataset in both layouts under ``root``; returns the two data roots."""
    roots = dict(ade=osp.join(root, 'ade'), coco=osp.join(root, 'coco'))
    write_ade20k_shapes(roots['ade'], num_images=TINY_SPLITS, image_size=64, seed=1)
    write_coco_shapes(roots['coco'], num_images=TINY_SPLITS, image_size=64, seed=1)
    return roots


def write_config(config: str, data_root: str, out_path: str, max_iters: int = 2,
                 checkpoint_interval: Optional[int] = None, batch_size: int = 2,
                 **options) -> str:
    """A demo config pointed at ``data_root`` with a short schedule, saved to ``out_path``.

    Args:
        config (str): Config path relative to the repository.
        data_root (str): Generated data folder.
        out_path (str): Where the resolved config is written.
        max_iters (int): Training iterations (validation runs once, at the end).
        checkpoint_interval (int, optional): Defaults to ``max_iters``.
        batch_size (int): Training images per process per iteration.
        **options: Further ``key=value`` settings merged as with ``--cfg-options``.
    """
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    redirect_data_root(cfg, data_root.rstrip('/') + '/')
    cfg.merge_from_dict({
        'train_cfg.max_iters': max_iters,
        'train_cfg.val_interval': max_iters,
        'train_dataloader.batch_size': batch_size,
        'default_hooks.checkpoint.interval': checkpoint_interval or max_iters,
        'default_hooks.logger.interval': 1,
        **options
    })
    cfg.dump(out_path)
    return out_path


def run_tool(args: List[str], timeout: float = 300, env: Optional[dict] = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python tools/...`` (or ``bash tools/...sh``) from the repository root."""
    command = args if args[0] == 'bash' else [sys.executable] + args
    # Sleeping (not spinning) OpenMP threads keep runs fast when other jobs share the CPU.
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', PYTHON=sys.executable)
    full_env.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    full_env.update(env or {})
    result = subprocess.run(command, cwd=REPO_ROOT, env=full_env, capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f'{" ".join(args)} exited with {result.returncode}:\n'
            f'{result.stdout[-4000:]}\n{result.stderr[-6000:]}')
    return result
