"""Tests for ftn.infer.estimate: blind noise sigma and JPEG quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ftn.infer.estimate import (
    estimate_jpeg_noise_sigma,
    estimate_jpeg_quality,
    estimate_noise_map,
    estimate_noise_sigma,
    ijg_quant_tables,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CBSD68 = SHARED / "data" / "test" / "CBSD68"
needs_cbsd68 = pytest.mark.skipif(not CBSD68.is_dir(), reason=f"test images not found at {CBSD68}")


def cbsd68(n: int, step: int = 17) -> list[Path]:
    return sorted(CBSD68.glob("*.png"))[::step][:n]


def read(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255


def noisy(clean: torch.Tensor, sigma: float, seed: int, *, clip: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y = clean + sigma / 255 * torch.randn(clean.shape, generator=g)
    return ((y.clamp(0, 1) * 255).round() / 255) if clip else y


# -- noise sigma ----------------------------------------------------------------------------------


@needs_cbsd68
@pytest.mark.parametrize("clip", [False, True], ids=["float", "clipped-8bit"])
def test_noise_sigma_on_cbsd68(clip: bool) -> None:
    """Within 15% or 3 units at sigma 15-75, unclipped or saved as 8-bit (clipped: corrected)."""
    for i, path in enumerate(cbsd68(2)):
        clean = read(path)
        for sigma in (15, 25, 50, 75):
            got = estimate_noise_sigma(noisy(clean, sigma, seed=i * 100 + sigma, clip=clip))
            assert abs(got - sigma) <= max(0.15 * sigma, 3.0), (path.name, sigma, got)


@needs_cbsd68
def test_noise_sigma_beats_the_wavelet_reference() -> None:
    """skimage's estimate_sigma (Donoho's wavelet MAD) as the reference: ours is at least as close."""
    pytest.importorskip("pywt")
    from skimage.restoration import estimate_sigma

    ours, theirs = [], []
    for i, path in enumerate(cbsd68(2, step=11)):
        clean = read(path)
        for sigma in (15, 25, 50):
            x = noisy(clean, sigma, seed=7 + i, clip=False)
            ref = float(np.mean(estimate_sigma(x.permute(1, 2, 0).double().numpy(), channel_axis=-1))) * 255
            assert abs(ref - sigma) <= max(0.25 * sigma, 5.0)  # the reference itself is sane
            ours.append(abs(estimate_noise_sigma(x) - sigma))
            theirs.append(abs(ref - sigma))
    assert sum(ours) <= sum(theirs)


def test_noise_sigma_synthetic_grey_and_clean() -> None:
    g = torch.Generator().manual_seed(0)
    low = torch.rand(1, 1, 6, 8, generator=g)
    clean = torch.nn.functional.interpolate(low, size=(96, 128), mode="bicubic", align_corners=False)[0].clamp(0.1, 0.9)
    assert estimate_noise_sigma(clean) < 2.0
    for sigma in (10, 40):
        x = clean + sigma / 255 * torch.randn(clean.shape, generator=g)
        assert abs(estimate_noise_sigma(x) - sigma) <= max(0.15 * sigma, 3.0)
        assert abs(estimate_noise_sigma(x[0]) - sigma) <= max(0.15 * sigma, 3.0)  # (H, W) works too


def test_noise_sigma_is_monotone_in_the_noise() -> None:
    g = torch.Generator().manual_seed(1)
    clean = torch.full((3, 64, 64), 0.5)
    noise = torch.randn(clean.shape, generator=g)
    estimates = [estimate_noise_sigma((clean + s / 255 * noise).clamp(0, 1)) for s in (5, 20, 40, 80)]
    assert estimates == sorted(estimates)


def test_noise_sigma_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="too small"):
        estimate_noise_sigma(torch.rand(3, 4, 40))
    with pytest.raises(ValueError, match="NaN"):
        estimate_noise_sigma(torch.full((1, 16, 16), float("nan")))
    with pytest.raises(ValueError, match="C, H, W"):
        estimate_noise_sigma(torch.rand(1, 1, 3, 16, 16))
    with pytest.raises(TypeError):
        estimate_noise_sigma(np.zeros((3, 16, 16)))  # type: ignore[arg-type]


# -- noise under JPEG -----------------------------------------------------------------------------


def save_jpeg(image: torch.Tensor, path: Path, quality: int) -> Path:
    """``image`` ((C, H, W) in [0, 1]) as 8-bit, saved by Pillow (libjpeg, 4:2:0) at ``quality``."""
    pixels = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(path, quality=quality)
    return path


@needs_cbsd68
@pytest.mark.parametrize("quality", [90, 50, 30])
def test_jpeg_noise_sigma_on_cbsd68(tmp_path: Path, quality: int) -> None:
    """Noisy photos saved as JPEG: the pixels' PCA reads almost nothing; the DCT coefficients read the
    noise from 20% below (clipping) to 12 above (texture, which only adds); the dispatch uses them."""
    for i, path in enumerate(cbsd68(2)):
        clean = read(path)
        for sigma in (15, 30, 50):
            file = save_jpeg(noisy(clean, sigma, seed=i * 10 + sigma, clip=True), tmp_path / f"{i}-{sigma}.jpg", quality)
            decoded = read(file)
            got = estimate_jpeg_noise_sigma(file)
            assert got is not None and 0.8 * sigma <= got <= sigma + 12, (path.name, sigma, quality, got)
            assert estimate_noise_sigma(decoded, jpeg_file=file) == got
            assert estimate_noise_sigma(decoded) < 0.5 * sigma  # why the file is needed at all


@needs_cbsd68
def test_jpeg_noise_sigma_is_monotone_in_the_noise(tmp_path: Path) -> None:
    clean = read(cbsd68(1)[0])
    readings = [estimate_jpeg_noise_sigma(save_jpeg(noisy(clean, s, seed=3, clip=True), tmp_path / f"{s}.jpg", 50))
                for s in (0, 10, 20, 35, 50)]
    assert readings == sorted(readings), readings


def test_jpeg_noise_sigma_grey_file_and_flat_image(tmp_path: Path) -> None:
    """A grey JPEG reads its one channel's sigma (no luma factor); a flat noiseless one reads 0."""
    g = torch.Generator().manual_seed(5)
    flat = torch.full((1, 128, 128), 0.5)
    assert estimate_jpeg_noise_sigma(save_jpeg(flat, tmp_path / "flat.jpg", 75)) == 0.0
    grey = (flat + 20 / 255 * torch.randn(flat.shape, generator=g)).clamp(0, 1)
    got = estimate_jpeg_noise_sigma(save_jpeg(grey, tmp_path / "grey.jpg", 75))
    assert got is not None and abs(got - 20) <= 3.0, got


def test_jpeg_noise_map_tells_two_halves_apart(tmp_path: Path) -> None:
    """Sigma 10 on the left, 40 on the right, saved at quality 70: the file's map reads each half (the
    pixels' map reads almost nothing on either), and a PNG's map is the pixels' map."""
    g = torch.Generator().manual_seed(7)
    low = torch.rand(1, 3, 4, 8, generator=g)
    clean = torch.nn.functional.interpolate(low, size=(256, 512), mode="bicubic", align_corners=False)[0].clamp(0.2, 0.8)
    sigma = torch.cat([torch.full((1, 256, 256), 10.0), torch.full((1, 256, 256), 40.0)], dim=2)
    image = (clean + sigma / 255 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    file = save_jpeg(image, tmp_path / "halves.jpg", 70)
    decoded = read(file)
    got = estimate_noise_map(decoded, jpeg_file=file)
    assert got.shape == (256, 512)
    left, right = float(got[:, :128].median()), float(got[:, -128:].median())
    assert 7 <= left <= 14 and 34 <= right <= 46, (left, right)
    assert float(estimate_noise_map(decoded)[:, -128:].median()) < 20  # what --auto-map read before
    small = image[:, :64, 224:320]
    png = tmp_path / "small.png"
    Image.fromarray((small * 255).round().byte().permute(1, 2, 0).numpy()).save(png)
    assert torch.equal(estimate_noise_map(small, jpeg_file=png), estimate_noise_map(small))


def test_jpeg_noise_sigma_falls_back_to_the_pixels(tmp_path: Path) -> None:
    """Not a JPEG, another size, or too few blocks: None from the file, so the pixels are read."""
    g = torch.Generator().manual_seed(6)
    image = (torch.full((3, 48, 48), 0.5) + 25 / 255 * torch.randn(3, 48, 48, generator=g)).clamp(0, 1)
    png = tmp_path / "x.png"
    Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy()).save(png)
    assert estimate_jpeg_noise_sigma(png) is None
    small = save_jpeg(image, tmp_path / "small.jpg", 95)  # 36 blocks: under the 64 needed
    assert estimate_jpeg_noise_sigma(small) is None
    assert estimate_noise_sigma(image, jpeg_file=png) == estimate_noise_sigma(image)
    big = save_jpeg(torch.rand(3, 96, 96, generator=g), tmp_path / "big.jpg", 95)
    assert estimate_noise_sigma(image, jpeg_file=big) == estimate_noise_sigma(image)  # not this image's file
    with pytest.raises(FileNotFoundError):
        estimate_jpeg_noise_sigma(tmp_path / "missing.jpg")


# -- JPEG quality ---------------------------------------------------------------------------------


def test_ijg_tables_match_libjpeg_reference_values() -> None:
    luma50, chroma50 = ijg_quant_tables(50)
    assert luma50[:8].tolist() == [16, 11, 10, 16, 24, 40, 51, 61] and chroma50[0] == 17
    assert ijg_quant_tables(100)[0].max() == 1
    assert ijg_quant_tables(1)[0].min() == 255 or ijg_quant_tables(1)[0].max() == 255


@pytest.mark.parametrize("quality", [10, 20, 40, 75, 90])
def test_jpeg_quality_recovered(tmp_path: Path, quality: int) -> None:
    paths = cbsd68(2) if CBSD68.is_dir() else []
    images = [Image.open(p).convert("RGB") for p in paths] or [
        Image.fromarray((np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8))
    ]
    for k, im in enumerate(images):
        for mode in ("RGB", "L"):
            path = tmp_path / f"{k}{mode}.jpg"
            im.convert(mode).save(path, quality=quality)
            got = estimate_jpeg_quality(path)
            assert got is not None and abs(got - quality) <= 1, (mode, quality, got)


def test_jpeg_quality_of_other_files(tmp_path: Path) -> None:
    im = Image.fromarray(np.zeros((16, 16, 3), np.uint8))
    im.save(tmp_path / "a.png")
    assert estimate_jpeg_quality(tmp_path / "a.png") is None
    im.save(tmp_path / "png-named.jpg", format="PNG")
    assert estimate_jpeg_quality(tmp_path / "png-named.jpg") is None
    (tmp_path / "text.jpg").write_text("not an image")
    assert estimate_jpeg_quality(tmp_path / "text.jpg") is None
    with pytest.raises(FileNotFoundError):
        estimate_jpeg_quality(tmp_path / "missing.jpg")
