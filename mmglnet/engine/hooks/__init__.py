from .atomic_checkpoint_hook import AtomicCheckpointHook
from .replica_check_hook import ReplicaCheckHook, parameter_digest
from .slot_visualization_hook import SlotVisualizationHook

__all__ = ['AtomicCheckpointHook', 'ReplicaCheckHook', 'SlotVisualizationHook', 'parameter_digest']
