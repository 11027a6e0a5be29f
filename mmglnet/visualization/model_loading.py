"""Former names of :func:`mmglnet.apis.build_model` and :func:`mmglnet.apis.load_checkpoint`.

Models are built and loaded by :mod:`mmglnet.apis`; these names stay only until their last
users move there.
"""
from mmglnet.apis import build_model
from mmglnet.apis import load_checkpoint as load_weights

__all__ = ['build_model', 'load_weights']
