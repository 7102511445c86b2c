"""The app's work, without any web code: loading models (once each), the blind "auto" level, running
a model and turning tensors into what a browser shows and downloads.

Models are one-axis :class:`~ftn.methods.TunableModel` files or multi-axis
:class:`~ftn.methods.axes.AxesModel` files (several axes, or more than two anchors); both run through
:func:`ftn.infer.apply.apply_model`, as ``ftn run`` runs them."""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# The app is a front end above infer, as the ``ftn run`` command is: running a model and the blind
# estimates are infer's work. The level vocabulary comes from ftn.levels, like everyone else's.
from ..infer.apply import apply_model
from ..infer.estimate import estimate_jpeg_quality, estimate_noise_sigma
from ..levels import axis_alpha, describe_levels, level_name, level_to_alpha
from ..methods import TunableModel
from ..methods.axes import AxesModel

__all__ = ["AutoUnavailable", "ModelCache", "NO_MODEL_AT_PATH", "auto_alpha", "auto_setting", "model_axes", "model_summary",
           "read_model", "run_model", "save_result", "to_display"]

# Which blind estimate serves which task, and the level name it measures.
_ESTIMATES = {"denoise": "sigma", "dejpeg": "quality"}


class AutoUnavailable(ValueError):
    """"auto" cannot pick a level for this model or image; the message says why and what to do."""


#: What the local-model box says for any path it cannot load, so that it never tells whether a
#: path exists, is a folder or is readable on the server (the reason goes to the server's log).
NO_MODEL_AT_PATH = ("no model could be loaded from that path: give the full path of a tunable ftn "
                    ".safetensors model file on this server")


class ModelCache:
    """Tunable models by shipped name or (when allowed) file path, each read from disk once (a file
    that changed on disk since is read again), at most ``max_models`` at a time: the least recently
    used is dropped when another arrives. Safe to share between the web server's worker threads.

    ``allow_paths=False`` (the app's default, :class:`~ftn.app.config.AppConfig`) loads shipped
    models only; with paths allowed, a path under one
    of ``refuse_under`` (the folders where the web server keeps uploads and results) is refused:
    an uploaded file is never a model.
    """

    def __init__(self, *, max_models: int = 3, allow_paths: bool = True,
                 refuse_under: Sequence[str | os.PathLike] = ()) -> None:
        if max_models < 1:
            raise ValueError(f"max_models must be at least 1, got {max_models}")
        self.max_models = max_models
        self.allow_paths = allow_paths
        self._refuse_under = [Path(p).resolve() for p in refuse_under]
        self._models: OrderedDict[str, tuple[float, TunableModel]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._models)

    def _local_path(self, text: str) -> Path:
        """The resolved path of a local model file, or ValueError(NO_MODEL_AT_PATH) whatever the reason."""
        try:
            path = Path(text).expanduser().resolve(strict=True)
            usable = (path.is_file() and path.suffix.lower() == ".safetensors"
                      and not any(path.is_relative_to(folder) for folder in self._refuse_under))
        except (OSError, RuntimeError, ValueError):  # missing, a loop of links, a NUL in the name
            usable = False
        if not usable:
            print(f"ftn app: local model refused: {text[:300]!r}", file=sys.stderr)
            raise ValueError(NO_MODEL_AT_PATH)
        return path

    def get(self, name_or_path: str) -> TunableModel | AxesModel:
        """The model (one axis, or several: :func:`read_model`) for a shipped model's name or (``allow_paths``) a ``.safetensors`` path, on the
        CPU in eval mode.

        Raises:
            FileNotFoundError: not a shipped model's name (the message lists them).
            ValueError: a path while paths are off, any path that does not hold a tunable model
                (:data:`NO_MODEL_AT_PATH`, the same words whatever the reason), or a shipped file
                that is not a tunable model.
        """
        from ..models import available

        text = name_or_path.strip()
        shipped = available()
        name = text.removesuffix(".safetensors")
        is_path = "/" in text or os.sep in text or text.startswith("~") or text.endswith(".safetensors")
        if name in shipped and "/" not in text and os.sep not in text:
            path, local = shipped[name], False
        elif not self.allow_paths or not is_path:  # a bare word is a shipped name, or a typo of one
            hint = ("or give a file's full path" if self.allow_paths else
                    "this app loads shipped models only (start it with --allow-local-models for files)")
            raise FileNotFoundError(f"no shipped model named {text[:80]!r} (shipped: {', '.join(shipped) or 'none'}); {hint}")
        else:
            path, local = self._local_path(text), True
        key = str(path.resolve())
        with self._lock:  # one load per file even when two requests ask at once
            try:
                mtime = path.stat().st_mtime
                cached = self._models.get(key)
                if cached is not None and cached[0] == mtime:
                    self._models.move_to_end(key)
                    return cached[1]
                model = read_model(path).to("cpu").eval()
            except (OSError, ValueError) as err:
                if not local:
                    raise
                print(f"ftn app: local model {text[:300]!r} not loaded: {str(err)[:300]}", file=sys.stderr)
                raise ValueError(NO_MODEL_AT_PATH) from None
            self._models[key] = (mtime, model)
            self._models.move_to_end(key)
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)  # the least recently used goes; its memory with it
            return model


def read_model(path: str | os.PathLike) -> TunableModel | AxesModel:
    """The tunable model in the file at ``path``, one axis or several, as ``ftn run`` reads it
    (:func:`ftn.io.load_tunable`).

    Raises:
        FileNotFoundError, ValueError: as :func:`ftn.io.load_tunable`.
    """
    from ..io import load_tunable

    return load_tunable(path)


def model_axes(model: TunableModel | AxesModel) -> list[tuple[str, int]] | None:
    """A multi-axis model's axes as ``(name, K)`` (axis d runs over [0, K_d]); None for a one-axis
    model of the old kind (one slider over [0, 1])."""
    return [(a.name, a.segments) for a in model.axes] if isinstance(model, AxesModel) else None


def model_summary(model: TunableModel | AxesModel) -> str:
    """One line about a model: task, method and its levels (per axis for a multi-axis model)."""
    meta = model.metadata
    if isinstance(model, AxesModel):
        spans = model.levels.describe() if model.levels is not None else "anchor levels not named"
        axes = ", ".join(f"{a.name} ({a.anchors} anchors)" for a in model.axes)
        return f"task {meta.get('task', '?')}, method {model.method}, axes {axes}: {spans}"
    return f"task {meta.get('task', '?')}, method {model.method}, {describe_levels(meta)}"


def auto_alpha(metadata: dict, image: Tensor, path: str | os.PathLike | None) -> tuple[float, str]:
    """The alpha a blind estimate of the image's level asks for, and a line saying what was measured.

    Noise sigma is estimated from the pixels, or for a JPEG upload from its DCT coefficients (denoise
    models); JPEG quality is read from the file's quantisation tables (dejpeg models), so ``path``
    must be the uploaded file itself.

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
        measured = estimate_noise_sigma(image, jpeg_file=path)
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


def auto_setting(model: AxesModel, image: Tensor, path: str | os.PathLike | None) -> tuple[dict[str, float], str]:
    """"auto" for a multi-axis model: the alphas of its ``sigma`` axis (noise estimated from the
    pixels) and its ``quality`` axis (read from the JPEG file's tables), as ``ftn run --auto`` sets
    them; returns the estimated axes only (the others keep their sliders) and a line of what was measured.

    Raises:
        AutoUnavailable: the model has neither axis, or its axes do not name their anchor levels.
    """
    levels = model.levels
    estimable = [name for name in model.axis_names if name in _ESTIMATES.values()]
    if not estimable or levels is None:
        why = "its axes do not name their anchor levels" if estimable else f"its axes are {', '.join(model.axis_names)}"
        raise AutoUnavailable(f"auto estimates the axes sigma (noise) and quality (JPEG tables), and {why}; set the sliders yourself")
    setting: dict[str, float] = {}
    words: list[str] = []
    for name in estimable:
        if name == "sigma":
            measured, what = estimate_noise_sigma(image, jpeg_file=path), "estimated noise sigma {:.1f}"
        else:
            measured, what = (estimate_jpeg_quality(path) if path is not None else None), "JPEG quality {:.0f}"
            if measured is None:
                words.append("quality: not a JPEG file, slider kept")
                continue
        alpha, note = axis_alpha(levels.axis(name), measured, clamp=True)  # a clean photo may lie below the first anchor
        setting[name] = float(alpha)
        words.append(what.format(measured) + f" -> {name} alpha {float(alpha):.2f}" + (f" ({note})" if note else ""))
    return setting, "; ".join(words)


def run_model(
    model: TunableModel | AxesModel,
    image: Tensor,
    alpha: float | Tensor | dict[str, float | Tensor],
    progress: Callable[[float, str], None] | None = None,
) -> Tensor:
    """``model`` on ``image`` ((C, H, W) in [0, 1]) at ``alpha``: a number or a (1, H, W) map, or for a
    multi-axis model a setting ``{axis: number or (1, H, W) map}``."""
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
