"""Check that a compile option of GLNet trains as eager mode does, on this machine.

Two copies of one GLNet with the same weights train side by side for a few steps on the same
inputs and targets (forward, a squared error to fixed random targets, backward, SGD; a gradient
scaler with float16): one eager, one with ``compile_backbone`` or ``compile_blocks`` as a
config sets it, CUDA graphs included with ``--mode reduce-overhead``. After every step the tool
compares their outputs and BatchNorm statistics (largest difference relative to the eager
tensor's largest magnitude), their gradients and their weights' change since the start (the
norm of the difference relative to the eager norm, over all parameters), then one eval-mode
forward (``compile_eval``). It exits with status 1 where a difference exceeds
``--tolerance``: a compiled step that is fast but trains differently (stale CUDA-graph outputs,
gradients of the previous step, weights whose change the graph does not see) is a bug,
whatever its speed. SGD keeps the weights' change proportional to the gradients; AdamW's first
steps would turn rounding noise in near-zero gradients into full-size updates of either sign.

``--accumulate`` gives the micro-batches per step, cycled over the steps: with ``1 2`` plain
steps alternate with steps that accumulate the gradients of two micro-batches before the
optimizer steps, as mmengine's ``OptimWrapper(accumulative_counts=2)`` does. With CUDA
graphs that is where a gradient held across a replay could be overwritten; the outputs of
every micro-batch are compared. ``--with-cp`` checkpoints every block in both copies, so that
the compiled graph runs the blocks again in its backward.

Examples::

    # GPU: the backbone as one graph replayed as CUDA graphs, in float16
    python tools/analysis_tools/check_compiled_training.py --option compile_backbone \\
        --mode reduce-overhead --precision fp16
    # CPU, quick: dynamo and autograd as in real compilation, without generating kernels
    python tools/analysis_tools/check_compiled_training.py --backend aot_eager
    # Gradient accumulation: steps of one and of two micro-batches in turn
    python tools/analysis_tools/check_compiled_training.py --backend aot_eager \\
        --steps 4 --accumulate 1 2
"""
import argparse
import copy
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

if osp.dirname(osp.abspath(__file__)) not in sys.path:  # loaded by path, not run
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
# tools/analysis_tools/benchmark.py: precisions, autocast; it puts the checkout on sys.path.
import benchmark  # noqa: E402

OPTIONS = ('compile_backbone', 'compile_blocks')
# Largest relative difference accepted per precision: float32 kernels differ in their order of
# summation; under autocast, fused kernels keep float32 where eager rounds to 16 bits.
TOLERANCES = {'fp32': 1e-4, 'fp16': 5e-2, 'bf16': 5e-2}
# The tiny GLNet of the demo configs: every block type of the G series, quick to compile.
DEMO_ARCH_FILE = osp.join(benchmark.REPO_ROOT, 'configs', 'demo', '_base_', 'glnet-tiny.py')


def demo_arch() -> dict:
    from mmengine.config import Config
    return Config.fromfile(DEMO_ARCH_FILE, import_custom_modules=False).glnet_tiny.to_dict()


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train GLNet eagerly and with a compile option side by side; compare.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument(
        '--arch',
        default='demo-tiny',
        help="a preset ('stl', '4g', ...) or 'demo-tiny' (the demo configs' tiny GLNet)")
    parser.add_argument('--option', choices=OPTIONS, default='compile_backbone')
    parser.add_argument(
        '--mode', default=None, help="torch.compile mode, e.g. 'reduce-overhead' (CUDA graphs)")
    parser.add_argument(
        '--backend', default=None, help="torch.compile backend, e.g. 'aot_eager' (no kernels)")
    parser.add_argument('--precision', choices=list(benchmark.PRECISIONS), default='fp32')
    parser.add_argument('--steps', type=int, default=3, help='training steps compared')
    parser.add_argument(
        '--accumulate',
        type=int,
        nargs='+',
        default=[1],
        help='micro-batches whose gradients each step accumulates, cycled over the steps '
        '(e.g. 1 2: plain steps and steps of two micro-batches in turn)')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, default=64, help='input side')
    parser.add_argument(
        '--device', default=None, help="'cuda' or 'cpu'; defaults to cuda where there is one")
    parser.add_argument(
        '--tolerance',
        type=float,
        default=None,
        help='largest relative difference accepted; default by precision: ' +
        ', '.join(f'{k} {v:g}' for k, v in TOLERANCES.items()))
    parser.add_argument(
        '--with-cp',
        action='store_true',
        help='both copies checkpoint every block (with_cp=True): the blocks run again in '
        'the backward, inside the compiled graph')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda was asked for but torch sees no CUDA device; '
                     'pass --device cpu')
    if args.precision == 'fp16' and args.device != 'cuda':
        parser.error('--precision fp16 needs --device cuda (autocast with a gradient '
                     'scaler); use bf16 or fp32 on the CPU')
    if args.steps < 1 or args.batch < 1 or args.size < 32 or min(args.accumulate) < 1:
        parser.error('--steps, --batch and --accumulate must be at least 1 and --size at '
                     'least 32 (the total stride)')
    from mmglnet.models.glnet import ARCH_SETTINGS
    if args.arch != 'demo-tiny' and args.arch not in ARCH_SETTINGS:
        parser.error(f'--arch {args.arch!r}: choose demo-tiny or one of {sorted(ARCH_SETTINGS)}')
    if args.tolerance is None:
        args.tolerance = TOLERANCES[args.precision]
    return args


def build_pair(args) -> Tuple[nn.Module, nn.Module]:
    """An eager GLNet and its twin with the compile option, with the same weights."""
    from mmglnet.models import GLNet
    arch = demo_arch() if args.arch == 'demo-tiny' else args.arch
    compile_cfg = dict(dynamic=False)
    if args.mode is not None:
        compile_cfg['mode'] = args.mode
    if args.backend is not None:
        compile_cfg['backend'] = args.backend
    torch.manual_seed(args.seed)
    eager = GLNet(arch=copy.deepcopy(arch), out_indices=(0, 1, 2, 3), with_cp=args.with_cp)
    compiled = GLNet(
        arch=copy.deepcopy(arch),
        out_indices=(0, 1, 2, 3),
        with_cp=args.with_cp,
        compile_eval=True,
        **{args.option: compile_cfg})
    compiled.load_state_dict(eager.state_dict())
    return eager.to(args.device), compiled.to(args.device)


def relative_difference(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """``max |ours - reference|`` over ``max |reference|`` (0 for two zero tensors)."""
    ours, reference = ours.detach().double(), reference.detach().double()
    scale = reference.abs().max().item()
    difference = (ours - reference).abs().max().item()
    return difference / scale if scale > 0 else difference


def worst(pairs: Dict[str, Tuple[torch.Tensor, torch.Tensor]]) -> Tuple[float, str]:
    """The largest :func:`relative_difference` among named pairs, and its name."""
    return max(((relative_difference(ours, ref), name) for name, (ours, ref) in pairs.items()),
               default=(0., ''))


def relative_norm(pairs: Dict[str, Tuple[torch.Tensor, torch.Tensor]]) -> float:
    """``||ours - reference|| / ||reference||`` over all the pairs' tensors together."""
    difference = sum(((o.double() - r.double())**2).sum().item() for o, r in pairs.values())
    scale = sum((r.double()**2).sum().item() for _, r in pairs.values())
    return (difference / scale)**0.5 if scale > 0 else difference**0.5


class Trainer:
    """One model's training step: forward, loss, backward, SGD (with a scaler for fp16)."""

    def __init__(self, model: nn.Module, args) -> None:
        self.model = model
        self.args = args
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        self.scaler = torch.amp.GradScaler(args.device, enabled=args.precision == 'fp16')
        self.initial = {n: p.detach().clone() for n, p in model.named_parameters()}

    def step(self, micro_batches: List[torch.Tensor],
             targets: List[torch.Tensor]) -> Tuple[List[List[torch.Tensor]], torch.Tensor]:
        """Train one step, accumulating the gradients of the micro-batches (each loss divided
        by their number, as mmengine does); returns copies of every micro-batch's outputs and
        the summed loss."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        kept, total = [], 0.
        for x in micro_batches:
            with benchmark.autocast(self.args.device, self.args.precision):
                outputs = self.model(x)
                loss = sum(((out.float() - target)**2).mean()
                           for out, target in zip(outputs, targets)) / len(micro_batches)
            # Copies: the outputs of a CUDA-graph replay are overwritten by the next one.
            kept.append([out.detach().float().clone() for out in outputs])
            self.scaler.scale(loss).backward()
            total = total + loss.detach().clone()
        self.scaler.unscale_(self.optimizer)
        self.grads = {
            name: param.grad.detach().clone()
            for name, param in self.model.named_parameters() if param.grad is not None
        }
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return kept, total

    def changes(self) -> Dict[str, torch.Tensor]:
        """Every weight's change since the start."""
        return {n: p.detach() - self.initial[n] for n, p in self.model.named_parameters()}

    def evaluate(self, x: torch.Tensor) -> List[torch.Tensor]:
        self.model.eval()
        with torch.no_grad(), benchmark.autocast(self.args.device, self.args.precision):
            return [out.float().clone() for out in self.model(x)]


def compare(args) -> dict:
    """Train the two copies side by side and compare them after every step.

    Returns:
        dict: ``steps`` (per step: the losses, the number of micro-batches; the largest relative
        difference of the outputs of every micro-batch and of the BatchNorm statistics, with
        the tensor's name; the relative norm of the difference of the gradients and of the
        weights' changes), ``eval`` (the eval-mode outputs), ``first_step_s`` (the compiled
        copy's, compilation included), ``largest`` and ``ok``.
    """
    eager_model, compiled_model = build_pair(args)
    eager, compiled = Trainer(eager_model, args), Trainer(compiled_model, args)
    generator = torch.Generator().manual_seed(args.seed + 1)

    def draw(*shape):
        return torch.randn(*shape, generator=generator).to(args.device)

    with torch.no_grad():
        shapes = [out.shape for out in eager_model.eval()(draw(1, 3, args.size, args.size))]
    targets = [draw(args.batch, *shape[1:]) for shape in shapes]
    steps, first_step_s = [], None
    for number in range(args.steps):
        micro_batches = [
            draw(args.batch, 3, args.size, args.size)
            for _ in range(args.accumulate[number % len(args.accumulate)])
        ]
        expected, expected_loss = eager.step(micro_batches, targets)
        start = time.perf_counter()
        outputs, loss = compiled.step(micro_batches, targets)
        if args.device == 'cuda':
            torch.cuda.synchronize()
        if first_step_s is None:
            first_step_s = time.perf_counter() - start
        if set(compiled.grads) != set(eager.grads):
            raise RuntimeError('the compiled copy has gradients for other parameters: '
                               f'{sorted(set(compiled.grads) ^ set(eager.grads))[:5]}')
        eager_buffers = dict(eager_model.named_buffers())
        eager_changes = eager.changes()
        steps.append(
            dict(
                loss=(loss.item(), expected_loss.item()),
                micro_batches=len(micro_batches),
                outputs=worst({
                    f'stage {i}' + (f', micro-batch {k + 1}' if len(micro_batches) > 1 else ''):
                    pair
                    for k, (ours, theirs) in enumerate(zip(outputs, expected))
                    for i, pair in enumerate(zip(ours, theirs))
                }),
                gradients=relative_norm({
                    n: (g, eager.grads[n])
                    for n, g in compiled.grads.items()
                }),
                weights=relative_norm({
                    n: (c, eager_changes[n])
                    for n, c in compiled.changes().items()
                }),
                buffers=worst({
                    n: (b, eager_buffers[n])
                    for n, b in compiled_model.named_buffers() if b.is_floating_point()
                })))
    x = draw(args.batch, 3, args.size, args.size)
    evaluated = worst({
        f'stage {i}': pair
        for i, pair in enumerate(zip(compiled.evaluate(x), eager.evaluate(x)))
    })
    largest = max([evaluated[0]] + [
        value for step in steps
        for value in (step['outputs'][0], step['gradients'], step['weights'], step['buffers'][0])
    ])
    return dict(
        steps=steps,
        eval=evaluated,
        first_step_s=first_step_s,
        largest=largest,
        ok=largest <= args.tolerance)


def named(difference: Tuple[float, str]) -> str:
    """``'2.1e-02 (stage 3)'``: a difference with the tensor it was largest in, if not 0."""
    value, name = difference
    return f'{value:.1e}' + (f' ({name})' if value > 0 else '')


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    settings = ', '.join(f'{k}={getattr(args, k)}'
                         for k in ('arch', 'option', 'mode', 'backend', 'precision', 'device',
                                   'accumulate', 'with_cp'))
    device = torch.cuda.get_device_name() if args.device == 'cuda' else 'CPU'
    print(
        f'{device}, torch {torch.__version__}: eager against {args.option} ({settings}), '
        f'{args.steps} steps at {args.size}², batch {args.batch}',
        flush=True)
    result = compare(args)
    for number, step in enumerate(result['steps'], 1):
        micro = f' ({step["micro_batches"]} micro-batches)' if step['micro_batches'] > 1 else ''
        print(f'step {number}{micro}: loss {step["loss"][0]:.6g} (eager {step["loss"][1]:.6g}); '
              f'outputs {named(step["outputs"])}, gradients {step["gradients"]:.1e}, weight '
              f'changes {step["weights"]:.1e}, buffers {named(step["buffers"])}')
    print(f'eval forward: outputs {named(result["eval"])}')
    print(f'first compiled step (compilation included): {result["first_step_s"]:.1f} s')
    verdict = 'OK' if result['ok'] else 'MISMATCH'
    print(f'{verdict}: largest relative difference {result["largest"]:.1e}, tolerance '
          f'{args.tolerance:g}')
    return 0 if result['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
