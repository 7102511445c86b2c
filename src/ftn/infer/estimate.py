"""Blind estimates of an image's degradation level, for ``ftn run --auto``.

* :func:`estimate_noise_sigma` -- the standard deviation of additive white Gaussian noise, on the
  0-255 scale, from the image alone. It is the PCA estimator of Chen, Zhu and Heng, "An Efficient
  Statistical Method for Image Noise Level Estimation" (ICCV 2015): the covariance of the image's
  patches has a few large eigenvalues carried by the picture and a bulk carried by the noise alone;
  the bulk is the largest set of smallest eigenvalues whose mean equals their median, and its mean
  is sigma^2. Texture barely moves it (the wavelet median-absolute-deviation estimate reads sigma 15
  noise on CBSD68 as 16-21; this one as 14.8-15.0).

  Noisy images stored as files are clipped to [0, 1], which removes noise near black and white:
  sigma 75 noise on CBSD68 keeps an effective sigma of about 61. The estimate is corrected for that
  by modelling each pixel as clip(mu + sigma z): the local mean gives mu, and sigma is solved so that
  the mean variance of the clipped noise equals the measured one (sigma 75 then reads 71-75).

  A JPEG file's pixels hide their noise from it: quantisation zeroes the high frequencies where the
  noise bulk lies, so sigma 30 noise saved at quality 90 reads about 1. Given the file
  (``jpeg_file=``), the noise is read instead from the file's own DCT coefficients, where the
  quantisation step of each is known (:func:`estimate_jpeg_noise_sigma`).

* :func:`estimate_noise_map` -- the same estimate region by region, for photos whose noise differs
  across the frame (shadows against sky, a crop of two exposures): one value per block, interpolated
  to every pixel. It becomes a per-pixel alpha map for a model's sigma axis (``ftn run --auto-map``).

* :func:`estimate_jpeg_quality` -- the IJG quality (1-100) a JPEG file was saved at, read from its
  quantisation tables: the one whose scaled standard tables are nearest.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["estimate_noise_sigma", "estimate_noise_map", "estimate_jpeg_noise_sigma", "estimate_jpeg_quality", "ijg_quant_tables"]

_PATCH = 8  # patch side of the PCA estimator (the paper's choice)
_MAX_PATCHES = 20_000  # patches sampled on a regular grid; enough for a stable 192 x 192 covariance


def _pca_sigma(x: Tensor, patch: int) -> float:
    """Chen et al. 2015 on a (C, H, W) float64 image in its own units."""
    c, h, w = x.shape
    dim = c * patch * patch
    positions = (h - patch + 1) * (w - patch + 1)
    stride = max(1, math.ceil(math.sqrt(positions / _MAX_PATCHES)))
    patches = F.unfold(x[None], patch, stride=stride)[0]  # (dim, N)
    patches = patches - patches.mean(dim=1, keepdim=True)
    cov = patches @ patches.T / patches.shape[1]
    # numpy's LAPACK call: torch's threads make this small (192 x 192) problem 100x slower on a busy CPU
    eig = np.linalg.eigvalsh(cov.numpy())  # ascending
    # The largest m whose m smallest eigenvalues have as many above their mean as below it (mean ==
    # median), for every m at once: the tail eig[:m] is sorted, so counts are binary searches.
    m = np.arange(1, dim + 1)
    means = np.cumsum(eig) / m
    below = np.minimum(np.searchsorted(eig, means, side="left"), m)
    above = m - np.minimum(np.searchsorted(eig, means, side="right"), m)
    best = int(np.nonzero(below == above)[0][-1])  # m = 1 always qualifies
    return math.sqrt(max(float(means[best]), 0.0))


_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


def _clipped_moments(mu: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of clip(mu + sigma z, 0, 1) with z standard normal."""
    def erf_v(v: np.ndarray) -> np.ndarray:  # vectorised (the noise map calls this for every block)
        return torch.special.erf(torch.from_numpy(np.asarray(v, dtype=np.float64))).numpy()

    a = (0.0 - mu) / sigma
    b = (1.0 - mu) / sigma
    cdf_a, cdf_b = 0.5 * (1 + erf_v(a / _SQRT2)), 0.5 * (1 + erf_v(b / _SQRT2))
    pdf_a, pdf_b = np.exp(-0.5 * a * a) / _SQRT2PI, np.exp(-0.5 * b * b) / _SQRT2PI
    inside = cdf_b - cdf_a
    above = 1.0 - cdf_b
    m1 = mu * inside + sigma * (pdf_a - pdf_b) + above
    m2 = mu * mu * inside + 2 * mu * sigma * (pdf_a - pdf_b) + sigma * sigma * (inside + a * pdf_a - b * pdf_b) + above
    return m1, np.maximum(m2 - m1 * m1, 0.0)


def _clip_corrected(x: Tensor, measured: float) -> float:
    """sigma of the noise before clipping to [0, 1], given the ``measured`` sigma of what is left."""
    k = 7
    pad = k // 2
    local = F.avg_pool2d(F.pad(x[None], (pad, pad, pad, pad), mode="replicate"), k, stride=1)[0]
    # The local means as a histogram: the mean variance is then a weighted sum over 1024 bins.
    bins = 1024
    counts = torch.histc(local.clamp(0, 1).flatten(), bins=bins, min=0.0, max=1.0).double().numpy()
    centres = (np.arange(bins) + 0.5) / bins
    centres[0], centres[-1] = 0.0, 1.0  # saturated pixels land in the end bins
    weights = counts / counts.sum()

    def clipped_sigma(sigma: float) -> float:
        grid = np.linspace(-5 * sigma, 1 + 5 * sigma, 1001)
        mean, var = _clipped_moments(grid, sigma)
        mu = np.interp(centres, mean, grid)  # invert the (monotone) mean to the pre-clip value
        return math.sqrt(float(np.dot(weights, np.interp(mu, grid, var))))

    low = high = measured
    if clipped_sigma(high) >= measured * 0.999:
        return measured  # hardly anything clipped
    while clipped_sigma(high) < measured:
        high *= 1.25
        if high > 10 * measured:  # the image is too saturated to say more
            return measured
    for _ in range(24):
        mid = 0.5 * (low + high)
        if clipped_sigma(mid) < measured:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def estimate_noise_sigma(image: Tensor, *, jpeg_file: str | os.PathLike[str] | None = None) -> float:
    """Standard deviation of the white Gaussian noise in ``image``, on the 0-255 scale.

    Args:
        image: a (C, H, W) (or (H, W)) float image in [0, 1], grey or colour, at least 8 x 8 pixels.
            Values outside [0, 1] mean the noise was not clipped, and no clipping correction is made.
        jpeg_file: the file ``image`` was read from, if any. When it is a JPEG of the same size, the
            noise it had before compression is read from its DCT coefficients
            (:func:`estimate_jpeg_noise_sigma`); otherwise (not a JPEG, other size, under 64 blocks)
            the pixels are read.

    Returns:
        sigma, 0-255 scale (a clean photograph reads about 0.5-1; 8-bit rounding alone is 0.3).
    """
    x = _checked(image)
    if jpeg_file is not None:
        sigma = _jpeg_sigma(Path(jpeg_file), size=(x.shape[-2], x.shape[-1]))
        if sigma is not None:
            return sigma
    return _sigma(x) * 255.0


def _checked(image: Tensor) -> Tensor:
    """``image`` as a (C, H, W) float64 CPU tensor, refused (one line) unless it can be estimated."""
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a tensor, got {type(image).__name__}")
    if image.dim() == 2:
        image = image[None]
    if image.dim() != 3:
        raise ValueError(f"image must be (C, H, W), got shape {tuple(image.shape)}")
    _, h, w = image.shape
    if h < _PATCH or w < _PATCH:
        raise ValueError(f"image of {w}x{h} pixels is too small to estimate its noise (at least {_PATCH}x{_PATCH})")
    x = image.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("image contains NaN or infinity")
    return x


def _sigma(x: Tensor) -> float:
    """The PCA estimate of a (C, H, W) float64 image, clipping-corrected where it lies in [0, 1]; 0-1 scale."""
    sigma = _pca_sigma(x, _PATCH)
    if sigma > 0 and float(x.min()) >= 0.0 and float(x.max()) <= 1.0:
        sigma = _clip_corrected(x, sigma)
    return float(sigma)


def _starts(size: int, side: int) -> list[int]:
    """Block starts along one axis: half a block apart, the last block ending at the edge."""
    starts = list(range(0, size - side + 1, max(1, side // 2)))
    if starts[-1] != size - side:
        starts.append(size - side)
    return starts


def _interp_matrix(size: int, centres: list[float]) -> Tensor:
    """(size, len(centres)): row i holds the linear-interpolation weights of pixel i between block
    centres (constant beyond the first and last)."""
    pixels = np.arange(size, dtype=np.float64)
    eye = np.eye(len(centres))
    if len(centres) == 1:
        return torch.ones(size, 1, dtype=torch.float64)
    return torch.from_numpy(np.stack([np.interp(pixels, centres, eye[j]) for j in range(len(centres))], axis=1))


def estimate_noise_map(image: Tensor, *, block: int | None = None, jpeg_file: str | os.PathLike[str] | None = None) -> Tensor:
    """Standard deviation of the noise at every pixel, on the 0-255 scale: an (H, W) float32 map.

    The image is cut into square blocks of side ``block`` (default: 64 pixels, or a twelfth of the
    longer side if that is larger, so a large photo is read in at most about 23 x 23 blocks), half a
    block apart; :func:`estimate_noise_sigma`'s estimator (PCA of 8 x 8 patches, corrected for
    clipping) reads each, and the grid of block values is interpolated bilinearly to every pixel, each
    value placed at its block's centre. So the map resolves changes of noise over about a block; an
    image smaller than a block gets one value everywhere (:func:`estimate_noise_sigma`'s).

    Given the JPEG file the image was read from (``jpeg_file``, same size), each region is read from the
    file's DCT coefficients instead (:func:`estimate_jpeg_noise_sigma`), on the 8 x 8 grid: regions of at
    least 128 pixels by default (a reading needs 64 blocks; a smaller region takes the whole file's value).

    Args:
        image: a (C, H, W) (or (H, W)) float image in [0, 1], at least 8 x 8 pixels.
        block: the block side in pixels (at least 16).
        jpeg_file: the file ``image`` was read from, if any.
    """
    x = _checked(image)
    _, h, w = x.shape
    if block is not None and (isinstance(block, bool) or not isinstance(block, int) or block < 16):
        raise ValueError(f"block must be a whole number of pixels, at least 16, got {block!r}")
    jpeg = _jpeg_levels(Path(jpeg_file), (h, w)) if jpeg_file is not None else None
    whole = jpeg.sigma() if jpeg is not None else None
    if jpeg is not None and whole is not None:
        side = 16 * math.ceil((block or max(128, math.ceil(max(h, w) / 12))) / 16) // 8  # in 8 x 8 blocks, even
        hb, wb = jpeg.levels.shape[:2]
        bh, bw = min(side, hb), min(side, wb)
        rows, cols = _starts(hb, bh), _starts(wb, bw)
        values = [[jpeg.sigma(slice(t, t + bh), slice(s, s + bw)) for s in cols] for t in rows]
        grid = torch.tensor([[whole if v is None else v for v in row] for row in values], dtype=torch.float64)
        wy = _interp_matrix(h, [8 * t + (8 * bh - 1) / 2 for t in rows])
        wx = _interp_matrix(w, [8 * s + (8 * bw - 1) / 2 for s in cols])
        return (wy @ grid @ wx.T).to(torch.float32)
    side = block or max(64, math.ceil(max(h, w) / 12))
    rows, cols = _starts(h, min(side, h)), _starts(w, min(side, w))
    bh, bw = min(side, h), min(side, w)
    grid = torch.tensor([[_sigma(x[:, t : t + bh, s : s + bw]) for s in cols] for t in rows], dtype=torch.float64)
    wy = _interp_matrix(h, [t + (bh - 1) / 2 for t in rows])
    wx = _interp_matrix(w, [s + (bw - 1) / 2 for s in cols])
    return (wy @ grid @ wx.T * 255.0).to(torch.float32)


# -- noise under JPEG -----------------------------------------------------------------------------

_Y_OF_RGB_NOISE = math.sqrt(0.299**2 + 0.587**2 + 0.114**2)  # sigma in luma of noise drawn per RGB channel
_SMOOTHNESS_COEFFS = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0))  # rank blocks by these; read the others
_SMOOTHEST = 0.2  # share of blocks read: the least textured
_MIN_BLOCKS = 64
_MID_TONES = (40.0, 215.0)  # blocks whose mean luma lies here: clipping has taken little of their noise
_INFORMATIVE = (0.02, 0.9)  # shares of non-zero coefficients that still tell sigma from the step
_QUANTILE = 0.25  # over the coefficients: texture only ever adds


def _dct_matrix() -> np.ndarray:
    """The orthonormal 8-point DCT-II (the JPEG transform): white noise keeps its sigma under it."""
    k, i = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    m = np.cos(np.pi * (2 * i + 1) * k / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m


def _jpeg_luma(path: Path) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """The decoded luma plane (before any colour conversion), the luma quantisation table (8 x 8, row
    major) and whether the file is colour; None unless ``path`` is a baseline/progressive JPEG in
    YCbCr or grey."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.format != "JPEG" or im.mode not in ("RGB", "L"):
                return None
            tables = getattr(im, "quantization", None) or {}
            if 0 not in tables or len(tables[0]) != 64:
                return None
            colour = im.mode == "RGB"
            im.draft("YCbCr" if colour else "L", im.size)  # decode to the stored planes: no rounding through RGB
            if colour and im.mode != "YCbCr":
                return None
            planes = np.asarray(im, dtype=np.float64)
    except (UnidentifiedImageError, OSError):
        return None
    luma = planes[..., 0] if planes.ndim == 3 else planes
    return luma, np.asarray(list(tables[0]), dtype=np.float64).reshape(8, 8), colour


def estimate_jpeg_noise_sigma(path: str | os.PathLike[str]) -> float | None:
    """Standard deviation (0-255 scale) of the white Gaussian noise an image had before it was saved
    as the JPEG file at ``path``; None if it is not a JPEG (or has under 64 blocks of 8 x 8).

    A JPEG stores each 8 x 8 block's DCT coefficient c as round(c / Q) with a step Q from the file's
    table. Noise of sigma s per RGB channel (s_Y = 0.669 s in luma) makes a coefficient whose picture
    content is near zero non-zero with probability p = 2 (1 - Phi(Q / 2 s_Y)), so s_Y = Q / (2
    Phi^-1(1 - p / 2)) from the share p of non-zero values (where nearly all are non-zero: their
    spread, with the step's Q^2 / 12 taken off). This is read in the luma of the least textured fifth
    of the mid-tone blocks (ranked by their lowest frequencies, read in the others, so ranking does not
    bias the noise), once per coefficient, and the lower quartile over coefficients is the estimate,
    as texture only adds non-zero values.

    Measured on 10 CBSD68 photos (``benchmarks/noise_estimate.py``, ``docs/noise-estimate.md``): sigma
    15 / 30 / 50 saved at qualities 95-30 read 15-17 / 28-31 / 43-45 (medians; clipping takes some of
    sigma 50). Noise far below the steps cannot be seen, and texture adds: clean JPEGs read 3-10
    (medians; up to 30 on the most textured photo), and at quality 10 the reading says little.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    return _jpeg_sigma(path, size=None)


class _JpegLevels:
    """The stored integers of a JPEG file's luma: ``levels[i, j]`` is block (i, j)'s 8 x 8 DCT
    coefficients divided by their steps ``step`` (recovered from the decoded plane, which differs from
    them by the decoder's rounding to 8 bits only), and whether the file is colour."""

    def __init__(self, luma: np.ndarray, step: np.ndarray, colour: bool) -> None:
        rows, cols = luma.shape[0] // 8, luma.shape[1] // 8
        blocks = luma[: rows * 8, : cols * 8].reshape(rows, 8, cols, 8).transpose(0, 2, 1, 3) - 128.0
        dct = _dct_matrix()
        self.levels = np.round(dct @ blocks @ dct.T / step)  # (rows, cols, 8, 8)
        self.step, self.colour, self.size = step, colour, tuple(luma.shape)

    @classmethod
    def read(cls, path: Path) -> _JpegLevels | None:
        read = _jpeg_luma(path)
        return None if read is None else cls(*read)

    def sigma(self, rows: slice = slice(None), cols: slice = slice(None)) -> float | None:
        """The noise sigma (0-255, per RGB channel) read from the blocks ``[rows, cols]``; None under 64 blocks."""
        levels, step = self.levels[rows, cols].reshape(-1, 8, 8), self.step
        if len(levels) < _MIN_BLOCKS:
            return None
        mean = levels[:, 0, 0] * step[0, 0] / 8 + 128.0
        mid = (mean > _MID_TONES[0]) & (mean < _MID_TONES[1])
        if int(mid.sum()) >= _MIN_BLOCKS:
            levels = levels[mid]
        texture = sum((levels[:, u, v] * step[u, v]) ** 2 for u, v in _SMOOTHNESS_COEFFS)
        smooth = levels[np.argsort(texture, kind="stable")[: max(16, int(len(levels) * _SMOOTHEST))]]
        readings = []
        for u in range(8):
            for v in range(8):
                if (u, v) == (0, 0) or (u, v) in _SMOOTHNESS_COEFFS:
                    continue
                q, k = float(step[u, v]), smooth[:, u, v]
                share = float(np.mean(k != 0))
                if _INFORMATIVE[0] < share < _INFORMATIVE[1]:
                    z = float(torch.special.ndtri(torch.tensor(1.0 - share / 2, dtype=torch.float64)))
                    readings.append(q / (2.0 * z))
                elif share >= _INFORMATIVE[1]:
                    values = k * q
                    spread = float(np.median(np.abs(values - np.median(values)))) / 0.6745  # robust to texture
                    readings.append(math.sqrt(max(spread**2 - q * q / 12.0, 0.0)))
        if not readings:
            return 0.0  # every coefficient all but zero: no noise that the steps kept
        return float(np.quantile(readings, _QUANTILE)) / (_Y_OF_RGB_NOISE if self.colour else 1.0)


def _jpeg_levels(path: Path, size: tuple[int, int] | None) -> _JpegLevels | None:
    """The file's luma levels, or None unless it is a JPEG (of decoded ``size``, where given)."""
    levels = _JpegLevels.read(path)
    return None if levels is None or (size is not None and levels.size != tuple(size)) else levels


def _jpeg_sigma(path: Path, size: tuple[int, int] | None) -> float | None:
    """:func:`estimate_jpeg_noise_sigma`, or None where the file's decoded size is not ``size``."""
    levels = _jpeg_levels(path, size)
    return None if levels is None else levels.sigma()


# -- JPEG quality ---------------------------------------------------------------------------------

# The standard tables of the JPEG specification (Annex K), row-major order.
_STD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
], dtype=np.int64)
_STD_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
], dtype=np.int64)


def _zigzag_order() -> np.ndarray:
    """Row-major index of each zig-zag position (older Pillow reported tables in zig-zag order)."""
    order = sorted(((i, j) for i in range(8) for j in range(8)), key=lambda p: (p[0] + p[1], p[0] if (p[0] + p[1]) % 2 else p[1]))
    return np.array([i * 8 + j for i, j in order])


_ZIGZAG = _zigzag_order()


def ijg_quant_tables(quality: int) -> tuple[np.ndarray, np.ndarray]:
    """The luminance and chrominance tables (row-major, 64 each) libjpeg writes at ``quality``."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    tables = []
    for base in (_STD_LUMA, _STD_CHROMA):
        tables.append(np.clip((base * scale + 50) // 100, 1, 255))  # baseline JPEG: 8-bit entries
    return tables[0], tables[1]


_CANDIDATES = [ijg_quant_tables(q) for q in range(1, 101)]


def estimate_jpeg_quality(path: str | os.PathLike) -> float | None:
    """The IJG quality (1-100) the JPEG file at ``path`` was saved with; None if it is not a JPEG.

    For files written with the IJG tables (libjpeg, Pillow, most software) this is exact (qualities
    that give identical tables, such as 98-100 on chrominance-only differences, read as the highest).
    For other encoders' tables (cameras, some editors) it is the nearest IJG quality, by the mean
    log-ratio of the entries.

    Raises:
        FileNotFoundError: no file at ``path``.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    try:
        with Image.open(path) as im:
            if im.format != "JPEG":
                return None
            tables = {k: np.asarray(list(v), dtype=np.float64) for k, v in (getattr(im, "quantization", None) or {}).items()}
    except (UnidentifiedImageError, OSError):
        return None
    luma = tables.get(0)
    if luma is None or luma.size != 64:
        return None
    chroma = tables.get(1)
    if chroma is not None and chroma.size != 64:
        chroma = None

    best_q, best_err = 0, math.inf
    for q, (std_l, std_c) in enumerate(_CANDIDATES, start=1):
        for order in (slice(None), _ZIGZAG):  # Pillow >= 8.3 reports row-major, older zig-zag
            # log-ratio distance: each entry counts by its relative error, as quality scales them all
            err = float(np.abs(np.log(luma) - np.log(std_l[order])).sum())
            if chroma is not None:
                err += float(np.abs(np.log(chroma) - np.log(std_c[order])).sum())
            if err < best_err - 1e-12 or (abs(err - best_err) <= 1e-12 and q > best_q):
                best_q, best_err = q, err
    return float(best_q)
