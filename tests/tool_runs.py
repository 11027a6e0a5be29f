"""Running tools/*.py on tiny generated data: shared by the tool, resume and dist tests.

The config shrinker and the tool runner are the demo's (``tools/_support/runs.py``); this
module adds the tests' tiny data and short schedules.
"""
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.registry import PARAM_SCHEDULERS

from _support.runs import REPO_ROOT, run_tool, write_shrunk_config
from _support.shapes_data import write_ade20k_shapes, write_coco_shapes

__all__ = [
    'MASK_RCNN', 'REPO_ROOT', 'RETINANET', 'UPERNET', 'lr_after', 'make_tiny_data', 'run_tool',
    'write_config'
]

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


def write_config(config: str,
                 data_root: str,
                 out_path: str,
                 max_iters: int = 2,
                 checkpoint_interval: Optional[int] = None,
                 batch_size: int = 2,
                 **options) -> str:
    """A demo config on ``data_root``, a short schedule and a log line per iteration.

    See ``write_shrunk_config`` (tools/_support/runs.py) for the arguments; here
    ``max_iters`` defaults to 2 and ``batch_size`` to 2.
    """
    return write_shrunk_config(
        config,
        data_root,
        out_path,
        max_iters=max_iters,
        batch_size=batch_size,
        checkpoint_interval=checkpoint_interval,
        log_interval=1,
        **options)


def lr_after(cfg: Config, steps: int) -> float:
    """The learning rate the config's schedule gives after ``steps`` iterations."""
    base_lr = cfg.optim_wrapper.optimizer.lr
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optimizer)) for s in cfg.param_scheduler]
    for _ in range(steps):
        for scheduler in schedulers:
            scheduler.step()
    return optimizer.param_groups[0]['lr']
