"""The fast GLMix/attention path against the reference path, in every precision and mode.

The reference path (:mod:`mmglnet.testing.reference`) is the literal implementation that
first reproduced the official model; the fast path must give the same numbers.
"""
import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mmglnet.checkpoint import extract_backbone_state, read_checkpoint_tensors
from mmglnet.models import GLMixBlock, GLNet
from mmglnet.testing import REFERENCE_CLASSES, get_impl, set_impl

from conftest import TINY_ARCH, TINY_STL_ARCH, load_cases, parity_path

CASES = load_cases()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.float() - expected.float()).abs().max() / expected.float().abs().max()).item()


def input_and_parameter_grads(model: torch.nn.Module, x: torch.Tensor) -> tuple:
    """The gradients of the input and of every parameter of one forward and backward of
    ``model`` on ``x``, for a loss that weighs every output element differently."""
    inputs = x.clone().requires_grad_()
    model.zero_grad()
    outs = model(inputs)
    sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return inputs.grad, grads


def assert_same_gradients(got: tuple, expected: tuple) -> None:
    """:func:`input_and_parameter_grads` results agree: the input's to 1e-5 relative, each
    parameter's to 1e-5 of the largest parameter gradient."""
    (input_grad, grads), (expected_input_grad, expected_grads) = got, expected
    assert grads.keys() == expected_grads.keys()
    assert relative_error(input_grad, expected_input_grad) < 1e-5
    scale = max(grad.abs().max() for grad in expected_grads.values())
    for name, grad in grads.items():
        assert (grad - expected_grads[name]).abs().max() <= 1e-5 * scale, name


def fixture_model(name: str, impl: str) -> GLNet:
    case = CASES[name]
    state = extract_backbone_state(
        read_checkpoint_tensors(parity_path(f'{name}.pth')), case['weights_key'])
    model = GLNet(arch=case['official_kwargs'], out_norm_cfg=None)
    model.load_state_dict({k: v.float() for k, v in state.items() if k in model.state_dict()})
    return set_impl(model, impl)


PARITY_RUNS = []
for _name in sorted(CASES):
    _expected = torch.load(parity_path(f'{_name}.expected.pth'), weights_only=True)
    PARITY_RUNS += [(_name, mode) for mode in ('eval', 'train')
                    if f'{mode}_stage_outputs' in _expected]


@pytest.mark.parametrize('name,mode', PARITY_RUNS)
def test_both_paths_match_the_fixture_and_each_other(name, mode):
    expected = torch.load(parity_path(f'{name}.expected.pth'), weights_only=True)
    outputs = {}
    for impl in ('fast', 'reference'):
        # A fresh model per run: a train-mode pass moves the BatchNorm statistics.
        model = fixture_model(name, impl).train(mode == 'train')
        assert get_impl(model) == impl
        with torch.no_grad():
            outputs[impl] = model(expected['input'])
        for index, (out, ref) in enumerate(zip(outputs[impl], expected[f'{mode}_stage_outputs'])):
            assert relative_error(out, ref) <= 1e-4, f'{impl} path, stage {index}'
    for fast, ref in zip(outputs['fast'], outputs['reference']):
        assert relative_error(fast, ref) <= 1e-5


def test_switching_paths_keeps_the_state_and_is_reversible():
    model = GLNet(TINY_ARCH)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    set_impl(model, 'reference')
    assert get_impl(model) == 'reference'
    switched = [m for m in model.modules() if type(m) in REFERENCE_CLASSES.values()]
    assert len(switched) > 10
    assert model.state_dict().keys() == state.keys()
    set_impl(model, 'fast')
    assert get_impl(model) == 'fast'
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match='fast'):
        set_impl(model, 'slow')


def test_gradients_agree_between_paths():
    torch.manual_seed(0)
    fast = GLNet(TINY_STL_ARCH, drop_path_rate=0.).train()
    reference = set_impl(copy.deepcopy(fast), 'reference')
    # A 4G-like model as well: position encoding, FFN depth-wise conv, channel-first MHSA.
    fast_g = GLNet(TINY_ARCH).train()
    reference_g = set_impl(copy.deepcopy(fast_g), 'reference')
    x = torch.randn(2, 3, 64, 96)
    for model_fast, model_ref in ((fast, reference), (fast_g, reference_g)):
        inputs = {}
        for model in (model_fast, model_ref):
            inputs[model] = x.clone().requires_grad_()
            outs = model(inputs[model])
            sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs).backward()
        assert relative_error(inputs[model_fast].grad, inputs[model_ref].grad) < 1e-4
        ref_grads = {name: p.grad for name, p in model_ref.named_parameters()}
        # Relative to the largest gradient of the model: the bias of a convolution followed
        # by a train-mode BatchNorm has a gradient that is zero up to rounding.
        scale = max(grad.abs().max() for grad in ref_grads.values())
        for name, param in model_fast.named_parameters():
            error = (param.grad - ref_grads[name]).abs().max()
            assert error <= 1e-5 * scale + 1e-4 * ref_grads[name].abs().max(), name


def test_fast_path_gives_the_same_numbers_in_either_memory_layout():
    model = GLNet(TINY_ARCH).eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        plain = model(x)
        channels_last = model(x.contiguous(memory_format=torch.channels_last))
    for a, b in zip(plain, channels_last):
        assert relative_error(a, b) < 1e-5


@pytest.mark.parametrize('slot_init', ['ada_avgpool', 'param'])
def test_slot_methods_agree_between_paths(slot_init):
    torch.manual_seed(0)
    block = GLMixBlock(64, 2, slot_init=slot_init, cpe_ks=3, mlp_ratio=2).eval()
    with torch.no_grad():
        block.slot_scale.fill_(4.)
    reference = set_impl(copy.deepcopy(block), 'reference')
    x = torch.randn(2, 64, 12, 10)
    with torch.no_grad():
        init = block.initial_slots(x)
        pixels = block.norm1(x).flatten(2)
        assert relative_error(
            block.slot_logits(pixels, init.expand(2, -1, -1)),
            reference.slot_logits(pixels, init.expand(2, -1, -1))) < 1e-5
        weights = block.dispatch_weights(x)
        assert weights.shape == (2, 64, 12, 10)
        assert relative_error(weights, reference.dispatch_weights(x)) < 1e-5
        assert torch.allclose(weights.sum(1), torch.ones(2, 12, 10), atol=1e-5)
        assert relative_error(block(x), reference(x)) < 1e-5


@pytest.mark.parametrize('dtype,tolerance', [(torch.bfloat16, 5e-2), (torch.float16, 1e-2)])
def test_autocast_outputs_are_finite_and_close_to_float32(dtype, tolerance):
    torch.manual_seed(0)
    model = GLNet(TINY_ARCH).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        with torch.autocast('cpu', dtype=dtype):
            outputs = model(x)
    for out, ref in zip(outputs, expected):
        assert out.dtype == dtype
        assert torch.isfinite(out).all()
        assert relative_error(out, ref) < tolerance


def test_autocast_training_step_is_finite():
    torch.manual_seed(0)
    model = GLNet(TINY_ARCH, drop_path_rate=0.1).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(2, 3, 64, 64))
        loss = sum(o.float().square().mean() for o in outs)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_float16_model_runs_on_cpu_close_to_float32():
    torch.manual_seed(0)
    model = GLNet(TINY_ARCH).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        outputs = copy.deepcopy(model).half()(x.half())
    for out, ref in zip(outputs, expected):
        assert out.dtype == torch.float16 and torch.isfinite(out).all()
        assert relative_error(out, ref) < 1e-2


def test_float16_slot_logits_stay_bounded_for_extreme_pixels():
    """Zero, tiny and huge pixel vectors: the float16 cosine logits stay finite and within
    |slot_scale|, where normalising in float16 would overflow (|x|^2 > 65504)."""
    torch.manual_seed(0)
    block = GLMixBlock(256, 8).half()
    with torch.no_grad():
        block.slot_scale.fill_(-5.)
    pixels = torch.randn(1, 256, 6)
    pixels[0, :, 0] = 0
    pixels[0, :, 1] *= 1e-6
    pixels[0, :, 2] *= 1e3
    pixels = pixels.half()
    init = torch.randn(1, 64, 256).mul(1e3).half()
    logits = block.slot_logits(pixels, init)
    assert logits.dtype == torch.float16 and torch.isfinite(logits).all()
    assert logits.abs().max() <= 5 * (1 + 1e-2)
    assert (logits[0, :, 0] == 0).all()
    expected = set_impl(copy.deepcopy(block).float(),
                        'reference').slot_logits(pixels[:, :, 2:].float(), init.float())
    assert relative_error(logits[:, :, 2:], expected) < 1e-2


def test_compiled_forward_agrees_with_eager_without_graph_breaks():
    torch.manual_seed(0)
    model = GLNet(TINY_ARCH).eval()
    x = torch.randn(2, 3, 64, 64)
    compiled = torch.compile(model, fullgraph=True)  # fullgraph: a graph break is an error
    with torch.no_grad():
        expected = model(x)
        outputs = compiled(x)
    for out, ref in zip(outputs, expected):
        assert relative_error(out, ref) < 1e-4


def test_autocast_backward_writes_no_float32_feature_maps():
    """Under autocast a GLMix block's backward stays in the autocast dtype: the pixels' norm
    among others, whose gradient a float32 norm would write as float32 feature maps."""
    torch.manual_seed(0)
    block = GLMixBlock(32, 4, num_slots=16, cpe_ks=3, mlp_dw=True)
    # As a block gets its input in a network: from the autocast convolution before it.
    x = torch.randn(3, 32, 16, 16).bfloat16().contiguous(memory_format=torch.channels_last)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = block(x.requires_grad_())
    float32_maps = []

    class Float32Maps(TorchDispatchMode):

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            for tensor in result if isinstance(result, (tuple, list)) else (result, ):
                if (torch.is_tensor(tensor) and tensor.dtype == torch.float32 and tensor.dim() > 2
                        and tensor.shape[0] == len(x) and tensor.numel() >= x[:, :8].numel()):
                    float32_maps.append((str(func), tuple(tensor.shape)))
            return result

    with Float32Maps():
        out.backward(torch.ones_like(out))
    assert float32_maps == []
