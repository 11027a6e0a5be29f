"""The third-party notices the tools hide: known, harmless, and nothing a user can act on.

Every tool imports this module before the codebases (``import known_warnings``); importing it
installs the filters. Each entry matches one notice by a regular expression that the start of its
message must match and by its category (a Python warning) or level (a record of mmengine's
logger); anything else, from the same packages or not, is shown as usual. ``import mmglnet``
hides nothing: scripts of your own keep every warning unless they call :func:`install`.
"""
import logging
import re
import warnings

# (pattern the message starts with, category, where it comes from)
KNOWN_WARNINGS = (
    (r'pkg_resources is deprecated', UserWarning,
     "setuptools, when mmengine's and mmcv's package helpers import pkg_resources"),
    (r'``build_loss`` would be deprecated soon', UserWarning,
     "mmseg's own decode heads build their losses with it"),
    (r'Default ``avg_non_ignore`` is False', UserWarning,
     "mmseg's CrossEntropyLoss, for every config that keeps its default"),
    (r'The draw is False, it means that the hook for visualization will not take effect',
     UserWarning, "mmseg's SegVisualizationHook, which the configs keep off unless --show-dir"),
    (r"Failed to add <class 'mmengine\.visualization\.vis_backend\.LocalVisBackend'>, please "
     r'provide the `save_dir` argument', UserWarning,
     "the codebases' inferencers (tools/image_demo.py), which save their drawings themselves"),
)
# (pattern the message starts with, level, where it comes from): records of mmengine's logger.
KNOWN_LOG_RECORDS = (
    (r'"FileClient" will be deprecated in future', logging.WARNING,
     "mmengine's own CheckpointHook and LoggerHook create a FileClient"),
    (r'"HardDiskBackend" is the alias of "LocalBackend"', logging.WARNING,
     'the same FileClient, for local files'),
    (r'The prefix is not set in metric class', logging.WARNING,
     "mmseg's IoUMetric, whose metric names (mIoU, aAcc) have no prefix by design"),
    (r'Failed to search registry with scope "(mmdet|mmseg|mmpretrain)" in the "function" '
     r'registry tree', logging.WARNING,
     "the codebases' inferencers, whose collate function is mmengine's own"),
)


class KnownLogRecordFilter(logging.Filter):
    """Drops the log records of :data:`KNOWN_LOG_RECORDS`; passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(record.levelno == level and re.match(pattern, message)
                       for pattern, level, _ in KNOWN_LOG_RECORDS)


def install() -> None:
    """Hide the notices of :data:`KNOWN_WARNINGS` and :data:`KNOWN_LOG_RECORDS` (idempotent).

    The warning filters apply to the whole process; the log filter is added to every
    ``MMLogger`` (the runner's logger among them), those that exist and those made later.
    """
    for pattern, category, _ in KNOWN_WARNINGS:
        warnings.filterwarnings('ignore', message=pattern, category=category)

    from mmengine.logging import MMLogger
    init = MMLogger.__init__
    if not getattr(init, 'adds_known_log_record_filter', False):

        def init_with_filter(self, *args, **kwargs):
            init(self, *args, **kwargs)
            _add_filter(self)

        init_with_filter.adds_known_log_record_filter = True
        MMLogger.__init__ = init_with_filter
    for logger in MMLogger._instance_dict.values():
        _add_filter(logger)


def _add_filter(logger: logging.Logger) -> None:
    if not any(isinstance(f, KnownLogRecordFilter) for f in logger.filters):
        logger.addFilter(KnownLogRecordFilter())


install()
