"""GLNet backbone for the OpenMMLab codebases.

Paper: "Revisiting the Integration of Convolution and Attention for Vision Backbone"
(NeurIPS 2024, https://arxiv.org/abs/2411.14429). Official code: github.com/rayleizhu/GLMix.
"""
import copy
import warnings
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from mmengine.registry import MODELS as ROOT_MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from mmglnet.checkpoint.official import OFFICIAL_WEIGHTS_KEYS
from mmglnet.registry import MODELS

from .attention import ChannelFirstMHSABlock, TokenMHSABlock
from .compilation import (begin_cuda_graph_step, check_cpp_wrapper_toolkit,
                          check_cpp_wrapper_training, check_no_accumulated_gradients,
                          compiled_run_backbone, compiled_run_block, resolve_compile_cfg)
from .config_errors import GLNetConfigError
from .glmix import GLMixBlock, slot_count
from .layers import LayerNorm2d, build_channel_norm, compiling_disallowed
from .weight_casts import BatchedWeightCasts

# Stages of every GLNet (strides 4, 8, 16, 32); the arch gives one value per stage.
NUM_STAGES = 4
MIXING_MODES = ('glmix', 'mha', 'mha_nchw', 'glmix.mha_nchw')
DOWNSAMPLE_STYLES = ('non_ovlp', 'ovlp')
TRANSITION_LAYOUTS = ('proj.norm', 'norm.proj')
STEM_NORMS = ('bn', 'ln')

# Defaults of the official ``GLNet`` constructor for the keywords an arch dict may use.
OFFICIAL_DEFAULTS = dict(
    depth=(2, 2, 6, 2),
    embed_dim=(96, 192, 384, 768),
    mlp_ratios=(4, 4, 4, 4),
    head_dim=32,
    mixing_modes=('glmix', 'glmix', 'glmix', 'mha'),
    local_dw_ks=5,
    slot_init='param',
    num_slots=64,
    cpe_ks=0,
    downsample_style='non_ovlp',
    transition_layout='proj.norm',
    dual_patch_norm=False,
    mlp_dw=False,
    layerscale=-1.,
    norm_layer='ln',
)

_STL = dict(
    depth=(2, 2, 6, 2),
    embed_dim=(96, 192, 384, 768),
    mlp_ratios=(4, 4, 4, 4),
    head_dim=32,
    norm_layer='bn',
    mixing_modes=('glmix', 'glmix', 'glmix', 'mha'),
    local_dw_ks=5,
    slot_init='ada_avgpool',
    num_slots=64,
    transition_layout='norm.proj',
)
_G_SERIES = dict(
    depth=(4, 4, 18, 4),
    mlp_ratios=(3, 3, 3, 3),
    head_dim=32,
    norm_layer='bn',
    mixing_modes=('glmix', 'glmix', 'glmix.mha_nchw', 'mha_nchw'),
    local_dw_ks=5,
    slot_init='ada_avgpool',
    num_slots=64,
    cpe_ks=3,
    downsample_style='ovlp',
    transition_layout='proj.norm',
    mlp_dw=True,
)

# The released variants, in the official constructor's keywords.
ARCH_SETTINGS: Dict[str, dict] = {
    'stl': _STL,
    'stl_paramslot': dict(_STL, slot_init='param'),
    '4g': dict(_G_SERIES, embed_dim=(64, 128, 256, 512)),
    '9g': dict(_G_SERIES, embed_dim=(96, 192, 384, 768)),
    '16g': dict(_G_SERIES, embed_dim=(128, 256, 512, 1024), layerscale=1e-4),
}


def resolve_arch(arch: Union[str, dict]) -> dict:
    """Full official keywords for a preset name or a (partial) dict of official keywords.

    Args:
        arch (str | dict): A name in :data:`ARCH_SETTINGS` or a dict of official constructor
            keywords; omitted keys take the official defaults.

    Returns:
        dict: Every keyword of :data:`OFFICIAL_DEFAULTS`, validated.
    """
    if isinstance(arch, str):
        if arch not in ARCH_SETTINGS:
            raise GLNetConfigError(
                f'Unknown GLNet arch {arch!r}; choose one of {sorted(ARCH_SETTINGS)} or give a '
                f'dict of official keywords ({sorted(OFFICIAL_DEFAULTS)}).')
        settings = dict(OFFICIAL_DEFAULTS, **ARCH_SETTINGS[arch])
    elif isinstance(arch, dict):
        unknown = sorted(set(arch) - set(OFFICIAL_DEFAULTS))
        if unknown:
            raise GLNetConfigError(
                f'Unknown key(s) {unknown} in the GLNet arch dict; valid keys are '
                f'{sorted(OFFICIAL_DEFAULTS)}. Training options such as drop_path_rate are '
                'arguments of GLNet itself, not of arch.')
        settings = dict(OFFICIAL_DEFAULTS, **copy.deepcopy(arch))
    else:
        raise GLNetConfigError(f'arch must be a preset name or a dict, got {type(arch).__name__}.')

    for key in ('depth', 'embed_dim', 'mlp_ratios', 'mixing_modes'):
        value = settings[key]
        if not isinstance(value, (list, tuple)) or len(value) != NUM_STAGES:
            raise GLNetConfigError(
                f'arch {key}={value!r} must list {NUM_STAGES} values, one per stage.')
        settings[key] = tuple(value)
    if isinstance(settings['local_dw_ks'], int):
        settings['local_dw_ks'] = (settings['local_dw_ks'], ) * NUM_STAGES
    settings['local_dw_ks'] = tuple(settings['local_dw_ks'])
    if len(settings['local_dw_ks']) != NUM_STAGES:
        raise GLNetConfigError(f"arch local_dw_ks={settings['local_dw_ks']!r} must be an int or "
                               f'{NUM_STAGES} ints.')
    for mode in settings['mixing_modes']:
        if mode not in MIXING_MODES:
            raise GLNetConfigError(f'Unknown mixing mode {mode!r} in arch mixing_modes='
                                   f"{settings['mixing_modes']}; choose from {MIXING_MODES}.")
    choices = dict(
        downsample_style=DOWNSAMPLE_STYLES,
        transition_layout=TRANSITION_LAYOUTS,
        norm_layer=STEM_NORMS)
    for key, allowed in choices.items():
        if settings[key] not in allowed:
            raise GLNetConfigError(f'arch {key}={settings[key]!r} is not one of {allowed}.')
    for dim in settings['embed_dim']:
        if dim % settings['head_dim'] != 0:
            raise GLNetConfigError(f"arch embed_dim={settings['embed_dim']} must be multiples of "
                                   f"head_dim={settings['head_dim']}.")
    if isinstance(settings['num_slots'], list):
        settings['num_slots'] = tuple(settings['num_slots'])
    return settings


def _stem_norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == 'bn' else LayerNorm2d(channels)


def build_downsample_layers(arch: dict, in_channels: int) -> nn.ModuleList:
    """Stem and the three transitions; module indices match the official keys."""
    dims, norm = arch['embed_dim'], arch['norm_layer']
    if arch['downsample_style'] == 'ovlp':
        stem = nn.Sequential(
            LayerNorm2d(in_channels) if arch['dual_patch_norm'] else nn.Identity(),
            nn.Conv2d(in_channels, dims[0] // 2, kernel_size=3, stride=2, padding=1),
            _stem_norm(norm, dims[0] // 2),
            nn.GELU(),
            nn.Conv2d(dims[0] // 2, dims[0], kernel_size=3, stride=2, padding=1),
            _stem_norm(norm, dims[0]),
        )
        conv_kwargs = dict(kernel_size=3, stride=2, padding=1)
    else:
        stem = nn.Sequential(
            nn.Conv2d(in_channels, dims[0], kernel_size=4, stride=4), _stem_norm(norm, dims[0]))
        conv_kwargs = dict(kernel_size=2, stride=2)
    layers = [stem]
    for i in range(NUM_STAGES - 1):
        proj = nn.Conv2d(dims[i], dims[i + 1], **conv_kwargs)
        if arch['transition_layout'] == 'norm.proj':
            layers.append(nn.Sequential(_stem_norm(norm, dims[i]), proj))
        else:
            layers.append(nn.Sequential(proj, _stem_norm(norm, dims[i + 1])))
    return nn.ModuleList(layers)


class GLNetStage(nn.Module):
    """A stage of blocks of one mixing mode.

    Args:
        blocks (list[nn.Module]): The blocks.
        token_layout (bool): Whether the blocks take (N, L, C) tokens (mode ``'mha'``).
        with_cp (bool): Checkpoint each block to save memory. Defaults to False.
        compile_cfg (dict, optional): :func:`torch.compile` keywords to run every block
            compiled (see :mod:`mmglnet.models.compilation`); None runs them eagerly.
            Defaults to None.
        compile_eval (bool): Whether the blocks also run compiled in eval mode. Defaults to
            False.
    """

    def __init__(self,
                 blocks: Sequence[nn.Module],
                 token_layout: bool,
                 with_cp: bool = False,
                 compile_cfg: Optional[dict] = None,
                 compile_eval: bool = False) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.token_layout = token_layout
        self.with_cp = with_cp
        self.compile_cfg = compile_cfg
        self.compile_eval = compile_eval

    def _block_runner(self):
        """``fn(block, x)``: compiled where configured and allowed now, else eager."""
        if (self.compile_cfg is None or not (self.training or self.compile_eval)
                or compiling_disallowed()):
            return lambda block, x: block(x)
        return compiled_run_block(self.compile_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        if self.token_layout:
            x = x.flatten(2).transpose(1, 2)
        run = self._block_runner()
        for block in self.blocks:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(run, block, x, use_reentrant=False)
            else:
                x = run(block, x)
        if self.token_layout:
            x = x.transpose(1, 2).reshape(batch, channels, height, width)
        return x


def build_stage(arch: dict,
                index: int,
                drop_path_rates: Sequence[float],
                with_cp: bool,
                compile_cfg: Optional[dict] = None,
                compile_eval: bool = False) -> GLNetStage:
    """Build stage ``index`` of ``arch`` with one drop-path rate per block."""
    dim = arch['embed_dim'][index]
    mode = arch['mixing_modes'][index]
    common = dict(
        embed_dim=dim,
        num_heads=dim // arch['head_dim'],
        mlp_ratio=arch['mlp_ratios'][index],
        layerscale=arch['layerscale'])

    def glmix(rate):
        return GLMixBlock(
            num_slots=arch['num_slots'],
            slot_init=arch['slot_init'],
            local_dw_ks=arch['local_dw_ks'][index],
            drop_path=rate,
            cpe_ks=arch['cpe_ks'],
            mlp_dw=arch['mlp_dw'],
            **common)

    def mha_nchw(rate):
        return ChannelFirstMHSABlock(
            drop_path=rate, cpe_ks=arch['cpe_ks'], mlp_dw=arch['mlp_dw'], **common)

    blocks = []
    for j, rate in enumerate(drop_path_rates):
        if mode == 'glmix' or (mode == 'glmix.mha_nchw' and j % 2 == 0):
            blocks.append(glmix(rate))
        elif mode == 'mha':
            blocks.append(TokenMHSABlock(drop_path=rate, **common))
        else:
            blocks.append(mha_nchw(rate))
    return GLNetStage(
        blocks,
        token_layout=(mode == 'mha'),
        with_cp=with_cp,
        compile_cfg=compile_cfg,
        compile_eval=compile_eval)


# Model-zoo names of other backbones' checkpoints (mmcv's ``open-mmlab://resnet50_v1c``...).
ZOO_PREFIXES = ('open-mmlab://', 'openmmlab://', 'torchvision://', 'mmcls://', 'mmpretrain://',
                'modelzoo://')


def pretrained_to_init_cfg(pretrained: Optional[str], init_cfg: Optional[dict]) -> Optional[dict]:
    """The ``init_cfg`` for a backbone given the deprecated ``pretrained`` argument.

    mmseg's ``EncoderDecoder`` passes its ``model.pretrained`` to the backbone. As mmseg's own
    backbones do, a path becomes ``dict(type='Pretrained', checkpoint=path)`` with a
    deprecation warning, None changes nothing, and giving both is an error. A model-zoo name
    (``open-mmlab://...``, ``torchvision://...``) is another backbone's checkpoint, left over
    from a base config written for a ResNet: it is refused with what to change, rather than
    ignored (the model would train from scratch unnoticed) or loaded (no key would match).

    Args:
        pretrained (str, optional): The ``pretrained`` argument.
        init_cfg (dict, optional): The ``init_cfg`` argument.

    Returns:
        dict | None: The ``init_cfg`` to use.
    """
    if pretrained is None:
        return init_cfg
    if not isinstance(pretrained, str):
        raise GLNetConfigError(
            f'GLNet pretrained={pretrained!r} must be a checkpoint path or None; '
            "prefer init_cfg=dict(type='Pretrained', checkpoint=PATH).")
    if pretrained.startswith(ZOO_PREFIXES):
        raise GLNetConfigError(
            f'GLNet got pretrained={pretrained!r}: that names a checkpoint of another backbone '
            '(an OpenMMLab model-zoo ResNet), most likely model.pretrained inherited from a '
            "base config written for a ResNet, such as mmseg's _base_/models/*_r50.py (mmseg's "
            'EncoderDecoder hands model.pretrained to the backbone). Set model.pretrained=None '
            "in your config and load GLNet weights with backbone init_cfg=dict(type='Pretrained',"
            " checkpoint='checkpoints/glnet_4g.pth') (the official release file of your arch).")
    if init_cfg is not None:
        raise GLNetConfigError(
            f'GLNet got both pretrained={pretrained!r} (model.pretrained in mmseg configs) and '
            f'init_cfg={init_cfg!r}: keep one, preferably init_cfg (set model.pretrained=None).')
    warnings.warn(f'GLNet pretrained={pretrained!r} is deprecated (as in mmseg\'s backbones): use '
                  f"backbone init_cfg=dict(type='Pretrained', checkpoint={pretrained!r}) and "
                  'model.pretrained=None.')
    return dict(type='Pretrained', checkpoint=pretrained)


@MODELS.register_module()
class GLNet(BaseModule):
    """GLNet backbone (GLMix blocks) for detection, segmentation and classification.

    A re-implementation of `GLNet <https://arxiv.org/abs/2411.14429>`_ whose raw stage outputs
    equal the official model's with the same weights; official release files load as they are.

    Args:
        arch (str | dict): ``'stl'``, ``'stl_paramslot'``, ``'4g'``, ``'9g'``, ``'16g'``, or a
            dict of the official constructor keywords (see :data:`OFFICIAL_DEFAULTS`; omitted
            keys take the official defaults). Defaults to ``'4g'``.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (Sequence[int]): Stages whose outputs are returned, at strides 4, 8, 16, 32
            for 0..3; negative indices count from the end. Defaults to (0, 1, 2, 3).
        out_norm_cfg (dict, optional): Norm applied to each returned feature (see
            :func:`build_channel_norm`); None returns the raw stage outputs. Defaults to
            ``dict(type='LN2d', eps=1e-6)``.
        drop_path_rate (float): Stochastic depth rate, increasing linearly over the blocks.
            Defaults to 0.
        frozen_stages (int): -1 freezes nothing; 0 the stem; k >= 1 the stem and stages 0..k-1
            (with their transitions and output norms): no grad and eval mode. Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode while training. Defaults to False.
        with_cp (bool): Gradient checkpointing per block. Defaults to False.
        compile_blocks (bool | dict): Run every block through :func:`torch.compile`
            (regional compilation: blocks of one kind and shape share a graph; the rest of
            the model stays eager). True uses torch's defaults, a dict gives its keywords,
            e.g. ``dict(dynamic=False)`` for fixed input sizes. With a mode that replays CUDA
            graphs (``mode='reduce-overhead'``), each forward starts a new CUDA-graph step
            (:func:`~mmglnet.models.compilation.begin_cuda_graph_step`). Blocks run eagerly
            while tracing or exporting. Defaults to False.
        compile_backbone (bool | dict): Run the whole backbone (stem, stages, output norms)
            through :func:`torch.compile` as one graph: fusion across blocks, one compiled
            call forward and one backward, and with ``mode='reduce-overhead'`` one CUDA graph
            each instead of the kernels launched one by one. Compiles longer than
            ``compile_blocks``, which it excludes; the keywords are the same. Runs eagerly
            while tracing or exporting. With either option, CUDA graphs cannot accumulate
            gradients over micro-batches: such a forward is refused
            (:func:`~mmglnet.models.compilation.check_no_accumulated_gradients`). Defaults to
            False.
        compile_eval (bool): Whether ``compile_blocks`` or ``compile_backbone`` also apply in
            eval mode (validation, testing, inference). By default only training forwards run
            compiled, as mmengine's Runner compiles only the training step: validation and
            test images often vary in size, and each new size would compile the graphs again
            (minutes each for the whole backbone). Set it for fixed-size inference. With
            ``compile_blocks``, the blocks of frozen stages (in eval mode) follow it too.
            Defaults to False.
        batch_weight_casts (bool): In eager forwards without gradients under autocast
            (validation, testing, inference in float16/bfloat16), cast the weights that
            autocast would cast one by one in a single multi-tensor copy per forward, the
            residual depth-wise kernels folded with their shortcut by two more, and run with
            those copies (:class:`~mmglnet.models.weight_casts.BatchedWeightCasts`): about
            650 fewer operators per GLNet-4G forward, for an eager forward bound by the
            host's launches. The outputs are bit-identical; the copies are refreshed at
            every forward and kept between forwards (half the size of those weights). The
            model's forwards then run one at a time: one called from another thread waits.
            On by default since an H200 measured it (2026-11-30, docs/benchmark.md): eager
            fp16 inference of GLNet-4G at 224², batch 128, 33.5 ms against 51.3 with
            autocast's own casts, one 1792² image 34.6 against 44.1 ms. Defaults to True.
        weights_key (str, optional): Entry of an official release file that holds the weights
            for ``init_cfg=dict(type='Pretrained', ...)``. None picks the one the official
            evaluation uses: ``'model_ema'`` for ``'16g'``, else ``'model'``. Defaults to None.
        pretrained (str, optional): Deprecated; what mmseg's ``EncoderDecoder`` passes from
            ``model.pretrained``. A path means ``init_cfg=dict(type='Pretrained',
            checkpoint=path)``; a model-zoo name of another backbone
            (``'open-mmlab://resnet50_v1c'``) is refused (see
            :func:`pretrained_to_init_cfg`). Defaults to None.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH)`` loads an
            official release file or, with ``prefix='backbone.'``, an mm checkpoint. It
            raises unless every stem, transition and stage tensor is in the file with the
            right shape; ``allow_partial=True`` in the dict loads the matching ones on
            purpose. Defaults to None.
    """

    def __init__(self,
                 arch: Union[str, dict] = '4g',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_norm_cfg: Optional[dict] = dict(type='LN2d', eps=1e-6),
                 drop_path_rate: float = 0.,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 compile_blocks: Union[bool, dict] = False,
                 compile_backbone: Union[bool, dict] = False,
                 compile_eval: bool = False,
                 batch_weight_casts: bool = True,
                 weights_key: Optional[str] = None,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None) -> None:
        init_cfg = pretrained_to_init_cfg(pretrained, init_cfg)
        super().__init__(init_cfg=init_cfg)
        self.arch_name = arch if isinstance(arch, str) else 'custom'
        self.arch_settings = resolve_arch(arch)
        settings = self.arch_settings
        self.embed_dims = settings['embed_dim']
        self.num_stages = NUM_STAGES
        self.in_channels = in_channels
        self.min_input_size = 32 if settings['downsample_style'] == 'non_ovlp' else 1

        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        if not isinstance(out_indices, (list, tuple)) or len(out_indices) == 0:
            raise GLNetConfigError(f'out_indices must be a non-empty sequence of ints, got '
                                   f'{out_indices!r}.')
        normalized = []
        for index in out_indices:
            if not isinstance(index, int) or not -NUM_STAGES <= index < NUM_STAGES:
                raise GLNetConfigError(
                    f'out_indices={tuple(out_indices)} has {index!r}: valid stage indices are '
                    f'0..{NUM_STAGES - 1} (strides 4, 8, 16, 32) or -{NUM_STAGES}..-1 counted '
                    'from the end.')
            normalized.append(index % NUM_STAGES)
        if len(set(normalized)) != len(normalized):
            raise GLNetConfigError(f'out_indices={tuple(out_indices)} names a stage twice.')
        self.out_indices = tuple(normalized)

        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= NUM_STAGES:
            raise GLNetConfigError(
                f'frozen_stages={frozen_stages!r} is out of range: -1 freezes nothing, 0 the '
                f'stem, k in 1..{NUM_STAGES} the stem and stages 0..k-1.')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        if not 0 <= drop_path_rate < 1:
            raise GLNetConfigError(f'drop_path_rate={drop_path_rate} must be in [0, 1).')

        if weights_key is None:
            weights_key = OFFICIAL_WEIGHTS_KEYS.get(self.arch_name, 'model')
        self.weights_key = weights_key

        self.compile_cfg = resolve_compile_cfg(compile_blocks)
        self.backbone_compile_cfg = resolve_compile_cfg(compile_backbone, 'compile_backbone')
        if self.compile_cfg is not None and self.backbone_compile_cfg is not None:
            raise GLNetConfigError(
                f'GLNet got compile_blocks={compile_blocks!r} and compile_backbone='
                f'{compile_backbone!r}: choose one. compile_backbone compiles the backbone as '
                'one graph (fused across blocks, fewer launches; compiles longer); '
                'compile_blocks compiles each block.')
        if not isinstance(compile_eval, bool):
            raise GLNetConfigError(f'compile_eval={compile_eval!r} must be True or False.')
        self.compile_eval = compile_eval
        if not isinstance(batch_weight_casts, bool):
            raise GLNetConfigError(
                f'batch_weight_casts={batch_weight_casts!r} must be True or False.')
        self.weight_casts = BatchedWeightCasts(self) if batch_weight_casts else None
        self.downsample_layers = build_downsample_layers(settings, in_channels)
        depths = settings['depth']
        total = sum(depths)
        # Plain floats (not torch.linspace) so that the model can be built on the meta device.
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.ModuleList(
            build_stage(settings, i, rates[sum(depths[:i]):sum(depths[:i + 1])], with_cp,
                        self.compile_cfg, compile_eval) for i in range(NUM_STAGES))

        self.out_norm_cfg = out_norm_cfg
        if out_norm_cfg is not None:
            for i in self.out_indices:
                self.add_module(f'norm{i}', build_channel_norm(out_norm_cfg, self.embed_dims[i]))
        self._init_like_official()
        self._freeze_stages()

    @property
    def num_slots(self) -> int:
        """Number of semantic slots per GLMix block."""
        return slot_count(self.arch_settings['num_slots'])

    def _init_like_official(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def init_weights(self) -> None:
        """Load ``init_cfg``'s pretrained weights, or keep the official initialisation."""
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            from mmglnet.checkpoint import load_pretrained_backbone
            load_pretrained_backbone(
                self,
                self.init_cfg['checkpoint'],
                prefix=self.init_cfg.get('prefix'),
                weights_key=self.weights_key,
                allow_partial=self.init_cfg.get('allow_partial', False))
            self._is_init = True
        elif self.init_cfg is not None:
            super().init_weights()
        self._freeze_stages()

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f'GLNet expects an (N, C, H, W) tensor, got shape '
                             f'{tuple(x.shape)}.')
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f'GLNet got an input with {x.shape[1]} channels but was built with '
                f'in_channels={self.in_channels}; pass in_channels={x.shape[1]} or fix the '
                'data pipeline.')
        if min(x.shape[2:]) < self.min_input_size:
            raise ValueError(
                f'Input of size {tuple(x.shape[2:])} is too small for the non-overlapping stem '
                f'of this arch: height and width must be at least {self.min_input_size} '
                '(total stride 32). Resize or pad the input.')

    def forward(self, x: torch.Tensor) -> tuple:
        """Return a tuple of (N, C_i, H_i, W_i) features, one per index in ``out_indices``."""
        self._check_input(x)
        if self.training or self.compile_eval:
            whole, blocks = self.backbone_compile_cfg, self.compile_cfg
        else:  # eval mode runs eagerly unless compile_eval (the stages decide alike)
            whole = blocks = None
        cfg = blocks if whole is None else whole  # what this forward compiles
        check_cpp_wrapper_toolkit(cfg, x.device.type)
        check_cpp_wrapper_training(cfg, self, x)
        check_no_accumulated_gradients(cfg, self, x)
        begin_cuda_graph_step(cfg, x)
        if self.weight_casts is None:
            return self._run(x, whole)
        # Nothing compiled: the weights may be cast in one batch (a compiled graph casts them
        # itself). Compiled or not, this forward runs alone (see BatchedWeightCasts).
        with self.weight_casts.applied(self, x, batch=cfg is None):
            return self._run(x, whole)

    def _run(self, x: torch.Tensor, whole: Optional[dict]) -> tuple:
        """:meth:`forward_features`, compiled whole where ``whole`` (the ``compile_backbone``
        keywords) is given and nothing else is tracing the code."""
        if whole is None or compiling_disallowed():
            return self.forward_features(x)
        return compiled_run_backbone(whole)(self, x)

    def forward_features(self, x: torch.Tensor) -> tuple:
        """The stem, stages and output norms on a checked input (what ``compile_backbone``
        compiles); :meth:`forward` checks the input first."""
        outs = []
        for i in range(NUM_STAGES):
            x = self.downsample_layers[i](x)
            x = self.stages[i](x)
            if i in self.out_indices:
                norm = getattr(self, f'norm{i}', None)
                out = norm(x) if norm is not None else x
                # The blocks compute channels-last; consumers such as mmcv's RoIAlign read raw
                # NCHW memory, so features leave the backbone NCHW-contiguous.
                outs.append(out.contiguous())
        return tuple(outs)

    def _frozen_modules(self):
        if self.frozen_stages >= 0:
            yield self.downsample_layers[0]
        for i in range(self.frozen_stages):
            if i > 0:
                yield self.downsample_layers[i]
            yield self.stages[i]
            norm = getattr(self, f'norm{i}', None)
            if norm is not None:
                yield norm

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'GLNet':
        super().train(mode)
        self._freeze_stages()
        if mode and self.weight_casts is not None:
            self.weight_casts.clear()  # a training forward takes gradients: no copies
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self


# Also registered in mmengine's root registry, the parent of every codebase's: an unscoped
# ``type='GLNet'`` then resolves from any default scope (mmdet, mmseg, mmpretrain) once mmglnet
# is imported (``custom_imports``). ``type='mmglnet.GLNet'`` names it explicitly.
ROOT_MODELS.register_module(module=GLNet)
