"""DnCNN as an ftn architecture, and the published DnCNN-PyTorch files read by ftn.load_base.

The published files (../shared/thirdparty/dncnn-pytorch beside the checkout) are never shipped; the
tests that read them skip where they are absent. Denoising CBSD68 crops (grey, ITU-R 601 luma,
unclipped sigma-25 noise) with DnCNN-S-25 proves the layout, the BatchNorm statistics and the
residual sign are right: any of them wrong and the output is worse than the noisy input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ftn
from ftn.archs import DnCNN, build_arch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DNCNN_DIR = SHARED / "thirdparty" / "dncnn-pytorch"
CBSD68 = SHARED / "data" / "test" / "CBSD68"
FILES = {"DnCNN-S-15.pth": 17, "DnCNN-S-25.pth": 17, "DnCNN-S-50.pth": 17, "DnCNN-B.pth": 20}
needs_files = pytest.mark.skipif(
    not (DNCNN_DIR.is_dir() and CBSD68.is_dir()),
    reason=f"published DnCNN files or CBSD68 not found under {SHARED} (never shipped; see its README.md)",
)


@pytest.mark.parametrize(
    ("options", "convs", "bns"),
    [({}, 17, 15), ({"depth": 20}, 20, 18), ({"size": "mini"}, 6, 4), ({"depth": 2, "channels": 8}, 2, 0)],
)
def test_layout_matches_the_published_keys(options: dict, convs: int, bns: int) -> None:
    net = DnCNN(**options)
    keys = list(net.state_dict())
    weights = [k for k in keys if net.state_dict()[k].dim() == 4]
    assert len(weights) == convs
    assert sum(k.endswith("running_mean") for k in keys) == bns
    assert all(m.bias is None for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert keys[0] == "dncnn.0.weight" and weights[-1] == f"dncnn.{3 * (convs - 1) - 1}.weight"


@pytest.mark.parametrize(
    ("options", "message"),
    [({"depth": 1}, "depth"), ({"in_channels": 3, "out_channels": 1}, "in_channels"), ({"size": "huge"}, "size")],
)
def test_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DnCNN(**options)


def test_output_is_input_minus_predicted_noise() -> None:
    torch.manual_seed(0)
    net = DnCNN("mini").eval()
    x = torch.rand(2, 1, 12, 10)
    assert torch.equal(net(x), x - net.dncnn(x))
    rebuilt = build_arch("dncnn", **net.arch_options)
    rebuilt.load_state_dict(net.state_dict(), strict=True)


@pytest.mark.parametrize("method", ["cfsnet", "dynamic_net"])
def test_block_pattern_picks_the_middle_convs(method: str) -> None:
    net = DnCNN(depth=5, channels=8)
    model = ftn.attach(net, method)
    assert model.target_names == ["dncnn.2", "dncnn.5", "dncnn.8"]


@needs_files
@pytest.mark.parametrize(("name", "depth"), sorted(FILES.items()))
def test_every_published_file_loads(name: str, depth: int) -> None:
    state = torch.load(DNCNN_DIR / name, map_location="cpu", weights_only=True)
    assert all(k.startswith("module.dncnn.") for k in state)
    net = ftn.load_base(DNCNN_DIR / name)
    assert isinstance(net, DnCNN) and not net.training
    assert net.arch_options["depth"] == depth and net.arch_options["channels"] == 64
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k.removeprefix("module.")], v) for k, v in state.items())


def _grey_crops() -> torch.Tensor:
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R BT.601
    crops = []
    for name in ("101085.png", "101087.png", "102061.png"):
        rgb = np.array(Image.open(CBSD68 / name).convert("RGB"), dtype=np.float32) / 255
        crops.append((torch.from_numpy(rgb).permute(2, 0, 1)[None] * luma).sum(1, keepdim=True)[..., :160, :160])
    return torch.cat(crops)


def _psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    mse = ((x.clamp(0, 1) - ref) ** 2).flatten(1).mean(1)
    return float((10 * torch.log10(1 / mse)).mean())


@needs_files
def test_dncnn_s25_denoises_sigma_25() -> None:
    # Measured (160x160 crops, seed 0): noisy 20.2 dB; S-25 31.7, S-50 28.5, S-15 24.8 dB.
    clean = _grey_crops()
    noisy = clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)) * 25 / 255
    psnr = {}
    with torch.no_grad():
        for level in (15, 25, 50):
            psnr[level] = _psnr(ftn.load_base(DNCNN_DIR / f"DnCNN-S-{level}.pth")(noisy), clean)
    before = _psnr(noisy, clean)
    assert psnr[25] > before + 10, (before, psnr)
    assert psnr[25] > max(psnr[15], psnr[50]) + 2, psnr  # the model of the right level is the best


def test_load_base_recognises_a_dataparallel_file_without_bn_counters(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = DnCNN(depth=5, channels=8, in_channels=3, out_channels=3)
    state = {f"module.{k}": v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "dncnn.pth")
    loaded = ftn.load_base(tmp_path / "dncnn.pth")
    assert isinstance(loaded, DnCNN) and not loaded.training
    assert loaded.arch_options == {**net.arch_options}
    x = torch.rand(1, 3, 9, 7)
    assert torch.equal(loaded(x), net.eval()(x))


@needs_files
@pytest.mark.parametrize("method", ["ftn", "dni", "adafm"])
def test_stage_two_on_the_published_dncnn_keeps_alpha_zero_exact(method: str) -> None:
    """A few stage-2 steps on DnCNN-S-25 in training mode: its BatchNorm statistics do not drift, so
    alpha 0 (and the export at 0) is still the published network bit for bit."""
    path = DNCNN_DIR / "DnCNN-S-25.pth"
    reference = ftn.load_base(path)
    model = ftn.attach(ftn.load_base(path), method).freeze_base().train()
    clean = _grey_crops()[:2, :, :24, :24]
    noisy = clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(1)) * 50 / 255
    optimiser = torch.optim.Adam(model.tuner_parameters(), lr=1e-3)
    for _ in range(2):
        loss = (model(noisy, alpha=1.0) - clean).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        expected = reference(noisy)
        assert torch.equal(model(noisy, alpha=0.0), expected)
        assert torch.equal(model.export(0.0)(noisy), expected)
        assert not torch.equal(model(noisy, alpha=1.0), expected)
