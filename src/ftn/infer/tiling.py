"""Large images: tiled inference with overlapping, feathered tiles, and a tile size chosen from memory.

A convolutional network's output pixel depends only on the input pixels within its receptive-field
radius ``r``. So an image can be cut into tiles that overlap by ``overlap`` input pixels, each run on
its own, and the tile outputs put back together: inside the overlap of two neighbours, each tile's
outer ``(overlap - feather) / 2`` pixels are discarded (there the tile saw its own edge, not the
image), and across the ``feather`` pixels in the middle the two are cross-faded linearly so no seam
shows where they differ slightly. The result equals the untiled output (up to float rounding) where
``r <= (overlap - feather) / 2``; beyond that, tiles differ from the whole-image result only through
pixels near their edges, which the fade hides. Networks that normalise over the whole image
(instance norm, as in Transform-Net) see different statistics in every tile, so they are never exact.

Tiles run one at a time (the memory of one tile, not the image), at a fixed alpha through the
model's kernel cache: the blended kernels are computed once for all tiles. A per-pixel alpha map is
cut like the image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["TilePlan", "feather_weights", "tiled_forward", "available_memory", "auto_tile_size",
           "normalises_globally"]

#: How many activations of the widest layer's size are alive at once: its input and output, a
#: concatenation or skip beside them, the allocator's slack. Chosen to err on the safe side;
#: benchmarks/tiling.py measures the outcome (docs/tiling.md: 4 automatic tiles of a 4000x3000
#: photo peaked at 2.4 GB, about half of what this factor budgets).
_LIVE_FACTOR = 6


class TilePlan:
    """The tiles of an ``height x width`` input: side ``tile``, sharing at least ``overlap`` pixels.

    Tile starts are multiples of ``align`` (a network that samples down by 2 sees the same grid in
    every tile only then); the last tile on each axis runs to the image edge, so it may be up to
    ``align - 1`` pixels longer than ``tile``.
    """

    def __init__(self, height: int, width: int, tile: int, overlap: int, align: int = 1) -> None:
        if tile <= 0 or align <= 0:
            raise ValueError(f"tile size and alignment must be positive, got {tile} and {align}")
        if not 0 <= overlap < tile:
            raise ValueError(f"overlap must be in [0, tile size), got {overlap} for tiles of {tile}")
        if tile % align:
            raise ValueError(f"tile size {tile} must be a multiple of the network's alignment {align}")
        self.height, self.width, self.tile, self.overlap, self.align = height, width, tile, overlap, align
        self.rows = self._spans(height)
        self.cols = self._spans(width)

    def _spans(self, size: int) -> list[tuple[int, int]]:
        """``(start, end)`` of the tiles along one axis."""
        if size <= self.tile:
            return [(0, size)]
        step = self.tile - self.overlap
        count = math.ceil((size - self.tile) / step) + 1
        while True:
            # spread evenly, so the last tile ends at the edge, then align the starts down
            starts = [round(i * (size - self.tile) / (count - 1)) // self.align * self.align for i in range(count)]
            ends = [s + self.tile for s in starts[:-1]] + [size]
            if all(e - s >= self.overlap for e, s in zip(ends[:-1], starts[1:])):
                return list(zip(starts, ends))
            count += 1  # alignment shrank an overlap below the minimum: one tile more

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def boxes(self) -> list[tuple[int, int, int, int]]:
        """``(top, left, bottom, right)`` of every tile, row by row."""
        return [(top, left, bottom, right) for top, bottom in self.rows for left, right in self.cols]


def _ramp(length: int, start_cut: int, end_cut: int, feather: int) -> Tensor:
    """1-D weights: 0 over the cut borders, a linear fade of ``feather`` pixels, 1 in the middle."""
    pos = torch.arange(length, dtype=torch.float64)
    w = torch.ones(length, dtype=torch.float64)
    for cut, at_end in ((start_cut, False), (end_cut, True)):
        if cut < 0:  # an image border: no neighbour, full weight
            continue
        if feather > 0:  # 0 before ``cut``, rising to 1 at ``cut + feather`` (pixel centres)
            edge = ((pos - cut + 0.5) / feather).clamp(0.0, 1.0)
        else:
            edge = (pos >= cut).to(torch.float64)
        w = w * (edge.flip(0) if at_end else edge)
    return w


def _cut(overlap: int, feather: int) -> int:
    """Input pixels at a tile's side that are dropped: half of what the fade leaves of the overlap."""
    return max(0, (overlap - feather) // 2)


def feather_weights(plan: TilePlan, box: tuple[int, int, int, int], feather: int, scale: int = 1) -> Tensor:
    """The (h, w) blending weight of one tile's output (output pixels, ``scale`` x the input box).

    Along each side that borders another tile, the outer ``(overlap - feather) / 2`` pixels get weight
    0 and the next ``feather`` pixels fade in; image borders keep full weight.
    """
    top, left, bottom, right = box
    axes = []
    for lo, hi, spans in ((top, bottom, plan.rows), (left, right, plan.cols)):
        i = spans.index((lo, hi))
        # overlap with the neighbour on each side, in input pixels; -1: an image border
        start_cut = _cut(spans[i - 1][1] - lo, feather) * scale if i > 0 else -1
        end_cut = _cut(hi - spans[i + 1][0], feather) * scale if i + 1 < len(spans) else -1
        axes.append(_ramp((hi - lo) * scale, start_cut, end_cut, feather * scale))
    return (axes[0][:, None] * axes[1][None, :]).to(torch.float32)


def tiled_forward(
    run: Callable[[Tensor, Tensor | None], Tensor],
    image: Tensor,
    *,
    tile: int,
    overlap: int,
    feather: int | None = None,
    scale: int = 1,
    align: int = 1,
    alpha_map: Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Run ``run(tile_image, tile_alpha_map)`` tile by tile over an (N, C, H, W) ``image`` and blend.

    Args:
        run: the network on one tile; returns (1, C', h * scale, w * scale).
        image: the whole input (N images of one size share the tiles).
        tile: tile side in input pixels.
        overlap: input pixels shared by neighbouring tiles.
        feather: width of the cross-fade inside each overlap (default ``overlap // 2``); the result is
            exact where the receptive-field radius is at most ``(overlap - feather) / 2``.
        scale: output pixels per input pixel (super-resolution).
        align: tile starts are multiples of this (the network's down-sampling factor).
        alpha_map: optional (1, 1, H, W) per-pixel alpha, cut like the image.
        progress: called with ``(tiles done, tiles in all)`` after every tile.

    The output lives on the image's device; one tile's activations are alive at a time.
    """
    if image.dim() != 4:
        raise ValueError(f"tiled_forward takes images (N, C, H, W), got {tuple(image.shape)}")
    feather = overlap // 2 if feather is None else int(feather)
    if not 0 <= feather <= overlap:
        raise ValueError(f"feather must be in [0, overlap], got {feather} for an overlap of {overlap}")
    _, _, height, width = image.shape
    plan = TilePlan(height, width, tile, overlap, align)
    out: Tensor | None = None
    weight_sum = torch.zeros(1, 1, height * scale, width * scale, device=image.device)
    for done, box in enumerate(plan.boxes(), start=1):
        top, left, bottom, right = box
        piece = image[:, :, top:bottom, left:right]
        amap = None if alpha_map is None else alpha_map[:, :, top:bottom, left:right]
        y = run(piece, amap)
        expected = ((bottom - top) * scale, (right - left) * scale)
        if tuple(y.shape[-2:]) != expected:
            raise ValueError(f"the network returned a {tuple(y.shape[-2:])} tile for a {expected} one; check the scale")
        if out is None:
            out = torch.zeros(image.shape[0], y.shape[1], height * scale, width * scale, device=image.device, dtype=y.dtype)
        w = feather_weights(plan, box, feather, scale).to(device=image.device, dtype=y.dtype)
        region = (slice(None), slice(None), slice(top * scale, bottom * scale), slice(left * scale, right * scale))
        out[region] += y.to(image.device) * w
        weight_sum[region] += w
        if progress is not None:
            progress(done, len(plan))
    assert out is not None
    return out / weight_sum.clamp_min(1e-12).to(out.dtype)


def normalises_globally(network: nn.Module) -> bool:
    """True when a layer normalises over the whole image (instance / group / layer norm), so tiles
    change the result and tiling is only an approximation."""
    kinds = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm)
    return any(isinstance(m, kinds) for m in network.modules())


def available_memory(device: torch.device) -> int:
    """Bytes free for activations on ``device``: CUDA's free memory, else the system's available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2 << 30  # an unknown system: assume 2 GiB


def _activation_per_pixel(network: nn.Module, channels: int, device: torch.device, dtype: torch.dtype) -> float:
    """The largest module output, in elements per input pixel, seen on a small probe forward.

    Every module is hooked, not only ``nn.Conv2d``: a tunable layer runs its conv's kernel itself
    (``_conv_forward``), so the conv's own hook never fires; the wrapper's does.
    """
    side = 64
    largest = [float(channels)]

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, Tensor) and output.dim() == 4:
            largest.append(output[0].numel() / (side * side))

    handles = [m.register_forward_hook(hook) for m in network.modules()]
    try:
        with torch.inference_mode():
            network(torch.zeros(1, channels, side, side, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    return max(largest)


def auto_tile_size(
    network: nn.Module,
    channels: int,
    device: torch.device,
    *,
    budget: float = 0.5,
    multiple: int = 16,
    smallest: int = 128,
    largest: int = 2048,
) -> int:
    """A tile side whose activations fit in ``budget`` x the free memory of ``device``.

    The memory a forward needs per input pixel is estimated from the widest layer output of a 64x64
    probe forward, times a safety factor for what is alive at once (``_LIVE_FACTOR``). The side is
    rounded down to ``multiple`` and kept in [``smallest``, ``largest``].
    """
    param = next(iter(network.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    per_pixel = _activation_per_pixel(network, channels, device, dtype)
    bytes_per_pixel = per_pixel * torch.finfo(dtype).bits / 8 * _LIVE_FACTOR
    side = math.isqrt(int(available_memory(device) * budget / bytes_per_pixel))
    return max(smallest, min(largest, side // multiple * multiple))
