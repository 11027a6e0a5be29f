"""What mmglnet's Triton kernels over rows of channels share: Triton's import, and the tile
of rows that each program takes.

The rows are GLNet's pixels and tokens in the channels-last layout, one pixel's channels
each, contiguous; they are short (64 to 512 channels in GLNet-4G), so a program takes a tile
of several rows (:data:`TILE_ELEMENTS` elements), a few KiB of contiguous memory, where
torch's kernels give a row, or a column, to a block of threads. Users:
:mod:`mmglnet.models.triton_layer_norm`, :mod:`mmglnet.models.triton_bias_grad` and
:mod:`mmglnet.models.triton_bias_gelu`.
"""
from typing import Tuple

try:
    import triton
    import triton.language as tl
except ImportError:  # torch's CPU-only builds come without Triton
    triton = None

# Elements per tile: rows of up to this many channels are tiled several at a time.
TILE_ELEMENTS = 4096


def is_available() -> bool:
    """Whether Triton can be imported here."""
    return triton is not None


if triton is not None:

    @triton.jit
    def row_tile(tile_index, num_rows, CHANNELS: tl.constexpr, BLOCK_CHANNELS: tl.constexpr,
                 ROWS: tl.constexpr):
        """The rows of tile ``tile_index``, its channels, their masks and the elements'
        offsets in a contiguous (num_rows, CHANNELS) matrix."""
        rows = tile_index * ROWS + tl.arange(0, ROWS)
        channels = tl.arange(0, BLOCK_CHANNELS)
        row_mask = rows < num_rows
        channel_mask = channels < CHANNELS
        mask = row_mask[:, None] & channel_mask[None, :]
        offsets = rows[:, None].to(tl.int64) * CHANNELS + channels[None, :]
        return rows, channels, row_mask, channel_mask, mask, offsets


def tile(channels: int) -> Tuple[int, int]:
    """The tile for rows of ``channels``: (``BLOCK_CHANNELS``, the next power of two, and
    ``ROWS``, the rows per tile, :data:`TILE_ELEMENTS` elements in all)."""
    block_channels = 1 << (channels - 1).bit_length()
    return block_channels, max(1, TILE_ELEMENTS // block_channels)
