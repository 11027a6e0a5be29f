from .hooks import *  # noqa: F401,F403
from .hooks import __all__ as _hooks_all
from .runtime import enable_amp, register_codebase, setup_cpu_distributed

__all__ = list(_hooks_all) + ['enable_amp', 'register_codebase', 'setup_cpu_distributed']
