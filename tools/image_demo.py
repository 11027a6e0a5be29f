"""Run a GLNet detector or segmentor on an image, or a folder of images, and save the drawn
results.

Examples:
    python tools/image_demo.py demo.jpg configs/detection/retinanet_glnet4g_fpn_1x_coco.py \
        work_dirs/retinanet_glnet4g_fpn_1x_coco/epoch_12.pth --out-file result.jpg
    python tools/image_demo.py demo.jpg configs/segmentation/upernet_glnet4g_160k.py \
        work_dirs/upernet_glnet4g_160k/iter_160000.pth --with-slots --device cpu
    python tools/image_demo.py photos/ configs/segmentation/upernet_glnet4g_160k.py \
        work_dirs/upernet_glnet4g_160k/iter_160000.pth --out-dir photos_drawn

Uses the codebase's own inferencer (``mmdet.apis.DetInferencer`` for configs with
``default_scope='mmdet'``, ``mmseg.apis.MMSegInferencer`` for ``'mmseg'``), whose model is built
by :func:`mmglnet.apis.build_model`; the model is built and its checkpoint read once for all
images. With ``--with-slots`` each result is saved beside the GLMix slot assignment maps of the
same model.
"""
import argparse
import copy
import os.path as osp
import re
import sys
from typing import Optional

if osp.dirname(osp.abspath(__file__)) not in sys.path:  # loaded by path, not run
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import mmcv
import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import print_log

import mmglnet  # noqa: F401  (registers GLNet; safe checkpoint loading)
from mmglnet.apis import build_model
from mmglnet.checkpoint import (CheckpointFileError, CheckpointMismatchError,
                                UntrustedCheckpointError, check_checkpoint_fits_model)
from mmglnet.utils import (ConfigFileError, ImageFileError, image_stems, list_images, load_config,
                           read_image)
from mmglnet.visualization import (SlotSelectionError, check_slot_request, make_panel,
                                   save_slot_maps, visualize_image_slots, write_image)

import known_warnings  # noqa: F401  (tools/known_warnings.py: hides known notices)
from _support.config_checks import iter_dataset_cfgs
from _support.quick_exit import skip_final_collection
from _support.runtime import check_device

TASKS = ('mmdet', 'mmseg')
TASK_NAMES = dict(
    mmdet='detection (mmdet)',
    mmseg='segmentation (mmseg)',
    mmpretrain='classification (mmpretrain)')
# Entries of a config's model that are no sub-module with weights.
NOT_MODULES = ('type', 'data_preprocessor', 'train_cfg', 'test_cfg', 'init_cfg', 'pretrained')
PARTIAL_HINT = ('To draw with the matching weights only, on purpose, pass '
                '--allow-partial-checkpoint.')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Detection or segmentation of images with a GLNet model.')
    parser.add_argument(
        'image', help='Image file, or a folder: every image in it (by name; not its sub-folders).')
    parser.add_argument('config', help='mmdet or mmseg config of a model with a GLNet.')
    parser.add_argument('checkpoint', help='Checkpoint of that model.')
    out = parser.add_mutually_exclusive_group()
    out.add_argument(
        '--out-file',
        default=None,
        help='Where to save the drawing of one image. Defaults to result.jpg.')
    out.add_argument(
        '--out-dir',
        default=None,
        help='Folder for the drawings, each named as its image. Defaults to results/ for a '
        'folder of images.')
    parser.add_argument(
        '--with-slots',
        action='store_true',
        help='Put the GLMix slot assignment maps beside each result and save '
        'the full slot maps in --slots-dir.')
    parser.add_argument(
        '--slots-dir',
        default=None,
        help='Folder for the full slot maps (with --with-slots); for a folder of images, each '
        "image's maps go in a sub-folder named as the image. Defaults to <drawing name>_slots "
        'beside each drawing.')
    parser.add_argument(
        '--blocks',
        nargs='+',
        default=None,
        help="GLMix blocks for --with-slots, as stage.block or 'all'. "
        'Defaults to the last GLMix block of each stage.')
    parser.add_argument(
        '--k', type=int, default=4, help='Representative slots per block in the full slot maps.')
    parser.add_argument(
        '--slot-size',
        type=int,
        default=512,
        help='Shorter side of the network input for the slot maps.')
    parser.add_argument(
        '--score-thr', type=float, default=0.3, help='Detection: minimum score of drawn boxes.')
    parser.add_argument(
        '--opacity', type=float, default=0.6, help='Segmentation: opacity of the drawn mask.')
    parser.add_argument(
        '--device',
        default=None,
        help='Device, e.g. cpu or cuda:0. Defaults to cuda:0 when available.')
    parser.add_argument(
        '--allow-partial-checkpoint',
        action='store_true',
        help='Draw even when the checkpoint lacks some of the model\'s weights, has them with '
        'another shape or holds others (mmengine then logs what it skipped). By default such '
        'a checkpoint is refused before the image is run, since the drawing would show partly '
        'untrained weights.')
    args = parser.parse_args(argv)
    if args.device is not None:
        try:
            check_device(args.device)
        except ValueError as error:
            parser.error(str(error))
    if args.with_slots and args.k < 1:
        parser.error(f'--k {args.k}: give at least one representative slot per block.')
    if osp.isdir(args.image):
        if args.out_file is not None:
            parser.error(f'{args.image} is a folder of images: give --out-dir for their drawings '
                         f'(--out-file {args.out_file} names the drawing of one image).')
        if args.out_dir and osp.realpath(args.out_dir) == osp.realpath(args.image):
            parser.error(f'--out-dir {args.out_dir} is the folder of the images: their drawings '
                         'would replace them. Give another folder.')
    elif osp.exists(args.image):
        out_file = output_file(args)
        if osp.realpath(out_file) == osp.realpath(args.image):
            parser.error(f'The drawing {out_file} would replace the image {args.image}. Give '
                         'another --out-file or --out-dir.')
    return args


def output_file(args) -> str:
    """Where the drawing of the one image ``args.image`` goes."""
    if args.out_dir is not None:
        return osp.join(args.out_dir, osp.basename(args.image))
    return args.out_file or 'result.jpg'


def plan_outputs(args, images: list) -> list:
    """``(image, drawing, slot maps folder)`` for each image, as the arguments ask."""
    if not osp.isdir(args.image):
        drawing = output_file(args)
        return [(images[0], drawing, args.slots_dir or osp.splitext(drawing)[0] + '_slots')]
    out_dir = args.out_dir or 'results'
    return [
        (image, osp.join(out_dir, osp.basename(image)),
         osp.join(args.slots_dir, stem) if args.slots_dir else osp.join(out_dir, f'{stem}_slots'))
        for image, stem in zip(images, image_stems(images))
    ]


def check_checkpoint_matches(checkpoint: dict,
                             cfg: Config,
                             name: str,
                             config: str,
                             check_parts: bool = True) -> None:
    """Refuse a checkpoint of another task or model before the model is built.

    The checkpoint must have been written for the config's codebase (its ``meta.cfg``, when
    present, has the same ``default_scope``) and hold weights for every part of the model
    (``backbone``, ``decode_head``, ``roi_head``, ...).

    Args:
        checkpoint (dict): The loaded checkpoint.
        cfg (Config): The config of the model.
        name (str): The checkpoint file, for messages.
        config (str): The config file, for messages.
        check_parts (bool): Check that every part of the model has weights in the file.
            Defaults to True.

    Raises:
        CheckpointMismatchError: Naming the checkpoint's task or the parts it lacks.
    """
    scope = cfg.get('default_scope')
    meta = checkpoint.get('meta', {}) if isinstance(checkpoint, dict) else {}
    saved_cfg = meta.get('cfg') if isinstance(meta, dict) else None
    found = re.search(r"^default_scope\s*=\s*['\"](\w+)['\"]", saved_cfg or '', re.M)
    if found and scope in TASKS and found.group(1) != scope:
        raise CheckpointMismatchError(
            f'{name} is a {TASK_NAMES.get(found.group(1), found.group(1))} checkpoint, '
            f'but {config} is a {TASK_NAMES[scope]} config (default_scope={scope!r}). Give '
            f'the checkpoint that was trained with this config, or the config the checkpoint '
            'was trained with (its meta.cfg holds it).')
    if not check_parts:
        return
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
    prefixes = {str(key).split('.')[1 if str(key).startswith('module.') else 0] for key in state}
    parts = [
        key for key, value in cfg.model.items()
        if key not in NOT_MODULES and isinstance(value, dict) and 'type' in value
    ]
    missing = [part for part in parts if part not in prefixes]
    if missing:
        raise CheckpointMismatchError(
            f'{name} holds no weights for {", ".join(missing)} of the model that {config} '
            f'builds (it has weights for: {", ".join(sorted(prefixes)) or "nothing"}). '
            f'Expected a checkpoint of this {TASK_NAMES.get(scope, scope)} model, as '
            'tools/train.py writes with this config; a backbone-only file (an official GLNet '
            f"release) goes in the config's backbone init_cfg instead. {PARTIAL_HINT}")


def config_dataset_meta(cfg: Config) -> Optional[dict]:
    """The classes and palette of the config's test dataset, as the dataset would have them
    (its class's ``METAINFO`` updated by the config's ``metainfo``), or None when the config
    names no dataset the codebase knows.

    Args:
        cfg (Config): An mmdet or mmseg config.

    Returns:
        dict | None: ``classes`` and ``palette`` (None when the config's classes outnumber
        the dataset's colours: the visualizer then picks them).
    """
    from mmengine.registry import DATASETS

    # A wrapper's classes are those of its (first) dataset, as mmengine's ConcatDataset has it.
    datasets = iter_dataset_cfgs(cfg.get('test_dataloader', {}).get('dataset'), 'dataset')
    dataset = next((leaf for _, leaf in datasets), None)
    if dataset is None or not isinstance(dataset.get('type'), str):
        return None
    # The codebase's registry, as the Runner would build the dataset.
    with DATASETS.switch_scope_and_registry(cfg.get('default_scope')) as registry:
        dataset_class = registry.get(dataset['type'])
    meta = copy.deepcopy(dict(getattr(dataset_class, 'METAINFO', {}) or {}))
    meta.update(dataset.get('metainfo') or {})
    classes, palette = meta.get('classes'), meta.get('palette')
    if not classes:
        return None
    if palette is not None and len(palette) < len(classes):
        palette = None
    return dict(classes=tuple(classes), palette=palette)


class BuiltByMMGLNet:
    """Mixin for a codebase's inferencer: its model is built by mmglnet.apis.

    The checkpoint is read once: checked against the config (:func:`check_checkpoint_matches`
    before the model is built, :func:`mmglnet.checkpoint.check_checkpoint_fits_model` after),
    then loaded with the dataset metadata (classes, palette) as the inferencer always does. A
    checkpoint that records no classes takes the config's test dataset's
    (:func:`config_dataset_meta`), where the inferencers would draw COCO's or Cityscapes'
    class names. The subclasses made by :func:`build_inferencer` set the two class
    attributes.

    Attributes:
        config_path (str): The config file, for messages.
        allow_partial_checkpoint (bool): Load a checkpoint that does not fit the model (the
            inferencer's non-strict loading logs what it skipped) instead of refusing it.
    """
    config_path = 'the config'
    allow_partial_checkpoint = False

    def _init_model(self, cfg: Config, weights: str, device: str = 'cpu'):
        from mmengine.runner.checkpoint import _load_checkpoint

        checkpoint = _load_checkpoint(weights, map_location='cpu')
        check_checkpoint_matches(
            checkpoint,
            cfg,
            weights,
            self.config_path,
            check_parts=not self.allow_partial_checkpoint)
        # As mmengine's inferencers: no pretrained backbone file is read for inference.
        options = {'model.pretrained': None} if cfg.model.get('pretrained') else None
        model = build_model(cfg, options)
        model.cfg = cfg
        if not self.allow_partial_checkpoint:
            try:
                check_checkpoint_fits_model(model, checkpoint, weights)
            except CheckpointMismatchError as error:
                raise CheckpointMismatchError(f'{error} {PARTIAL_HINT}') from None
        meta = checkpoint.setdefault('meta', {}) if isinstance(checkpoint, dict) else {}
        if isinstance(meta, dict) and not ({'dataset_meta', 'CLASSES'} & set(meta)):
            dataset_meta = config_dataset_meta(cfg)
            if dataset_meta is not None:
                meta['dataset_meta'] = dataset_meta
                count = len(dataset_meta['classes'])
                print_log(
                    f'{weights} records no classes: drawing with the {count} classes of '
                    f"{self.config_path}'s test dataset.",
                    logger='current')
        self._load_weights_to_model(model, checkpoint, cfg)
        return model.to(device).eval()


def build_inferencer(config: str,
                     checkpoint: str,
                     device: str,
                     cfg: Config = None,
                     allow_partial_checkpoint: bool = False):
    """The inferencer of the config's codebase, chosen by its ``default_scope``.

    Args:
        config (str): The config file.
        checkpoint (str): The checkpoint of the config's model.
        device (str): The device, e.g. ``'cpu'``.
        cfg (Config, optional): The config, when already loaded. Defaults to None.
        allow_partial_checkpoint (bool): See :class:`BuiltByMMGLNet`. Defaults to False.

    Returns:
        tuple: The inferencer and the ``default_scope``.
    """
    cfg = cfg if cfg is not None else load_config(config)
    scope = cfg.get('default_scope', None)
    attributes = dict(config_path=config, allow_partial_checkpoint=allow_partial_checkpoint)
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer
        inferencer = type('DetInferencer', (BuiltByMMGLNet, DetInferencer), attributes)
        return inferencer(model=cfg, weights=checkpoint, device=device, show_progress=False), scope
    if scope == 'mmseg':
        from mmseg.apis import MMSegInferencer
        inferencer = type('MMSegInferencer', (BuiltByMMGLNet, MMSegInferencer), attributes)
        inferencer = inferencer(model=cfg, weights=checkpoint, device=device)
        inferencer.show_progress = False  # its constructor does not take it; a line per image
        return inferencer, scope
    raise ValueError(
        f'{config} has default_scope={scope!r}; image_demo.py draws detection ({TASKS[0]}) or '
        f'segmentation ({TASKS[1]}) results, so the config must set one of {TASKS}. For a '
        'classification model use tools/visualize_slots.py.')


def draw_one_pixel_segmentation(inferencer, path: str, image, opacity: float):
    """The predicted class colour blended over a 1x1 image, as RGB.

    mmseg's visualizer cannot draw a one-pixel prediction (a one-element tensor used as a numpy
    index is taken as an integer index), so the single pixel is blended here.
    """
    result = inferencer([path], return_datasamples=True)
    sample = result[0] if isinstance(result, list) else result
    label = int(sample.pred_sem_seg.data.flatten()[0])
    palette = inferencer.visualizer.dataset_meta.get('palette') or [(255, 255, 255)]
    color = palette[label] if label < len(palette) else (0, 0, 0)
    rgb = image[..., ::-1].astype(np.float32)
    return (rgb * (1 - opacity) + np.asarray(color, np.float32) * opacity).astype(np.uint8)


def draw_result(inferencer, scope: str, path: str, image: np.ndarray, args) -> np.ndarray:
    """The inferencer's drawing of the image at ``path`` (BGR array ``image``), as RGB."""
    if scope == 'mmseg' and image.shape[0] * image.shape[1] == 1:
        return draw_one_pixel_segmentation(inferencer, path, image, args.opacity)
    options = dict(pred_score_thr=args.score_thr, no_save_vis=True) if scope == 'mmdet' \
        else dict(opacity=args.opacity)
    # A path (not the array): the inferencers draw arrays as RGB but feed them to the model as
    # BGR; from a path they load and draw the image consistently.
    drawn = inferencer([path], return_vis=True, **options)['visualization']
    # RGB, the image's size; MMSegInferencer unwraps single results, DetInferencer not.
    return drawn[0] if isinstance(drawn, list) else drawn


def main(argv=None):
    args = parse_args(argv)
    plan = plan_outputs(args, list_images(args.image))
    for image, _, _ in plan:  # every image decodes, before the model is built
        read_image(image)
    cfg = load_config(args.config)
    device = args.device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    inferencer, scope = build_inferencer(args.config, args.checkpoint, device, cfg,
                                         args.allow_partial_checkpoint)
    if args.with_slots:  # the blocks and k, before any image is run
        check_slot_request(inferencer.model, args.blocks, args.k)
    for number, (path, out_file, slots_dir) in enumerate(plan, 1):
        image = read_image(path)
        drawn = draw_result(inferencer, scope, path, image, args)
        if args.with_slots:
            maps = visualize_image_slots(
                inferencer.model, image, size=args.slot_size, blocks=args.blocks, k=args.k)
            height = min(drawn.shape[0], 512)
            drawn = make_panel([drawn] + [m.assignment for m in maps],
                               ['prediction'] + [f'slots of block {m.name}' for m in maps], height)
            written = save_slot_maps(slots_dir, mmcv.bgr2rgb(image), maps)
            print(f'Wrote {len(written)} slot map files to {slots_dir}')
        write_image(out_file, drawn)
        count = f' ({number}/{len(plan)})' if osp.isdir(args.image) else ''
        print(f'Saved the result to {out_file}{count}')
    return [out_file for _, out_file, _ in plan]


if __name__ == '__main__':
    skip_final_collection()  # exit in a fraction of a second, not 2-3 s
    try:
        main(sys.argv[1:])
    except (FileNotFoundError, ImageFileError, ConfigFileError, CheckpointMismatchError,
            CheckpointFileError, UntrustedCheckpointError, SlotSelectionError) as error:
        print(f'tools/image_demo.py: error: {error}', file=sys.stderr)
        sys.exit(2)
