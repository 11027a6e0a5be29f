"""mmglnet's registries.

Each is a child of mmengine's root registry of its kind under the scope ``mmglnet``. A config can
therefore name ``type='mmglnet.GLNet'`` (``mmglnet.AtomicCheckpointHook``,
``mmglnet.AtomicDumpResults``) whatever its default scope is (mmdet, mmseg, mmpretrain or none):
mmengine resolves the ``mmglnet.`` prefix through the root registry to this child.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmglnet', locations=['mmglnet.models'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmglnet', locations=['mmglnet.engine'])
METRICS = Registry(
    'metric', parent=MMENGINE_METRICS, scope='mmglnet', locations=['mmglnet.evaluation'])
