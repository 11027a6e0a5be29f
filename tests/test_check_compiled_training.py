"""tools/analysis_tools/check_compiled_training.py: compiled training against eager training.

On the CPU with dynamo's ``aot_eager`` backend (tracing and autograd as in real compilation,
no kernels generated); the GPU suite runs it with CUDA graphs.
"""

import pytest

from conftest import load_tool


@pytest.fixture(scope='module')
def check_tool():
    return load_tool('check_compiled_training')


@pytest.mark.parametrize('option', ['compile_backbone', 'compile_blocks'])
def test_compiled_copy_trains_like_the_eager_one(check_tool, capsys, option):
    code = check_tool.main(
        ['--option', option, '--backend', 'aot_eager', '--steps', '2', '--device', 'cpu'])
    output = capsys.readouterr().out
    assert code == 0, output
    assert 'step 2: loss' in output and 'eval forward: outputs' in output
    assert output.rstrip().splitlines()[-1].startswith('OK: largest relative difference')


def test_a_copy_that_returns_stale_outputs_is_caught(check_tool, monkeypatch, capsys):
    """A compiled copy gone wrong, as a CUDA graph whose outputs were not refreshed: from the
    second step on it returns the values of the first (with the gradients of the present)."""
    build_pair = check_tool.build_pair

    def with_stale_outputs(args):
        eager, compiled = build_pair(args)
        forward, first = compiled.forward, []

        def stale_forward(x):
            outputs = forward(x)
            if not first:
                first.extend(out.detach().clone() for out in outputs)
            return tuple(out - out.detach() + kept for out, kept in zip(outputs, first))

        compiled.forward = stale_forward
        return eager, compiled

    monkeypatch.setattr(check_tool, 'build_pair', with_stale_outputs)
    args = check_tool.parse_args(['--backend', 'aot_eager', '--steps', '2', '--device', 'cpu'])
    result = check_tool.compare(args)
    first, second = result['steps']
    # Step 1 is right; from step 2 on the outputs are those of step 1.
    assert first['outputs'][0] == 0 and first['gradients'] == 0
    assert second['outputs'][0] > 1e-3 and not result['ok']
    monkeypatch.setattr(check_tool, 'parse_args', lambda argv: args)
    assert check_tool.main([]) == 1
    assert 'MISMATCH: largest relative difference' in capsys.readouterr().out


def test_accumulated_gradients_are_compared(check_tool, capsys):
    code = check_tool.main(
        ['--backend', 'aot_eager', '--steps', '2', '--accumulate', '1', '2', '--device', 'cpu'])
    output = capsys.readouterr().out
    assert code == 0, output
    assert 'step 1: loss' in output and 'step 2 (2 micro-batches): loss' in output


def test_checkpointed_blocks_are_compared(check_tool, capsys):
    args = check_tool.parse_args(['--backend', 'aot_eager', '--steps', '1', '--with-cp'])
    eager, compiled = check_tool.build_pair(args)
    assert all(stage.with_cp for model in (eager, compiled) for stage in model.stages)
    assert check_tool.main(['--backend', 'aot_eager', '--steps', '1', '--with-cp']) == 0
    assert 'with_cp=True' in capsys.readouterr().out


def test_a_copy_that_loses_earlier_micro_batches_gradients_is_caught(check_tool, monkeypatch):
    """A compiled copy gone wrong, as one whose gradients were overwritten by the next
    CUDA-graph replay: each forward drops the gradients accumulated so far."""
    build_pair = check_tool.build_pair

    def losing_gradients(args):
        eager, compiled = build_pair(args)
        forward = compiled.forward

        def forward_dropping_gradients(x):
            for param in compiled.parameters():
                param.grad = None
            return forward(x)

        compiled.forward = forward_dropping_gradients
        return eager, compiled

    monkeypatch.setattr(check_tool, 'build_pair', losing_gradients)
    args = check_tool.parse_args(
        ['--backend', 'aot_eager', '--steps', '2', '--accumulate', '1', '2', '--device', 'cpu'])
    result = check_tool.compare(args)
    plain, accumulated = result['steps']
    assert plain['micro_batches'] == 1 and plain['gradients'] == 0
    # The outputs of both micro-batches are right; the second step's gradients are not.
    assert accumulated['micro_batches'] == 2 and accumulated['outputs'][0] == 0
    assert accumulated['gradients'] > 0.1 and not result['ok']


def test_bad_arguments_are_refused_with_the_reason(check_tool, capsys):
    with pytest.raises(SystemExit):
        check_tool.parse_args(['--precision', 'fp16', '--device', 'cpu'])
    assert 'fp16 needs --device cuda' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        check_tool.parse_args(['--size', '16', '--device', 'cpu'])
    assert 'at least 32' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        check_tool.parse_args(['--accumulate', '1', '0', '--device', 'cpu'])
    assert '--accumulate must be at least 1' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        check_tool.parse_args(['--arch', '5g', '--device', 'cpu'])
    assert "--arch '5g': choose demo-tiny or one of ['16g', '4g'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        check_tool.parse_args(['--option', 'compile_everything'])
    assert "choose from 'compile_backbone', 'compile_blocks'" in capsys.readouterr().err
    assert check_tool.parse_args(['--precision', 'bf16', '--device', 'cpu']).tolerance == 5e-2
