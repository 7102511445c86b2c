"""Tests for ``ftn.imageops.imresize`` (MATLAB bicubic) and ``ftn.eval.niqe.niqe``.

imresize is checked against properties that MATLAB's definition implies and against a direct,
non-separable loop implementation of the MATLAB formula written here. NIQE is checked against
BasicSR 1.4.2's values for Set5 from the shared folder (skipped without it); everything else uses
a synthetic pristine model so that it runs anywhere.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ftn import assets
from ftn.eval.niqe import NIQE_PARAMS_ENV, load_params, niqe
from ftn.imageops import imresize

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PARAMS_FILE = SHARED / "metrics" / "niqe_pris_params.npz"
REFERENCE_FILE = SHARED / "metrics" / "niqe_reference.json"


# --------------------------------------------------------------------------------------------
# imresize: a direct reference


def matlab_cubic(x: float) -> float:
    ax = abs(x)
    if ax <= 1:
        return 1.5 * ax**3 - 2.5 * ax**2 + 1
    if ax <= 2:
        return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
    return 0.0


def mirror(j: int, n: int) -> int:
    """1-based index anywhere -> 0-based index in [0, n), MATLAB's symmetric extension."""
    m = (j - 1) % (2 * n)
    return m if m < n else 2 * n - 1 - m


def reference_taps(n_in: int, n_out: int, scale: float, antialiasing: bool) -> list[list[tuple[int, float]]]:
    """Per output pixel: (0-based input index, weight) pairs, straight from MATLAB's formula."""
    widen = antialiasing and scale < 1
    width = 4 / scale if widen else 4.0
    rows = []
    for i in range(1, n_out + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = []
        for k in range(math.ceil(width) + 2):
            j = left + k
            w = scale * matlab_cubic(scale * (u - j)) if widen else matlab_cubic(u - j)
            taps.append((j, w))
        total = sum(w for _, w in taps)
        rows.append([(mirror(j, n_in), w / total) for j, w in taps])
    return rows


def reference_imresize(img: np.ndarray, scale: float, antialiasing: bool = True) -> np.ndarray:
    """Non-separable double sum over both axes' taps, one output pixel at a time (HW only)."""
    h, w = img.shape
    out_h, out_w = math.ceil(h * scale), math.ceil(w * scale)
    rows = reference_taps(h, out_h, scale, antialiasing)
    cols = reference_taps(w, out_w, scale, antialiasing)
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            out[i, j] = sum(wp * wq * img[p, q] for p, wp in rows[i] for q, wq in cols[j])
    return out


# --------------------------------------------------------------------------------------------
# imresize: tests


@pytest.mark.parametrize(
    "shape, scale, expected",
    [
        ((7, 9), 0.5, (4, 5)),
        ((7, 9), 0.25, (2, 3)),
        ((7, 9), 2.0, (14, 18)),
        ((7, 9), 1 / 3, (3, 3)),
        ((7, 9), 3.0, (21, 27)),
        ((7, 9, 3), 0.5, (4, 5, 3)),
        ((1, 1), 2.0, (2, 2)),
    ],
)
def test_imresize_shape_is_ceil(shape: tuple[int, ...], scale: float, expected: tuple[int, ...]) -> None:
    img = np.random.default_rng(0).random(shape)
    assert imresize(img, scale).shape == expected
    chw = torch.from_numpy(img if img.ndim == 3 else img[..., None]).permute(2, 0, 1)
    assert tuple(imresize(chw, scale).shape[-2:]) == expected[:2]


@pytest.mark.parametrize("scale", [0.25, 0.5, 1 / 3, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("antialiasing", [True, False])
def test_imresize_keeps_constant(scale: float, antialiasing: bool) -> None:
    img = np.full((13, 10, 2), 0.37)
    out = imresize(img, scale, antialiasing=antialiasing)
    np.testing.assert_allclose(out, 0.37, atol=1e-12)


@pytest.mark.parametrize("scale, half_support", [(0.5, 4.0), (2.0, 2.0)])
def test_imresize_reproduces_linear_ramp_inside(scale: float, half_support: float) -> None:
    # the kernel is even, so a linear ramp comes out as the sampling position itself (u - 1 for the
    # 0-based ramp) wherever the taps stay off the mirrored border
    n = 40
    ramp = np.tile(np.arange(n, dtype=np.float64), (5, 1))
    out = imresize(ramp, scale)
    u = np.arange(1, out.shape[1] + 1) / scale + 0.5 * (1 - 1 / scale)
    inside = (u - half_support >= 1) & (u + half_support <= n)
    assert inside.sum() >= 5
    np.testing.assert_allclose(out[:, inside], np.broadcast_to(u[inside] - 1, out[:, inside].shape), atol=1e-12)


def test_imresize_scale_one_is_identity() -> None:
    img = np.random.default_rng(1).random((6, 8))
    np.testing.assert_allclose(imresize(img, 1.0), img, atol=1e-15)


@pytest.mark.parametrize(
    "scale, antialiasing",
    [(0.5, True), (0.25, True), (2.0, True), (0.5, False), (1 / 3, True), (3.0, True)],
)
def test_imresize_matches_direct_reference(scale: float, antialiasing: bool) -> None:
    img = np.random.default_rng(2).random((7, 9))
    expected = reference_imresize(img, scale, antialiasing)
    np.testing.assert_allclose(imresize(img, scale, antialiasing=antialiasing), expected, atol=1e-12)


@pytest.mark.parametrize("scale", [0.25, 0.5, 2.0])
def test_imresize_numpy_and_torch_agree(scale: float) -> None:
    hwc = np.random.default_rng(3).random((11, 14, 3))
    expected = imresize(hwc, scale)
    chw = torch.from_numpy(hwc).permute(2, 0, 1)
    got = imresize(chw, scale)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.permute(1, 2, 0).numpy(), expected, atol=1e-12)
    batch = torch.stack([chw, chw.flip(-1)]).float()
    got_batch = imresize(batch, scale)
    assert got_batch.dtype == torch.float32 and got_batch.shape[:2] == (2, 3)
    np.testing.assert_allclose(got_batch[0].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(got_batch[1].numpy(), imresize(chw.flip(-1), scale).numpy(), atol=1e-6)
    # HW numpy in, HW numpy out
    np.testing.assert_allclose(imresize(hwc[..., 1], scale), expected[..., 1], atol=1e-12)


def test_imresize_is_differentiable() -> None:
    x = torch.rand(1, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    imresize(x, 0.5).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    "img, scale, error",
    [
        (np.zeros((4, 4)), 0.0, ValueError),
        (np.zeros((4, 4)), -2.0, ValueError),
        (np.zeros((4, 4, 3, 1)), 0.5, ValueError),
        (torch.zeros(4, 4), 0.5, ValueError),
        (torch.zeros(1, 4, 4, dtype=torch.uint8), 0.5, TypeError),
        ([[0.0]], 0.5, TypeError),
    ],
)
def test_imresize_rejects(img: object, scale: float, error: type[Exception]) -> None:
    with pytest.raises(error):
        imresize(img, scale)  # type: ignore[call-overload]


# --------------------------------------------------------------------------------------------
# NIQE


def synthetic_params() -> dict[str, np.ndarray]:
    """A stand-in pristine model (not the real one): enough to exercise the code anywhere."""
    r = np.arange(7) - 3.0
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * (7 / 6) ** 2))
    rng = np.random.default_rng(4)
    a = rng.normal(size=(36, 36))
    return {
        "mu_pris_param": rng.uniform(0.2, 2.0, size=(1, 36)),
        "cov_pris_param": a @ a.T / 36 + np.eye(36),
        "gaussian_window": g / g.sum(),
    }


def textured_image(h: int = 200, w: int = 230) -> np.ndarray:
    """HWC uint8 with texture, edges and a smooth gradient, so that the features are finite."""
    rng = np.random.default_rng(5)
    noise = rng.normal(size=(h, w, 3))
    for axis in (0, 1):
        noise = (noise + np.roll(noise, 1, axis) + np.roll(noise, -1, axis)) / 3
    yy, xx = np.mgrid[0:h, 0:w]
    base = 120 + 60 * np.sin(xx / 17.0)[..., None] + 0.2 * yy[..., None] + 40 * noise
    base[h // 3 : h // 2, w // 4 : w // 2] += 50
    return np.clip(np.round(base), 0, 255).astype(np.uint8)


def reference_values() -> dict[str, float]:
    if not (REFERENCE_FILE.is_file() and PARAMS_FILE.is_file()):
        pytest.skip(f"NIQE reference or model not found under {SHARED / 'metrics'} (the shared folder)")
    return json.loads(REFERENCE_FILE.read_text())["values"]


SET5 = ["baby", "bird", "butterfly", "head", "woman"]


def set5_image(name: str) -> tuple[np.ndarray, float]:
    key = f"data/test/Set5/{name}_GT.png"
    values = reference_values()
    path = SHARED / key
    if not path.is_file():
        pytest.skip(f"{path} not found (the shared folder)")
    return np.array(Image.open(path).convert("RGB")), values[key]


@pytest.mark.parametrize("name", SET5)
def test_niqe_matches_basicsr_on_set5(name: str) -> None:
    img, expected = set5_image(name)
    assert niqe(img, params=PARAMS_FILE) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("name", ["baby", "butterfly"])
def test_niqe_matlab_precision_close_on_textured_images(name: str) -> None:
    # float64 throughout differs from BasicSR's float32 only where the image has flat regions
    img, expected = set5_image(name)
    assert niqe(img, params=PARAMS_FILE, precision="matlab") == pytest.approx(expected, abs=1e-3)


def test_niqe_default_params_found_from_repository(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    img, expected = set5_image("butterfly")
    monkeypatch.delenv(NIQE_PARAMS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # so that only the repository-relative default can find it
    assert niqe(img) == pytest.approx(expected, abs=1e-3)


def test_niqe_tensor_equals_uint8_array() -> None:
    params = synthetic_params()
    img = textured_image()
    expected = niqe(img, params=params)
    assert math.isfinite(expected)
    tensor = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)
    assert niqe(tensor, params=params) == expected
    assert niqe(tensor[None], params=params) == expected
    assert niqe(img.astype(np.float64), params=params) == expected


def test_niqe_grey_layouts_agree() -> None:
    params = synthetic_params()
    grey = textured_image()[..., 0]
    assert niqe(grey, params=params) == niqe(grey[..., None], params=params)


def test_niqe_crop_border() -> None:
    params = synthetic_params()
    img = textured_image()
    assert niqe(img, params=params, crop_border=5) == niqe(img[5:-5, 5:-5], params=params)


def test_niqe_single_block_is_finite() -> None:
    assert math.isfinite(niqe(textured_image(96, 96), params=synthetic_params()))


def test_niqe_flat_image_is_nan() -> None:
    assert math.isnan(niqe(np.full((100, 100, 3), 128, np.uint8), params=synthetic_params()))


@pytest.mark.parametrize(
    "shape, crop_border",
    [((95, 200, 3), 0), ((200, 95, 3), 0), ((100, 100, 3), 3), ((50, 50), 0)],
)
def test_niqe_too_small_says_minimum(shape: tuple[int, ...], crop_border: int) -> None:
    img = np.zeros(shape, np.uint8)
    with pytest.raises(ValueError, match="at least 96x96"):
        niqe(img, params=synthetic_params(), crop_border=crop_border)


@pytest.mark.parametrize(
    "kwargs",
    [{"block_size": 95}, {"crop_border": -1}, {"precision": "float16"}],
)
def test_niqe_rejects_bad_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        niqe(textured_image(), params=synthetic_params(), **kwargs)  # type: ignore[arg-type]


def test_params_from_file_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    params = synthetic_params()
    path = tmp_path / "model.npz"
    np.savez(path, **params)
    img = textured_image()
    expected = niqe(img, params=params)
    assert niqe(img, params=path) == expected
    monkeypatch.setenv(NIQE_PARAMS_ENV, str(path))
    assert niqe(img) == expected
    loaded = load_params()
    assert loaded["mu_pris_param"].shape == (1, 36)
    assert not loaded["cov_pris_param"].flags.writeable  # cached arrays are shared


def test_params_missing_key() -> None:
    params = synthetic_params()
    del params["gaussian_window"]
    with pytest.raises(KeyError, match="gaussian_window"):
        niqe(textured_image(), params=params)


def test_missing_params_explain_how_to_provide(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    img = textured_image()
    missing = tmp_path / "nowhere.npz"
    with pytest.raises(FileNotFoundError, match=NIQE_PARAMS_ENV) as info:
        niqe(img, params=missing)
    assert "params=" in str(info.value) and str(missing) in str(info.value)

    monkeypatch.setenv(NIQE_PARAMS_ENV, str(missing))
    with pytest.raises(FileNotFoundError, match=NIQE_PARAMS_ENV):
        niqe(img)

    monkeypatch.delenv(NIQE_PARAMS_ENV)
    package = tmp_path / "repo" / "src" / "ftn"  # a source checkout with no ../shared
    package.mkdir(parents=True)
    (tmp_path / "repo" / "pyproject.toml").write_text("")
    monkeypatch.setattr(assets, "_PACKAGE_DIR", package)
    with pytest.raises(FileNotFoundError, match="niqe_pris_params.npz") as info:
        niqe(img)
    assert str(tmp_path / "shared" / "metrics" / "niqe_pris_params.npz") in str(info.value)
