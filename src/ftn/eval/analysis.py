"""Analyses of a tunable model behind the paper's smoothness claims (numpy and torch only).

* **Filter analysis** (paper, Table 3): how far the level-2 kernels are from the level-1 kernels.
  For every tuned convolution, the level-1 kernel ``f`` is read from ``model.export(0.0)`` and the
  level-2 kernel from ``model.export(1.0)`` (``FTN(f)`` for FTN, the fine-tuned copy for DNI), so
  the analysis works for every method that exports exactly to a plain network. Two numbers:

  - :func:`kernel_mae`: the mean absolute difference over all kernel entries of all layers,
    ``sum |f2 - f1| / number of entries`` (pooled, so a layer counts by its size);
  - :func:`filter_cosine_similarity`: the cosine between each output filter ``f1[o]`` and
    ``f2[o]`` (flattened ``C_in x k x k`` vectors), averaged over all filters of all layers (each
    filter counts once). Two all-zero filters count as similarity 1, one all-zero filter as 0.

* **Smoothness and colour drift along alpha** (paper, Figures 7 and 8): :func:`alpha_path` runs a
  model over a grid of alphas on a fixed degraded input and measures, per alpha, the mean colour
  shift (per-channel mean of the output minus that of the clean image, 0-255 scale), RMSE,
  SSIM and PSNR; :func:`largest_step` is the largest change between consecutive alphas.

* **Interpretability** (paper, Figure 6): :func:`linear_alpha` is the alpha a level "should" have
  if alpha were linear in the level, ``(level - l1) / (l2 - l1)``; :func:`alpha_error` is the
  distance of the best alpha from it.

All image metrics see 8-bit images (clamp to [0, 1], x 255, round), as :mod:`ftn.eval.metrics`
does, on RGB with no border crop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from .metrics import psnr, ssim, to_uint8

__all__ = [
    "conv_kernels",
    "level_kernels",
    "kernel_mae",
    "filter_cosine_similarity",
    "filter_analysis",
    "alpha_path",
    "largest_step",
    "largest_drift",
    "linear_alpha",
    "alpha_error",
    "best_alpha",
]


# -- filter analysis (Table 3) --------------------------------------------------------------------


def conv_kernels(module: nn.Module) -> dict[str, Tensor]:
    """``name -> weight`` of every ``nn.Conv2d`` in ``module`` (detached, float64, on the CPU)."""
    return {
        name: m.weight.detach().to("cpu", torch.float64)
        for name, m in module.named_modules()
        if isinstance(m, nn.Conv2d)
    }


def _tuned(name: str, targets: Sequence[str]) -> bool:
    return any(t == "" or name == t or name.startswith(t + ".") for t in targets)


def level_kernels(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The kernels of every tuned conv at level 1 (alpha 0) and level 2 (alpha 1), by conv name.

    ``model`` is a :class:`~ftn.methods.TunableModel` whose method exports exactly (FTN, DNI, AdaFM
    with k = 1). Convs outside the method's targets are left out (they do not change); when the
    targets hold no conv (unusual), every conv whose kernel differs between the levels is kept.

    Raises:
        ftn.ExportNotSupported: the method does not export to a plain network.
        TypeError: ``model`` has no ``export``.
    """
    if not hasattr(model, "export"):
        raise TypeError(f"filter analysis needs a tunable model (ftn.attach), got {type(model).__name__}")
    level1 = conv_kernels(model.export(0.0))
    level2 = conv_kernels(model.export(1.0))
    targets = list(getattr(model, "target_names", []) or [])
    names = [n for n in level1 if n in level2 and _tuned(n, targets)]
    if not names:
        names = [n for n in level1 if n in level2 and not torch.equal(level1[n], level2[n])]
    return {n: level1[n] for n in names}, {n: level2[n] for n in names}


def _pairs(level1: Mapping[str, Tensor], level2: Mapping[str, Tensor]) -> list[tuple[str, Tensor, Tensor]]:
    missing = sorted(set(level1) ^ set(level2))
    if missing:
        raise ValueError(f"the two levels name different convs: {missing[:5]}")
    if not level1:
        raise ValueError("no kernels to compare")
    out = []
    for name in level1:
        a = torch.as_tensor(level1[name]).detach().to("cpu", torch.float64)
        b = torch.as_tensor(level2[name]).detach().to("cpu", torch.float64)
        if a.shape != b.shape:
            raise ValueError(f"kernel {name!r} has shape {tuple(a.shape)} at level 1 and {tuple(b.shape)} at level 2")
        out.append((name, a, b))
    return out


def kernel_mae(level1: Mapping[str, Tensor], level2: Mapping[str, Tensor]) -> float:
    """Mean absolute difference between two sets of kernels, over all entries of all layers."""
    total, count = 0.0, 0
    for _, a, b in _pairs(level1, level2):
        total += float((b - a).abs().sum())
        count += a.numel()
    return total / count


def _filter_cosines(a: Tensor, b: Tensor) -> Tensor:
    """Cosine between ``a[o]`` and ``b[o]`` for every output filter ``o`` (shape (C_out,))."""
    fa, fb = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    na, nb = fa.norm(dim=1), fb.norm(dim=1)
    cos = (fa * fb).sum(dim=1) / (na * nb).clamp_min(1e-300)
    both_zero = (na == 0) & (nb == 0)
    return torch.where(both_zero, torch.ones_like(cos), cos)


def filter_cosine_similarity(level1: Mapping[str, Tensor], level2: Mapping[str, Tensor]) -> float:
    """Filter-wise cosine similarity of two sets of kernels, averaged over all filters of all layers."""
    cosines = [_filter_cosines(a, b) for _, a, b in _pairs(level1, level2)]
    return float(torch.cat(cosines).mean())


def filter_analysis(model: nn.Module) -> dict[str, Any]:
    """Table 3 of the paper for one tunable model.

    Returns ``{"mae", "cosine", "layers", "filters", "entries", "per_layer": [{"name", "shape",
    "mae", "cosine"}, ...]}``; ``mae`` and ``cosine`` as defined in the module docstring.
    """
    level1, level2 = level_kernels(model)
    per_layer = []
    filters = entries = 0
    for name, a, b in _pairs(level1, level2):
        cos = _filter_cosines(a, b)
        per_layer.append(
            {"name": name, "shape": list(a.shape), "mae": float((b - a).abs().mean()), "cosine": float(cos.mean())}
        )
        filters += cos.numel()
        entries += a.numel()
    return {
        "mae": kernel_mae(level1, level2),
        "cosine": filter_cosine_similarity(level1, level2),
        "layers": len(per_layer),
        "filters": filters,
        "entries": entries,
        "per_layer": per_layer,
    }


# -- smoothness and colour drift (Figures 7, 8) ----------------------------------------------------


def _as_list(images: Tensor | Sequence[Tensor]) -> list[Tensor]:
    if isinstance(images, Tensor):
        if images.ndim == 3:
            return [images]
        if images.ndim == 4:
            return list(images)
        raise ValueError(f"expected (C, H, W) or (B, C, H, W) images, got shape {tuple(images.shape)}")
    return [torch.as_tensor(im)[0] if torch.as_tensor(im).ndim == 4 else torch.as_tensor(im) for im in images]


def _device(model: Callable[..., Tensor]) -> torch.device:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def _run(model: Callable[..., Tensor], x: Tensor, alpha: float) -> Tensor:
    x = x.unsqueeze(0).to(_device(model))
    return model(x, alpha=float(alpha))[0].clamp(0, 1).float().cpu()


@torch.inference_mode()
def alpha_path(
    model: Callable[..., Tensor],
    degraded: Tensor | Sequence[Tensor],
    clean: Tensor | Sequence[Tensor],
    alphas: Sequence[float],
    *,
    keep_outputs: bool = False,
) -> list[dict[str, Any]]:
    """Colour shift, RMSE, SSIM and PSNR of ``model``'s output at every alpha, against ``clean``.

    Args:
        model: called as ``model(x, alpha=a)`` on a (1, C, H, W) batch (a TunableModel); inputs are
            moved to the device of its parameters, outputs measured on the CPU.
        degraded: the input, (C, H, W), (B, C, H, W) or a list of (C, H, W) images, float in [0, 1]
            (denoising inputs may leave [0, 1]: they are fed as they are).
        clean: the matching clean images, same layout.
        alphas: the alpha grid, in the order the path is walked.
        keep_outputs: also return the outputs (a list of (C, H, W) tensors per alpha, ``"outputs"``).

    Returns:
        one dict per alpha: ``alpha``; ``colour_shift`` (per-channel mean of the output minus
        per-channel mean of the clean image, on the 0-255 scale, averaged over images: a list with
        one value per channel); ``colour_shift_norm`` (its Euclidean norm); ``rmse`` (0-255 scale),
        ``ssim`` and ``psnr`` (dB), each the mean over images.
    """
    if isinstance(model, nn.Module):
        model.eval()
    xs, ys = _as_list(degraded), _as_list(clean)
    if len(xs) != len(ys) or not xs:
        raise ValueError(f"need as many degraded as clean images (at least one), got {len(xs)} and {len(ys)}")
    refs = [to_uint8(y) for y in ys]
    path: list[dict[str, Any]] = []
    for alpha in alphas:
        shifts, rmses, ssims, psnrs, outputs = [], [], [], [], []
        for x, ref in zip(xs, refs):
            out = _run(model, x, alpha)
            if keep_outputs:
                outputs.append(out)
            img = to_uint8(out)
            if img.shape != ref.shape:
                raise ValueError(f"output shape {img.shape} differs from the clean image's {ref.shape}")
            shifts.append(img.mean(axis=(0, 1)) - ref.mean(axis=(0, 1)))
            rmses.append(math.sqrt(float(np.mean((img - ref) ** 2))))
            ssims.append(ssim(img, ref))
            psnrs.append(psnr(img, ref))
        shift = np.mean(shifts, axis=0)
        entry: dict[str, Any] = {
            "alpha": float(alpha),
            "colour_shift": [float(v) for v in shift],
            "colour_shift_norm": float(np.linalg.norm(shift)),
            "rmse": float(np.mean(rmses)),
            "ssim": float(np.mean(ssims)),
            "psnr": float(np.mean(psnrs)),
        }
        if keep_outputs:
            entry["outputs"] = outputs
        path.append(entry)
    return path


def largest_step(values: Sequence[float] | Sequence[Sequence[float]]) -> float:
    """The largest change between consecutive values: ``max |v[i+1] - v[i]|``.

    Vectors (e.g. colour shifts) are compared by the Euclidean norm of their difference. Fewer than
    two values give 0.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape[0] < 2:
        return 0.0
    diff = np.diff(arr, axis=0)
    steps = np.abs(diff) if diff.ndim == 1 else np.linalg.norm(diff.reshape(diff.shape[0], -1), axis=1)
    return float(steps.max())


def largest_drift(values: Sequence[float] | Sequence[Sequence[float]]) -> float:
    """The largest distance of any value from the first one: ``max |v[i] - v[0]|``.

    With ``values`` the colour shifts along alpha starting at alpha 0, this is how far the colour of
    the output moves away from that of the level-1 network (vectors compared by Euclidean norm).
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape[0] < 2:
        return 0.0
    diff = arr[1:] - arr[:1]
    dist = np.abs(diff) if diff.ndim == 1 else np.linalg.norm(diff.reshape(diff.shape[0], -1), axis=1)
    return float(dist.max())


# -- interpretability (Figure 6) -------------------------------------------------------------------


def linear_alpha(level: float, l1: float, l2: float) -> float:
    """The alpha of ``level`` if alpha were linear in the level: ``(level - l1) / (l2 - l1)``.

    Works in either direction (sigma 20 -> 80, JPEG quality 40 -> 10).
    """
    if l1 == l2:
        raise ValueError(f"the two levels must differ, got {l1} and {l2}")
    return (float(level) - float(l1)) / (float(l2) - float(l1))


def alpha_error(best: float, level: float, l1: float, l2: float) -> float:
    """``|best - linear_alpha(level, l1, l2)|``: how far the best alpha is from the linear one."""
    return abs(float(best) - linear_alpha(level, l1, l2))


def best_alpha(alphas: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """``(alpha, value)`` of the largest value (the first one on ties)."""
    if len(alphas) != len(values) or not alphas:
        raise ValueError(f"need as many alphas as values (at least one), got {len(alphas)} and {len(values)}")
    j = max(range(len(values)), key=lambda i: values[i])
    return float(alphas[j]), float(values[j])

