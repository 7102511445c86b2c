"""Level -> alpha calibration of a tuned model, for ends that are numeric levels of one task.

A tuned file knows its two ends (sigma 25 at alpha 0, sigma 50 at alpha 1) but not which alpha
serves sigma 40: the tuner's path between the ends is not linear in the level. :func:`calibrate_tuned`
measures it the way ``ftn sweep --calibrate`` does (best alpha per level on a grid, made monotone by
isotonic regression, :func:`ftn.eval.sweep.calibrate`) on a few images, and returns the model's
metadata with the calibration stored (:func:`ftn.levels.with_calibration`), so ``ftn run --level 40``
works on the tuned file.

Cost: one forward per alpha of the grid, all levels and images in one batch (a tuner's kernels are
computed once per forward), on centre crops; about a minute on a CPU for a 17-layer DnCNN.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..eval.metrics import psnr
from ..eval.sweep import SweepResult, calibrate
from ..levels import with_calibration
from ..methods import TunableModel
from ..tasks import Task
from .specs import JpegSpec, LevelSpec, NoiseSpec

__all__ = ["MIN_IMAGES_TO_HOLD_OUT", "calibratable", "calibrate_tuned", "hold_out", "measure_calibration"]

#: With fewer images in ``--data`` none is held out: training needs them all, and the calibration is
#: measured on training images (the file says so).
MIN_IMAGES_TO_HOLD_OUT = 6


def calibratable(level1: LevelSpec, level2: LevelSpec) -> bool:
    """True when both ends are numeric levels of one task (noise with the same clipping, or JPEG)."""
    if isinstance(level1, NoiseSpec) and isinstance(level2, NoiseSpec):
        return level1.clip == level2.clip and level1.sigma != level2.sigma
    if isinstance(level1, JpegSpec) and isinstance(level2, JpegSpec):
        return level1.quality != level2.quality
    return False


def hold_out(files: list[Path], count: int = 4) -> tuple[list[Path], list[Path]]:
    """(training files, held-out files) of ``files`` for a calibration on images training never saw.

    Deterministic: of the files sorted by name, every k-th one (k = n // h, starting at k // 2) is
    held out, h = min(``count``, n // 3), so at most a third of the images and at most ``count``.
    With fewer than :data:`MIN_IMAGES_TO_HOLD_OUT` files, or ``count`` 0, none is held out.

    Raises:
        ValueError: a negative ``count``.
    """
    if count < 0:
        raise ValueError(f"the number of held-out images must be >= 0, got {count}")
    files = sorted(files, key=lambda f: Path(f).name)
    n = len(files)
    h = min(count, n // 3) if n >= MIN_IMAGES_TO_HOLD_OUT else 0
    if h == 0:
        return files, []
    k = n // h
    held = set(range(k // 2, n, k)[:h])
    return [f for i, f in enumerate(files) if i not in held], [files[i] for i in sorted(held)]


def _centre_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return image[..., top : top + size, left : left + size]


@torch.inference_mode()
def calibrate_tuned(
    model: TunableModel,
    level1: NoiseSpec | JpegSpec,
    level2: NoiseSpec | JpegSpec,
    images: str | os.PathLike | list[str | os.PathLike],
    *,
    grey: bool,
    levels: int = 6,
    alphas: int = 11,
    crop: int = 96,
    seed: int = 0,
    files_name: str = "held-out files",
) -> dict[str, Any]:
    """``model.metadata`` with a level -> alpha calibration from ``level1`` (alpha 0) to ``level2`` (alpha 1).

    ``images``: a folder, or a list of image files (e.g. the files held out from training). Measured
    at ``levels`` evenly spaced levels from level 1 to level 2 and ``alphas`` evenly spaced alphas
    in [0, 1], PSNR on ``crop``-pixel centre crops (taken after degrading the whole image, as
    :func:`ftn.eval.sweep.sweep` does), degradations seeded per image, on the model's device.
    ``files_name`` says what a list of files is in the calibration's ``source`` ("held-out files").

    Raises:
        ValueError: ends that are not numeric levels of one task, fewer than 2 levels or alphas,
            or no images.
    """
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device  # measured where the model is (a GPU after training)

    def run(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return model(x.to(device), alpha=alpha).cpu()

    entry = measure_calibration(run, level1, level2, images, grey=grey, levels=levels, alphas=alphas, crop=crop,
                                seed=seed, files_name=files_name)
    return with_calibration(model.metadata, entry)


@torch.inference_mode()
def measure_calibration(
    run: Callable[[torch.Tensor, float], torch.Tensor],
    level1: NoiseSpec | JpegSpec,
    level2: NoiseSpec | JpegSpec,
    images: str | os.PathLike | list[str | os.PathLike],
    *,
    grey: bool,
    task: Task | None = None,
    levels: int = 6,
    alphas: int = 11,
    crop: int = 96,
    seed: int = 0,
    files_name: str = "held-out files",
) -> dict[str, Any]:
    """The calibration entry (:func:`ftn.levels.calibration_entry`) of ``run(x, t)``, t in [0, 1] going
    from ``level1`` to ``level2`` (:func:`calibrate_tuned` with ``run`` = the model at alpha t; one
    segment of a multi-anchor axis with ``run`` = the model at anchor k + t). ``task``: the
    degradation of the inputs (default ``level2.task``; a :class:`~ftn.tuning.data.WithContext` adds
    the other axes' anchor-0 degradations). Not stored anywhere: the caller does that.

    Raises:
        ValueError: as :func:`calibrate_tuned`.
    """
    from ..data.datasets import EvalSet

    if not calibratable(level1, level2):
        raise ValueError(f"a calibration needs two numeric levels of one task, got {level1.name} -> {level2.name}")
    if levels < 2 or alphas < 2:
        raise ValueError(f"a calibration needs at least 2 levels and 2 alphas, got {levels} and {alphas}")
    l1, l2 = level1.level, level2.level
    level_grid = [l1 + (l2 - l1) * i / (levels - 1) for i in range(levels)]
    if isinstance(level1, JpegSpec):
        level_grid = sorted({round(v) for v in level_grid}, key=lambda v: abs(v - l1))
    alpha_grid = [round(j / (alphas - 1), 4) for j in range(alphas)]
    task = level2.task if task is None else task
    degraded, clean, per_level, names = [], [], [], []
    for level in level_grid:
        data = _eval_set(EvalSet, images, task, level, seed=seed, grey=grey)
        for _, x, y in data:
            degraded.append(_centre_crop(x, crop))
            clean.append(_centre_crop(y, crop))
        per_level.append(len(data))
        names = data.names
    if not names:
        raise ValueError("no images to calibrate on")
    shapes = {tuple(x.shape) for x in degraded}
    batch = torch.stack(degraded) if len(shapes) == 1 else None  # images smaller than the crop differ

    table = [[0.0] * len(alpha_grid) for _ in level_grid]
    for j, alpha in enumerate(alpha_grid):
        outs = run(batch, alpha) if batch is not None else [run(x[None], alpha)[0] for x in degraded]
        start = 0
        for i, n in enumerate(per_level):
            values = [psnr(outs[k].clamp(0, 1), clean[k]) for k in range(start, start + n)]
            table[i][j] = sum(values) / n
            start += n
    inputs, start = [], 0
    for n in per_level:
        inputs.append(sum(psnr(degraded[k].clamp(0, 1), clean[k]) for k in range(start, start + n)) / n)
        start += n
    data_name = Path(images).name if isinstance(images, (str, os.PathLike)) else f"{len(names)} {files_name}"
    result = SweepResult(task=task.name, level_name=task.level_name, train_levels=[float(l1), float(l2)],
                         levels=[float(v) for v in level_grid], alphas=alpha_grid, psnr=table, input_psnr=inputs,
                         images=len(names), data=data_name, crop=crop)
    return calibrate(result)


def _eval_set(cls, images, task, level, *, seed: int, grey: bool):
    """An EvalSet of a folder, or of the given files (their folder, limited to those names)."""
    if isinstance(images, (str, os.PathLike)):
        return cls(images, task, level, seed=seed, grey=grey)
    files = [Path(f) for f in images]
    if not files:
        raise ValueError("no images to calibrate on")
    data = cls(files[0].parent, task, level, seed=seed, grey=grey)
    data.files = files  # the degradation is seeded by file name and level, not by position
    return data
