"""Level specs of ``ftn tune``: what alpha 0 and alpha 1 stand for.

Four forms name a level, and "the base" stands for a level no spec names:

* ``noise:SIGMA`` — Gaussian noise of ``SIGMA`` (0-255 scale). ``noise:50`` and ``noise:50,clip`` are
  photo-true (clipped to [0, 1] and rounded to 8 bits, as a noisy file holds it);
  ``noise:50,unclipped`` is the float noise of the DnCNN / AdaFM benchmarks.
* ``jpeg:QUALITY`` — JPEG compression at ``QUALITY`` (1-100).
* a teacher (``--teacher MODEL``) — another model's output on the same input;
* pairs (``--pairs INPUT_DIR TARGET_DIR``) — the user's own before/after images, matched by file stem.

Each spec is a small frozen dataclass with a ``name`` (the label users see, "sigma 50"), a
``metadata()`` entry for the tuned file's ``levels`` list (one key, so that every surface labels the
ends as "sigma 25 ... sigma 50", "base as trained ... teacher DnCNN-S-50") and a fuller ``record()``
for the file's ``tuned`` section::

    parse_spec("noise:50")            # NoiseSpec(sigma=50.0, clip=True)
    parse_spec("jpeg:10").name        # "quality 10"
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..tasks import Task, get_task

__all__ = ["BaseSpec", "JpegSpec", "LevelSpec", "NoiseSpec", "PairsSpec", "TeacherSpec", "parse_spec", "resolve_levels"]


def _tidy(value: float) -> int | float:
    """50.0 -> 50, so levels read as users write them."""
    return int(value) if float(value).is_integer() else value


@dataclass(frozen=True)
class BaseSpec:
    """Level 1 where no spec names it: alpha 0 is whatever the base network does."""

    @property
    def name(self) -> str:
        return "base"

    def metadata(self) -> dict[str, Any]:
        return {"base": "as trained"}

    def record(self) -> dict[str, Any]:
        return {"kind": "base", "name": self.name}


@dataclass(frozen=True)
class NoiseSpec:
    """Gaussian noise of ``sigma``; ``clip=True`` (default) is photo-true: clipped and 8-bit."""

    sigma: float
    clip: bool = True

    @property
    def name(self) -> str:
        return f"sigma {_tidy(self.sigma)}"

    @property
    def task(self) -> Task:
        return get_task("denoise", clip=True, quantize=True) if self.clip else get_task("denoise")

    @property
    def level(self) -> float:
        return self.sigma

    def metadata(self) -> dict[str, Any]:
        return {"sigma": _tidy(self.sigma)}

    def record(self) -> dict[str, Any]:
        return {"kind": "noise", "sigma": _tidy(self.sigma), "clip": self.clip, "name": self.name}


@dataclass(frozen=True)
class JpegSpec:
    """JPEG compression at ``quality`` (Pillow's libjpeg, 4:2:0 for colour)."""

    quality: int

    @property
    def name(self) -> str:
        return f"quality {self.quality}"

    @property
    def task(self) -> Task:
        return get_task("dejpeg")

    @property
    def level(self) -> float:
        return float(self.quality)

    def metadata(self) -> dict[str, Any]:
        return {"quality": self.quality}

    def record(self) -> dict[str, Any]:
        return {"kind": "jpeg", "quality": self.quality, "name": self.name}


@dataclass(frozen=True)
class TeacherSpec:
    """Level 2 is another model's output on the same input (``model``: a file path or shipped name)."""

    model: str

    @property
    def name(self) -> str:
        return f"teacher {Path(self.model).stem}"

    def metadata(self) -> dict[str, Any]:
        return {"teacher": Path(self.model).stem}

    def record(self) -> dict[str, Any]:
        return {"kind": "teacher", "model": Path(self.model).name, "name": self.name}


@dataclass(frozen=True)
class PairsSpec:
    """Level 2 is the user's own pairs: ``input_dir/x.png`` should become ``target_dir/x.png``."""

    input_dir: str
    target_dir: str

    @property
    def name(self) -> str:
        return f"pairs {Path(self.target_dir).resolve().name}"

    def metadata(self) -> dict[str, Any]:
        return {"pairs": Path(self.target_dir).resolve().name}

    def record(self) -> dict[str, Any]:
        return {"kind": "pairs", "input": Path(self.input_dir).resolve().name,
                "target": Path(self.target_dir).resolve().name, "name": self.name}


#: Any level spec.
LevelSpec = BaseSpec | NoiseSpec | JpegSpec | TeacherSpec | PairsSpec

_FORMS = "noise:SIGMA[,clip|,unclipped] or jpeg:QUALITY"


def _number(text: str, what: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"level {spec!r}: {what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"level {spec!r}: {what} must be finite, got {text!r}")
    return value


def parse_spec(text: str) -> NoiseSpec | JpegSpec:
    """``noise:SIGMA[,clip|,unclipped]`` or ``jpeg:QUALITY`` as a spec.

    Raises:
        ValueError: any other text (one line that names the accepted forms).
    """
    spec = str(text).strip()
    kind, sep, rest = spec.partition(":")
    kind = kind.strip().lower()
    if not sep or not rest.strip():
        raise ValueError(f"level {spec!r}: expected {_FORMS}")
    value, *flags = [part.strip() for part in rest.split(",")]
    if kind == "noise":
        sigma = _number(value, "sigma", spec)
        if sigma < 0:
            raise ValueError(f"level {spec!r}: sigma must be >= 0")
        if len(flags) > 1 or (flags and flags[0] not in ("clip", "unclipped")):
            raise ValueError(f"level {spec!r}: the noise option is clip (the default: clipped, 8-bit) or unclipped")
        return NoiseSpec(sigma, clip=not flags or flags[0] == "clip")
    if kind == "jpeg":
        if flags:
            raise ValueError(f"level {spec!r}: jpeg takes no options")
        quality = _number(value, "quality", spec)
        if not quality.is_integer() or not 1 <= quality <= 100:
            raise ValueError(f"level {spec!r}: JPEG quality must be a whole number in [1, 100]")
        return JpegSpec(int(quality))
    raise ValueError(f"level {spec!r}: unknown kind {kind!r}; expected {_FORMS}")


def resolve_levels(
    from_: str | NoiseSpec | JpegSpec | None,
    to: str | NoiseSpec | JpegSpec | None,
    teacher: str | os.PathLike | None = None,
    pairs: tuple[str | os.PathLike, str | os.PathLike] | None = None,
) -> tuple[LevelSpec, LevelSpec]:
    """(level 1, level 2) from the ``tune`` arguments: ``--from`` (optional) and one of ``--to``,
    ``--teacher``, ``--pairs``.

    Raises:
        ValueError: no level 2 or more than one, a malformed spec, the same level at both ends, or a
            ``--from`` of another kind than ``--to`` (a sigma cannot turn into a JPEG quality).
    """
    given = [name for name, v in (("--to", to), ("--teacher", teacher), ("--pairs", pairs)) if v is not None]
    if len(given) != 1:
        raise ValueError("give level 2 as exactly one of --to SPEC, --teacher MODEL, --pairs INPUT_DIR TARGET_DIR"
                         + (f" (got {', '.join(given)})" if given else ""))
    level1: LevelSpec = BaseSpec() if from_ is None else (parse_spec(from_) if isinstance(from_, str) else from_)
    if to is not None:
        level2: LevelSpec = parse_spec(to) if isinstance(to, str) else to
    elif teacher is not None:
        level2 = TeacherSpec(os.fspath(teacher))
    else:
        if len(pairs) != 2:  # type: ignore[arg-type]
            raise ValueError("--pairs takes two folders: INPUT_DIR TARGET_DIR")
        level2 = PairsSpec(os.fspath(pairs[0]), os.fspath(pairs[1]))  # type: ignore[index]
    if isinstance(level2, (NoiseSpec, JpegSpec)):
        if isinstance(level1, (NoiseSpec, JpegSpec)) and type(level1) is not type(level2):
            raise ValueError(f"--from {level1.name} and --to {level2.name} are different kinds of level; tune one kind at a time")
        if level1 == level2:
            raise ValueError(f"--from and --to are the same level ({level2.name}): nothing to tune")
    return level1, level2
