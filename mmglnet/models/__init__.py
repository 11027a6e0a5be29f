from . import classification  # noqa: F401  (mmpretrain heads, imported lazily)
from .attention import ChannelFirstMHSABlock, MultiheadSelfAttention, TokenMHSABlock
from .config_errors import GLNetConfigError
from .glmix import GLMixBlock
from .glnet import ARCH_SETTINGS, GLNet, resolve_arch

__all__ = [
    'ARCH_SETTINGS', 'ChannelFirstMHSABlock', 'GLMixBlock', 'GLNet', 'GLNetConfigError',
    'MultiheadSelfAttention', 'TokenMHSABlock', 'resolve_arch'
]
