"""GLNet's ``batch_weight_casts``: autocast's weight casts as one multi-tensor copy per eager
forward without gradients, with the outputs of autocast's own casts."""
import copy
import threading
import traceback
from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mmglnet.models import GLNet
from mmglnet.models import layers as glnet_layers
from mmglnet.models.layers import ResidualDWConv
from mmglnet.models.weight_casts import cast_only_parameters
from mmglnet.testing import FakeCuda, parameters_only_cast_to, set_impl

from conftest import TINY_ARCH, TINY_STL_ARCH

ARCHS = {
    'g_series': TINY_ARCH,
    'stl': TINY_STL_ARCH,
    # Layer scales and learned slots: parameters read in float32.
    'layerscale_param_slots': dict(TINY_STL_ARCH, layerscale=1e-4, slot_init='param'),
}


class Operators(TorchDispatchMode):
    """Counts the ATen operators dispatched, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def twins(arch: dict):
    """A GLNet with ``batch_weight_casts`` and one without, with the same weights, in eval
    mode; the weights are made to need rounding in bfloat16."""
    plain = GLNet(arch=dict(arch), batch_weight_casts=False).eval()
    with torch.no_grad():
        for param in plain.parameters():
            param.add_(torch.rand_like(param) * 1e-3)
    batched = GLNet(arch=dict(arch), batch_weight_casts=True).eval()
    batched.load_state_dict(plain.state_dict())
    return plain, batched


def bf16_forward(model, x):
    """One forward as a test loop runs it: no gradients, a fresh autocast context."""
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        return model(x)


def assert_same_outputs(outputs, others):
    assert len(outputs) == len(others)
    for out, other in zip(outputs, others):
        assert out.dtype == other.dtype and torch.equal(out, other)


@pytest.mark.parametrize('arch', ARCHS.values(), ids=list(ARCHS))
def test_outputs_are_autocasts_with_one_copy_in_place_of_the_weight_casts(arch):
    plain, batched = twins(arch)
    x = torch.randn(2, 3, 64, 64)
    expected = bf16_forward(plain, x)
    data = {name: (param.data_ptr(), param.dtype) for name, param in batched.named_parameters()}
    for _ in range(2):  # the second forward reuses the copies
        with Operators() as ops:
            outputs = bf16_forward(batched, x)
        assert_same_outputs(outputs, expected)
    with Operators() as plain_ops:
        bf16_forward(plain, x)
    cast_only = cast_only_parameters(batched, x.device, torch.bfloat16)
    residuals = sum(type(module) is ResidualDWConv for module in batched.modules())
    # One copy casts the parameters and the folded residual kernels; where there are
    # residual kernels, one copy and one addition fold them in float32.
    assert ops.counts['_foreach_copy_'] == (2 if residuals else 1)
    assert ops.counts['_foreach_add_'] == (1 if residuals else 0)
    assert plain_ops.counts['_to_copy'] - ops.counts['_to_copy'] == len(cast_only) + residuals
    assert plain_ops.counts['add'] - ops.counts['add'] == residuals
    assert len(cast_only) > 0
    assert all(module.folded_kernel is None for module in batched.modules()
               if isinstance(module, ResidualDWConv))
    # The parameters hold their own float32 data again.
    assert {
        name: (param.data_ptr(), param.dtype)
        for name, param in batched.named_parameters()
    } == data


@pytest.mark.parametrize('arch', ARCHS.values(), ids=list(ARCHS))
@pytest.mark.parametrize('impl', ['fast', 'reference'])
def test_the_batched_parameters_are_read_only_through_casts_on_the_cpu_and_on_cuda(arch, impl):
    """GLNet's list against what one forward reads, on the CPU and on CUDA's paths (fake
    tensors): equal in the fast path; in the reference path a part, its LayerNorms and
    depth-wise convolutions left to autocast."""
    model = set_impl(GLNet(arch=dict(arch), batch_weight_casts=False).eval(), impl)
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    names = {id(param): name for name, param in model.named_parameters()}

    def listed(device):
        return {names[id(p)] for p in cast_only_parameters(model, device, torch.bfloat16)}

    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16, cache_enabled=False):
        read = set(parameters_only_cast_to(model, lambda: model(x), torch.bfloat16))
    cpu = listed(x.device)

    fake = FakeCuda()
    fake.module(model)
    fake_x = fake.tensor(x)
    names = {id(param): name for name, param in model.named_parameters()}
    with fake.run(autocast_dtype=torch.bfloat16), torch.no_grad():
        cuda_read = set(parameters_only_cast_to(model, lambda: model(fake_x), torch.bfloat16))
        cuda = listed(fake_x.device)
    assert cpu == cuda
    if impl == 'fast':
        assert cpu == read and cuda == cuda_read
    else:
        assert cpu < read and cuda < cuda_read
        assert not any('norm' in name for name in cpu)


def test_the_copies_follow_weights_written_through_data():
    """An EMA swapped in through ``.data`` (mmengine's EMAHook) bumps no version counter: the
    copies are refreshed at every forward all the same."""
    plain, batched = twins(TINY_ARCH)
    x = torch.randn(1, 3, 64, 64)
    before = bf16_forward(batched, x)
    for model in (plain, batched):
        for param in model.parameters():
            param.data.copy_(param.data * 1.5)
    after = bf16_forward(batched, x)
    assert_same_outputs(after, bf16_forward(plain, x))
    assert not torch.equal(after[-1], before[-1])


@pytest.mark.parametrize('arch', [TINY_ARCH, TINY_STL_ARCH], ids=['g_series', 'stl'])
def test_the_copies_follow_replaced_and_reloaded_parameters(arch):
    plain, batched = twins(arch)
    x = torch.randn(1, 3, 64, 64)
    bf16_forward(batched, x)
    other = GLNet(arch=dict(arch)).eval()
    for model in (plain, batched):  # new Parameter objects
        model.load_state_dict(other.state_dict(), assign=True)
    assert_same_outputs(bf16_forward(batched, x), bf16_forward(plain, x))


def test_modules_switched_to_the_reference_path_keep_autocasts_casts():
    """On CUDA the reference path's LayerNorms run in float32 under autocast: switched after
    a forward, they are no longer given copies (fake CUDA tensors); nor are its residual
    convolutions, which add their shortcut themselves, given folded kernels."""
    fake = FakeCuda()
    model = fake.module(GLNet(arch=dict(TINY_ARCH), batch_weight_casts=True).eval())
    block = model.stages[0].blocks[0]
    seen, folded = [], []
    block.norm1.register_forward_pre_hook(lambda module, args: seen.append(module.weight.dtype))
    block.pos_conv.register_forward_pre_hook(
        lambda module, args: folded.append(module.folded_kernel is not None))
    x = fake.tensor(torch.empty(1, 3, 64, 64))
    for impl in ('fast', 'reference'):
        set_impl(model, impl)
        with fake.run(autocast_dtype=torch.float16), torch.no_grad():
            model(x)
    assert seen == [torch.float16, torch.float32]
    assert folded == [True, False]


def test_copies_made_in_inference_mode_serve_forwards_outside_it():
    plain, batched = twins(TINY_STL_ARCH)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        assert_same_outputs(batched(x), plain(x))
    assert_same_outputs(bf16_forward(batched, x), bf16_forward(plain, x))


def test_the_parameters_get_their_data_back_when_the_forward_fails():
    _, batched = twins(TINY_ARCH)
    data = {name: param.data_ptr() for name, param in batched.named_parameters()}

    def fail(module, args):
        # The copies, while the forward runs.
        assert module.weight.dtype == torch.bfloat16
        assert batched.stages[1].blocks[0].pos_conv.folded_kernel.dtype == torch.bfloat16
        raise RuntimeError('stopped mid-forward')

    conv = batched.stages[1].blocks[0].feature_conv[0]
    conv.register_forward_pre_hook(fail)
    with pytest.raises(RuntimeError, match='stopped mid-forward'):
        bf16_forward(batched, torch.randn(1, 3, 64, 64))
    assert {name: param.data_ptr() for name, param in batched.named_parameters()} == data
    assert {param.dtype for param in batched.parameters()} == {torch.float32}
    residuals = [module for module in batched.modules() if isinstance(module, ResidualDWConv)]
    assert residuals and all(module.folded_kernel is None for module in residuals)


def test_forwards_with_gradients_or_in_float32_keep_their_weights():
    _, batched = twins(TINY_ARCH)
    conv = batched.downsample_layers[0][1]
    seen = []
    conv.register_forward_pre_hook(lambda module, args: seen.append(module.weight.dtype))
    x = torch.randn(1, 3, 64, 64)
    bf16_forward(batched, x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        batched(x)  # gradients recorded
        batched.train()(x)
    with torch.no_grad():
        batched.eval()(x)  # float32
    assert seen == [torch.bfloat16, torch.float32, torch.float32, torch.float32]


def test_compiled_forwards_keep_their_weights(monkeypatch):
    """A compiled graph casts the weights itself (and would guard on their dtype)."""
    compiled = []

    def fake_compile(fn, **kwargs):
        compiled.append(fn)
        return fn

    monkeypatch.setattr(torch, 'compile', fake_compile)
    model = GLNet(
        arch=dict(TINY_ARCH), compile_blocks=True, compile_eval=True,
        batch_weight_casts=True).eval()
    conv = model.downsample_layers[0][1]
    seen = []
    conv.register_forward_pre_hook(lambda module, args: seen.append(module.weight.dtype))
    bf16_forward(model, torch.randn(1, 3, 64, 64))
    assert compiled and seen == [torch.float32]
    model.compile_eval = False
    for stage in model.stages:
        stage.compile_eval = False
    bf16_forward(model, torch.randn(1, 3, 64, 64))
    assert seen == [torch.float32, torch.bfloat16]


def test_the_triton_layer_norms_read_their_float32_weights(monkeypatch):
    model = GLNet(arch=dict(TINY_STL_ARCH), batch_weight_casts=True).eval()
    device = torch.device('cpu')
    norms = {id(m.weight) for m in model.modules() if isinstance(m, glnet_layers.LayerNorm)}
    assert norms and norms <= {id(p) for p in cast_only_parameters(model, device, torch.float16)}
    monkeypatch.setattr(glnet_layers, 'TRITON_LAYER_NORM_DEVICES', frozenset({'cpu'}))
    listed = {id(p) for p in cast_only_parameters(model, device, torch.float16)}
    assert listed and not norms & listed


def test_going_back_to_training_frees_the_copies():
    _, batched = twins(TINY_STL_ARCH)
    bf16_forward(batched, torch.randn(1, 3, 64, 64))
    assert batched.weight_casts._copies
    batched.train()
    assert not batched.weight_casts._copies


def test_glnet_batches_its_weight_casts_by_default():
    """On by default (measured faster on an H200); a config switches it off."""
    x = torch.randn(1, 3, 64, 64)
    for model, expected in [(GLNet(arch=dict(TINY_ARCH)), torch.bfloat16),
                            (GLNet(arch=dict(TINY_ARCH), batch_weight_casts=False), torch.float32)]:
        conv = model.eval().downsample_layers[0][1]
        seen = []
        conv.register_forward_pre_hook(lambda module, args: seen.append(module.weight.dtype))
        bf16_forward(model, x)
        assert seen == [expected]


def test_batch_weight_casts_must_be_a_bool():
    with pytest.raises(TypeError, match="batch_weight_casts='yes' must be True or False"):
        GLNet(arch=dict(TINY_ARCH), batch_weight_casts='yes')


def test_a_forward_nested_in_a_batched_forward_reads_its_copies():
    """One forward at a time swaps the parameters; one that starts meanwhile (nested here,
    as from another thread) reads the copies in place, and leaves them alone."""
    plain, batched = twins(TINY_ARCH)
    x = torch.randn(1, 3, 64, 64)
    data = {name: param.data_ptr() for name, param in batched.named_parameters()}
    nested = []

    def forward_again(module, args):
        if not nested:
            nested.append('started')
            with Operators() as ops:
                nested.append(bf16_forward(batched, x))
            nested.append(ops.counts)

    batched.stages[1].blocks[0].register_forward_pre_hook(forward_again)
    expected = bf16_forward(plain, x)
    assert_same_outputs(bf16_forward(batched, x), expected)
    _, outputs, ops = nested
    assert_same_outputs(outputs, expected)
    assert not ops['_foreach_copy_'] and not ops['_foreach_add_']
    assert {name: param.data_ptr() for name, param in batched.named_parameters()} == data
    assert {param.dtype for param in batched.parameters()} == {torch.float32}


def test_forwards_in_threads_run_one_at_a_time():
    """Batched 16-bit forwards and float32 ones of one model in three threads: each reads
    the weights as its own mode does, and the weights are left as they were."""
    plain, batched = twins(TINY_ARCH)
    x = torch.randn(1, 3, 64, 64)

    def float32_forward(model, x):
        with torch.no_grad():
            return model(x)

    forwards = [bf16_forward, bf16_forward, float32_forward]
    expected = [forward(plain, x) for forward in forwards]
    data = {name: param.data_ptr() for name, param in batched.named_parameters()}
    failures = []

    def run(forward, expected):
        try:
            for _ in range(10):
                outputs = forward(batched, x)
                if not all(torch.equal(a, b) for a, b in zip(outputs, expected)):
                    failures.append(f'{forward.__name__}: other outputs')
        except Exception:  # noqa: B902 (reported by the test, not by the thread)
            failures.append(traceback.format_exc())

    threads = [threading.Thread(target=run, args=args) for args in zip(forwards, expected)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]
    assert {name: param.data_ptr() for name, param in batched.named_parameters()} == data
    assert {param.dtype for param in batched.parameters()} == {torch.float32}


def test_a_deep_copy_batches_its_own_weights_and_a_shallow_copy_none():
    """mmengine's EMA model is a deep copy; ``nn.DataParallel``'s replicas share the
    modules' attributes, as a shallow copy does."""
    plain, batched = twins(TINY_ARCH)
    x = torch.randn(1, 3, 64, 64)
    expected = bf16_forward(plain, x)
    bf16_forward(batched, x)
    data = {name: param.data_ptr() for name, param in batched.named_parameters()}
    for twin, batches in ((copy.deepcopy(batched), True), (copy.copy(batched), False)):
        with Operators() as ops:
            outputs = bf16_forward(twin, x)
        assert_same_outputs(outputs, expected)
        assert (ops.counts['_foreach_copy_'] > 0) == batches
        assert {name: param.data_ptr() for name, param in batched.named_parameters()} == data
    deep = copy.deepcopy(batched)
    assert deep.weight_casts._owner is deep
    assert all(
        module is not batched and module in set(deep.modules())
        for module, _ in deep.weight_casts._candidates)


def test_an_outer_compile_traces_the_whole_forward():
    """``torch.compile`` of the whole model (``fullgraph=True``) traces through the option:
    no lock is taken and nothing swapped while tracing."""
    plain, batched = twins(TINY_ARCH)
    compiled, compiled_plain = (
        torch.compile(model, fullgraph=True, backend='eager') for model in (batched, plain))
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(bf16_forward(compiled, x), bf16_forward(compiled_plain, x))
