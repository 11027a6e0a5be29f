"""The third-party notices the tools hide: known, harmless, and nothing a user can act on.

Every tool imports this module before the codebases (``import known_warnings``); importing it
installs the filters. Each entry matches one notice by the start of its message and by its
category (a Python warning) or level (a log record of mmengine's logger); anything else, from
the same packages or not, is shown as usual. ``import mmglnet`` hides nothing: scripts of your
own keep every warning unless they call :func:`install` themselves.
"""
import logging
import re
import warnings

# (start of the message, category, where it comes from)
KNOWN_WARNINGS = (
    ('pkg_resources is deprecated', UserWarning,
     "setuptools, when mmengine's and mmcv's package helpers import pkg_resources"),
    ('``build_loss`` would be deprecated soon', UserWarning,
     "mmseg's own decode heads build their losses with it"),
    ('Default ``avg_non_ignore`` is False', UserWarning,
     "mmseg's CrossEntropyLoss, for every config that keeps its default"),
    ('The draw is False, it means that the hook for visualization will not take effect',
     UserWarning, "mmseg's SegVisualizationHook, which the configs keep off unless --show-dir"),
)
# (start of the message, level, where it comes from): records of mmengine's logger.
KNOWN_LOG_RECORDS = (
    ('"FileClient" will be deprecated in future', logging.WARNING,
     "mmengine's own CheckpointHook and LoggerHook create a FileClient"),
    ('"HardDiskBackend" is the alias of "LocalBackend"', logging.WARNING,
     'the same FileClient, for local files'),
    ('The prefix is not set in metric class', logging.WARNING,
     "mmseg's IoUMetric, whose metric names (mIoU, aAcc) have no prefix by design"),
)


class KnownLogRecordFilter(logging.Filter):
    """Drops the log records of :data:`KNOWN_LOG_RECORDS`; passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(record.levelno == level and message.startswith(start)
                       for start, level, _ in KNOWN_LOG_RECORDS)


def install() -> None:
    """Hide the notices of :data:`KNOWN_WARNINGS` and :data:`KNOWN_LOG_RECORDS` (idempotent).

    The warning filters apply to the whole process; the log filter is added to every
    ``MMLogger`` (the runner's logger among them), those that exist and those made later.
    """
    for start, category, _ in KNOWN_WARNINGS:
        warnings.filterwarnings('ignore', message=re.escape(start), category=category)

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
