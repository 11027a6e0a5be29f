"""A hook that checks data-parallel training: disjoint data per process, identical weights."""
import hashlib
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.dist import all_gather_object, get_dist_info, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmglnet.registry import HOOKS


def parameter_digest(named_tensors: Dict[str, torch.Tensor]) -> str:
    """SHA-256 of tensors taken in name order (names, dtypes, shapes and bytes).

    Args:
        named_tensors (dict[str, Tensor]): E.g. ``dict(model.named_parameters())`` or the
            matching entries of a checkpoint's ``state_dict``.

    Returns:
        str: Hex digest; equal digests mean bit-identical tensors.
    """
    digest = hashlib.sha256()
    for name in sorted(named_tensors):
        tensor = named_tensors[name].detach().cpu().contiguous()
        digest.update(f'{name}|{tensor.dtype}|{tuple(tensor.shape)}|'.encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _sample_ids(data_samples: Sequence) -> List[str]:
    ids = []
    for sample in data_samples:
        meta = sample.metainfo if hasattr(sample, 'metainfo') else {}
        ident = meta.get('img_path', meta.get('img_id'))
        if ident is not None:
            ids.append(str(ident))
    return ids


def _dataset_length(runner) -> Optional[int]:
    try:
        return len(runner.train_dataloader.dataset)
    except (AttributeError, TypeError):
        return None


@HOOKS.register_module()
class ReplicaCheckHook(Hook):
    """Check and log that data-parallel processes train one model on different data.

    Records the samples each process trains on in the first pass over the dataset (their
    ``img_path`` or ``img_id``) and, at the end of training, gathers from every process a
    digest of the model parameters (:func:`parameter_digest`) and those samples. The main
    process logs the world size, whether all parameters are bit-identical across processes and
    how many samples two processes shared, and writes it all to ``replica_check.json`` in the
    log folder. A single process has nothing to compare: there the hook does nothing (no log
    line, no report), so the same config runs quietly with one process or several.

    Args:
        out_file (str): Name of the report in the run's log folder. Defaults to
            ``'replica_check.json'``.
        raise_on_mismatch (bool): Raise when parameters differ between processes. Defaults to
            True.
    """

    priority = 'VERY_LOW'

    def __init__(self,
                 out_file: str = 'replica_check.json',
                 raise_on_mismatch: bool = True) -> None:
        self.out_file = out_file
        self.raise_on_mismatch = raise_on_mismatch
        self._seen: List[str] = []
        self._per_pass: Optional[int] = None

    def before_train(self, runner) -> None:
        rank, world_size = get_dist_info()
        self._seen = []
        if world_size == 1:
            self._per_pass = 0  # nothing to record
            return
        length = _dataset_length(runner)
        self._per_pass = -(-length // world_size) if length else None
        runner.logger.info(f'ReplicaCheckHook: world size {world_size}, rank {rank}.')

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        full = self._per_pass is not None and len(self._seen) >= self._per_pass
        if isinstance(data_batch, dict) and not full:
            self._seen.extend(_sample_ids(data_batch.get('data_samples', [])))
            self._seen = self._seen[:self._per_pass]

    def after_train(self, runner) -> None:
        rank, world_size = get_dist_info()
        if world_size == 1:
            return
        model: nn.Module = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        report = dict(
            rank=rank,
            digest=parameter_digest(dict(model.named_parameters())),
            iter=runner.iter,
            samples=self._seen)
        reports = all_gather_object(report)
        if not is_main_process():
            return
        digests = {r['digest'] for r in reports}
        sets = [set(r['samples']) for r in reports]
        shared = sum(len(a & b) for i, a in enumerate(sets) for b in sets[i + 1:])
        summary = dict(
            world_size=world_size,
            identical_parameters=len(digests) == 1,
            shared_samples=shared,
            ranks=reports)
        with open(osp.join(runner.log_dir, self.out_file), 'w') as f:
            json.dump(summary, f, indent=1)
        runner.logger.info(
            f'ReplicaCheckHook: world size {world_size}; parameters '
            f'{"identical" if len(digests) == 1 else "DIFFERENT"} on all ranks '
            f'(sha256 {sorted(digests)[0][:16]}...); first pass over the data: samples per '
            f'rank {[len(r["samples"]) for r in reports]}, seen by more than one rank: '
            f'{shared}.')
        if len(digests) != 1 and self.raise_on_mismatch:
            raise RuntimeError(
                f'Model parameters differ between the {world_size} processes: digests '
                f'{[r["digest"][:16] for r in reports]}. The data-parallel wrapper did not keep '
                'the replicas in sync.')
