"""Tests for ftn.eval.metrics against scikit-image, on real CBSD68 images where available."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ftn.eval.metrics import psnr, rgb_to_y, ssim, to_uint8

skimage_metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is a test extra")
skimage_color = pytest.importorskip("skimage.color")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CBSD68 = SHARED / "data" / "test" / "CBSD68"


def reference_psnr(a: np.ndarray, b: np.ndarray) -> float:
    return skimage_metrics.peak_signal_noise_ratio(a, b, data_range=255)


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return skimage_metrics.structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=-1 if a.ndim == 3 else None,
    )


def reference_y(rgb_u8: np.ndarray) -> np.ndarray:
    """Luma by scikit-image (same BT.601 studio-swing matrix as BasicSR), HW float64."""
    return skimage_color.rgb2ycbcr(rgb_u8)[..., 0]


def jpeg(image_u8: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image_u8).save(buffer, format="JPEG", quality=quality)
    return np.array(Image.open(buffer))


@functools.cache
def image_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (clean, degraded), HWC uint8: a real photo with sigma-25 noise and with JPEG q=20."""
    if not CBSD68.is_dir():
        pytest.skip(f"CBSD68 not found at {CBSD68} (the shared data folder)")
    # a 200 x 240 crop keeps the reference SSIM fast; odd size on purpose for the crop border
    clean = np.array(Image.open(sorted(CBSD68.glob("*.png"))[3]).convert("RGB"))[:201, :243]
    rng = np.random.default_rng(0)
    noisy = np.clip(np.round(clean + rng.normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)
    return {"noise25": (clean, noisy), "jpeg20": (clean, jpeg(clean, 20))}


def as_tensor(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8.astype(np.float32) / 255).permute(2, 0, 1)


@pytest.mark.parametrize("pair", ["noise25", "jpeg20"])
@pytest.mark.parametrize("y_channel", [False, True])
@pytest.mark.parametrize("crop_border", [0, 4])
@pytest.mark.parametrize("inputs", ["numpy", "tensor"])
def test_against_scikit_image(pair: str, y_channel: bool, crop_border: int, inputs: str) -> None:
    clean, degraded = image_pairs()[pair]
    a, b = clean, degraded
    if y_channel:
        a, b = reference_y(a), reference_y(b)
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    x, y = (clean, degraded) if inputs == "numpy" else (as_tensor(clean), as_tensor(degraded))
    options = {"crop_border": crop_border, "y_channel": y_channel}
    assert psnr(x, y, **options) == pytest.approx(reference_psnr(a, b), abs=1e-6)
    # scikit-image filters the whole image (reflecting at the borders) and then drops a 5-pixel
    # rim of the SSIM map; BasicSR keeps only the valid region, which is the same rim. So the two
    # agree to rounding error (~1e-15 measured), far inside the 1e-3 a border difference would give.
    assert ssim(x, y, **options) == pytest.approx(reference_ssim(a, b), abs=1e-6)


def test_synthetic_against_scikit_image() -> None:
    """Runs without the shared data: a smooth random image and a noisy copy, grey and colour."""
    rng = np.random.default_rng(1)
    low = rng.uniform(0, 255, (8, 10, 3))
    clean = np.round(np.kron(low, np.ones((6, 6, 1)))).astype(np.uint8)  # 48 x 60
    noisy = np.clip(np.round(clean + rng.normal(0, 10, clean.shape)), 0, 255).astype(np.uint8)
    assert psnr(clean, noisy) == pytest.approx(reference_psnr(clean, noisy), abs=1e-6)
    assert ssim(clean, noisy) == pytest.approx(reference_ssim(clean, noisy), abs=1e-6)
    g, h = clean[..., 0], noisy[..., 0]
    assert ssim(g, h) == pytest.approx(reference_ssim(g, h), abs=1e-6)
    # y_channel leaves one-channel images as they are
    assert ssim(g, h, y_channel=True) == ssim(g, h)
    assert psnr(g[..., None], h[..., None], y_channel=True) == psnr(g, h)


def test_identical_and_quantisation() -> None:
    x = torch.rand(3, 20, 24)
    assert psnr(x, x) == float("inf")
    assert ssim(x, x) == pytest.approx(1.0)
    # values are quantised to 8 bits first: differences below half a level do not count
    assert psnr(x, x + 0.4 / 255) == float("inf") or psnr(x, x + 0.4 / 255) > 40
    q = (x * 255).round() / 255
    assert psnr(q, (q + 0.4 / 255).clamp(0, 1)) == float("inf")
    # out-of-range values are clamped, a batch of one is accepted
    assert psnr(x[None], x.clamp(0, 1)) == float("inf")
    assert psnr(torch.full((1, 8, 8), 1.5), torch.ones(1, 8, 8)) == float("inf")
    # one level of difference everywhere: MSE 1 -> 20 log10(255)
    assert psnr(np.zeros((4, 4, 3)), np.ones((4, 4, 3))) == pytest.approx(20 * np.log10(255))


def test_to_uint8_and_rgb_to_y() -> None:
    t = torch.tensor([[[-0.2, 0.0, 0.4 / 255, 1.6 / 255, 1.0, 1.7]]])
    out = to_uint8(t)
    assert out.shape == (1, 6, 1) and out.dtype == np.float64
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 0, 2, 255, 255])  # rounded, clamped
    assert to_uint8(torch.rand(1, 3, 5, 7)).shape == (5, 7, 3)
    colours = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]])
    y = rgb_to_y(colours)
    np.testing.assert_allclose(y[0, :2], [16, 235], atol=1e-3)
    np.testing.assert_allclose(y, reference_y(colours.astype(np.uint8)), atol=1e-9)


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "error"),
    [
        (torch.rand(3, 16, 16), torch.rand(3, 16, 17), {}, ValueError),
        (torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), {}, ValueError),
        (torch.rand(3, 16, 16), torch.rand(3, 16, 16), {"crop_border": 8}, ValueError),
        (torch.rand(3, 16, 16), torch.rand(3, 16, 16), {"crop_border": -1}, ValueError),
        ([1, 2], [1, 2], {}, TypeError),
    ],
)
def test_errors(x, y, kwargs, error) -> None:
    with pytest.raises(error):
        psnr(x, y, **kwargs)
    with pytest.raises(error):
        ssim(x, y, **kwargs)


def test_ssim_needs_a_window() -> None:
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.rand(3, 10, 40), torch.rand(3, 10, 40))
