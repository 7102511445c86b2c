"""Tests for ftn.tasks: the registry, Gaussian noise and JPEG degradations."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ftn.tasks import TASKS, DeJPEG, Denoise, Task, get_task

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CBSD68 = SHARED / "data" / "test" / "CBSD68"


def smooth_image(c: int = 3, h: int = 96, w: int = 128, seed: int = 0) -> torch.Tensor:
    """A photo-like test image (smooth gradients plus an edge), float in [0, 1], 8-bit values."""
    g = torch.Generator().manual_seed(seed)
    low = 0.15 + 0.5 * torch.rand(1, c, 6, 8, generator=g)
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)[0]
    img[:, h // 3 : h // 2, w // 4 :] += 0.2
    return (img.clamp(0, 1) * 255).round() / 255


def real_or_smooth() -> torch.Tensor:
    if CBSD68.is_dir():
        from ftn.data import load_image

        return load_image(sorted(CBSD68.glob("*.png"))[0]).image[:, :128, :160]
    return smooth_image()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a - b) ** 2).mean().item()
    return 10 * np.log10(1 / mse)


def ycbcr(x: torch.Tensor) -> np.ndarray:
    """JPEG full-range YCbCr of an RGB (3, H, W) tensor, 0-255 scale, via Pillow."""
    u8 = (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return np.asarray(Image.fromarray(u8).convert("YCbCr")).astype(np.float64)


# ---------------------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("name", "cls", "level_name", "default_levels", "test_levels"),
    [
        ("denoise", Denoise, "sigma", (20, 80), (20, 30, 40, 50, 60, 70, 80)),
        ("dejpeg", DeJPEG, "quality", (40, 10), (40, 30, 20, 10)),
    ],
)
def test_registry_and_attributes(name, cls, level_name, default_levels, test_levels) -> None:
    assert TASKS[name] is cls
    task = get_task(name)
    assert isinstance(task, Task) and isinstance(task, cls)
    assert (task.name, task.level_name) == (name, level_name)
    assert task.default_levels == default_levels
    assert task.test_levels == test_levels
    assert get_task(task.name, **task.options) == task


def test_get_task_errors() -> None:
    with pytest.raises(ValueError, match="unknown task 'deblur'; known: dejpeg, denoise, restore, sr, style, style-strength"):
        get_task("deblur")
    with pytest.raises(TypeError, match="'colour'"):
        get_task("denoise", colour=True)
    with pytest.raises(TypeError, match="'sigma'"):
        get_task("dejpeg", sigma=3)
    with pytest.raises(ValueError, match="subsampling"):
        get_task("dejpeg", subsampling="4:1:1")


@pytest.mark.parametrize(
    ("task", "level", "label"),
    [
        (Denoise(), 20, "sigma 20"),
        (Denoise(), 12.5, "sigma 12.5"),
        (DeJPEG(), 40, "quality 40"),
        (DeJPEG(), 9.6, "quality 10"),
    ],
)
def test_label(task: Task, level: float, label: str) -> None:
    assert task.label(level) == label


@pytest.mark.parametrize(
    ("task", "level"),
    [(Denoise(), -1), (Denoise(), float("nan")), (DeJPEG(), 0), (DeJPEG(), 101), (DeJPEG(), "x")],
)
def test_bad_levels(task: Task, level: object) -> None:
    with pytest.raises(ValueError):
        task.degrade(torch.zeros(3, 8, 8), level)  # type: ignore[arg-type]


@pytest.mark.parametrize("task", [Denoise(), DeJPEG()])
@pytest.mark.parametrize(
    ("clean", "error"),
    [(torch.zeros(8, 8), ValueError), (torch.zeros(3, 8, 8, dtype=torch.uint8), TypeError)],
)
def test_bad_inputs(task: Task, clean: torch.Tensor, error: type[Exception]) -> None:
    with pytest.raises(error):
        task.degrade(clean, task.default_levels[0])


@pytest.mark.parametrize("task", [Denoise(), DeJPEG(), DeJPEG(y_only=True)])
@pytest.mark.parametrize("shape", [(3, 24, 40), (2, 3, 24, 40), (1, 24, 40), (2, 1, 16, 16)])
def test_shape_dtype_device(task: Task, shape: tuple[int, ...]) -> None:
    clean = torch.rand(shape, dtype=torch.float64)
    out = task.degrade(clean, task.default_levels[1], torch.Generator().manual_seed(0))
    assert out.shape == clean.shape and out.dtype == torch.float32 and out.device == clean.device


# ---------------------------------------------------------------------------------------- denoise


@pytest.mark.parametrize("sigma", [5, 20, 50, 80])
def test_noise_std_is_sigma_over_255(sigma: float) -> None:
    flat = torch.full((3, 128, 128), 0.5)
    noisy = Denoise().degrade(flat, sigma, torch.Generator().manual_seed(1))
    noise = noisy - flat
    assert noise.std().item() == pytest.approx(sigma / 255, rel=0.02)
    assert abs(noise.mean().item()) < 3 * sigma / 255 / 128  # ~3 standard errors


def test_noise_not_clipped_unless_asked() -> None:
    bright = torch.full((1, 64, 64), 0.95)
    g = torch.Generator().manual_seed(0)
    assert Denoise().degrade(bright, 80, g).max() > 1
    clipped = get_task("denoise", clip=True).degrade(bright, 80, torch.Generator().manual_seed(0))
    assert clipped.min() >= 0 and clipped.max() <= 1


def test_photo_true_noise_is_what_an_8bit_file_holds() -> None:
    x = torch.rand(2, 3, 32, 32)
    task = get_task("denoise", clip=True, quantize=True)
    assert task.options == {"clip": True, "quantize": True}
    y = task.degrade(x, 50, torch.Generator().manual_seed(0))
    codes = y * 255
    assert torch.equal(codes, codes.round()) and y.min() >= 0 and y.max() <= 1
    # the same noise as the float setting, then clipped and rounded
    ref = Denoise().degrade(x, 50, torch.Generator().manual_seed(0)).clamp(0, 1)
    assert (y - ref).abs().max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match="quantize=True needs clip=True"):
        Denoise(quantize=True)


def test_noise_uses_the_generator() -> None:
    x = torch.rand(2, 3, 16, 16)
    a = Denoise().degrade(x, 30, torch.Generator().manual_seed(7))
    b = Denoise().degrade(x, 30, torch.Generator().manual_seed(7))
    c = Denoise().degrade(x, 30, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the same draw as torch.randn on the generator: x + sigma/255 * N(0, 1)
    n = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    assert (a - (x + 30 / 255 * n)).abs().max() < 1e-6
    assert torch.equal(Denoise().degrade(x, 0, torch.Generator()), x)


# ---------------------------------------------------------------------------------------- dejpeg


def test_jpeg_matches_pillow_and_is_deterministic() -> None:
    x = real_or_smooth()
    out = DeJPEG().degrade(x, 30)
    assert torch.equal(out, DeJPEG().degrade(x, 30))  # no randomness
    u8 = (x * 255).round().byte().permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(u8).save(buffer, format="JPEG", quality=30)  # Pillow's default is 4:2:0
    expected = torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1) / 255.0
    assert torch.equal(out, expected)
    assert torch.equal(out, DeJPEG().degrade(x, 29.7))  # int(round(q))


def test_jpeg_lower_quality_is_worse() -> None:
    x = real_or_smooth()
    scores = [psnr(DeJPEG().degrade(x, q), x) for q in (90, 40, 30, 20, 10)]
    assert scores == sorted(scores, reverse=True), scores
    assert scores[-1] < scores[0] - 5


def test_jpeg_grey_stays_grey_and_batches_are_per_image() -> None:
    x = real_or_smooth()
    grey = x.mean(0, keepdim=True)
    out = DeJPEG().degrade(grey, 20)
    assert out.shape == grey.shape
    assert torch.equal(out, (out * 255).round() / 255)
    batch = torch.stack([x, x.flip(-1)])
    outs = DeJPEG().degrade(batch, 20)
    assert torch.equal(outs[1], DeJPEG().degrade(x.flip(-1), 20))


def test_jpeg_y_only_keeps_chroma() -> None:
    x = real_or_smooth()
    ref = ycbcr(x)
    out = DeJPEG(y_only=True).degrade(x, 10)
    y_only = ycbcr(out)
    full = ycbcr(DeJPEG().degrade(x, 10))
    chroma_y_only = np.abs(y_only[..., 1:] - ref[..., 1:])
    chroma_full = np.abs(full[..., 1:] - ref[..., 1:])
    # y_only: chroma changes only through the final uint8 rounding of RGB (and Pillow's integer
    # YCbCr conversion used to measure it), a step or two, except where the new luma with the old
    # chroma leaves the RGB cube and is clipped (pixels with a channel at 0 or 255).
    clipped = ((out == 0) | (out == 1)).any(0).numpy()
    assert chroma_y_only.mean() < 0.3 and chroma_y_only[~clipped].max() <= 2
    assert chroma_full.mean() > 3 * chroma_y_only.mean()
    # ... while the luma is degraded about as much as with full-colour JPEG
    luma_err = np.abs(y_only[..., 0] - ref[..., 0]).mean()
    assert luma_err > 1 and luma_err == pytest.approx(np.abs(full[..., 0] - ref[..., 0]).mean(), rel=0.5)
