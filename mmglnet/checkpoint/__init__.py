"""Checkpoints, in one place.

* :mod:`.safe_load`: reading files safely (format checks, the restricted reader of release
  files, the allow-list for mmengine checkpoints, per-file trust bound to the contents);
* :mod:`.official`: the official release layout mapped to GLNet's keys (a pure function);
* :mod:`.loading`: loading into a GLNet backbone or a whole model, refusing wrong weights.
"""
from .loading import (CheckpointMismatchError, check_checkpoint_fits_model, extract_backbone_state,
                      guess_arch, load_pretrained_backbone, model_state_from_checkpoint)
from .official import (OFFICIAL_CLASSIFIER_PREFIXES, OFFICIAL_WEIGHT_ENTRIES, OFFICIAL_WEIGHTS_KEYS,
                       choose_weights_key, describe_backbone, filter_official_checkpoint)
from .safe_load import (TRUSTED_ENV, CheckpointFileError, UnloadedObject, UntrustedCheckpointError,
                        allow_mmengine_types, check_checkpoint_format, file_sha256, is_trusted,
                        load_local_checkpoint, read_checkpoint_tensors, register_safe_local_loader,
                        resolve_trusted_env, trust_checkpoint)

__all__ = [
    'CheckpointFileError', 'CheckpointMismatchError', 'OFFICIAL_CLASSIFIER_PREFIXES',
    'OFFICIAL_WEIGHT_ENTRIES', 'OFFICIAL_WEIGHTS_KEYS', 'TRUSTED_ENV', 'UnloadedObject',
    'UntrustedCheckpointError', 'allow_mmengine_types', 'check_checkpoint_fits_model',
    'check_checkpoint_format', 'choose_weights_key', 'describe_backbone', 'extract_backbone_state',
    'file_sha256', 'filter_official_checkpoint', 'guess_arch', 'is_trusted',
    'load_local_checkpoint', 'load_pretrained_backbone', 'model_state_from_checkpoint',
    'read_checkpoint_tensors', 'register_safe_local_loader', 'resolve_trusted_env',
    'trust_checkpoint'
]
