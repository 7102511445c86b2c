"""The app's work, without any web code: loading models (once each), the blind "auto" level, running
a model and turning tensors into what a browser shows and downloads."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# The app is a front end above infer, as the ``ftn run`` command is: running a model and the blind
# estimates are infer's work. The level vocabulary comes from ftn.levels, like everyone else's.
from ..infer.apply import apply_model
from ..infer.estimate import estimate_jpeg_quality, estimate_noise_sigma
from ..levels import describe_levels, level_name, level_to_alpha
from ..methods import TunableModel

__all__ = ["AutoUnavailable", "ModelCache", "auto_alpha", "model_summary", "run_model", "save_result", "to_display"]

# Which blind estimate serves which task, and the level name it measures.
_ESTIMATES = {"denoise": "sigma", "dejpeg": "quality"}


class AutoUnavailable(ValueError):
    """"auto" cannot pick a level for this model or image; the message says why and what to do."""


class ModelCache:
    """Tunable models by shipped name or file path, each read from disk once (a file that changed on
    disk since is read again). Safe to share between the web server's worker threads."""

    def __init__(self) -> None:
        self._models: dict[str, tuple[float, TunableModel]] = {}
        self._lock = threading.Lock()

    def get(self, name_or_path: str) -> TunableModel:
        """The model for a shipped model's name or a ``.safetensors`` path, on the CPU in eval mode.

        Raises:
            FileNotFoundError: no such file and no shipped model of that name.
            ValueError: the file is not a tunable model.
        """
        from ..io import load_tunable
        from ..models import resolve

        path = resolve(name_or_path.strip())
        if path.suffix.lower() != ".safetensors":
            raise ValueError(f"{path.name}: the app reads .safetensors model files only")
        key, mtime = str(path.resolve()), path.stat().st_mtime
        with self._lock:  # one load per file even when two requests ask at once
            cached = self._models.get(key)
            if cached is not None and cached[0] == mtime:
                return cached[1]
            model = load_tunable(path).to("cpu").eval()
            self._models[key] = (mtime, model)
            return model


def model_summary(model: TunableModel) -> str:
    """One line about a model: task, method and its two levels."""
    meta = model.metadata
    return f"task {meta.get('task', '?')}, method {model.method}, {describe_levels(meta)}"


def auto_alpha(metadata: dict, image: Tensor, path: str | os.PathLike | None) -> tuple[float, str]:
    """The alpha a blind estimate of the image's level asks for, and a line saying what was measured.

    Noise sigma is estimated from the pixels (denoise models); JPEG quality is read from the file's
    quantisation tables (dejpeg models), so ``path`` must be the uploaded file itself.

    Raises:
        AutoUnavailable: the task has no blind estimate (super-resolution, style: their level is a
            taste, not a property of the image), the model has no calibration, or a dejpeg model
            is given a file that is not a JPEG.
    """
    task = (metadata or {}).get("task")
    wanted = _ESTIMATES.get(task)
    if wanted is None:
        raise AutoUnavailable(
            f"auto is not possible for this model (task {task or 'unknown'}): its level is a matter of taste, not something "
            "measurable in the image (auto works for denoise and dejpeg models); set the slider yourself"
        )
    name = level_name(metadata)
    if name is not None and name != wanted:
        raise AutoUnavailable(f"auto measures {wanted}, but this model's levels are in {name}; set the slider yourself")
    if wanted == "sigma":
        measured = estimate_noise_sigma(image)
        what = f"estimated noise sigma {measured:.1f}"
    else:
        quality = estimate_jpeg_quality(path) if path is not None else None
        if quality is None:
            raise AutoUnavailable(
                "auto reads a dejpeg model's level from the JPEG file's quantisation tables, and this upload is not "
                "a JPEG file; set the slider yourself"
            )
        measured = quality
        what = f"JPEG quality {quality:.0f} (from the file's quantisation tables)"
    try:
        alpha, note = level_to_alpha(metadata, measured)
    except ValueError as err:  # no calibration: say so in the app's words
        raise AutoUnavailable(f"auto needs the model's level calibration: {err}".replace(" with --alpha", " with the slider")) from None
    line = f"{what} -> alpha {alpha:.2f}"
    return alpha, f"{line} ({note})" if note else line


def run_model(
    model: TunableModel,
    image: Tensor,
    alpha: float | Tensor,
    progress: Callable[[float, str], None] | None = None,
) -> Tensor:
    """``model`` on ``image`` ((C, H, W) in [0, 1]) at ``alpha`` (a number or a (1, H, W) map)."""
    if progress is not None:
        progress(0.2, "running the model")

    def tile_done(done: int, total: int) -> None:  # large images run in tiles: show each one
        if progress is not None and total > 1:
            progress(0.2 + 0.7 * done / total, f"tile {done} of {total}")

    out = apply_model(model, image, alpha=alpha, tile="auto", progress=tile_done)
    if progress is not None:
        progress(0.9, "preparing the result")
    return out


def to_display(image: Tensor, size: tuple[int, int] | None = None) -> np.ndarray:
    """An (H, W, 3) uint8 array for the browser; grey is shown as RGB. ``size`` = (H, W) resizes
    (bicubic), so an input can sit beside its x4 super-resolved output in the comparison slider."""
    x = image.detach().to("cpu", torch.float32)
    if x.dim() == 4:
        x = x[0]
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x[None], size=tuple(size), mode="bicubic", align_corners=False)[0]
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def save_result(image: Tensor, folder: str | os.PathLike, stem: str, alpha: Tensor | None = None) -> Path:
    """Write ``image`` as an 8-bit PNG in ``folder``; returns the path. Transparency of the input
    (``alpha``, (1, H, W)) is kept where it still fits the output's size."""
    from ..data.images import save_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.png"
    if alpha is not None and tuple(alpha.shape[-2:]) != tuple(image.shape[-2:]):
        alpha = None  # a resized output (super-resolution): the input's transparency no longer lines up
    save_image(path, image, alpha=alpha)
    return path
