"""Alpha sweeps: PSNR against alpha at several test levels, and the level -> alpha calibration.

The paper picks alpha by grid search for every test level ("the maximum PSNR is obtained via grid
search of alpha"). :func:`sweep` does that on a folder of clean images degraded deterministically at
each level; :func:`calibrate` turns the best alphas into a monotone level -> alpha map that
:mod:`ftn.levels` validates and stores in the model's metadata, so users can ask for ``--level 50``
instead of guessing alpha.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..levels import calibration_entry
from ..methods import TunableModel
from .metrics import psnr

__all__ = ["SweepResult", "sweep", "calibrate", "isotonic_increasing", "parse_alpha_grid", "plot_sweep"]


@dataclass
class SweepResult:
    """PSNR (dB, averaged over images) for every (level, alpha) pair."""

    task: str
    level_name: str
    train_levels: list[float]  # [level at alpha 0, level at alpha 1]
    levels: list[float]
    alphas: list[float]
    psnr: list[list[float]]  # psnr[i][j]: level i, alpha j
    input_psnr: list[float]  # PSNR of the degraded input per level
    images: int
    data: str
    crop_border: int = 0
    y_channel: bool = False
    crop: int | None = None  # centre crop (px) taken after the degradation, None = whole images
    best_alpha: dict[str, float] = field(default_factory=dict)  # str(level) -> alpha
    best_psnr: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.best_alpha:
            for level, row in zip(self.levels, self.psnr):
                j = max(range(len(row)), key=row.__getitem__)
                self.best_alpha[_key(level)] = self.alphas[j]
                self.best_psnr[_key(level)] = row[j]

    def psnr_at(self, level: float, alpha: float) -> float:
        """PSNR at a grid point."""
        return self.psnr[self.levels.index(level)][_nearest(self.alphas, alpha)]

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write sweep.json and sweep.csv (one row per level and alpha) into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "sweep.json").write_text(json.dumps(asdict(self), indent=2))
        with open(out / "sweep.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([self.level_name, "alpha", "psnr_db", "input_psnr_db", "best"])
            for level, row, inp in zip(self.levels, self.psnr, self.input_psnr):
                for alpha, value in zip(self.alphas, row):
                    writer.writerow([level, f"{alpha:.4f}", f"{value:.4f}", f"{inp:.4f}", int(alpha == self.best_alpha[_key(level)])])
        return [out / "sweep.json", out / "sweep.csv"]

    @classmethod
    def read(cls, path: str | os.PathLike) -> SweepResult:
        return cls(**json.loads(Path(path).read_text()))


def _key(level: float) -> str:
    return f"{level:g}"


def _nearest(values: Sequence[float], x: float) -> int:
    return min(range(len(values)), key=lambda i: abs(values[i] - x))


def parse_alpha_grid(spec: str) -> list[float]:
    """"0:1:0.05" -> [0, 0.05, ..., 1]; "0,0.5,1" -> [0, 0.5, 1]."""
    if ":" in spec:
        start, stop, step = (float(v) for v in spec.split(":"))
        if step <= 0 or stop < start:
            raise ValueError(f"alpha grid {spec!r}: expected start:stop:step with step > 0 and stop >= start")
        n = int(round((stop - start) / step))
        return [round(start + i * step, 10) for i in range(n + 1)]
    return [float(v) for v in spec.split(",") if v.strip()]


@torch.inference_mode()
def sweep(
    model: TunableModel,
    folder: str | os.PathLike,
    task,
    levels: Sequence[float],
    alphas: Sequence[float],
    *,
    train_levels: Sequence[float],
    limit: int | None = None,
    seed: int = 0,
    crop_border: int = 0,
    y_channel: bool = False,
    crop: int | None = None,
    progress: bool = True,
    on_image: Callable[[], None] | None = None,
) -> SweepResult:
    """Average PSNR of ``model`` over the images of ``folder`` degraded at each level, for each alpha.

    ``crop``: evaluate a centre crop of that size (taken after degrading the whole image), which
    makes a calibration sweep cheap; None evaluates whole images.
    """
    from tqdm import tqdm

    from ..data.datasets import EvalSet

    model.eval()
    table: list[list[float]] = []
    inputs: list[float] = []
    count = 0
    bar = tqdm(total=len(levels), desc="sweep", unit="level", disable=not progress)
    for level in levels:
        data = EvalSet(folder, task, level, seed=seed, limit=limit)
        sums = [0.0] * len(alphas)
        input_sum = 0.0
        for _, degraded, clean in data:
            if crop is not None:
                degraded, clean = _centre_crop(degraded, crop), _centre_crop(clean, crop)
            input_sum += psnr(degraded.clamp(0, 1), clean, crop_border=crop_border, y_channel=y_channel)
            x = degraded.unsqueeze(0)
            for j, alpha in enumerate(alphas):
                out = model(x, alpha=float(alpha)).clamp(0, 1)[0]
                sums[j] += psnr(out, clean, crop_border=crop_border, y_channel=y_channel)
            if on_image is not None:
                on_image()
        count = len(data)
        table.append([s / count for s in sums])
        inputs.append(input_sum / count)
        bar.set_postfix_str(f"{task.label(level)}: best {max(table[-1]):.2f} dB")
        bar.update()
    bar.close()
    return SweepResult(
        task=task.name,
        level_name=task.level_name,
        train_levels=[float(v) for v in train_levels],
        levels=[float(v) for v in levels],
        alphas=[float(a) for a in alphas],
        psnr=table,
        input_psnr=inputs,
        images=count,
        data=str(folder),
        crop_border=crop_border,
        y_channel=y_channel,
        crop=crop,
    )


def _centre_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return image[..., top : top + size, left : left + size]


def isotonic_increasing(values: Sequence[float], weights: Sequence[float] | None = None) -> list[float]:
    """The non-decreasing sequence closest to ``values`` in weighted least squares (pool adjacent violators)."""
    w = list(weights) if weights is not None else [1.0] * len(values)
    blocks: list[list[float]] = []  # [mean, weight, length]
    for v, wi in zip(values, w):
        blocks.append([float(v), float(wi), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return [m for m, _, n in blocks for _ in range(int(n))]


def calibrate(result: SweepResult) -> dict:
    """A monotone level -> alpha map from the best alphas of a sweep.

    Levels are ordered from the alpha-0 level towards the alpha-1 level (so JPEG quality 40 -> 10 works
    like sigma 20 -> 80), and the best alphas are made non-decreasing along that order. Returns the
    metadata entry ``{"level_name", "levels", "alphas", "source"}`` with levels ascending
    (:func:`ftn.levels.calibration_entry`); :func:`ftn.levels.with_calibration` validates and stores it.
    """
    l1, l2 = result.train_levels[0], result.train_levels[-1]
    direction = 1.0 if l2 >= l1 else -1.0
    order = sorted(result.levels, key=lambda v: direction * v)
    best = [result.best_alpha[_key(v)] for v in order]
    smooth = isotonic_increasing(best)
    pairs = sorted(zip(order, smooth))
    source = (
        f"best alpha on {result.images} images of {Path(result.data).name}"
        + (f" ({result.crop} px centre crops)" if result.crop else "")
        + f" (grid of {len(result.alphas)} alphas), made monotone by isotonic regression"
    )
    return calibration_entry(result.level_name, [p[0] for p in pairs], [round(p[1], 4) for p in pairs], source)


def plot_sweep(result: SweepResult, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """PSNR against alpha, one curve per test level, the best alpha marked (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'ftn[plot]'") from err
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cmap = plt.get_cmap("viridis")
    l1, l2 = result.train_levels
    for i, (level, row) in enumerate(zip(result.levels, result.psnr)):
        seen = "" if level in (l1, l2) else " (unseen)"
        colour = cmap(i / max(1, len(result.levels) - 1))
        ax.plot(result.alphas, row, color=colour, label=f"{result.level_name} {level:g}{seen}")
        best = result.best_alpha[_key(level)]
        ax.plot([best], [result.best_psnr[_key(level)]], "o", color=colour)
    ax.set_xlabel(f"alpha  (0 = {result.level_name} {l1:g}, 1 = {result.level_name} {l2:g})")
    ax.set_ylabel("PSNR (dB)" + (" on Y" if result.y_channel else ", RGB"))
    ax.set_title(title or f"{result.task}: PSNR against alpha, {result.images} images of {Path(result.data).name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
