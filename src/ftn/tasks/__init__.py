"""Tasks: degradations with a level (noise sigma, JPEG quality).

A :class:`Task` turns a clean image into a degraded one at a *level*, in the task's own unit
(``level_name``): ``Denoise`` adds Gaussian noise of standard deviation ``sigma`` on the 0-255
scale, ``DeJPEG`` compresses with JPEG at ``quality``. ``default_levels`` are the paper's level 1
(alpha = 0, the base network) and level 2 (alpha = 1, the tuner's target); ``test_levels`` are the
levels the paper evaluates (Tables 1-3).

    task = get_task("dejpeg", y_only=True)
    noisy = task.degrade(clean, 10)          # clean: (C, H, W) or (B, C, H, W) float in [0, 1]
    task.label(10)                           # "quality 10"

This package imports torch only; the JPEG task imports Pillow when it runs.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import torch

__all__ = ["TASKS", "Task", "get_task", "Denoise", "DeJPEG"]


class Task:
    """A degradation with a level. Subclasses set the class attributes and :meth:`degrade`."""

    name: ClassVar[str] = ""
    """Registry key: ``"denoise"`` or ``"dejpeg"``."""
    level_name: ClassVar[str] = ""
    """Unit of the level: ``"sigma"`` or ``"quality"``."""
    default_levels: ClassVar[tuple[float, float]] = (0.0, 0.0)
    """(level 1, level 2) of the paper: what alpha = 0 and alpha = 1 stand for."""
    test_levels: ClassVar[tuple[float, ...]] = ()
    """The levels the paper evaluates."""

    def degrade(
        self, clean: torch.Tensor, level: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Degrade ``clean`` ((C, H, W) or (B, C, H, W), float in [0, 1]) at ``level``.

        Returns a float32 tensor of the same shape on the same device. ``generator`` drives any
        randomness (the global generator when ``None``).
        """
        raise NotImplementedError

    def check_level(self, level: float) -> float:
        """``level`` as a float, or ``ValueError`` if the task cannot use it."""
        try:
            value = float(level)
        except (TypeError, ValueError):
            raise ValueError(f"{self.level_name} must be a number, got {level!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{self.level_name} must be finite, got {level!r}")
        return value

    def label(self, level: float) -> str:
        """Human-readable level: ``"sigma 20"``, ``"quality 40"``."""
        return f"{self.level_name} {float(level):g}"

    @property
    def options(self) -> dict[str, Any]:
        """The keyword options that rebuild this task: ``get_task(t.name, **t.options)``."""
        return {}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({opts})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.options == self.options  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.options.items()))))


def check_images(clean: torch.Tensor) -> torch.Tensor:
    """Validate a (C, H, W) or (B, C, H, W) floating-point image tensor."""
    if not isinstance(clean, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(clean).__name__}")
    if clean.ndim not in (3, 4):
        raise ValueError(f"expected (C, H, W) or (B, C, H, W), got shape {tuple(clean.shape)}")
    if not clean.is_floating_point():
        raise TypeError(f"expected a floating-point image in [0, 1], got dtype {clean.dtype}")
    return clean


from .dejpeg import DeJPEG  # noqa: E402  (Task must exist before the task modules import it)
from .denoise import Denoise  # noqa: E402

#: Task name -> class (called with the options as keyword arguments).
TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (Denoise, DeJPEG)}


def get_task(name: str, **options: Any) -> Task:
    """The task registered as ``name``, built with keyword ``options``.

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones) or a bad option value.
        TypeError: an option the task does not accept (the message names it).
    """
    try:
        cls = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}") from None
    accepted = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for task {name!r}; "
            f"accepted: {', '.join(accepted) or '(none)'}"
        )
    return cls(**options)
