"""mmglnet: GLNet (GLMix, NeurIPS 2024) backbones for the OpenMMLab 2.0 codebases.

``import mmglnet`` (or ``custom_imports=dict(imports=['mmglnet'])`` in a config) does two
things, and only these:

* registers the backbone: ``mmglnet.GLNet`` in mmglnet's model registry (a child of mmengine's
  root registry, so the scoped name resolves from any ``default_scope``) and ``GLNet`` in the
  root registry itself (:mod:`mmglnet.registry`, :mod:`mmglnet.models`);
* makes mmengine's checkpoint loading safe under torch >= 2.6: weights-only loading with
  exactly the types mmengine writes allow-listed, and a refusal naming any other object
  (:mod:`mmglnet.checkpoint`).

Everything else is imported when asked for:

* :mod:`mmglnet.apis`: build a model from a config, a Config or a preset, optionally with a
  checkpoint (the one way every tool builds models);
* :mod:`mmglnet.checkpoint`: reading checkpoints safely, the official release layout, loading
  into a backbone or a whole model;
* :mod:`mmglnet.engine`: what the Runner uses from configs (``mmglnet.AtomicCheckpointHook``,
  ``mmglnet.ReplicaCheckHook``, ``mmglnet.SlotVisualizationHook``; mmengine imports the module
  when a config names them) and finding the checkpoint to resume from;
* :mod:`mmglnet.evaluation`: what test evaluators use from configs
  (``mmglnet.AtomicDumpResults``, predictions dumped atomically);
* :mod:`mmglnet.models.classification`: mmpretrain heads (``mmglnet.TokenLabelingClsHead``);
* :mod:`mmglnet.visualization`, :mod:`mmglnet.analysis`, :mod:`mmglnet.deployment`: slot
  maps, FLOP counting, ONNX export;
* :mod:`mmglnet.converters`: official release files to mm checkpoints (the converter tool);
* :mod:`mmglnet.testing`: the reference forward passes the fast path is checked against;
* :mod:`mmglnet.utils`: reading configs and images with messages that name the problem.

The tools' own support code (pre-flight checks of data paths, CPU processes, the demo's
generated data) is in ``tools/_support``, not in the package.
"""
from .checkpoint import allow_mmengine_types, register_safe_local_loader
from .models import GLNet
from .registry import MODELS
from .version import __version__

allow_mmengine_types()
register_safe_local_loader()

__all__ = ['GLNet', 'MODELS', '__version__']
