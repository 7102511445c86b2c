"""NIQE (Mittal, Soundararajan and Bovik, "Making a 'Completely Blind' Image Quality Analyzer", 2013).

Lower is better. The computation follows the MATLAB release (``niqe_release``) step by step, as
BasicSR 1.4.2's ``calculate_niqe`` does, so that numbers can be compared with published ones:

1. **Luma**: RGB images are reduced to the BT.601 ``Y`` in [16, 235] (``ftn.eval.metrics.rgb_to_y``,
   MATLAB's ``rgb2ycbcr`` coefficients); one-channel images are used as they are. Tensors in
   [0, 1] are first quantised to 8-bit values like a saved PNG (``ftn.eval.metrics.to_uint8``).
   ``crop_border`` pixels are removed from every side, then ``Y`` is rounded to integers (MATLAB
   reads the luma of an 8-bit image, which is integral).
2. **Blocks**: the image is cropped (bottom/right) to a whole number of ``block_size`` squares;
   blocks do not overlap.
3. **Two scales**: the full image, and ``imresize(Y / 255, 0.5) * 255`` (MATLAB bicubic with
   antialiasing, ``ftn.imageops.imresize``) whose blocks are ``block_size / 2``.
4. **MSCN coefficients** at each scale: ``(Y - mu) / (sigma + 1)`` with ``mu`` and
   ``sigma = sqrt(|E[Y^2] - mu^2|)`` local moments under the 7 x 7 Gaussian window of the model
   file, borders replicated (scipy's ``mode='nearest'``, MATLAB's ``'replicate'``).
5. **Features** per block and scale (18): the generalised Gaussian shape and mean scale of the MSCN
   coefficients, and for the products of each coefficient with its neighbour along 4 orientations
   (shifts ``[0, 1], [1, 0], [1, 1], [1, -1]``, wrapping around inside the block as ``np.roll``
   does) the asymmetric GGD shape, mean, left and right scales. Shapes are looked up on the
   grid ``0.2:0.001:10`` by the moment-ratio method.
6. **Distance**: a Gaussian is fitted to the blocks' 36 features (``nanmean``; covariance over the
   blocks with no NaN feature) and compared with the pristine model:
   ``sqrt((mu_p - mu)^T pinv((cov_p + cov) / 2) (mu_p - mu))``.

The pristine model (``mu_pris_param`` (1, 36), ``cov_pris_param`` (36, 36), ``gaussian_window``
(7, 7)) is the one of the MATLAB release, read from an ``.npz`` file: see :func:`load_params`.

Precision: MATLAB computes in double; BasicSR keeps the luma, the half-size image and the local
moments in float32. The float32 variance ``E[Y^2] - mu^2`` cancels on flat regions, so the two
disagree there: on Set5 the float64 result differs from BasicSR's by up to 0.37 (``head``), while
textured images agree to ~1e-4. ``precision="basicsr"`` (the default) reproduces BasicSR 1.4.2,
forming the float32 quantities in the same order (Set5: within 1.5e-6 of its values);
``precision="matlab"`` is float64 throughout (not checked against MATLAB itself here). The block
features are computed in float64 either way.

With fewer than two NaN-free blocks (e.g. a 96 x 96 image) the sample covariance is undefined; it
is then taken as zero, i.e. the pristine covariance alone is used, where the references would
return NaN.

Report the convention with every number, e.g. "NIQE (Y, crop 0, MATLAB model, BasicSR precision)".
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch

from ftn.assets import find_asset
from ftn.eval.metrics import rgb_to_y, to_uint8
from ftn.imageops import imresize, resize_taps

__all__ = ["niqe", "load_params", "NIQE_PARAMS_ENV", "NiqeParams"]

NIQE_PARAMS_ENV = "FTN_NIQE_PARAMS"
"""Environment variable naming the pristine-model ``.npz`` when ``params`` is not given."""

_PARAMS_NAME = "metrics/niqe_pris_params.npz"  # below the project's shared/ folder
_KEYS = ("mu_pris_param", "cov_pris_param", "gaussian_window")
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))

NiqeParams = dict[str, np.ndarray]
_ParamsArg = str | os.PathLike[str] | Mapping[str, np.ndarray] | None


def _validated(arrays: Mapping[str, np.ndarray], source: str) -> NiqeParams:
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise KeyError(f"NIQE params from {source} lack {missing}; expected keys {list(_KEYS)}")
    out = {k: np.array(arrays[k], dtype=np.float64) for k in _KEYS}
    mu = out["mu_pris_param"].reshape(1, -1)
    cov = out["cov_pris_param"]
    if cov.shape != (mu.shape[1], mu.shape[1]) or mu.shape[1] != 36:
        raise ValueError(
            f"NIQE params from {source}: expected mu (1, 36) and cov (36, 36), "
            f"got {out['mu_pris_param'].shape} and {cov.shape}"
        )
    window = out["gaussian_window"]
    if window.ndim != 2 or window.shape[0] % 2 == 0 or window.shape[1] % 2 == 0:
        raise ValueError(f"NIQE params from {source}: gaussian_window must be 2-D with odd sides, got {window.shape}")
    out["mu_pris_param"] = mu
    for a in out.values():
        a.setflags(write=False)  # shared through the cache: nobody may change them
    return out


@functools.lru_cache(maxsize=8)
def _load_npz(path: str) -> NiqeParams:
    with np.load(path) as data:
        return _validated(data, path)


def load_params(params: _ParamsArg = None) -> NiqeParams:
    """The pristine NIQE model as read-only float64 arrays (``mu_pris_param`` reshaped to (1, 36)).

    ``params`` may be a mapping with the three arrays, or a path to an ``.npz`` holding them. When
    ``None``: the path in the environment variable ``FTN_NIQE_PARAMS`` if set, otherwise
    ``../shared/metrics/niqe_pris_params.npz`` beside a source checkout (:func:`ftn.assets.find_asset`).
    Files are read once and cached.

    Raises:
        FileNotFoundError: with instructions, when no model file is found.
    """
    if isinstance(params, Mapping):
        return _validated(params, "the given mapping")
    path = find_asset(
        _PARAMS_NAME, path=params, env_var=NIQE_PARAMS_ENV, what="NIQE pristine model",
        option="params=<path to niqe_pris_params.npz>",
        hint=f"It holds {', '.join(_KEYS)}: the MATLAB release's model, also shipped with BasicSR.",
    )
    if not path.is_file():
        raise FileNotFoundError(f"NIQE pristine model: {path} is not a file")
    return _load_npz(str(path.resolve()))


@functools.cache
def _gamma_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shape grid ``0.2:0.001:10`` with its moment ratio ``G(2/a)^2 / (G(1/a) G(3/a))`` and gammas.

    Built with ``np.arange`` exactly as the reference so that the grid values are bit-identical.
    Returns ``(alpha, ratio, gamma(2/alpha) / gamma(1/alpha), sqrt(gamma(1/alpha) / gamma(3/alpha)))``.
    """
    alpha = np.arange(0.2, 10.001, 0.001)
    g1 = np.array([math.gamma(1.0 / a) for a in alpha])
    g2 = np.array([math.gamma(2.0 / a) for a in alpha])
    g3 = np.array([math.gamma(3.0 / a) for a in alpha])
    ratio = g2**2 / (g1 * g3)
    return alpha, ratio, g2 / g1, np.sqrt(g1 / g3)


def _aggd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric GGD fit of each row of ``x`` (M, n): ``(alpha, beta_l, beta_r, mean)``.

    A row with no negative (or no positive) value has an undefined left (right) scale: NaN, as in
    the reference (where ``np.mean`` of an empty selection is NaN), and the shape then falls on
    the first grid value, again as the reference's ``argmin`` over NaNs does.
    """
    grid, ratio, g2_over_g1, beta_factor = _gamma_table()
    sq = x * x
    neg, pos = x < 0, x > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        left_std = np.sqrt((sq * neg).sum(axis=1) / neg.sum(axis=1))
        right_std = np.sqrt((sq * pos).sum(axis=1) / pos.sum(axis=1))
        gammahat = left_std / right_std
        rhat = np.abs(x).mean(axis=1) ** 2 / sq.mean(axis=1)
        rhatnorm = rhat * (gammahat**3 + 1) * (gammahat + 1) / (gammahat**2 + 1) ** 2
    # brute-force nearest grid point (first on ties), in chunks to bound memory at ~20 MB
    pos_idx = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), 256):
        r = rhatnorm[start : start + 256, None]
        pos_idx[start : start + 256] = np.argmin((ratio[None, :] - r) ** 2, axis=1)
    alpha = grid[pos_idx]
    beta_l = left_std * beta_factor[pos_idx]
    beta_r = right_std * beta_factor[pos_idx]
    mean = (beta_r - beta_l) * g2_over_g1[pos_idx]
    return alpha, beta_l, beta_r, mean


def _block_features(blocks: np.ndarray) -> np.ndarray:
    """The 18 NIQE features of each MSCN block in ``blocks`` (N, b, b) -> (N, 18)."""
    n = blocks.shape[0]
    alpha, beta_l, beta_r, _ = _aggd(blocks.reshape(n, -1))
    columns = [alpha, (beta_l + beta_r) / 2]
    for shift in _SHIFTS:
        product = blocks * np.roll(blocks, shift, axis=(1, 2))
        alpha, beta_l, beta_r, mean = _aggd(product.reshape(n, -1))
        columns += [alpha, mean, beta_l, beta_r]
    return np.stack(columns, axis=1)


def _filter_nearest(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """2-D convolution, same size, edges replicated (``scipy.ndimage.convolve(mode='nearest')``)."""
    kh, kw = window.shape
    ph, pw = kh // 2, kw // 2
    padded = np.pad(img, ((ph, ph), (pw, pw)), mode="edge")
    flipped = window[::-1, ::-1]  # convolution, not correlation (the window is symmetric anyway)
    h, w = img.shape
    out = np.zeros_like(img)
    for i in range(kh):
        for j in range(kw):
            out += flipped[i, j] * padded[i : i + h, j : j + w]
    return out


def _mscn(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients, in ``img``'s dtype.

    The filtering itself is done in float64 and its result rounded to ``img``'s dtype, which is
    what ``scipy.ndimage.convolve`` does for a float32 image (BasicSR's case); the rest follows in
    that dtype. It matters: ``E[Y^2] - mu^2`` cancels catastrophically in float32 on flat regions
    (ulp of ~65000 is ~0.004), which moves NIQE by up to ~0.4 on images with flat backgrounds.
    """
    dtype = img.dtype
    x = img.astype(np.float64)
    mu = _filter_nearest(x, window).astype(dtype)
    second = _filter_nearest((img * img).astype(np.float64), window).astype(dtype)
    sigma = np.sqrt(np.abs(second - mu * mu))
    return (img - mu) / (sigma + dtype.type(1))


def _to_blocks(img: np.ndarray, size: int) -> np.ndarray:
    """(nh*size, nw*size) -> (nh*nw, size, size), row-major over blocks."""
    nh, nw = img.shape[0] // size, img.shape[1] // size
    return img.reshape(nh, size, nw, size).transpose(0, 2, 1, 3).reshape(nh * nw, size, size)


def _half_size_float32(img: np.ndarray) -> np.ndarray:
    """``imresize(img, 0.5)`` of a float32 HW image, summed in float32 in BasicSR's order.

    Why not :func:`~ftn.imageops.imresize`: NIQE moves by up to ~3e-4 when the half-size image
    changes by one float32 ulp (a block's shape estimate jumps to the neighbouring grid point), so
    to reproduce BasicSR's numbers the same float32 dot products are formed: a symmetrically padded
    copy, height first, one ``torch.mv`` per output row, then per output column. The weights are the
    MATLAB ones (exact in float32 at scale 1/2).
    """
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    for axis in (0, 1):
        n = t.shape[axis]
        out_n = math.ceil(n * 0.5)
        idx, w = resize_taps(n, out_n, 0.5, antialiasing=True)
        lo, hi = max(0, -int(idx.min())), max(0, int(idx.max()) - (n - 1))
        pad = [(0, 0), (0, 0)]
        pad[axis] = (lo, hi)
        padded = torch.from_numpy(np.pad(t.numpy(), pad, mode="symmetric"))
        weights = torch.from_numpy(w.astype(np.float32))
        taps = idx.shape[1]
        starts = idx[:, 0] + lo
        if axis == 0:
            out = torch.empty(out_n, t.shape[1], dtype=torch.float32)
            for i, s in enumerate(starts):
                out[i] = padded[s : s + taps].T.mv(weights[i])
        else:
            out = torch.empty(t.shape[0], out_n, dtype=torch.float32)
            for i, s in enumerate(starts):
                out[:, i] = padded[:, s : s + taps].mv(weights[i])
        t = out
    return t.numpy()


def _luma(img: np.ndarray | torch.Tensor) -> np.ndarray:
    """Input image -> HW float64 on the 0-255 scale (Y of RGB, or the single channel)."""
    if isinstance(img, torch.Tensor):
        a = to_uint8(img)
    elif isinstance(img, np.ndarray):
        a = img.astype(np.float64)
    else:
        raise TypeError(f"expected a torch.Tensor or a numpy array, got {type(img).__name__}")
    if a.ndim == 3 and a.shape[2] == 3:
        return rgb_to_y(a)
    if a.ndim == 3 and a.shape[2] == 1:
        return a[..., 0]
    if a.ndim == 2:
        return a
    raise ValueError(f"expected an HW, HWC (1 or 3 channels) array or a (C, H, W) tensor, got shape {a.shape}")


def niqe(
    img: np.ndarray | torch.Tensor,
    *,
    params: _ParamsArg = None,
    crop_border: int = 0,
    block_size: int = 96,
    precision: Literal["basicsr", "matlab"] = "basicsr",
) -> float:
    """NIQE of one image (lower is better), as the MATLAB release and BasicSR compute it.

    Args:
        img: a torch tensor ``(C, H, W)`` or ``(1, C, H, W)`` in [0, 1] (quantised to 8 bits
            first), or a numpy ``HWC`` RGB / ``HW`` grey array on the 0-255 scale (normally uint8).
        params: the pristine model: a path to its ``.npz`` or a mapping of its arrays; ``None``
            finds it as :func:`load_params` says.
        crop_border: pixels removed from every side first.
        block_size: side of the non-overlapping blocks (even); 96 as the MATLAB release uses, and
            the size the pristine model was fitted with.
        precision: ``"basicsr"`` (default) keeps the image and its local moments in float32 as
            BasicSR 1.4.2 does, and so reproduces BasicSR's numbers (Set5: to 1.5e-6);
            ``"matlab"`` computes in float64 throughout, as MATLAB's double arithmetic does. They
            differ by up to ~0.4 on images with flat regions (see the module doc).

    Returns:
        The NIQE value; NaN when a feature is undefined in every block (e.g. a constant image).

    Raises:
        ValueError: when the (cropped) image is smaller than one block.
        FileNotFoundError: when the pristine model cannot be found.
    """
    if block_size < 2 or block_size % 2:
        raise ValueError(f"block_size must be an even number >= 2, got {block_size}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if precision not in ("basicsr", "matlab"):
        raise ValueError(f"precision must be 'basicsr' or 'matlab', got {precision!r}")
    model = load_params(params)
    y = _luma(img)
    if crop_border:
        y = y[crop_border:-crop_border, crop_border:-crop_border]
    h, w = y.shape
    if h < block_size or w < block_size:
        raise ValueError(
            f"NIQE needs an image of at least {block_size}x{block_size} pixels (one block) after "
            f"crop_border={crop_border}, got {h}x{w}"
        )
    # MATLAB works on integral luma; the rounding matters for matching its numbers
    y = np.round(y)
    y = y[: h // block_size * block_size, : w // block_size * block_size]

    window = model["gaussian_window"]
    # "basicsr" keeps the luma, the half-size image and the MSCN maps in float32 as BasicSR does
    dtype = np.float32 if precision == "basicsr" else np.float64
    y = y.astype(dtype)
    features = []
    for scale in (1, 2):
        if scale == 2 and precision == "basicsr":
            y = _half_size_float32(y / dtype(255)) * dtype(255)
        elif scale == 2:
            y = imresize(y / 255.0, 0.5, antialiasing=True) * 255.0
        mscn = _mscn(y, window).astype(np.float64)
        features.append(_block_features(_to_blocks(mscn, block_size // scale)))
    dist = np.concatenate(features, axis=1)

    with warnings.catch_warnings():
        # a feature that is NaN in every block gives a NaN mean, and the result NaN, below
        warnings.simplefilter("ignore", RuntimeWarning)
        mu = np.nanmean(dist, axis=0, keepdims=True)
    complete = dist[~np.isnan(dist).any(axis=1)]
    cov = np.cov(complete, rowvar=False) if len(complete) >= 2 else np.zeros((36, 36))
    diff = model["mu_pris_param"] - mu
    if not np.isfinite(diff).all():
        return float("nan")
    inv = np.linalg.pinv((model["cov_pris_param"] + cov) / 2)
    return float(np.sqrt((diff @ inv @ diff.T).item()))
