"""Predictions dumped to a pickle file that a crash or a kill cannot leave half-written."""
import os.path as osp
from typing import Any, Optional, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.fileio import dump
from mmengine.logging import print_log
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.utils import mkdir_or_exist

from ..registry import METRICS
from ..utils import atomic_output
from ..utils.atomic_files import remove_partial_files


@METRICS.register_module()
class AtomicDumpResults(BaseMetric):
    """Dump the model's predictions to a pickle file, replacing any previous file whole.

    mmengine's ``DumpResults`` (and mmdet's ``DumpDetResults``) write the file in place, so a
    process killed while dumping leaves a cut file where the previous predictions were. This
    metric prepares each batch's predictions with such a dump metric (``dumper``: tensors moved
    to the CPU, mmdet's masks RLE-encoded) and writes the file through
    :func:`mmglnet.utils.atomic_output`: the previous file stays as it was until the new one is
    complete on the disk. A temporary file that a killed earlier dump left in the folder is
    removed before writing.

    Examples:
        >>> test_evaluator = [
        ...     dict(type='mmdet.CocoMetric', ann_file=..., metric=['bbox', 'segm']),
        ...     dict(type='mmglnet.AtomicDumpResults', out_file_path='results.pkl',
        ...          dumper=dict(type='mmdet.DumpDetResults'))]

    Args:
        out_file_path (str): The pickle file, ending with ``.pkl`` or ``.pickle``. A local path
            is written atomically; a URI of another mmengine file backend (``s3://...``) is
            written by that backend as it writes.
        dumper (dict, optional): The dump metric that prepares the predictions (its
            ``process``), built with ``out_file_path`` from mmengine's metric registry.
            Defaults to None: ``dict(type='mmengine.DumpResults')``; mmdet configs use
            ``dict(type='mmdet.DumpDetResults')``.
        collect_device (str): Device used to collect the results of distributed processes,
            ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        collect_dir (str, optional): Folder to collect them through (``collect_device='cpu'``
            only). Defaults to None.
    """

    def __init__(self,
                 out_file_path: str,
                 dumper: Optional[dict] = None,
                 collect_device: str = 'cpu',
                 collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, collect_dir=collect_dir)
        if not str(out_file_path).endswith(('.pkl', '.pickle')):
            raise ValueError(f'AtomicDumpResults: out_file_path={out_file_path!r} must end with '
                             '.pkl or .pickle (a pickle file).')
        self.out_file_path = str(out_file_path)
        dumper = dict(type='mmengine.DumpResults') if dumper is None else dict(dumper)
        dumper.setdefault('out_file_path', self.out_file_path)
        self.dumper = MMENGINE_METRICS.build(dumper)

    def process(self, data_batch: Any, predictions: Sequence[dict]) -> None:
        """Prepare a batch's predictions with the dumper and keep them."""
        self.dumper.process(data_batch, predictions)
        self.results.extend(self.dumper.results)
        self.dumper.results.clear()

    def compute_metrics(self, results: list) -> dict:
        """Write every process's predictions (on the main process only)."""
        if '://' in self.out_file_path:
            dump(results, self.out_file_path, file_format='pkl')
        else:
            folder = osp.dirname(osp.abspath(self.out_file_path))
            mkdir_or_exist(folder)
            remove_partial_files([folder])  # what a killed earlier dump left
            with atomic_output(self.out_file_path) as temporary:
                dump(results, temporary, file_format='pkl')
        print_log(f'Predictions saved to {self.out_file_path}.', logger='current')
        return {}
