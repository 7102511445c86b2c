"""Training batches of ``ftn tune``: (input, target) patches for the tuner at alpha 1.

Every source gives the batch of a step as a pure function of ``(seed, step)`` (as
:class:`ftn.data.PatchSampler` does), so a resumed run sees exactly the batches an uninterrupted run
would have seen:

* :class:`SpecSource` (``noise:SIGMA``, ``jpeg:QUALITY``): clean patches of ``--data`` degraded at
  level 2; the target is the clean patch. ``files`` limits it to some of the folder's images (the
  others are held out for the calibration, :mod:`ftn.tuning.calibrate`). ``context``: fixed
  degradations of a multi-axis model's other axes, at their anchor 0 (:class:`WithContext`).
* :class:`TeacherSource`: input = a patch of ``--data`` (degraded at level 1 when ``--from`` names
  one, else as it is); target = the teacher's output on that input, computed without gradients.
* :class:`PairsSource`: aligned random crops of the user's before/after images, matched by file stem.

Grey bases (1 input channel) get grey patches: colour files converted with ITU-R BT.601 luma (as
:class:`~ftn.data.PatchSampler` does); colour bases get grey files repeated to 3 channels.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from ..data.datasets import PatchSampler, _generator, _load_uint8
from ..data.images import list_images
from ..tasks import Task, get_task
from .specs import JpegSpec, LevelSpec, NoiseSpec

__all__ = ["PairsSource", "SpecSource", "TeacherSource", "Source", "WithContext", "data_files", "smallest_side"]


class WithContext(Task):
    """A task at the level asked, together with fixed degradations of other axes (``context``).

    On a multi-axis model the point where one axis's tuner trains has every other axis at anchor 0,
    the level the base already handles there (sigma 20 for a denoiser given a JPEG axis): the input
    holds that degradation too. Noise comes before compression whichever axis is being trained, as
    a camera adds noise before it saves the file. Noise of sigma 0 is left out (it adds nothing).
    The one generator drives every step, so a patch is still a pure function of (seed, step, index).
    """

    def __init__(self, task: Task, context: Sequence[NoiseSpec | JpegSpec] = ()) -> None:
        self.main = task
        self.context = tuple(s for s in context if not (isinstance(s, NoiseSpec) and s.sigma == 0))
        self.name = task.name  # type: ignore[misc]  # labels and sweeps read the main task's words
        self.level_name = task.level_name  # type: ignore[misc]

    def check_level(self, level: float) -> float:
        return self.main.check_level(level)

    def degrade(self, clean: Tensor, level: float, generator: torch.Generator | None = None) -> Tensor:
        steps = [(s.task, s.level) for s in self.context] + [(self.main, level)]
        steps.sort(key=lambda step: step[0].name == "dejpeg")  # stable: noise first, then JPEG
        x = clean
        for task, value in steps:
            x = task.degrade(x, value, generator=generator)
        return x

    @property
    def options(self) -> dict:
        return {**self.main.options, "context": [s.record() for s in self.context]}

    def describe(self) -> str:
        """`` with sigma 20 (the other axes at anchor 0)`` or ""."""
        return f" with {', '.join(s.name for s in self.context)}" if self.context else ""


def _check_folder(folder: str | os.PathLike | None, what: str) -> Path:
    if folder is None:
        raise ValueError(f"{what} needs --data DIR: a folder of clean images to cut training patches from")
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: no folder at {path}")
    try:
        list_images(path)
    except ValueError:
        raise ValueError(f"{what}: no images in {path}") from None
    return path


def data_files(folder: str | os.PathLike | None, what: str) -> list[Path]:
    """The image files of ``--data`` (sorted by name), checked as the sources check them.

    Raises:
        ValueError: no folder given, or no images in it. FileNotFoundError: no such folder.
    """
    return list_images(_check_folder(folder, what))


def _sampler(folder: Path, files: Sequence[Path] | None, task: Task, level: float, patch_size: int, *,
             seed: int, grey: bool) -> PatchSampler:
    """A :class:`PatchSampler` of ``folder``, limited to ``files`` (by name) when given.

    The sampler reads its folder; the images not in ``files`` (a few held out for the calibration)
    are dropped after loading, so patches never come from them.
    """
    with warnings.catch_warnings(record=True) as caught:  # a refusal below is one line, without the warning
        warnings.simplefilter("always")
        sampler = PatchSampler(folder, task, level, patch_size, seed=seed, grey=grey)
    for warning in caught:  # images smaller than the patch were skipped: say so once training goes ahead
        warnings.warn(str(warning.message), warning.category, stacklevel=3)
    if files is not None:
        keep = {Path(f).name for f in files}
        kept = [(image, name) for image, name in zip(sampler.images, sampler.names, strict=True) if name in keep]
        if not kept:
            raise ValueError(f"no training image in {folder} is at least {patch_size}x{patch_size} pixels")
        sampler.images = [image for image, _ in kept]
        sampler.names = [name for _, name in kept]
    return sampler


def smallest_side(files: Sequence[Path]) -> int | None:
    """The shorter side of the smallest of ``files`` (read from the headers only); None if unreadable."""
    from PIL import Image

    try:
        sides = []
        for f in files:
            with Image.open(f) as image:
                sides.append(min(image.size))
        return min(sides) if sides else None
    except (OSError, ValueError):  # the sources report unreadable files in their own words
        return None


class SpecSource:
    """Clean patches of ``data`` degraded at ``spec`` (level 2); the target is the clean patch."""

    def __init__(self, spec: NoiseSpec | JpegSpec, data: str | os.PathLike | None, *, patch_size: int,
                 grey: bool, seed: int = 0, files: Sequence[Path] | None = None,
                 context: Sequence[NoiseSpec | JpegSpec] = (), what: str | None = None) -> None:
        folder = _check_folder(data, what or f"--to {spec.name}")
        task = WithContext(spec.task, context) if context else spec.task
        self.sampler = _sampler(folder, files, task, spec.level, patch_size, seed=seed, grey=grey)
        extra = task.describe() if isinstance(task, WithContext) else ""
        self.description = f"{len(self.sampler)} images of {folder.name}, degraded to {spec.name}{extra}"

    def batch(self, step: int, batch_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """(degraded, clean) of ``step``, each (B, C, P, P), on ``device``."""
        degraded, clean = self.sampler.batch(step, batch_size)
        return degraded.to(device), clean.to(device)


class TeacherSource:
    """Input: a patch of ``data`` (degraded at ``level1`` if it is a spec); target: ``teacher(input)``."""

    def __init__(self, teacher: nn.Module, level1: LevelSpec, data: str | os.PathLike | None, *,
                 patch_size: int, grey: bool, seed: int = 0, files: Sequence[Path] | None = None) -> None:
        folder = _check_folder(data, "--teacher")
        if isinstance(level1, (NoiseSpec, JpegSpec)):
            task, level = level1.task, level1.level
        else:  # no --from: the images as they are (noise of sigma 0 without clipping adds exactly 0)
            task, level = get_task("denoise"), 0.0
        self.sampler = _sampler(folder, files, task, level, patch_size, seed=seed, grey=grey)
        self.teacher = teacher.eval()
        self.description = f"{len(self.sampler)} images of {folder.name} ({level1.name}), targets by the teacher"

    def batch(self, step: int, batch_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """(input, teacher output) of ``step`` on ``device``."""
        x, _ = self.sampler.batch(step, batch_size)
        x = x.to(device)
        with torch.no_grad():
            target = self.teacher(x)
        return x, target.detach()


class PairsSource:
    """Aligned random crops of ``input_dir/<stem>.*`` and ``target_dir/<stem>.*``.

    Raises:
        ValueError: a folder without images, names present on one side only, pairs of different
            sizes, or images smaller than the patch (the message names the first offenders).
    """

    def __init__(self, input_dir: str | os.PathLike, target_dir: str | os.PathLike, *, patch_size: int,
                 grey: bool, seed: int = 0) -> None:
        folders = []
        for folder in (input_dir, target_dir):
            path = Path(folder)
            if not path.is_dir():
                raise FileNotFoundError(f"--pairs: no folder at {path}")
            try:
                files = {f.stem: f for f in list_images(path)}
            except ValueError:
                raise ValueError(f"--pairs: no images in {path}") from None
            folders.append(files)
        inputs, targets = folders
        unmatched = sorted(set(inputs) ^ set(targets))
        if unmatched:
            raise ValueError(f"--pairs: {len(unmatched)} name(s) without a partner in the other folder: "
                             f"{', '.join(unmatched[:5])}{' ...' if len(unmatched) > 5 else ''}")
        self.pairs: list[tuple[Tensor, Tensor]] = []
        sizes, small = [], []
        for stem in sorted(inputs):
            a = torch.from_numpy(_load_uint8(inputs[stem], grey))
            b = torch.from_numpy(_load_uint8(targets[stem], grey))
            if a.shape[1:] != b.shape[1:]:
                sizes.append(f"{stem} ({a.shape[2]}x{a.shape[1]} vs {b.shape[2]}x{b.shape[1]})")
            elif min(a.shape[1:]) < patch_size:
                small.append(f"{stem} ({a.shape[2]}x{a.shape[1]})")
            self.pairs.append((a, b))
        if sizes:
            raise ValueError(f"--pairs: input and target differ in size: {', '.join(sizes[:5])}"
                             f"{' ...' if len(sizes) > 5 else ''}")
        if small:
            raise ValueError(f"--pairs: images smaller than the {patch_size}-pixel patch: {', '.join(small[:5])}"
                             f"{' ...' if len(small) > 5 else ''} (pass a smaller --patch-size)")
        self.patch_size = int(patch_size)
        self.seed = int(seed)
        self.description = f"{len(self.pairs)} pairs {Path(input_dir).name} -> {Path(target_dir).name}"

    def patch(self, step: int, index: int) -> tuple[Tensor, Tensor]:
        """Pair patch ``index`` of ``step``: the same crop and flip / rot90 of both images."""
        g = _generator("pairs", self.seed, int(step), int(index))
        p = self.patch_size
        a, b = self.pairs[int(torch.randint(len(self.pairs), (1,), generator=g))]
        _, h, w = a.shape
        top = int(torch.randint(h - p + 1, (1,), generator=g))
        left = int(torch.randint(w - p + 1, (1,), generator=g))
        variant = int(torch.randint(8, (1,), generator=g))
        out = []
        for image in (a, b):
            crop = image[:, top : top + p, left : left + p]
            if variant & 1:
                crop = crop.flip(-1)
            out.append(torch.rot90(crop, variant >> 1, dims=(-2, -1)).to(torch.float32) / 255.0)
        return out[0], out[1]

    def batch(self, step: int, batch_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """(input, target) of ``step``, each (B, C, P, P), on ``device``."""
        patches = [self.patch(step, i) for i in range(batch_size)]
        return (torch.stack([x for x, _ in patches]).to(device), torch.stack([y for _, y in patches]).to(device))


#: Any training source.
Source = SpecSource | TeacherSource | PairsSource
