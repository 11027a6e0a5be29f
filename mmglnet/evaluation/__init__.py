"""What test evaluators use from configs: ``mmglnet.AtomicDumpResults``."""
from .atomic_dump_results import AtomicDumpResults

__all__ = ['AtomicDumpResults']
