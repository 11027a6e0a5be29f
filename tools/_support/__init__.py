"""Code the tools share; not part of the mmglnet package.

The tools in ``tools/`` import it as ``_support`` (Python puts a script's folder first on
``sys.path``); the tests add ``tools/`` to their path in ``tests/conftest.py``.

* :mod:`.config_checks`: pre-flight checks of the files a config names (datasets, annotation
  files, pretrained weights, checkpoints), with what to download and where;
* :mod:`.runtime`: CPU processes (gloo) and mixed precision for ``tools/train.py`` and
  ``tools/test.py``;
* :mod:`.test_time_aug`: ``tools/test.py --tta``, the config's test-time augmentation or flips;
* :mod:`.shapes_data`: the demo's generated shapes data, in the ADE20K and COCO layouts;
* :mod:`.runs`: configs pointed at other data with a shorter schedule, and running a tool (the
  demo and the tests);
* :mod:`.output_paths`: whether a tool could write where it is asked to, before any work;
* :mod:`.quick_exit`: a tool's process exiting without freeing every object one by one.
"""
