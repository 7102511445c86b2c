"""Tiled inference (ftn.infer.tiling): the tiles cover the image, the blend is exact where the overlap
exceeds the receptive field, kernels are computed once for all tiles, and the tile size follows memory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ftn
from ftn.infer import tiling
from ftn.infer.apply import apply_model
from ftn.infer.tiling import TilePlan, feather_weights, tiled_forward


class ThreeConvs(nn.Module):
    """Receptive-field radius 3 (three 3x3 convs); with ``scale`` 2 a pixel shuffle at the end."""

    def __init__(self, scale: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 3 * scale * scale, 3, padding=1))
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x))


def _perturbed(model: ftn.TunableModel, seed: int = 0) -> ftn.TunableModel:
    """Move the tuner away from its identity start so alpha changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.tuner_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize(
    "height, width, tile, overlap, align",
    [(100, 100, 32, 8, 1), (97, 131, 40, 16, 2), (64, 64, 64, 8, 1), (50, 300, 48, 20, 4), (33, 200, 16, 0, 1)],
)
def test_plan_covers_the_image_with_aligned_overlapping_tiles(height, width, tile, overlap, align):
    plan = TilePlan(height, width, tile, overlap, align)
    covered = torch.zeros(height, width, dtype=torch.int32)
    for top, left, bottom, right in plan.boxes():
        assert top % align == 0 and left % align == 0
        assert bottom - top >= min(tile, height) and right - left >= min(tile, width)
        covered[top:bottom, left:right] += 1
    assert covered.min() >= 1
    for spans in (plan.rows, plan.cols):
        assert spans[-1][1] in (height, width)
        for (_, end), (start, _) in zip(spans[:-1], spans[1:]):
            assert end - start >= overlap


def test_plan_rejects_bad_sizes():
    with pytest.raises(ValueError, match="overlap"):
        TilePlan(100, 100, 32, 32)
    with pytest.raises(ValueError, match="multiple"):
        TilePlan(100, 100, 30, 8, align=4)


@pytest.mark.parametrize("feather", [0, 4, 8])
def test_feather_weights_cover_every_pixel(feather):
    plan = TilePlan(70, 90, 32, 12, 2)
    total = torch.zeros(70 * 2, 90 * 2)
    for box in plan.boxes():
        top, left, bottom, right = box
        total[top * 2:bottom * 2, left * 2:right * 2] += feather_weights(plan, box, feather, scale=2)
    assert total.min() > 0


METHODS = [("ftn", {"groups": 1}), ("dni", {}), ("adafm", {"kernel_size": 3}), ("cfsnet", {}), ("dynamic_net", {})]


@pytest.mark.parametrize("method, options", METHODS[:3])
@pytest.mark.parametrize("scale", [1, 2])
def test_tiled_equals_untiled_where_overlap_exceeds_receptive_field(method, options, scale):
    torch.manual_seed(0)
    model = _perturbed(ftn.attach(ThreeConvs(scale), method, **options))
    x = torch.rand(1, 3, 70, 83)
    alpha_map = torch.rand(1, 1, 70, 83)
    for alpha in (0.0, 0.6, alpha_map):
        with torch.inference_mode():
            whole = model(x, alpha=alpha)
            # radius 3 (6 with AdaFM's 3x3 depth-wise convs) <= (overlap - feather) / 2 = (24 - 8) / 2
            tiled = tiled_forward(lambda t, a, alpha=alpha: model(t, alpha=alpha if a is None else a), x, tile=40, overlap=24,
                                  feather=8, scale=scale, alpha_map=alpha if isinstance(alpha, torch.Tensor) else None)
        assert tiled.shape == whole.shape
        torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_too_small_an_overlap_shows_seams():
    """The check above can fail: cut below the receptive field, tiles differ from the whole image."""
    torch.manual_seed(0)
    model = _perturbed(ftn.attach(ThreeConvs(), "ftn"))
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        whole = model(x, alpha=0.5)
        tiled = tiled_forward(lambda t, a: model(t, alpha=0.5), x, tile=24, overlap=4, feather=2)
    assert (tiled - whole).abs().max() > 1e-3


def test_apply_model_tiles_a_stride_two_network_exactly():
    """Mini AdaFM-Net samples down by 2: tiles start on even pixels, so the tiled result is the whole one."""
    torch.manual_seed(0)
    net = ftn.build_arch("adafm_net", size="mini", blocks=1)
    model = _perturbed(ftn.attach(net, "ftn", groups=4))
    image = torch.rand(3, 90, 110)
    whole = apply_model(model, image, alpha=0.7)
    # receptive-field radius about 12 input pixels <= (overlap - overlap // 2) / 2 = 14
    tiled = apply_model(model, image, alpha=0.7, tile=64, overlap=56)
    torch.testing.assert_close(tiled, whole, atol=1e-4, rtol=0)


def test_kernels_are_computed_once_for_all_tiles(monkeypatch):
    from ftn.methods.ftn import FTNConv2d

    model = _perturbed(ftn.attach(ThreeConvs(), "ftn"))
    calls = []
    original = FTNConv2d.kernel_at
    monkeypatch.setattr(FTNConv2d, "kernel_at", lambda self, a: calls.append(a) or original(self, a))
    progress = []
    apply_model(model, torch.rand(3, 80, 80), alpha=0.3, tile=32, overlap=8, progress=lambda d, n: progress.append((d, n)))
    assert len(progress) > 4 and progress[-1][0] == progress[-1][1]
    assert len(calls) == len(list(model.tunable_layers()))  # once per layer, not once per tile


def test_auto_tile_size_follows_free_memory(monkeypatch):
    model = ftn.attach(ThreeConvs(), "ftn").eval()
    sizes = []
    for free in (1 << 24, 1 << 27, 1 << 30):
        monkeypatch.setattr(tiling, "available_memory", lambda device, free=free: free)
        sizes.append(tiling.auto_tile_size(model, 3, torch.device("cpu")))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert all(s % 16 == 0 and 128 <= s <= 2048 for s in sizes)


def test_auto_tiles_only_images_larger_than_memory_allows(monkeypatch):
    torch.manual_seed(0)
    model = _perturbed(ftn.attach(ThreeConvs(), "dni"))
    image = torch.rand(3, 300, 260)
    monkeypatch.setattr(tiling, "available_memory", lambda device: 1 << 20)  # forces the smallest tiles
    done = []
    tiled = apply_model(model, image, alpha=0.4, tile="auto", progress=lambda d, n: done.append(n))
    assert done and done[-1] > 1
    torch.testing.assert_close(tiled, apply_model(model, image, alpha=0.4), atol=1e-5, rtol=0)


def test_instance_norm_networks_are_flagged():
    assert tiling.normalises_globally(ftn.build_arch("transform_net", size="mini"))
    assert not tiling.normalises_globally(ThreeConvs())


def test_out_of_memory_halves_the_tile_and_retries():
    """On CUDA an out-of-memory error halves the tile (simulated here: the model refuses inputs over 64 px)."""
    torch.manual_seed(0)
    model = _perturbed(ftn.attach(ThreeConvs(), "ftn"))
    original = model.forward
    seen = []

    def limited(x, alpha=None):
        seen.append(x.shape[-1])
        if x.shape[-1] > 64:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(x, alpha=alpha)

    model.forward = limited
    notes = []
    image = torch.rand(3, 100, 200)
    out = apply_model(model, image, alpha=0.5, tile=256, overlap=16, log=notes.append)
    assert any("retrying with tiles of" in n for n in notes)
    assert max(seen[-3:]) <= 64
    model.forward = original
    torch.testing.assert_close(out, apply_model(model, image, alpha=0.5), atol=1e-5, rtol=0)


def test_auto_tile_size_sees_through_tunable_layers(monkeypatch):
    """Tunable layers run their conv's kernel themselves: the memory probe must still see the widths."""
    monkeypatch.setattr(tiling, "available_memory", lambda device: 1 << 26)
    net = ftn.build_arch("adafm_net", size="mini", blocks=1)
    plain = tiling.auto_tile_size(net, 3, torch.device("cpu"))
    for method in ("ftn", "dni", "adafm"):
        model = ftn.attach(ftn.build_arch("adafm_net", size="mini", blocks=1), method).eval()
        assert tiling.auto_tile_size(model, 3, torch.device("cpu")) == plain

