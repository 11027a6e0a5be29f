"""tools/analysis_tools/memory_traffic.py: bytes of the library calls of one forward."""

import pytest
import torch.nn as nn
import torch.nn.functional as F

from conftest import load_tool


@pytest.fixture(scope='module')
def traffic_tool():
    return load_tool('memory_traffic')


class ConvThenAttention(nn.Module):
    """A 1x1 convolution, a depth-wise 3x3 one, then attention over the pixels (one head)."""

    def __init__(self) -> None:
        super().__init__()
        self.pointwise = nn.Conv2d(3, 8, 1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)

    def forward(self, x):
        x = self.depthwise(self.pointwise(x))
        tokens = x.flatten(2).transpose(1, 2).unsqueeze(1)  # (N, 1, HW, C)
        return F.scaled_dot_product_attention(tokens, tokens, tokens)


def test_each_library_call_counts_its_inputs_and_output_once(traffic_tool):
    rows = traffic_tool.count_traffic(ConvThenAttention(), batch=2, size=10)
    half = 2  # bytes per float16 element
    pixels = 2 * 10 * 10
    pointwise = (pixels * 3 + 8 * 3 + 8 + pixels * 8) * half  # input, weight, bias, output
    depthwise = (pixels * 8 + 8 * 9 + 8 + pixels * 8) * half
    attention = 4 * pixels * 8 * half  # query, key, value, output: no attention matrix
    assert rows == {
        'convolution 1x1': [1, pointwise],
        'depth-wise convolution 3x3': [1, depthwise],
        'attention (fused)': [1, attention],
    }
    # Sorted by bytes, and the products inside the attention are not counted apart.
    assert list(rows) == sorted(rows, key=lambda key: -rows[key][1])


def test_glnet_stl_calls_follow_from_its_blocks(traffic_tool, capsys):
    """GLNet-STL has 10 GLMix blocks (4 pointwise convolutions and a 5x5 depth-wise one
    each, one slot attention) and 2 token attention blocks (linear layers, one attention)."""
    results = traffic_tool.main(['--models', 'glnet_stl', '--batch', '2', '--size', '64'])
    rows = results['glnet_stl']
    assert rows['convolution 1x1'][0] == 40
    assert rows['depth-wise convolution 5x5'][0] == 10
    assert rows['attention (fused)'][0] == 12
    # The stem and the three transitions.
    assert rows['convolution 4x4'][0] == 1 and rows['convolution 2x2'][0] == 3
    assert 'glnet_stl:' in capsys.readouterr().out
    # Twice the batch, twice the activations; the weights are read once per call either way
    # (the attention has none).
    doubled = traffic_tool.main(['--models', 'glnet_stl', '--batch', '4', '--size', '64'])
    for key, (calls, nbytes) in rows.items():
        assert doubled['glnet_stl'][key][0] == calls
        assert nbytes < doubled['glnet_stl'][key][1] <= 2 * nbytes
    assert doubled['glnet_stl']['attention (fused)'][1] == 2 * rows['attention (fused)'][1]
    assert doubled['glnet_stl']['convolution 1x1'][1] < 2 * rows['convolution 1x1'][1]


def test_bad_arguments_name_the_choices(traffic_tool, capsys):
    with pytest.raises(SystemExit):
        traffic_tool.parse_args(['--models', 'glnet_4x'])
    assert 'glnet_4g_reference' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        traffic_tool.parse_args(['--models', 'glnet_4g_compile_backbone'])
    assert 'name the eager model' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        traffic_tool.parse_args(['--batch', '0'])
    assert 'must be positive' in capsys.readouterr().err
